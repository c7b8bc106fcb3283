# ssewire.py - how the sandbox's status stream puts its events on the wire. By default as fal
# does: one `data: {json}` line per event, LF line ends. Set through /_sandbox/control, a
# stream may use what the event-stream format also allows, so a client's parser is tried on
# it (WHATWG HTML, "Interpreting an event stream"):
#   sse_newline   "lf" | "crlf" | "cr": every line end of the stream, blank lines included;
#   sse_multiline each event's JSON spread over many `data:` lines (json.dumps(indent=1): the
#                 lines the client joins with LF are that text again; nested lines begin with
#                 a space, so `data:  "key"` keeps one), with a comment and an `id:` field
#                 among them;
#   sse_split     each event (and ping) written in many pieces, a short pause after each:
#                 cut after every CR (a CRLF's CR and LF in two pieces), inside every
#                 `data: ` prefix, and inside a BOM;
#   sse_bom       the stream's first bytes are a UTF-8 BOM.

import asyncio
import json

CONTROL_KEYS = ("sse_newline", "sse_multiline", "sse_split", "sse_bom")
NEWLINES = {"lf": b"\n", "crlf": b"\r\n", "cr": b"\r"}
BOM = b"\xef\xbb\xbf"
SPLIT_PAUSE = 0.002       # seconds after each piece in sse_split mode (the reader's reads end there)


def parse_control(body):
    """(settings for Wire.set, or None when the body has none; error or None)."""
    out = {}
    if "sse_newline" in body:
        if body["sse_newline"] not in NEWLINES:
            return None, "sse_newline must be one of %s" % ", ".join(NEWLINES)
        out["newline"] = body["sse_newline"]
    for k in CONTROL_KEYS[1:]:
        if k in body:
            if type(body[k]) is not bool:
                return None, k + " must be true or false"
            out[k[len("sse_"):]] = body[k]
    return out or None, None


class Wire:
    """The stream's format (one per sandbox, read at each write) and what it has sent."""

    def __init__(self):
        self.newline, self.multiline, self.split, self.bom = "lf", False, False, False
        self.events = self.writes = 0

    def set(self, newline=None, multiline=None, split=None, bom=None):
        for k, v in (("newline", newline), ("multiline", multiline), ("split", split), ("bom", bom)):
            if v is not None:
                setattr(self, k, v)

    def stats(self):
        return {"newline": self.newline, "multiline": self.multiline, "split": self.split,
                "bom": self.bom, "events": self.events, "writes": self.writes}

    def event(self, obj, n):
        """The bytes of event number n (1, 2, ...) of a stream, its blank line included."""
        self.events += 1
        if self.multiline:
            lines = [b"data: " + line for line in json.dumps(obj, indent=1).encode().split(b"\n")]
            lines[1:1] = [b": one event, many data lines", b"id: %d" % n]
        else:
            lines = [b"data: " + json.dumps(obj, separators=(",", ":")).encode()]
        nl = NEWLINES[self.newline]
        return nl.join(lines) + nl + nl

    def ping(self):
        nl = NEWLINES[self.newline]
        return b": ping" + nl + nl

    def pieces(self, data):
        """data cut where a careless parser trips (sse_split), else whole."""
        if not self.split:
            return [data]
        start = len(BOM) if data.startswith(BOM) else 0
        cuts = {1} if start else set()
        while True:
            if data.startswith(b"data:", start):
                cuts.update((start + 4, start + 5))
            cr, lf = data.find(b"\r", start), data.find(b"\n", start)
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            if data[end:end + 1] == b"\r":
                cuts.add(end + 1)
            start = end + 2 if data[end:end + 2] == b"\r\n" else end + 1
        bounds = [0] + sorted(c for c in cuts if 0 < c < len(data)) + [len(data)]
        return [data[a:b] for a, b in zip(bounds, bounds[1:])]

    async def send(self, send, data, first):
        """Writes data (a BOM before it when first and sse_bom), in pieces when sse_split."""
        if first and self.bom:
            data = BOM + data
        for piece in self.pieces(data):
            await send(piece)
            self.writes += 1
            if self.split:
                await asyncio.sleep(SPLIT_PAUSE)
