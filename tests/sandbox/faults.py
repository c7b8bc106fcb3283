# faults.py - injected faults for the sandbox: each queue request (and image download) may, with --fault-rate and a
# seeded generator (--fault-seed) so runs repeat, get one of the kinds listed in --faults
# instead of its real answer. A fault on submit happens before the job exists, so a client
# that received any answer at all can never have created a job by retrying.
#   5xx      503 {"detail": ...} with X-Fal-Error-Type: runner_scheduling_failure
#   429      429 with Retry-After: 1
#   drop     the connection is closed without an answer
#   badjson  200 with a body that is not JSON
#   slow     the real answer, 1.5 s late
#   joberror (submit only) the job is accepted but ends in error (result 500)
import random

from httpd import Response

KINDS = ("5xx", "429", "drop", "badjson", "slow", "joberror")


class Faults:
    def __init__(self, rate, seed, kinds):
        self.rate = rate
        self.rng = random.Random(seed)
        self.kinds = [k for k in kinds if k]
        bad = [k for k in self.kinds if k not in KINDS]
        if bad:
            raise ValueError("unknown fault kinds %s (known: %s)" % (bad, ", ".join(KINDS)))
        self.injected = dict.fromkeys(KINDS, 0)

    def pick(self, route):
        """The fault for this request, or None. Only queue routes get faults."""
        if self.rate <= 0 or not self.kinds or route not in ("submit", "status", "stream", "result",
                                                              "cancel", "files"):
            return None
        if self.rng.random() >= self.rate:
            return None
        kind = self.rng.choice(self.kinds)
        if (kind == "joberror" and route != "submit") or (kind == "badjson" and route == "files"):
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
            r = Response(0)
            r.close = True
            return r
        if kind == "badjson":
            return Response(200, b"{this is not json", None, "application/json")
        return None
