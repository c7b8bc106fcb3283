# jobqueue.py - the simulated fal queue: jobs, the FIFO waiting line, the worker pool.
# Owns job state (IN_QUEUE -> IN_PROGRESS -> COMPLETED, errors riding on COMPLETED), queue
# positions in O(log n) (a Fenwick tree over submit order), change notification (one
# asyncio.Event per job, one per waiting line), failure triggers in the prompt ([fail:nsfw],
# [fail:500]/[fail:typed500], [fail:bare500], [fail:proxy], [fail:notimage], [fail:noresult],
# [slow:S], [endless], [images:N], [bigdata:MB], [trickle], [slowfile:S], [filewait:S],
# [longurls:N]; a judge endpoint's in judge.py), output images (a judge's text answer: judge.py),
# completion times, counters and loopback webhooks.

import asyncio
import json
import re
import random
import struct
import sys
import time
import uuid
import zlib
from datetime import datetime, timezone
from urllib.parse import urlsplit

import images
import judge
from httpd import post_json

IN_QUEUE, IN_PROGRESS, COMPLETED = "IN_QUEUE", "IN_PROGRESS", "COMPLETED"

NSFW_DETAIL = [{"loc": ["body", "prompt"],
                "msg": "The content could not be processed because it contained material "
                       "flagged by a content checker.",
                "type": "content_policy_violation"}]
_SLOW = re.compile(r"\[slow:([0-9]+(?:\.[0-9]*)?)\]")
_IMAGES = re.compile(r"\[images:([0-9]+)\]")
_BIGDATA = re.compile(r"\[bigdata:([0-9]+(?:\.[0-9]*)?)\]")
_SLOWFILE = re.compile(r"\[slowfile:([0-9]+(?:\.[0-9]*)?)\]")
_FILEWAIT = re.compile(r"\[filewait:([0-9]+(?:\.[0-9]*)?)\]")
_LONGURLS = re.compile(r"\[longurls:([0-9]+)\]")
MAX_FILE_SECONDS = 60.0       # [slowfile:S] and [filewait:S] are capped at this
MAX_URL = 65536               # [longurls:N] is capped at this (httpd reads request lines to 64 KB)
MAX_IMAGES = 100_000          # [images:N]: every entry shares one file, so only the JSON grows
MAX_BIGDATA_MB = 100          # [bigdata:MB]: the PNG, its base64 and the result JSON all sit in memory
BARE500_TIMES = 2             # [fail:bare500]: bare 500s before the real result
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def new_id():
    """A random version-4 UUID string (random.getrandbits: cheaper than os.urandom)."""
    return str(uuid.UUID(int=_rng.getrandbits(128), version=4))


_rng = random.Random()


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _iso(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def redact(obj):
    """Copy of obj with every base64 data: URI replaced by 'data:<mime>;base64,<N bytes>'."""
    if isinstance(obj, str):
        if obj[:5].lower() == "data:":
            head, comma, b64 = obj.partition(",")
            if comma:
                b64 = b64.strip()
                n = len(b64) * 3 // 4 - (len(b64) - len(b64.rstrip("=")))
                return "%s,<%d bytes>" % (head, max(n, 0))
        return obj
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    if isinstance(obj, dict):
        return {k: redact(v) for k, v in obj.items()}
    return obj


def pad_url(url, n):
    """url grown to exactly n characters by a query `pad=xxx...` ([longurls:N]); unchanged when
    n is None or too short to hold the padding."""
    if n is None:
        return url
    extra = n - len(url) - len("?pad=")
    return url + "?pad=" + "x" * extra if extra >= 0 else url


def big_png(png, size):
    """png padded to about size bytes with a tEXt chunk before IEND: still a valid PNG that any
    decoder reads (ancillary text is skipped) and whose first bytes still sniff as PNG."""
    pad = size - len(png) - 12 - 8
    if pad <= 0:
        return png
    text = b"Comment\0" + b"editflow sandbox bigdata " * (pad // 25) + b"." * (pad % 25)
    chunk = (struct.pack(">I", len(text)) + b"tEXt" + text
             + struct.pack(">I", zlib.crc32(text, zlib.crc32(b"tEXt"))))
    return png[:-12] + chunk + png[-12:]


class WaitLine:
    """FIFO of waiting jobs with O(log n) position lookup and removal from the middle."""

    def __init__(self):
        self.cap = 1024
        self.tree = [0] * (self.cap + 1)
        self.next_seq = 1
        self.waiting = 0
        self.changed = asyncio.Event()     # replaced (after set) whenever a position moves

    def _add(self, i, delta):
        while i <= self.cap:
            self.tree[i] += delta
            i += i & -i

    def _prefix(self, i):
        s = 0
        while i > 0:
            s += self.tree[i]
            i -= i & -i
        return s

    def enqueue(self, job):
        if self.next_seq > self.cap:       # grow: old nodes keep their ranges
            old = self.cap
            self.tree.extend([0] * old)
            self.cap = old * 2
            self.tree[self.cap] = self.tree[old]
        job.seq = self.next_seq
        self.next_seq += 1
        self._add(job.seq, 1)
        self.waiting += 1
        return self._prefix(job.seq - 1)

    def leave(self, job):
        """job stops waiting (taken by a worker or cancelled): everyone behind moves up."""
        self._add(job.seq, -1)
        self.waiting -= 1
        job.seq = 0
        self.wake()

    def position(self, job):
        return self._prefix(job.seq - 1) if job.seq else 0

    def wake(self):
        ev, self.changed = self.changed, asyncio.Event()
        ev.set()


class Job:
    __slots__ = ("id", "endpoint", "app", "input", "spec", "status", "seq", "line", "created_at",
                 "started_at", "completed_at", "logs", "error", "error_type", "result_status",
                 "result_body", "result_headers", "cancelled", "changed", "cancel_evt", "webhook",
                 "headers", "query", "auth", "job_time", "inference_time", "fail", "deadline",
                 "gen", "bare500_left", "raw", "long_urls")

    def __init__(self, endpoint, app, body, spec, job_time):
        self.id = new_id()
        self.endpoint, self.app, self.spec = endpoint, app, spec
        self.input = redact(body)
        self.raw = body          # as sent, for the requests listing's json_input
        self.status = IN_QUEUE
        self.seq = 0
        self.line = None
        self.created_at = time.time()
        self.started_at = self.completed_at = None
        self.logs = []
        self.error = self.error_type = None
        self.result_status, self.result_body, self.result_headers = 0, b"", []
        self.cancelled = False
        self.changed = asyncio.Event()
        self.cancel_evt = asyncio.Event()
        self.webhook = None
        self.headers, self.query, self.auth = {}, {}, None
        prompt = spec["prompt"]
        m = _SLOW.search(prompt)
        self.job_time = min(float(m.group(1)), 3600.0) if m else job_time
        self.fail = ("nsfw" if "[fail:nsfw]" in prompt
                     else "500" if "[fail:500]" in prompt or "[fail:typed500]" in prompt
                     else "bare500" if "[fail:bare500]" in prompt
                     else "proxy" if "[fail:proxy]" in prompt
                     else "noresult" if "[fail:noresult]" in prompt
                     else "endless" if "[endless]" in prompt else None)
        if self.fail is None and judge.fails(endpoint, prompt):  # [judge:fail]: only a judge fails
            self.fail = "500"
        self.bare500_left = BARE500_TIMES if self.fail == "bare500" else 0
        m = _LONGURLS.search(prompt)     # every URL the queue hands out for it is N characters
        self.long_urls = min(int(m.group(1)), MAX_URL) if m else None
        self.inference_time = None
        self.deadline = None
        self.gen = 0

    @property
    def done(self):
        return self.status == COMPLETED

    def notify(self):
        ev, self.changed = self.changed, asyncio.Event()
        ev.set()

    def log(self, message):
        self.logs.append({"message": message, "level": "INFO", "source": "USER",
                          "timestamp": _iso(time.time())})
        self.notify()

    def status_obj(self, with_logs, urls):
        d = {"status": self.status, "request_id": self.id}
        if self.fail == "proxy" and self.done:
            d["status"] = "FAILED"  # a look-alike server's own final status (SPEC §1)
        d.update(urls)
        if self.status == IN_QUEUE:
            d["queue_position"] = self.line.position(self)
        if with_logs:
            d["logs"] = self.logs
        d["metrics"] = ({"inference_time": self.inference_time}
                        if self.inference_time is not None else {})
        if self.error is not None:
            d["error"] = self.error
            d["error_type"] = self.error_type
        return d


class JobQueue:
    def __init__(self, workers, job_time, cdn_origin, log=None):
        self.n_workers = workers
        self.job_time = job_time
        self.cdn_origin = cdn_origin
        self.log = log or (lambda msg: None)
        self.files = {}                     # token -> (w, h, fmt, key); kept across resets
        self.not_images = set()             # tokens served as HTML ([fail:notimage])
        self.trickle = set()                # tokens served at 2 bytes/s ([trickle])
        self.slowfile = {}                  # token -> seconds its first download takes ([slowfile:S])
        self.filewait = {}                  # token -> seconds every download waits ([filewait:S])
        self.endless_go = asyncio.Event()   # set by release_endless(): [endless] jobs go on
        self._tasks = []
        self._hooks = set()
        self.ready = asyncio.Queue()        # workers take from here; skips jobs that left
        self.gen = 0
        self._reset_state()

    def _reset_state(self):
        self.jobs = {}
        self.line = WaitLine()
        self.open_jobs = self.max_open_jobs = self.running = 0
        self.completed = self.succeeded = self.failed = self.cancelled = 0
        self.webhooks = {"sent": 0, "failed": 0, "skipped": 0}

    def start(self):
        self._tasks = [asyncio.ensure_future(self._worker()) for _ in range(self.n_workers)]

    async def stop(self):
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def release_endless(self):
        """Every [endless] job running now goes on and finishes normally (a later one waits
        again)."""
        ev, self.endless_go = self.endless_go, asyncio.Event()
        ev.set()

    def reset(self):
        """Forget every job (open ones end as cancelled so their streams close)."""
        old_line = self.line
        for job in list(self.jobs.values()):
            if not job.done:
                if job.seq:
                    old_line.leave(job)
                job.cancel_evt.set()
                self._finish_cancelled(job)
        old_line.wake()
        while not self.ready.empty():
            self.ready.get_nowait()
        self.gen += 1
        self._reset_state()

    # ------------------------------------------------------------ submit / cancel

    def submit(self, endpoint, app, body, spec):
        job = Job(endpoint, app, body, spec, self.job_time)
        job.gen = self.gen
        job.line = self.line
        position = self.line.enqueue(job)
        self.jobs[job.id] = job
        self.open_jobs += 1
        if self.open_jobs > self.max_open_jobs:
            self.max_open_jobs = self.open_jobs
        self.ready.put_nowait(job)
        return job, position

    def cancel(self, job):
        """True if a cancellation was applied, False if the job had already completed."""
        if job.done:
            return False
        if job.status == IN_QUEUE:
            job.line.leave(job)
        job.cancel_evt.set()
        self._finish_cancelled(job)
        return True

    # ------------------------------------------------------------ workers

    async def _worker(self):
        while True:
            job = await self.ready.get()
            if job.done or job.status != IN_QUEUE:
                continue
            job.line.leave(job)
            gen = self.gen
            self.running += 1
            try:
                await self._run(job)
            except asyncio.CancelledError:
                raise
            except Exception as e:           # a sandbox bug must not kill the worker
                print("sandbox: job %s crashed: %r" % (job.id, e), file=sys.stderr)
                if not job.done:
                    self._finish(job, "Sandbox internal error", "runner_server_error", 500,
                                 {"detail": "Sandbox internal error",
                                  "error_type": "runner_server_error"},
                                 [("X-Fal-Error-Type", "runner_server_error")])
            finally:
                if gen == self.gen:
                    self.running -= 1

    async def _pause(self, job, secs):
        """Sleep secs unless the job is cancelled first; returns True if the job ended."""
        if secs > 0 and not job.done:
            try:
                async with asyncio.timeout(secs):
                    await job.cancel_evt.wait()
            except TimeoutError:
                pass
        return job.done

    async def _run(self, job):
        job.status = IN_PROGRESS
        job.started_at = time.time()
        job.notify()
        if job.deadline is not None and job.started_at > job.deadline:
            self._finish(job, "Request timed out before it started", "request_timeout", 504,
                         {"detail": "Request timed out", "error_type": "request_timeout"},
                         [("X-Fal-Error-Type", "request_timeout"),
                          ("X-Fal-Request-Timeout-Type", "user")])
            return
        t0 = time.perf_counter()
        try:
            steps = int(job.input.get("num_inference_steps", 50))
        except (TypeError, ValueError):
            steps = 50
        job.log("Loading model %s" % job.endpoint)
        if job.fail == "endless":  # a stuck runner: holds its worker until cancelled, reset or released
            go = asyncio.ensure_future(self.endless_go.wait())
            stop = asyncio.ensure_future(job.cancel_evt.wait())
            try:
                await asyncio.wait({go, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                go.cancel()
                stop.cancel()
            if job.done:
                return
            job.fail = None       # released: the rest of the run as any job's
        if await self._pause(job, job.job_time / 2):
            return
        job.log("Step %d/%d" % (max(1, steps // 2), steps))
        if await self._pause(job, job.job_time / 2):
            return
        job.inference_time = round(time.perf_counter() - t0, 6)
        if job.fail == "nsfw":
            job.log("Done: content checker flagged the output")
            self._finish(job, NSFW_DETAIL[0]["msg"], "content_policy_violation", 422,
                         {"detail": NSFW_DETAIL}, [("X-Fal-Retryable", "false")])
            return
        if job.fail == "500":
            job.log("Runner crashed")
            self._finish(job, "Runner crashed", "runner_server_error", 500,
                         {"detail": "Runner crashed", "error_type": "runner_server_error"},
                         [("X-Fal-Error-Type", "runner_server_error")])
            return
        if job.fail == "proxy":  # ends FAILED, yet the result call answers 200 (SPEC §1)
            job.log("Proxy: upstream failed")
            self._finish(job, None, None, 200, {"status": "FAILED", "detail": "upstream failed"}, [])
            return
        # a judge answers text (judge.py); every other endpoint, images
        out = judge.answer(job.raw) if judge.is_judge(job.endpoint) else await self._output(job)
        if job.done:
            return
        job.log("Done in %.2fs" % job.inference_time)
        self._finish(job, None, None, 200, out, [])

    async def _output(self, job):
        s = job.spec
        seed = s["seed"] if s["seed"] is not None else random.randint(0, 2 ** 31)
        big = _BIGDATA.search(s["prompt"])
        if big:
            return await self._big_output(job, seed, float(big.group(1)))
        many = _IMAGES.search(s["prompt"])
        if many:
            return await self._many_output(job, seed, int(many.group(1)))
        w, h, fmt, n = s["width"], s["height"], s["output_format"], s["num_images"]
        keys = [images.content_key(seed, s["prompt"], i) for i in range(n)]
        if images.is_cheap(w, h, fmt, keys[0]):
            blobs = [images.encode(w, h, fmt, k) for k in keys]
        else:                               # cold PNG size or huge JPEG: keep the loop free
            blobs = await asyncio.get_running_loop().run_in_executor(
                None, lambda: [images.encode(w, h, fmt, k) for k in keys])
        out_images = []
        ext = images.EXTENSIONS[fmt]
        for k, data in zip(keys, blobs):
            token = new_id().replace("-", "")
            name = "%s.%s" % (token, ext)
            if s["sync_mode"]:
                url = images.data_uri(fmt, data)
            else:
                url = self._publish(token, name, (w, h, fmt, k), s["prompt"], job.long_urls)
            out_images.append({"url": url, "width": w, "height": h,
                               "content_type": images.CONTENT_TYPES[fmt],
                               "file_name": name, "file_size": len(data)})
        return self._output_obj(job, seed, out_images)

    def _publish(self, token, name, spec, prompt, long_urls=None):
        """Serve spec under /files/name; returns its URL. Prompt triggers pick how it is served."""
        self.files[token] = spec
        if "[fail:notimage]" in prompt:
            self.not_images.add(token)
        if "[trickle]" in prompt:
            self.trickle.add(token)
        for pattern, table in ((_SLOWFILE, self.slowfile), (_FILEWAIT, self.filewait)):
            m = pattern.search(prompt)
            if m:
                table[token] = min(float(m.group(1)), MAX_FILE_SECONDS)
        return pad_url("%s/files/%s" % (self.cdn_origin, name), long_urls)

    @staticmethod
    def _output_obj(job, seed, out_images):
        if "[shape:image]" in job.spec["prompt"] and out_images:  # a model that answers one File
            return {"image": out_images[0], "seed": seed, "prompt": job.spec["prompt"],
                    "timings": {"inference": job.inference_time}}
        return {"images": out_images, "seed": seed,
                "has_nsfw_concepts": [False] * len(out_images),
                "prompt": job.spec["prompt"], "timings": {"inference": job.inference_time}}

    async def _many_output(self, job, seed, n):
        """[images:N]: N entries that all name one small file (a huge result, not huge memory)."""
        s = job.spec
        w, h, fmt = s["width"], s["height"], s["output_format"]
        k = images.content_key(seed, s["prompt"], 0)
        data = await asyncio.get_running_loop().run_in_executor(None, images.encode, w, h, fmt, k)
        token = new_id().replace("-", "")
        name = "%s.%s" % (token, images.EXTENSIONS[fmt])
        entry = {"url": self._publish(token, name, (w, h, fmt, k), s["prompt"], job.long_urls),
                 "width": w, "height": h, "content_type": images.CONTENT_TYPES[fmt],
                 "file_name": name, "file_size": len(data)}
        return self._output_obj(job, seed, [entry] * max(0, min(n, MAX_IMAGES)))

    async def _big_output(self, job, seed, mb):
        """[bigdata:MB]: one PNG data: URI of about MB * 10^6 characters."""
        s = job.spec
        w, h = s["width"], s["height"]
        k = images.content_key(seed, s["prompt"], 0)
        chars = int(min(mb, MAX_BIGDATA_MB) * 1_000_000)

        def build():
            data = big_png(images.encode_png(w, h, k), chars * 3 // 4)
            return data, images.data_uri("png", data)
        data, uri = await asyncio.get_running_loop().run_in_executor(None, build)
        token = new_id().replace("-", "")
        return self._output_obj(job, seed, [{"url": uri, "width": w, "height": h,
                                             "content_type": "image/png",
                                             "file_name": token + ".png",
                                             "file_size": len(data)}])

    # ------------------------------------------------------------ completion

    def _finish_cancelled(self, job):
        self._finish(job, "Request was cancelled by the client", "client_cancelled", 499,
                     {"detail": "Request was cancelled", "error_type": "client_cancelled"},
                     [("X-Fal-Error-Type", "client_cancelled")], cancelled=True)

    def _finish(self, job, error, error_type, status, body, headers, cancelled=False):
        job.status = COMPLETED
        job.completed_at = time.time()
        job.error, job.error_type = error, error_type
        job.result_status, job.result_body = status, _json(body)
        job.result_headers = headers
        job.cancelled = cancelled
        if job.gen == self.gen:
            self.open_jobs -= 1
            self.completed += 1
            if cancelled:
                self.cancelled += 1
            elif error is None:
                self.succeeded += 1
            else:
                self.failed += 1
        job.notify()
        if job.webhook:
            self._webhook(job, body)

    def _webhook(self, job, body):
        parts = urlsplit(job.webhook)
        if parts.scheme != "http" or (parts.hostname or "") not in _LOOPBACK:
            self.webhooks["skipped"] += 1      # never send traffic off this machine
            return
        ok = job.error is None
        payload = {"request_id": job.id, "gateway_request_id": job.id,
                   "status": "OK" if ok else "ERROR", "payload": body,
                   "error": None if ok else job.error}
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        stats = self.webhooks

        async def go():
            try:
                await post_json(parts.hostname, parts.port or 80, path, payload)
                stats["sent"] += 1
            except Exception:
                stats["failed"] += 1
        task = asyncio.ensure_future(go())
        self._hooks.add(task)                  # keep a reference until it is done
        task.add_done_callback(self._hooks.discard)

    # ------------------------------------------------------------ introspection

    def listing(self):
        out = []
        for j in self.jobs.values():
            d = {"request_id": j.id, "endpoint": j.endpoint, "status": j.status,
                 "input": j.input, "created_at": j.created_at, "started_at": j.started_at,
                 "completed_at": j.completed_at, "cancelled": j.cancelled,
                 "error_type": j.error_type, "result_status": j.result_status or None,
                 "auth": j.auth, "headers": j.headers, "query": j.query}
            if j.status == IN_QUEUE:
                d["queue_position"] = j.line.position(j)
            out.append(d)
        return out
