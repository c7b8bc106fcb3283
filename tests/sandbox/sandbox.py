#!/usr/bin/env python3
# sandbox.py - entry point of editflow's local fal-queue sandbox (stdlib only, loopback only).
# Owns the command line, binding, the single "SANDBOX_URL=..." stdout line (and --port-file),
# and clean shutdown on SIGTERM/SIGINT. Routes live in app.py, HTTP in httpd.py, the queue in
# jobqueue.py, images in images.py, input checks in validate.py. See README.md.

import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import images  # noqa: E402
from app import SandboxApp  # noqa: E402
from httpd import Server  # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Local imitation of fal.ai's queue API.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--job-time", type=float, default=0.2, help="seconds a job runs")
    p.add_argument("--key", default="test-key", help="accepted 'Authorization: Key ...'")
    p.add_argument("--bearer", default="test-token", help="accepted 'Authorization: Bearer ...'")
    p.add_argument("--prefix", default="", help="queue routes also live under this path")
    p.add_argument("--public-base", default="",
                   help="origin+path used in returned status/response/cancel URLs")
    p.add_argument("--keepalive", type=float, default=15.0, help="SSE ping interval, seconds")
    p.add_argument("--position-interval", type=float, default=0.1,
                   help="SSE: at most one queue-position-only event per this many seconds "
                        "per stream (0 = every change); status and log events are immediate")
    p.add_argument("--port-file", default="", help="also write the URL here (atomically)")
    p.add_argument("--quiet", action="store_true", help="no per-request log lines")
    p.add_argument("--png-bytes", type=int, default=0,
                   help="pad every PNG to about this many bytes (benchmarks)")
    p.add_argument("--fault-rate", type=float, default=0.0,
                   help="share of queue requests that get an injected fault (0..1)")
    p.add_argument("--fault-seed", type=int, default=1, help="seed, so faulty runs repeat")
    p.add_argument("--faults", default="5xx,429,drop,badjson,slow,joberror",
                   help="fault kinds to draw from: 5xx, 429, drop, badjson, slow, joberror, lost, "
                        "lostreused, garbled, bare500, truncated (see faults.py, README.md)")
    p.add_argument("--catalog", default="",
                   help="folder of editflow's shipped catalog (default: lua/editflow/catalog of "
                        "this checkout); its documents and prices back the platform routes")
    p.add_argument("--no-stream", action="store_true",
                   help="answer 404 on the status stream route, as some proxies do")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="stop when the process that started the sandbox goes away (tests, demo)")
    a = p.parse_args(argv)
    if a.workers < 1 or a.job_time < 0 or a.keepalive <= 0 or a.position_interval < 0:
        p.error("need --workers >= 1, --job-time >= 0, --keepalive > 0, --position-interval >= 0")
    a.prefix = "/" + a.prefix.strip("/") if a.prefix.strip("/") else ""
    if a.host == "localhost":                  # one socket, one port: not v4 and v6 apart
        a.host = "127.0.0.1"
    return a


def _write_port_file(path, url):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(url + "\n")
    os.replace(tmp, path)


async def _watch_parent(ppid, stop):
    # A test runner that dies without stopping us must not leave a server behind.
    while not stop.is_set():
        if os.getppid() != ppid:
            stop.set()
            return
        await asyncio.sleep(0.5)


async def main(opts):
    app_ref = {}

    async def handler(req):
        return await app_ref["app"].handle(req)

    server = Server(handler)
    host, port = await server.start(opts.host, opts.port)
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = "[%s]" % shown
    url = "http://%s:%d" % (shown, port)
    images.PNG_PAD_TO = opts.png_bytes
    app = SandboxApp(server, opts, url)
    app_ref["app"] = app
    app.queue.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if opts.exit_with_parent:
        asyncio.ensure_future(_watch_parent(os.getppid(), stop))

    if opts.port_file:
        _write_port_file(opts.port_file, url)
    sys.stdout.write("SANDBOX_URL=%s\n" % url)
    sys.stdout.flush()
    if not opts.quiet:
        sys.stderr.write("sandbox: listening on %s (workers=%d, job_time=%gs, prefix=%r)\n"
                         % (url, opts.workers, opts.job_time, opts.prefix))
    await stop.wait()
    await server.close()
    await app.queue.stop()
    if not opts.quiet:
        sys.stderr.write("sandbox: stopped\n")


if __name__ == "__main__":
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt:
        pass
