# app.py - fal queue routes of the sandbox on top of httpd (transport) and jobqueue (state).
# Owns URL routing (with and without --prefix), credential checks (Key / Bearer), the JSON
# shapes of submit/status/stream/result/cancel answers, the /files CDN route, the SSE
# producer, the /_sandbox/{stats,jobs,reset,health,control} routes, the run-time faults set
# through /_sandbox/control (outage, repeated request ids, hostile field types, keep-alive
# interval, refused submits, released [endless] jobs) and the counters. Never logs or echoes a
# credential. fal's platform routes (schema, pricing, storage, the upload CDN) live in
# falplatform.py; this file only routes to them.

import asyncio
import hmac
import json
import sys
import time

import images
import falplatform
import ssewire
from faults import AFTER_WORK, Faults, bare_500
from httpd import Response, Stream
from jobqueue import COMPLETED, IN_QUEUE, JobQueue, new_id, pad_url
from validate import validate

ROUTES = ("submit", "status", "stream", "result", "cancel", "files", "other")
NAMESPACES = ("workflows", "comfy")   # endpoint ids whose app has three parts (SPEC §8)
QUEUE_ROUTES = ROUTES[:-1]
CONTROL_KEYS = ("outage", "repeat_id", "hostile", "keepalive", "reset_faults",
                "spoil_submits", "refuse_submits", "release_endless") + falplatform.CONTROL_KEYS
CONTROL_KEYS += ssewire.CONTROL_KEYS   # the status stream's wire format (ssewire.py)
SPOIL_KINDS = ("lost", "made500", "made500bare")   # spoil_submits: the job is made, the answer spoilt
TRICKLE_BYTES, TRICKLE_EVERY, TRICKLE_FOR = 2, 1.0, 900.0   # [trickle]: 2 B/s, 15 min at most
SLOWFILE_STEPS = 20           # [slowfile:S]: the body goes out in this many pieces over S seconds
# [hostile]: field values a careless client trips on; answers alternate between the two sets
_HOSTILE = ({"queue_position": {"n": 1}, "logs": "not a list", "metrics": "fast"},
            {"queue_position": True,
             "logs": [1, "x", None, {"message": "real", "level": "INFO"}],
             "metrics": "n/a"})
_DROP_HEADERS = {"authorization", "proxy-authorization", "cookie", "host", "content-length",
                 "transfer-encoding", "connection", "expect", "keep-alive", "te", "upgrade"}


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


class SandboxApp:
    def __init__(self, server, opts, own_origin):
        self.server = server
        self.key = opts.key
        self.no_stream = getattr(opts, "no_stream", False)
        kinds = [k for k in getattr(opts, "faults", "").split(",") if k]
        self.faults = Faults(opts.fault_rate, opts.fault_seed, kinds) if getattr(opts, "fault_rate", 0) else None
        self.bearer = opts.bearer
        self.prefix = opts.prefix
        self.keepalive = opts.keepalive
        self.position_interval = opts.position_interval
        self.quiet = opts.quiet
        self.own_origin = own_origin
        self.public_base = (opts.public_base.rstrip("/") if opts.public_base
                            else own_origin + self.prefix)
        self.queue = JobQueue(opts.workers, opts.job_time, own_origin)
        self.platform = falplatform.Platform(own_origin, opts.key, opts.bearer,
                                             getattr(opts, "catalog", "") or falplatform.CATALOG_DIR)
        self.platform.queue = self.queue     # the requests listing reads the queue's jobs
        self._reset_counters()
        self._reset_controls()

    def _reset_controls(self):
        """The run-time faults of /_sandbox/control (not the keep-alive interval)."""
        self.outage = None          # (monotonic end, routes, status, retry_after) while an outage lasts
        self.repeat_id = 0          # submits still to be answered with the previous job's id
        self.hostile = False
        self.hostile_n = 0          # alternates the hostile variant between status answers
        self.sse = ssewire.Wire()   # the status stream's line ends, data lines, cuts, BOM
        self.spoil_submits = ["lost", 0]  # [kind, count]: the next accepted submits' answers spoilt
        self.refuse_submits = [0, 429]    # [count, status]: the next submits refused by the ingress

    def _reset_counters(self):
        self.requests = 0
        self.by_route = dict.fromkeys(ROUTES + falplatform.ROUTES, 0)
        self.submits_by_endpoint = {}
        self.auth = {"key": 0, "bearer": 0, "bad": 0}
        self.files_with_auth = 0
        self.status_codes = {}
        self.duplicate_submits = 0
        self.seen_bodies = set()
        self.repeated_ids = 0
        self.logs_asked = {"0": 0, "1": 0}   # status and stream calls with and without logs=1
        self.last_job = None        # the previous accepted job ([repeat_id] answers with it)
        self.refused_submits = 0    # submits answered by refuse_submits
        self.padded_requests = 0    # requests whose query carries [longurls:N]'s pad=
        self.files_in_flight = getattr(self, "files_in_flight", 0)   # /files answers under way
        self.max_files_in_flight = self.files_in_flight

    # ------------------------------------------------------------ entry

    async def handle(self, req):
        path = req.path
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix):] or "/"
        if path.startswith("/_sandbox/"):
            return self._introspect(req, path)
        t0 = time.perf_counter()
        self.requests += 1
        route = falplatform.Platform.route_name(req, path)
        if route is not None:         # fal's platform: its own faults (fail_next), no outage
            if route == "media" and "authorization" in req.headers:
                self.files_with_auth += 1
            resp = self.platform.handle(route, req, path)
        else:
            route, resp = await self._faulty_route(req, path)
        self.by_route[route] += 1
        if "pad=" in req.query_string:
            self.padded_requests += 1
        code = str(resp.status)
        self.status_codes[code] = self.status_codes.get(code, 0) + 1
        if not self.quiet:
            sys.stderr.write("sandbox: %s %s -> %d %s %.1fms\n" % (
                req.method, req.path, resp.status, route, (time.perf_counter() - t0) * 1000))
        return resp

    async def _faulty_route(self, req, path):
        """The real route, unless an outage or an injected fault (faults.py) answers instead."""
        route = self._route_name(req, path)
        down = self._outage_answer(route)
        if down is not None:
            return route, down
        if route == "cancel":          # fail_next on the queue's cancel: refused, nothing cancelled
            injected = self.platform._injected("cancel")
            if injected is not None:
                return route, injected
        if route == "submit" and self.refuse_submits[0] > 0:   # an ingress's refusal: no job
            self.refuse_submits[0] -= 1
            self.refused_submits += 1
            return route, Response.json(self.refuse_submits[1], {"detail": "Injected: submit refused"})
        kind = self.faults.pick(route, req.served) if self.faults else None
        if route == "submit" and self.spoil_submits[1] > 0 and kind is None:
            kind = self.spoil_submits[0]
            self.spoil_submits[1] -= 1
        if kind == "slow":
            await asyncio.sleep(1.5)
        elif kind == "joberror":
            req.inject_job_error = True
        elif kind in AFTER_WORK:                  # the work is done, only the answer suffers
            route, resp = await self._route(req, path)
            return route, Faults.spoil(kind, resp)
        elif kind is not None:
            return route, self.faults.answer(kind)
        return await self._route(req, path)

    def _outage_answer(self, route):
        """The ingress's answer while /_sandbox/control's outage covers route, else None."""
        if self.outage is None:
            return None
        until, routes, status, retry_after = self.outage
        if time.monotonic() >= until:
            self.outage = None
            return None
        if route not in routes:
            return None
        headers = [("Retry-After", str(retry_after))] if retry_after is not None else None
        return Response.json(status, {"detail": "Service Unavailable"}, headers)

    @staticmethod
    def _app_len(segs):
        """How many path segments name the app (fal-js parseEndpointId): 3 for workflows/ and
        comfy/ ids, else 2."""
        return 3 if segs and segs[0] in NAMESPACES and len(segs) >= 3 else 2

    @staticmethod
    def _route_name(req, path):
        segs = path.split("/")[1:]
        if len(segs) == 2 and segs[0] == "files":
            return "files"
        n = SandboxApp._app_len(segs)
        if len(segs) >= n + 2 and segs[n] == "requests":
            return {(): "result", ("status",): "status", ("status", "stream"): "stream",
                    ("cancel",): "cancel"}.get(tuple(segs[n + 2:]), "other")
        if len(segs) >= 2 and segs[0] != "files" and req.method == "POST":
            return "submit"
        return "other"

    async def _route(self, req, path):
        segs = path.split("/")[1:]
        m = req.method
        if len(segs) == 2 and segs[0] == "files":
            if m not in ("GET", "HEAD"):
                return "files", Response.json(405, {"detail": "Method Not Allowed"})
            return "files", await self._file(req, segs[1])
        if len(segs) < 2 or "" in segs:
            return "other", self._queue_error(404, "Not Found")
        n = self._app_len(segs)
        app = "/".join(segs[:n])
        if len(segs) >= n + 2 and segs[n] == "requests":   # never a submit (a POSTed cancel is a 405)
            rid, rest = segs[n + 1], segs[n + 2:]
            route = {(): "result", ("status",): "status", ("status", "stream"): "stream",
                     ("cancel",): "cancel"}.get(tuple(rest))
            want = "PUT" if route == "cancel" else "GET"
            if route is None:
                return "other", self._queue_error(404, "Not Found")
            if m != want and not (m == "HEAD" and want == "GET"):
                return route, Response.json(405, {"detail": "Method Not Allowed"},
                                            [("x-fal-request-id", rid), ("Allow", want)])
            scheme, bad = self._check_auth(req, rid)
            if bad:
                return route, bad
            job = self.queue.jobs.get(rid)
            if job is None or job.app != app:
                return route, self._not_found(route, rid)
            return route, getattr(self, "_" + route)(req, job)
        if m != "POST":
            if "requests" in segs:             # e.g. status under a sub-path: not a fal route
                return "other", self._queue_error(404, "Not Found")
            return "other", self._queue_error(405, "Method Not Allowed")
        scheme, bad = self._check_auth(req, None)
        if bad:
            return "submit", bad
        return "submit", self._submit(req, "/".join(segs), app, scheme)

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _queue_error(status, detail):
        """An error the queue itself gives: like every queue answer it carries x-fal-request-id
        (only ingress errors lack it, and clients treat those as passing)."""
        return Response.json(status, {"detail": detail}, [("x-fal-request-id", new_id())])

    def _not_found(self, route, rid):
        body = {"status": "NOT_FOUND"} if route == "cancel" else {"detail": "Request not found"}
        return Response.json(404, body, [("x-fal-request-id", rid)])

    def _check_auth(self, req, rid):
        """(scheme, None) if the credential is good (and counted), else (None, 401 answer)."""
        scheme, _, value = req.headers.get("authorization", "").strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "key" and value and hmac.compare_digest(value.encode(), self.key.encode()):
            self.auth["key"] += 1
            return "key", None
        if scheme == "bearer" and value and hmac.compare_digest(value.encode(),
                                                                self.bearer.encode()):
            self.auth["bearer"] += 1
            return "bearer", None
        self.auth["bad"] += 1
        return None, Response.json(401, {"detail": "Invalid or missing credentials"},
                                   [("x-fal-request-id", rid or new_id()),
                                    ("WWW-Authenticate", "Key")])

    def _urls(self, job):
        base = "%s/%s/requests/%s" % (self.public_base, job.app, job.id)
        n = job.long_urls     # [longurls:N]: each URL padded to exactly N characters
        return {"response_url": pad_url(base, n), "status_url": pad_url(base + "/status", n),
                "cancel_url": pad_url(base + "/cancel", n)}

    @staticmethod
    def _wants_logs(req):
        v = req.query.get("logs")
        return v is not None and v.lower() not in ("0", "false", "no", "")

    # ------------------------------------------------------------ queue routes

    def _submit(self, req, endpoint, app, scheme):
        fresh = [("x-fal-request-id", new_id())]
        try:
            body = json.loads(req.body) if req.body.strip() else None
        except (ValueError, UnicodeDecodeError) as e:
            return Response.json(422, {"detail": [{"loc": ["body"], "msg": "JSON decode error",
                                                   "type": "json_invalid",
                                                   "ctx": {"error": str(e)[:200]}}]},
                                 fresh + [("X-Fal-Retryable", "false")])
        judged = self.platform.validate_submit(endpoint, body)
        errs, spec = judged if judged is not None else validate(body)
        if errs:
            return Response.json(422, {"detail": errs}, fresh + [("X-Fal-Retryable", "false")])
        limit = req.query.get("fal_max_queue_length")
        if limit is not None:
            try:
                limit = int(limit)
            except ValueError:
                limit = None
            if limit is not None and self.queue.line.waiting >= limit:
                return Response.json(429, {"detail": "Queue is full"}, fresh)
        digest = hash(bytes(req.body))  # the same body accepted twice is a paid duplicate
        if digest in self.seen_bodies:
            self.duplicate_submits += 1
        self.seen_bodies.add(digest)
        self.submits_by_endpoint[endpoint] = self.submits_by_endpoint.get(endpoint, 0) + 1
        if self.repeat_id > 0 and self.last_job is not None:
            return self._repeated_submit()
        job, position = self.queue.submit(endpoint, app, body, spec)
        self.last_job = job
        if req.inject_job_error:
            job.fail = "500"  # an injected fault: accepted, then ends in error
        job.auth = scheme
        job.headers = {k: v for k, v in req.headers.items() if k not in _DROP_HEADERS}
        job.query = dict(req.query)
        job.webhook = req.query.get("fal_webhook") or None
        timeout = req.headers.get("x-fal-request-timeout")
        if timeout:
            try:
                job.deadline = job.created_at + float(timeout)
            except ValueError:
                pass
        return self._submit_answer(job, position)

    def _submit_answer(self, job, position):
        out = {"status": IN_QUEUE, "request_id": job.id}
        out.update(self._urls(job))
        out.update({"queue_position": position, "logs": None, "metrics": {}})
        return Response.json(200, out, [("x-fal-request-id", job.id)])

    def _repeated_submit(self):
        """[repeat_id]: a buggy server answers a new submit with the previous job's id and URLs;
        no job is created for it."""
        self.repeat_id -= 1
        self.repeated_ids += 1
        job = self.last_job
        position = job.line.position(job) if job.status == IN_QUEUE else 0
        return self._submit_answer(job, position)

    def _count_logs(self, req):
        self.logs_asked["1" if self._wants_logs(req) else "0"] += 1

    def _status(self, req, job):
        self._count_logs(req)
        obj = job.status_obj(self._wants_logs(req), self._urls(job))
        if self.hostile:
            self.hostile_n += 1
            obj = self._hostile(obj, self.hostile_n)
        return Response.json(200 if job.status == COMPLETED else 202, obj,
                             [("x-fal-request-id", job.id)])

    def _result(self, req, job):
        hdr = [("x-fal-request-id", job.id)]
        if job.status != COMPLETED:
            return Response.json(400, {"detail": "Request is still in progress"}, hdr)
        if job.fail == "noresult":  # ended, yet the result never comes (a broken look-alike)
            return Response.json(202, {"status": "IN_PROGRESS"}, hdr)
        if job.bare500_left > 0:    # [fail:bare500]: the ingress fails a few times, then mends
            job.bare500_left -= 1
            return bare_500()
        return Response(job.result_status, job.result_body, hdr + job.result_headers,
                        "application/json")

    def _cancel(self, req, job):
        hdr = [("x-fal-request-id", job.id)]
        if self.queue.cancel(job):
            return Response.json(202, {"status": "CANCELLATION_REQUESTED"}, hdr)
        return Response.json(400, {"status": "ALREADY_COMPLETED"}, hdr)

    def _stream(self, req, job):
        self._count_logs(req)
        if self.no_stream:  # imitates a proxy without the stream route (clients must poll)
            return Response.json(404, {"detail": "Not Found"}, [("x-fal-request-id", job.id)])
        logs = self._wants_logs(req)
        urls = self._urls(job)
        spacing = self.position_interval
        clock = time.monotonic

        async def producer(send):
            last = None
            wrote = sent = clock()
            n = events = 0              # hostile variants; events sent (ids in sse_multiline)
            first = True                # nothing written yet (sse_bom: a BOM goes first)
            while True:
                line_ev, job_ev = job.line.changed, job.changed   # taken before the snapshot
                st = job.status
                obj = job.status_obj(logs, urls)
                body = _json(obj)
                if body != last:          # compared clean, so hostile variants cannot spin
                    if self.hostile:
                        n += 1
                        obj = self._hostile(obj, n)
                    events += 1
                    await self.sse.send(send, self.sse.event(obj, events), first)
                    first = False
                    last = body
                    wrote = sent = clock()
                if st == COMPLETED:
                    return
                now = clock()
                keepalive = self.keepalive            # /_sandbox/control may change it
                wait_for, timeout = job_ev, wrote + keepalive - now
                if st == IN_QUEUE:
                    cool = sent + spacing - now
                    if cool > 0:      # position-only news is coalesced; status news is not
                        timeout = min(timeout, cool)
                    else:
                        wait_for = line_ev
                try:
                    async with asyncio.timeout(max(timeout, 0)):
                        await wait_for.wait()
                except TimeoutError:
                    if clock() >= wrote + self.keepalive:
                        await self.sse.send(send, self.sse.ping(), first)
                        first = False
                        wrote = clock()

        return Stream(200, [("Content-Type", "text/event-stream"),
                            ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
                            ("x-fal-request-id", job.id)], producer)

    @staticmethod
    def _hostile(obj, n):
        """obj with queue_position/logs/metrics of the wrong types (variant n % 2); status,
        request_id and the URLs stay right so a sane client still follows the job."""
        out = dict(obj)
        out.update(_HOSTILE[n % 2])
        return out

    # ------------------------------------------------------------ CDN

    async def _file(self, req, name):
        """A /files answer, counted in files_in_flight from the request until its body is out."""
        self.files_in_flight += 1
        self.max_files_in_flight = max(self.max_files_in_flight, self.files_in_flight)
        try:
            resp = await self._file_answer(req, name)
        except BaseException:
            self.files_in_flight -= 1
            raise
        if not isinstance(resp, Stream) or req.method == "HEAD":   # (a HEAD sends no body)
            self.files_in_flight -= 1
            return resp
        producer = resp.producer

        async def counted(send):
            try:
                await producer(send)
            finally:
                self.files_in_flight -= 1
        resp.producer = counted
        return resp

    async def _file_answer(self, req, name):
        if "authorization" in req.headers:
            self.files_with_auth += 1
        token, _, ext = name.partition(".")
        if token in self.queue.not_images:  # [fail:notimage]: the "image" is an HTML page
            return Response(200, b"<html><body>Not an image</body></html>", [], "image/png")
        spec = self.queue.files.get(token)
        if spec is None or images.EXTENSIONS[spec[2]] != ext:
            return Response.json(404, {"detail": "File not found"})
        if images.is_cheap(*spec):
            data = images.encode(*spec)
        else:
            data = await asyncio.get_running_loop().run_in_executor(None, images.encode, *spec)
        headers = [("Cache-Control", "public, max-age=3600"),
                   ("Content-Type", images.CONTENT_TYPES[spec[2]])]
        wait = self.queue.filewait.get(token)
        if wait:                  # [filewait:S]: every download of it answers S seconds late
            await asyncio.sleep(wait)
        if token in self.queue.trickle:
            return Stream(200, headers, self._trickle(data), length=len(data))
        slow = self.queue.slowfile.pop(token, None)
        if slow:                  # [slowfile:S]: its first download's body takes S seconds
            return Stream(200, headers, self._slow(data, slow), length=len(data))
        return Response(200, data, headers)

    @staticmethod
    def _slow(data, seconds):
        """[slowfile:S]: the body in SLOWFILE_STEPS pieces, evenly over S seconds."""
        async def producer(send):
            step = max(1, -(-len(data) // SLOWFILE_STEPS))
            for i in range(0, len(data), step):
                await asyncio.sleep(seconds / SLOWFILE_STEPS)
                await send(data[i:i + step])
        return producer

    @staticmethod
    def _trickle(data):
        """[trickle]: a CDN that serves TRICKLE_BYTES per TRICKLE_EVERY s (bounded to
        TRICKLE_FOR s, then it gives up and the connection closes with the body cut short)."""
        async def producer(send):
            end = time.monotonic() + TRICKLE_FOR
            for i in range(0, len(data), TRICKLE_BYTES):
                if time.monotonic() >= end:
                    return
                await send(data[i:i + TRICKLE_BYTES])
                await asyncio.sleep(TRICKLE_EVERY)
        return producer

    # ------------------------------------------------------------ introspection

    def stats(self):
        q = self.queue
        return {"requests": self.requests, "by_route": dict(self.by_route),
                "submits_by_endpoint": dict(self.submits_by_endpoint),
                "auth": dict(self.auth), "files_with_auth": self.files_with_auth,
                "open_jobs": q.open_jobs, "max_open_jobs": q.max_open_jobs,
                "queued": q.line.waiting, "running": q.running,
                "connections": self.server.connections,
                "max_connections": self.server.max_connections,
                "completed": q.completed, "succeeded": q.succeeded, "failed": q.failed,
                "cancelled": q.cancelled, "status_codes": dict(self.status_codes),
                "webhooks": dict(q.webhooks),
                "duplicate_submits": self.duplicate_submits,
                "submit_bodies": len(self.seen_bodies), "repeated_ids": self.repeated_ids,
                "logs_asked": dict(self.logs_asked), "sse": self.sse.stats(),
                "refused_submits": self.refused_submits, "padded_requests": self.padded_requests,
                "files_in_flight": self.files_in_flight,
                "max_files_in_flight": self.max_files_in_flight,
                "faults": dict(self.faults.injected) if self.faults else {},
                **self.platform.stats()}

    def _introspect(self, req, path):
        if path == "/_sandbox/stats" and req.method in ("GET", "HEAD"):
            return Response.json(200, self.stats())
        if path == "/_sandbox/jobs" and req.method in ("GET", "HEAD"):
            return Response.json(200, self.queue.listing())
        if path == "/_sandbox/reset" and req.method == "POST":
            self.queue.reset()
            self._reset_counters()
            self._reset_controls()
            self.platform.reset()
            self.server.reset_counters()
            return Response.json(200, {"ok": True})
        if path == "/_sandbox/control" and req.method == "POST":
            return self._control(req)
        if path == "/_sandbox/health":
            return Response.json(200, {"ok": True})
        return Response.json(404, {"detail": "Not Found"})

    # ------------------------------------------------------------ run-time faults

    def _control(self, req):
        """POST /_sandbox/control: check every key first, then apply them all (or none)."""
        try:
            body = json.loads(req.body or b"{}")
        except (ValueError, UnicodeDecodeError):
            return self._bad_control("body is not JSON")
        if not isinstance(body, dict):
            return self._bad_control("body must be a JSON object")
        unknown = sorted(set(body) - set(CONTROL_KEYS))
        if unknown:
            return self._bad_control("unknown keys %s (known: %s)" % (unknown, ", ".join(CONTROL_KEYS)))
        outage, err = self._parse_outage(body["outage"]) if "outage" in body else (None, None)
        if err:
            return self._bad_control(err)
        n = body.get("repeat_id", 0)
        if type(n) is not int or n < 0:
            return self._bad_control("repeat_id must be an integer >= 0")
        for k in ("hostile", "reset_faults", "release_endless"):
            if k in body and type(body[k]) is not bool:
                return self._bad_control(k + " must be true or false")
        ka = body.get("keepalive", 1.0)
        if type(ka) not in (int, float) or not 0.01 <= ka <= 3600:
            return self._bad_control("keepalive must be a number of seconds in [0.01, 3600]")
        spoil = body.get("spoil_submits")
        if spoil is not None and not (isinstance(spoil, dict) and spoil.get("kind") in SPOIL_KINDS
                                      and type(spoil.get("count", 1)) is int and spoil.get("count", 1) >= 0):
            return self._bad_control("spoil_submits must be {\"kind\": %s, \"count\": N >= 0}"
                                     % "|".join(SPOIL_KINDS))
        refuse = body.get("refuse_submits")
        if refuse is not None and not (isinstance(refuse, dict) and not set(refuse) - {"count", "status"}
                                       and type(refuse.get("count", 1)) is int and refuse.get("count", 1) >= 0
                                       and type(refuse.get("status", 429)) is int
                                       and 400 <= refuse.get("status", 429) <= 599):
            return self._bad_control("refuse_submits must be {\"count\": N >= 0, \"status\": 400..599}")
        platform_acts, err = self.platform.parse_control(body)
        if err:
            return self._bad_control(err)
        sse, err = ssewire.parse_control(body)
        if err:
            return self._bad_control(err)
        if body.get("reset_faults"):
            self._reset_controls()
            self.platform.fail_next.clear()
        for act in platform_acts:
            act()
        if sse:
            self.sse.set(**sse)
        if "outage" in body:
            self.outage = outage
        if "repeat_id" in body:
            self.repeat_id = n
        if "hostile" in body:
            self.hostile = body["hostile"]
        if "keepalive" in body:
            self.keepalive = float(ka)
        if spoil is not None:
            self.spoil_submits = [spoil["kind"], spoil.get("count", 1)]
        if refuse is not None:
            self.refuse_submits = [refuse.get("count", 1), refuse.get("status", 429)]
        if body.get("release_endless"):
            self.queue.release_endless()
        return Response.json(200, {"ok": True})

    @staticmethod
    def _parse_outage(spec):
        """(outage tuple or None, error or None) from the control body's "outage" value."""
        if spec is None:
            return None, None
        if not isinstance(spec, dict) or set(spec) - {"seconds", "routes", "status", "retry_after"}:
            return None, "outage must be null or {seconds, routes?, status?, retry_after?}"
        secs = spec.get("seconds")
        if type(secs) not in (int, float) or not 0 < secs <= 86400:
            return None, "outage.seconds must be a number in (0, 86400]"
        routes = spec.get("routes", list(QUEUE_ROUTES))
        if not isinstance(routes, list) or not set(routes) <= set(QUEUE_ROUTES):
            return None, "outage.routes must be a list of %s" % ", ".join(QUEUE_ROUTES)
        status = spec.get("status", 503)
        if type(status) is not int or not 400 <= status <= 599:
            return None, "outage.status must be an HTTP status in [400, 599]"
        retry_after = spec.get("retry_after")
        if retry_after is not None and (type(retry_after) is not int or not 0 <= retry_after <= 3600):
            return None, "outage.retry_after must be whole seconds in [0, 3600]"
        return (time.monotonic() + secs, frozenset(routes), status, retry_after), None

    @staticmethod
    def _bad_control(msg):
        return Response.json(400, {"detail": msg})
