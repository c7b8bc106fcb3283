# images.py - fast pure-Python PNG and baseline-JPEG encoders for the editflow sandbox.
# Owns the deterministic test pattern (at most 16x16 uniform colour tiles from seed+prompt+index;
# tiles are multiples of 16 px so each 16x16 JPEG MCU is one flat colour), the palette PNG writer
# (pixel indices depend only on the size, so the compressed IDAT is cached per size and only
# PLTE changes), the baseline JPEG writer (JFIF, Annex K tables, 4:2:0, DC-only) and an LRU cache.

import base64
import hashlib
import struct
import threading
import zlib
from collections import OrderedDict

FAL_SIZES = {
    "square_hd": (1024, 1024),
    "square": (512, 512),
    "portrait_4_3": (768, 1024),
    "portrait_16_9": (576, 1024),
    "landscape_4_3": (1024, 768),
    "landscape_16_9": (1024, 576),
}

CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg"}
EXTENSIONS = {"png": "png", "jpeg": "jpg"}


def content_key(seed, prompt, index):
    """A short stable digest naming the picture for (seed, prompt, index)."""
    h = hashlib.sha256(f"{seed}\x00{prompt}\x00{index}".encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:32]


def _tri(v):
    """Triangle wave 0..255..0 so colour gradients do not jump."""
    v %= 510
    return v if v < 256 else 509 - v


_TRI3 = bytes(_tri(v) for v in range(510)) * 3           # sliced with a step: C speed
_DARK = bytes(v * 3 // 4 for v in range(256))
_LIGHT = bytes(255 - v // 3 for v in range(256))


def tile_layout(width, height):
    """(tile_px, cols, rows): the smallest multiple of 16 giving at most 16x16 tiles."""
    k = max(-(-width // 256), -(-height // 256), 1)
    tile = 16 * k
    return tile, -(-width // tile), -(-height // tile)


def _channel(base, sx, gx, off_y, cols):
    """One channel of one tile row: tri(base + sx*tx*gx + off_y) for tx in range(cols)."""
    start = (base + off_y) % 510
    if sx > 0:
        return _TRI3[start:start + cols * gx:gx]
    start += 510
    return _TRI3[start:start - cols * gx:-gx]


def tile_grid(width, height, key):
    """(tile_px, rows): rows[ty] is the RGB bytes of that tile row (3 per tile); <= 256 tiles.

    Tile (tx, ty) has a triangle-wave gradient colour, darkened on a checkerboard, with light
    diagonal stripes; all built from bytes slicing/translate, no per-tile Python work."""
    tile, cols, nrows = tile_layout(width, height)
    d = bytes.fromhex(key)
    gx = [1 + d[3 + i] % 23 for i in range(3)]
    gy = [1 + d[6 + i] % 19 for i in range(3)]
    stripe = 2 + d[9] % 5
    signs = ((1, 1), (1, -1), (-1, 1))
    rows = []
    for ty in range(nrows):
        out = bytearray(cols * 3)
        for c in range(3):
            sx, sy = signs[c]
            ch = bytearray(_channel(d[c], sx, gx[c], sy * ty * gy[c] + 510, cols))
            p = (ty + 1) % 2                                   # tiles with (tx+ty) odd
            ch[p::2] = ch.translate(_DARK)[p::2]
            s0 = (-2 * ty) % stripe                            # tiles with (tx+2ty) % stripe == 0
            ch[s0::stripe] = ch.translate(_LIGHT)[s0::stripe]
            out[c::3] = ch
        rows.append(bytes(out))
    return tile, rows


# ---------------------------------------------------------------- PNG

def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


_idat_cache = OrderedDict()            # (w, h) -> compressed palette-index pixels
_idat_lock = threading.Lock()


def _png_idat(width, height):
    with _idat_lock:
        data = _idat_cache.get((width, height))
        if data is not None:
            _idat_cache.move_to_end((width, height))
            return data
    tile, cols, nrows = tile_layout(width, height)
    up_row = b"\x02" + bytes(width)       # filter "Up", all-zero deltas: repeat the row above
    parts = []
    for ty in range(nrows):
        line = b"".join(bytes((ty * cols + tx,)) * tile for tx in range(cols))[:width]
        band = min(tile, height - ty * tile)
        parts.append(b"\x00" + line)
        if band > 1:
            parts.append(up_row * (band - 1))
    data = _chunk(b"IDAT", zlib.compress(b"".join(parts), 6))
    with _idat_lock:
        _idat_cache[(width, height)] = data
        while len(_idat_cache) > 64:
            _idat_cache.popitem(last=False)
    return data


# Benchmarks want files of a realistic size: --png-bytes N pads each PNG to about N bytes with
# a private ancillary chunk ("edPd"), which every decoder skips.
PNG_PAD_TO = 0


def encode_png(width, height, key):
    """8-bit palette PNG: one palette entry per tile, so only PLTE depends on key."""
    _, rows = tile_grid(width, height, key)
    plte = b"".join(rows)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 3, 0, 0, 0)
    body = (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"PLTE", plte)
            + _png_idat(width, height))
    pad = PNG_PAD_TO - len(body) - 24
    if pad > 0:
        body += _chunk(b"edPd", bytes(pad))
    return body + _chunk(b"IEND", b"")


# ---------------------------------------------------------------- JPEG (baseline, Annex K)

_ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48,
           41, 34, 27, 20, 13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15,
           23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63]

_Q_LUMA = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
           14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
           18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
           49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
_Q_CHROMA = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
             24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32

_DC_LUMA_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
_DC_CHROMA_BITS = [0, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0]
_DC_VALS = list(range(12))
_AC_LUMA_BITS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d]
_AC_LUMA_VALS = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f0"
    "2433627282090a161718191a25262728292a3435363738393a43444546474849"
    "4a535455565758595a636465666768696a737475767778797a83848586878889"
    "8a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3c4c5"
    "c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa")
_AC_CHROMA_BITS = [0, 2, 1, 2, 4, 4, 3, 4, 7, 5, 4, 4, 0, 1, 2, 0x77]
_AC_CHROMA_VALS = bytes.fromhex(
    "000102031104052131061241510761711322328108144291a1b1c109233352f0"
    "156272d10a162434e125f11718191a262728292a35363738393a434445464748"
    "494a535455565758595a636465666768696a737475767778797a828384858687"
    "88898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2c3"
    "c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae2e3e4e5e6e7e8e9eaf2f3f4f5f6f7f8f9fa")

_QUALITY = 90


def _scaled(table):
    scale = 200 - 2 * _QUALITY if _QUALITY >= 50 else 5000 // _QUALITY
    return [min(255, max(1, (q * scale + 50) // 100)) for q in table]


_QL = _scaled(_Q_LUMA)
_QC = _scaled(_Q_CHROMA)


def _huff_codes(bits, vals):
    """Canonical Huffman codes (JPEG Annex C) as {symbol: '0101' bit string}."""
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = format(code, "0%db" % length)
            code += 1
            k += 1
        code <<= 1
    return codes


_DC_L = _huff_codes(_DC_LUMA_BITS, _DC_VALS)
_DC_C = _huff_codes(_DC_CHROMA_BITS, _DC_VALS)
_EOB_L = _huff_codes(_AC_LUMA_BITS, _AC_LUMA_VALS)[0x00]
_EOB_C = _huff_codes(_AC_CHROMA_BITS, _AC_CHROMA_VALS)[0x00]


def _dc_bits(diff, table):
    """Bits for one DC difference: Huffman code of its category, then its magnitude bits."""
    size = abs(diff).bit_length()
    if size == 0:
        return table[0]
    extra = diff if diff > 0 else diff + (1 << size) - 1
    return table[size] + format(extra, "0%db" % size)


# bits of "DC delta d, then EOB" for every possible delta d (index d + 2047), per table
_BLOCK_L = [_dc_bits(d, _DC_L) + _EOB_L for d in range(-2047, 2048)]
_BLOCK_C = [_dc_bits(d, _DC_C) + _EOB_C for d in range(-2047, 2048)]


def _dht(cls_id, bits, vals):
    body = bytes([cls_id]) + bytes(bits) + bytes(vals)
    return b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body


_JPEG_HEAD = (
    b"\xff\xd8"
    + b"\xff\xe0" + struct.pack(">H5sBBBHHBB", 16, b"JFIF\x00", 1, 1, 0, 1, 1, 0, 0)
    + b"\xff\xdb" + struct.pack(">H", 2 + 2 * 65)
    + b"\x00" + bytes(_QL[i] for i in _ZIGZAG)
    + b"\x01" + bytes(_QC[i] for i in _ZIGZAG)
)
_JPEG_TABLES = (
    _dht(0x00, _DC_LUMA_BITS, _DC_VALS) + _dht(0x10, _AC_LUMA_BITS, _AC_LUMA_VALS)
    + _dht(0x01, _DC_CHROMA_BITS, _DC_VALS) + _dht(0x11, _AC_CHROMA_BITS, _AC_CHROMA_VALS)
    + b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11" + b"\x00\x3f\x00"
)


def _ycc_dc(rgb):
    """Quantised DC coefficients (Y, Cb, Cr) of a flat 8x8 block of colour rgb."""
    r, g, b = rgb
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128 + 0.5 * r - 0.418688 * g - 0.081312 * b
    # DCT of a flat block: F(0,0) = 8 * (value - 128); then quantise.
    return (round(8 * (y - 128) / _QL[0]), round(8 * (cb - 128) / _QC[0]),
            round(8 * (cr - 128) / _QC[0]))


def encode_jpeg(width, height, key):
    tile, rows = tile_grid(width, height, key)
    per_tile = tile // 16                      # MCUs per tile side
    mcu_cols = -(-width // 16)
    mcu_rows = -(-height // 16)
    same3 = _BLOCK_L[2047] * 3                 # 3 more luma blocks equal to the first
    same_mcu = _BLOCK_L[2047] * 4 + _BLOCK_C[2047] * 2
    bl, bc = _BLOCK_L, _BLOCK_C

    def mcu(d):                                # bits of one flat MCU given its DC deltas
        return bl[d[0] + 2047] + same3 + bc[d[1] + 2047] + bc[d[2] + 2047]

    pieces = []
    prev = (0, 0, 0)
    for ty in range(-(-mcu_rows // per_tile)):
        row = rows[ty]
        dcs = [_ycc_dc(row[i:i + 3]) for i in range(0, len(row), 3)]
        # one MCU row: per tile, a first MCU (its delta from the tile on the left) + repeats
        tail, last = [], dcs[0]
        for tx in range(1, len(dcs)):
            d = dcs[tx]
            n_left = min(per_tile, mcu_cols - (tx - 1) * per_tile)
            tail.append(same_mcu * (n_left - 1))
            tail.append(mcu((d[0] - last[0], d[1] - last[1], d[2] - last[2])))
            last = d
        tail.append(same_mcu * (mcu_cols - (len(dcs) - 1) * per_tile - 1))
        row_tail = "".join(tail)
        first = dcs[0]
        wrap = mcu((first[0] - last[0], first[1] - last[1], first[2] - last[2]))
        n = min(per_tile, mcu_rows - ty * per_tile)
        pieces.append(mcu((first[0] - prev[0], first[1] - prev[1], first[2] - prev[2])))
        pieces.append(row_tail)
        pieces.append((wrap + row_tail) * (n - 1))
        prev = last
    s = "".join(pieces)
    s += "1" * (-len(s) % 8)                     # pad the last byte with 1-bits
    scan = int(s, 2).to_bytes(len(s) // 8, "big").replace(b"\xff", b"\xff\x00")
    sof = (b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3)
           + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return _JPEG_HEAD + sof + _JPEG_TABLES + scan + b"\xff\xd9"


# ---------------------------------------------------------------- cache + helpers

_cache = OrderedDict()
_cache_bytes = 0
_CACHE_MAX_ITEMS = 256
_CACHE_MAX_BYTES = 64 << 20
_lock = threading.Lock()


def encode(width, height, fmt, key):
    """Encoded image bytes for (width, height, 'png'|'jpeg', key); LRU-cached, thread-safe."""
    global _cache_bytes
    ck = (width, height, fmt, key)
    with _lock:
        data = _cache.get(ck)
        if data is not None:
            _cache.move_to_end(ck)
            return data
    data = (encode_jpeg if fmt == "jpeg" else encode_png)(width, height, key)
    with _lock:
        if ck not in _cache:
            _cache[ck] = data
            _cache_bytes += len(data)
            while len(_cache) > _CACHE_MAX_ITEMS or _cache_bytes > _CACHE_MAX_BYTES:
                _, old = _cache.popitem(last=False)
                _cache_bytes -= len(old)
    return data


def is_cheap(width, height, fmt, key):
    """True if encode() will take well under a millisecond or two (worth no thread hop)."""
    with _lock:
        if (width, height, fmt, key) in _cache:
            return True
    if fmt == "png":
        return (width, height) in _idat_cache
    return width * height <= 2_200_000


def data_uri(fmt, data):
    return "data:%s;base64,%s" % (CONTENT_TYPES[fmt], base64.b64encode(data).decode("ascii"))


def png_size(data):
    """(width, height) from a PNG's IHDR, or None."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def jpeg_size(data):
    """(width, height) from a JPEG's SOF0..SOF2 segment, or None."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        seglen = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        if marker == 0xDA:
            return None
        i += 2 + seglen
    return None
