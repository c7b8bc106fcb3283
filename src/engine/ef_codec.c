/*
** ef_codec.c — bytes that come from outside: base64 (data: URIs both ways), image-format
** sniffing from magic numbers and image dimensions from headers, and turning any string into
** a file name that is safe to create.
** Every function here is total over arbitrary input (these are fuzz targets).
*/
#include <stdint.h>
#include <string.h>
#include "ef_engine.h"

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t ef_b64_encoded_len(size_t n) { return (n + 2) / 3 * 4; }

void ef_b64_encode(const unsigned char *in, size_t n, char *out) {
  size_t i = 0;
  char *o = out;
  for (; i + 3 <= n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
    *o++ = B64[v >> 18];
    *o++ = B64[(v >> 12) & 63];
    *o++ = B64[(v >> 6) & 63];
    *o++ = B64[v & 63];
  }
  if (i < n) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0);
    *o++ = B64[v >> 18];
    *o++ = B64[(v >> 12) & 63];
    *o++ = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    *o++ = '=';
  }
  *o = '\0';
}

static int b64val(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

/*
** Strict standard alphabet; '=' padding is optional but, when present, must end the input.
** out must hold n / 4 * 3 + 3 bytes.
*/
long ef_b64_decode(const char *in, size_t n, unsigned char *out, size_t *bad) {
  unsigned acc = 0;
  int bits = 0;
  size_t o = 0, i, end = n;
  while (end > 0 && in[end - 1] == '=' && n - end < 2)
    end--;
  for (i = 0; i < end; i++) {
    int v = b64val((unsigned char)in[i]);
    if (v < 0) {
      *bad = i;
      return -1;
    }
    acc = (acc << 6) | (unsigned)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (unsigned char)(acc >> bits);
      acc &= (1u << bits) - 1;
    }
  }
  if (bits >= 6 || (end < n && (end + (4 - end % 4) % 4) != n)) {
    *bad = end; /* a lone trailing sextet, or padding that does not square the length */
    return -1;
  }
  return (long)o;
}

const ef_image_kind *ef_sniff_image(const unsigned char *p, size_t n) {
  static const ef_image_kind png = {"png", "image/png"}, jpeg = {"jpg", "image/jpeg"},
                             gif = {"gif", "image/gif"}, webp = {"webp", "image/webp"};
  if (n >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
    return &png;
  if (n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF)
    return &jpeg;
  if (n >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
    return &gif;
  if (n >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
    return &webp;
  return NULL;
}

static uint32_t be16(const unsigned char *p) { return (uint32_t)p[0] << 8 | p[1]; }
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le24(const unsigned char *p) { return (uint32_t)p[2] << 16 | le16(p); }
static uint32_t be32(const unsigned char *p) { return be16(p) << 16 | be16(p + 2); }

/*
** JPEG: the size is in the frame header (SOF0..SOF15), which must come before the first scan.
** C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frame headers. Segments are
** skipped by their length, each checked against n; fill bytes (0xFF runs) are allowed before
** a marker, and the markers without a length (TEM, RST0..7, SOI) are stepped over.
*/
static int jpeg_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h) {
  size_t i = 2;
  for (;;) {
    if (i >= n || p[i] != 0xFF)
      return -1;
    while (i < n && p[i] == 0xFF)
      i++;
    if (i >= n)
      return -1;
    unsigned m = p[i++];
    if (m == 0x01 || m == 0xD8 || (m >= 0xD0 && m <= 0xD7))
      continue;
    if (m == 0x00 || m == 0xD9 || m == 0xDA)
      return -1; /* not a marker, the end of the image, or a scan: no frame header before it */
    if (n - i < 2)
      return -1;
    size_t len = be16(p + i);
    if (len < 2)
      return -1;
    if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
      /* length (2), precision (1), lines (2), samples per line (2), components (1), then 3
      ** bytes per component: the whole header must be there, its length consistent */
      if (len < 8 || n - i < len || len != 8 + 3 * (size_t)p[i + 7] || p[i + 7] == 0)
        return -1;
      *h = be16(p + i + 3);
      *w = be16(p + i + 5);
      return 0;
    }
    i += len;
  }
}

/*
** WebP: the first chunk after "RIFF....WEBP" says which kind: "VP8 " (lossy: a key frame's
** 14-bit sizes after its start code), "VP8L" (lossless: 14-bit sizes minus one, packed after
** the 0x2F signature) or "VP8X" (extended: the 24-bit canvas sizes minus one).
*/
static int webp_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h) {
  const unsigned char *c = p + 20; /* the first chunk's payload */
  if (n < 20)
    return -1;
  if (memcmp(p + 12, "VP8 ", 4) == 0) {
    if (n < 30 || (c[0] & 1) != 0 || memcmp(c + 3, "\x9d\x01\x2a", 3) != 0)
      return -1; /* not a key frame, or no start code */
    *w = le16(c + 6) & 0x3FFF;
    *h = le16(c + 8) & 0x3FFF;
    return 0;
  }
  if (memcmp(p + 12, "VP8L", 4) == 0) {
    if (n < 25 || c[0] != 0x2F || (c[4] >> 5) != 0)
      return -1; /* no signature, or a version other than 0 */
    *w = 1 + (c[1] | (uint32_t)(c[2] & 0x3F) << 8);
    *h = 1 + (c[2] >> 6 | (uint32_t)c[3] << 2 | (uint32_t)(c[4] & 0x0F) << 10);
    return 0;
  }
  if (memcmp(p + 12, "VP8X", 4) == 0) {
    if (n < 30)
      return -1;
    *w = 1 + le24(c + 4);
    *h = 1 + le24(c + 7);
    return 0;
  }
  return -1;
}

/*
** Width and height from the header of a PNG (IHDR, which must be the first chunk), JPEG
** (the frame header), GIF (the logical screen) or WebP. 0, or -1 when the bytes are none of
** these, the header is not within the n bytes, or it is malformed (a zero size included).
*/
int ef_image_size(const unsigned char *p, size_t n, uint32_t *w, uint32_t *h) {
  const ef_image_kind *k = ef_sniff_image(p, n);
  uint32_t ww = 0, hh = 0;
  int rc = -1;
  if (k == NULL)
    return -1;
  switch (k->ext[0]) {
  case 'p': /* png: signature (8), IHDR's length (4, always 13) and type (4), width, height */
    if (n >= 24 && be32(p + 8) == 13 && memcmp(p + 12, "IHDR", 4) == 0) {
      ww = be32(p + 16);
      hh = be32(p + 20);
      rc = ww <= 0x7FFFFFFF && hh <= 0x7FFFFFFF ? 0 : -1; /* PNG's limit is 2^31 - 1 */
    }
    break;
  case 'j':
    rc = jpeg_size(p, n, &ww, &hh);
    break;
  case 'g': /* gif: signature (6), then the logical screen's width and height, little-endian */
    if (n >= 10) {
      ww = le16(p + 6);
      hh = le16(p + 8);
      rc = 0;
    }
    break;
  default:
    rc = webp_size(p, n, &ww, &hh);
    break;
  }
  if (rc != 0 || ww == 0 || hh == 0)
    return -1;
  *w = ww;
  *h = hh;
  return 0;
}

unsigned long long ef_fnv1a64(const void *p, size_t n) {
  const unsigned char *b = p;
  unsigned long long h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; i++) {
    h ^= b[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

static int reserved_stem(const char *s, size_t n) {
  /* Names Windows refuses whatever the extension: CON, PRN, AUX, NUL, COM1-9, LPT1-9. */
  static const char *const names[] = {"con", "prn", "aux", "nul", NULL};
  char low[5];
  size_t i;
  if (n != 3 && n != 4)
    return 0;
  for (i = 0; i < n; i++)
    low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
  low[n] = '\0';
  if (n == 3) {
    for (i = 0; names[i]; i++)
      if (strcmp(low, names[i]) == 0)
        return 1;
    return 0;
  }
  return (memcmp(low, "com", 3) == 0 || memcmp(low, "lpt", 3) == 0) && low[3] >= '1' &&
         low[3] <= '9';
}

/*
** Keeps [A-Za-z0-9._-], maps every other byte to '_' (runs folded into one), drops leading
** dots and dashes (no hidden files, no "..", no option look-alikes) and trailing dots and
** spaces, caps the length, and prefixes Windows' reserved device names. Never empty.
*/
void ef_safe_name(const char *in, size_t n, char *out, size_t outlen) {
  size_t o = 0, max = outlen - 1, i, stem;
  if (max > 120)
    max = 120;
  for (i = 0; i < n && o < max; i++) {
    unsigned char c = (unsigned char)in[i];
    int keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-';
    if (!keep)
      c = '_';
    if ((c == '.' || c == '-') && o == 0)
      continue;
    if (c == '_' && o > 0 && out[o - 1] == '_' && !keep)
      continue;
    out[o++] = (char)c;
  }
  while (o > 0 && out[o - 1] == '.')
    o--;
  out[o] = '\0';
  if (o == 0) {
    out[0] = '_';
    out[1] = '\0';
    return;
  }
  for (stem = 0; stem < o && out[stem] != '.'; stem++)
    ;
  if (reserved_stem(out, stem) && o + 1 < outlen) {
    memmove(out + 1, out, o + 1);
    out[0] = '_';
  }
}
