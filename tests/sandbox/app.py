# app.py - fal queue routes of the sandbox on top of httpd (transport) and jobqueue (state).
# Owns URL routing (with and without --prefix), credential checks (Key / Bearer), the JSON
# shapes of submit/status/stream/result/cancel answers, the /files CDN route, the SSE
# producer, the /_sandbox/{stats,jobs,reset,health} introspection routes and the counters.
# Never logs or echoes a credential.

import asyncio
import hmac
import json
import sys
import time

import images
from faults import Faults
from httpd import Response, Stream
from jobqueue import COMPLETED, IN_QUEUE, JobQueue, new_id
from validate import validate

ROUTES = ("submit", "status", "stream", "result", "cancel", "files", "other")
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
        self._reset_counters()

    def _reset_counters(self):
        self.requests = 0
        self.by_route = dict.fromkeys(ROUTES, 0)
        self.submits_by_endpoint = {}
        self.auth = {"key": 0, "bearer": 0, "bad": 0}
        self.files_with_auth = 0
        self.status_codes = {}
        self.duplicate_submits = 0
        self.seen_bodies = set()

    # ------------------------------------------------------------ entry

    async def handle(self, req):
        path = req.path
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            path = path[len(self.prefix):] or "/"
        if path.startswith("/_sandbox/"):
            return self._introspect(req, path)
        t0 = time.perf_counter()
        self.requests += 1
        route, resp = await self._faulty_route(req, path)
        self.by_route[route] += 1
        code = str(resp.status)
        self.status_codes[code] = self.status_codes.get(code, 0) + 1
        if not self.quiet:
            sys.stderr.write("sandbox: %s %s -> %d %s %.1fms\n" % (
                req.method, req.path, resp.status, route, (time.perf_counter() - t0) * 1000))
        return resp

    async def _faulty_route(self, req, path):
        """The real route, unless an injected fault (faults.py) answers instead."""
        kind = self.faults.pick(self._route_name(req, path)) if self.faults else None
        if kind == "slow":
            await asyncio.sleep(1.5)
        elif kind == "joberror":
            req.inject_job_error = True
        elif kind is not None:
            return self._route_name(req, path), self.faults.answer(kind)
        return await self._route(req, path)

    @staticmethod
    def _route_name(req, path):
        segs = path.split("/")[1:]
        if len(segs) == 2 and segs[0] == "files":
            return "files"
        if len(segs) >= 4 and segs[2] == "requests":
            return {(): "result", ("status",): "status", ("status", "stream"): "stream",
                    ("cancel",): "cancel"}.get(tuple(segs[4:]), "other")
        if len(segs) >= 2 and segs[0] != "files" and req.method == "POST":
            return "submit"
        return "other"

    async def _route(self, req, path):
        segs = path.split("/")[1:]
        m = req.method
        if len(segs) == 2 and segs[0] == "files":
            if m not in ("GET", "HEAD"):
                return "files", self._method_not_allowed()
            return "files", await self._file(req, segs[1])
        if len(segs) < 2 or "" in segs:
            return "other", Response.json(404, {"detail": "Not Found"})
        app = segs[0] + "/" + segs[1]
        if len(segs) >= 4 and segs[2] == "requests":   # never a submit (a POSTed cancel is a 405)
            rid, rest = segs[3], segs[4:]
            route = {(): "result", ("status",): "status", ("status", "stream"): "stream",
                     ("cancel",): "cancel"}.get(tuple(rest))
            want = "PUT" if route == "cancel" else "GET"
            if route is None:
                return "other", Response.json(404, {"detail": "Not Found"})
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
                return "other", Response.json(404, {"detail": "Not Found"})
            return "other", self._method_not_allowed()
        scheme, bad = self._check_auth(req, None)
        if bad:
            return "submit", bad
        return "submit", self._submit(req, "/".join(segs), app, scheme)

    # ------------------------------------------------------------ helpers

    def _method_not_allowed(self):
        return Response.json(405, {"detail": "Method Not Allowed"})

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
        return {"response_url": base, "status_url": base + "/status",
                "cancel_url": base + "/cancel"}

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
        errs, spec = validate(body)
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
        job, position = self.queue.submit(endpoint, app, body, spec)
        digest = hash(bytes(req.body))  # the same body accepted twice is a paid duplicate
        if digest in self.seen_bodies:
            self.duplicate_submits += 1
        self.seen_bodies.add(digest)
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
        self.submits_by_endpoint[endpoint] = self.submits_by_endpoint.get(endpoint, 0) + 1
        out = {"status": IN_QUEUE, "request_id": job.id}
        out.update(self._urls(job))
        out.update({"queue_position": position, "logs": None, "metrics": {}})
        return Response.json(200, out, [("x-fal-request-id", job.id)])

    def _status(self, req, job):
        obj = job.status_obj(self._wants_logs(req), self._urls(job))
        return Response.json(200 if job.status == COMPLETED else 202, obj,
                             [("x-fal-request-id", job.id)])

    def _result(self, req, job):
        hdr = [("x-fal-request-id", job.id)]
        if job.status != COMPLETED:
            return Response.json(400, {"detail": "Request is still in progress"}, hdr)
        if job.fail == "noresult":  # ended, yet the result never comes (a broken look-alike)
            return Response.json(202, {"status": "IN_PROGRESS"}, hdr)
        return Response(job.result_status, job.result_body, hdr + job.result_headers,
                        "application/json")

    def _cancel(self, req, job):
        hdr = [("x-fal-request-id", job.id)]
        if self.queue.cancel(job):
            return Response.json(202, {"status": "CANCELLATION_REQUESTED"}, hdr)
        return Response.json(400, {"status": "ALREADY_COMPLETED"}, hdr)

    def _stream(self, req, job):
        if self.no_stream:  # imitates a proxy without the stream route (clients must poll)
            return Response.json(404, {"detail": "Not Found"}, [("x-fal-request-id", job.id)])
        logs = self._wants_logs(req)
        urls = self._urls(job)
        keepalive, spacing = self.keepalive, self.position_interval
        clock = time.monotonic

        async def producer(send):
            last = None
            wrote = sent = clock()
            while True:
                line_ev, job_ev = job.line.changed, job.changed   # taken before the snapshot
                st = job.status
                body = _json(job.status_obj(logs, urls))
                if body != last:
                    await send(b"data: " + body + b"\n\n")
                    last = body
                    wrote = sent = clock()
                if st == COMPLETED:
                    return
                now = clock()
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
                    if clock() >= wrote + keepalive:
                        await send(b": ping\n\n")
                        wrote = clock()

        return Stream(200, [("Content-Type", "text/event-stream"),
                            ("Cache-Control", "no-cache"), ("X-Accel-Buffering", "no"),
                            ("x-fal-request-id", job.id)], producer)

    # ------------------------------------------------------------ CDN

    async def _file(self, req, name):
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
        return Response(200, data, [("Cache-Control", "public, max-age=3600")],
                        images.CONTENT_TYPES[spec[2]])

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
                "faults": dict(self.faults.injected) if self.faults else {}}

    def _introspect(self, req, path):
        if path == "/_sandbox/stats" and req.method in ("GET", "HEAD"):
            return Response.json(200, self.stats())
        if path == "/_sandbox/jobs" and req.method in ("GET", "HEAD"):
            return Response.json(200, self.queue.listing())
        if path == "/_sandbox/reset" and req.method == "POST":
            self.queue.reset()
            self._reset_counters()
            self.server.reset_counters()
            return Response.json(200, {"ok": True})
        if path == "/_sandbox/health":
            return Response.json(200, {"ok": True})
        return Response.json(404, {"detail": "Not Found"})
