# faults.py - injected faults for the sandbox: each queue request (and image download) may, with --fault-rate and a
# seeded generator (--fault-seed) so runs repeat, get one of the kinds listed in --faults
# instead of its real answer. The faults that come "from the ingress" (5xx, 429, drop, badjson,
# bare500) happen before the route runs, so a submit they hit never created a job; the ones that
# spoil an answer after the fact (lost, lostreused, garbled, truncated) run the route for real
# first, so a submit they hit DID create a job the client may never hear about.
#   5xx        503 {"detail": ...} with X-Fal-Error-Type: runner_scheduling_failure
#   429        429 with Retry-After: 1
#   drop       the connection is closed without an answer
#   badjson    200 with a body that is not JSON
#   slow       the real answer, 1.5 s late
#   joberror   (submit only) the job is accepted but ends in error (result 500)
#   lost       the request is handled, then the connection is closed without an answer byte
#   lostreused like lost, but only on a connection that already answered a request (the
#              keep-alive race that makes client libraries re-send a POST)
#   garbled    the real status and headers, the body cut short and followed by junk bytes
#              (not on files or stream)
#   bare500    (status, stream, result, files) 500 text/plain "Internal Server Error": no
#              error_type, no X-Fal-Error-Type, no x-fal-request-id (an ingress error)
#   truncated  (files only) full Content-Length, half the body, then the connection closes
#   made500    (submit only) the job is created and queued, then the answer is a 500 of fal's
#              queue: fal's JSON and the job's x-fal-request-id (the job exists under that id)
#   made500bare (submit only) the job is created and queued, then the answer is a 500 with
#              fal's JSON {"detail"} but no x-fal-request-id: nothing says the job exists
#   ingress502 (submit only) an nginx 502 page from the ingress, no id; no job was made
# Injected ingress answers (5xx, 429, bare500) never carry x-fal-request-id: fal's clients tell
# an ingress error from a queue answer by that header (SPEC §1, §4).
import random

from httpd import Response, Stream

KINDS = ("5xx", "429", "drop", "badjson", "slow", "joberror",
         "lost", "lostreused", "garbled", "bare500", "truncated", "made500", "made500bare",
         "ingress502")
# the route runs, then this spoils its answer
AFTER_WORK = ("lost", "lostreused", "garbled", "truncated", "made500", "made500bare")
_QUEUE = ("submit", "status", "stream", "result", "cancel", "files")
_ONLY = {"joberror": ("submit",), "bare500": ("status", "stream", "result", "files"),
         "truncated": ("files",), "made500": ("submit",), "made500bare": ("submit",),
         "ingress502": ("submit",)}
_NOT = {"badjson": ("files",), "garbled": ("files", "stream")}
JUNK = b"\x00\xff\xfe<!-- garbled \x9c\x80 -->"


class Faults:
    def __init__(self, rate, seed, kinds):
        self.rate = rate
        self.rng = random.Random(seed)
        self.kinds = [k for k in kinds if k]
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError("unknown fault kinds %s (known: %s)" % (bad, ", ".join(KINDS)))
        self.injected = dict.fromkeys(KINDS, 0)

    def pick(self, route, served=0):
        """The fault for this request, or None. Only queue routes get faults. served: how many
        requests the connection answered before this one. A kind drawn for a request it does
        not fit is not injected (nor counted), so seeded runs draw the same numbers as ever."""
        if self.rate <= 0 or not self.kinds or route not in _QUEUE:
            return None
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        if kind in _ONLY and route not in _ONLY[kind]:
            return None
        if route in _NOT.get(kind, ()) or (kind == "lostreused" and served < 1):
            return None
        self.injected[kind] += 1
        return kind

    @staticmethod
    def answer(kind):
        """The answer a fault gives instead of the real one (None: no replacement)."""
        if kind == "5xx":
            return Response.json(503, {"detail": "Injected: no runner available",
                                       "error_type": "runner_scheduling_failure"},
                                 [("X-Fal-Error-Type", "runner_scheduling_failure")])
        if kind == "429":
            return Response.json(429, {"detail": "Injected: too many requests"}, [("Retry-After", "1")])
        if kind == "drop":
            return hang_up()
        if kind == "badjson":
            return Response(200, b"{this is not json", None, "application/json")
        if kind == "bare500":
            return bare_500()
        if kind == "ingress502":
            return Response(502, b"<html><head><title>502 Bad Gateway</title></head><body>"
                            b"<center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center>"
                            b"</body></html>", None, "text/html")
        return None

    @staticmethod
    def spoil(kind, resp):
        """What is left of the real answer resp after an AFTER_WORK fault."""
        if kind in ("lost", "lostreused"):
            return hang_up()
        if isinstance(resp, Stream):         # garbled/truncated need a whole body to spoil
            return resp
        if kind == "garbled":
            resp.body = garble(resp.body)
            return resp
        if kind == "truncated":
            return cut_short(resp)
        if kind in ("made500", "made500bare") and resp.status == 200:
            rid = [v for k, v in resp.headers if k.lower() == "x-fal-request-id"]
            return Response.json(500, {"detail": "Internal Server Error"},
                                 [("x-fal-request-id", rid[0])] if kind == "made500" and rid else None)
        return resp


def hang_up():
    """Close the connection without sending a byte (httpd: status 0)."""
    r = Response(0)
    r.close = True
    return r


def bare_500():
    """What an ingress in front of the queue sends when it breaks: nothing fal-shaped."""
    return Response(500, b"Internal Server Error", None, "text/plain")


def garble(body):
    """The first half of body, then bytes no JSON parser accepts (a cut-off, mangled answer)."""
    return body[:max(1, len(body) // 2)] + JUNK


def cut_short(resp):
    """resp with its full Content-Length but only half its body, then a close."""
    body = resp.body
    half = body[:len(body) // 2]

    async def producer(send):
        if half:
            await send(half)
    return Stream(resp.status, resp.headers, producer, length=len(body))
