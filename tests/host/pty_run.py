#!/usr/bin/env python3
"""pty_run.py SPEC_JSON CMD [ARGS...]: runs CMD on a pseudo-terminal, as in a user's shell, and
types keys into it (Ctrl-C is "\\u0003": the terminal sends SIGINT to the foreground process).

SPEC: {"url": SANDBOX_URL, "when": {"running": R, "queued": Q, "jobs": N},
       "keys": [[SECONDS, TEXT], ...], "control": [[SECONDS, {...}], ...], "limit": SECONDS}
Once the sandbox's /_sandbox/jobs shows at least R jobs IN_PROGRESS, Q IN_QUEUE and N in all
(no "when": at once), each key is typed SECONDS after that moment and each control body is
POSTed to /_sandbox/control -- never sooner after the action before it than their SECONDS
differ, so a loaded machine that types one key late cannot bring the next one closer to it
(two Ctrl-C more than a second apart stay so). Everything the terminal showed goes to stdout, then a last line
"PTY_EXIT=<status>" (128 + the signal when CMD was killed by one, "timeout" when it was still
running after "limit" seconds: it is then killed by its pid). Python standard library only,
127.0.0.1 only.
"""
import json
import os
import pty
import select
import signal
import sys
import time
import urllib.request


def sandbox(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method="POST" if data else "GET",
                                 headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read() or b"null")


def ready(spec):
    when = spec.get("when")
    if not when:
        return True
    try:
        jobs = sandbox(spec["url"], "/_sandbox/jobs")
    except OSError:
        return False
    if isinstance(jobs, dict):
        jobs = jobs.get("jobs", [])
    running = sum(1 for j in jobs if j.get("status") == "IN_PROGRESS")
    queued = sum(1 for j in jobs if j.get("status") == "IN_QUEUE")
    return (running >= when.get("running", 0) and queued >= when.get("queued", 0)
            and len(jobs) >= when.get("jobs", 0))


def main():
    spec = json.loads(sys.argv[1])
    argv = sys.argv[2:]
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(argv[0], argv)
    start = time.time()
    limit = spec.get("limit", 120)
    actions = [(float(t), "key", k) for t, k in spec.get("keys", [])]
    actions += [(float(t), "control", c) for t, c in spec.get("control", [])]
    actions.sort(key=lambda a: a[0])
    out, status, trigger, next_look = b"", None, None, 0.0
    last = None  # (when it was due, when it was done) of the last action taken
    while time.time() - start < limit:
        now = time.time()
        if trigger is None and now >= next_look:
            next_look = now + 0.1
            if ready(spec):
                trigger = now
        while trigger is not None and actions and now - trigger >= actions[0][0] and (
                last is None or now - last[1] >= actions[0][0] - last[0]):
            due, kind, what = actions.pop(0)
            if kind == "key":
                os.write(fd, what.encode())
            else:
                sandbox(spec["url"], "/_sandbox/control", what)
            now = time.time()
            last = (due, now)
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            out += chunk
            if chunk:
                continue
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = os.waitstatus_to_exitcode(st)
            if status < 0:
                status = 128 - status
            break
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        status = "timeout"
    # what the terminal still holds
    while True:
        r, _, _ = select.select([fd], [], [], 0.1)
        if not r:
            break
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    sys.stdout.buffer.write(out)
    sys.stdout.write("\nPTY_EXIT=%s\n" % status)
    sys.stdout.write("PTY_TRIGGERED=%s\n" % ("yes" if trigger is not None else "no"))


if __name__ == "__main__":
    main()
