# sandboxproc.py - one sandbox.py subprocess for a self-test: started on a free loopback port,
# its SANDBOX_URL line awaited (bounded), its stderr kept, stopped by its own PID. Used by
# selftest.py and selftest_promises.py. Standard library only.
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlsplit

HERE = os.path.dirname(os.path.abspath(__file__))


class Sandbox:
    """One sandbox subprocess. start() waits (bounded) for its SANDBOX_URL line."""

    def __init__(self, *args, key="test-key", bearer="test-token"):
        self.args = list(args)
        self.key, self.bearer = key, bearer
        self.proc = None
        self.url = None
        self.errlog = tempfile.TemporaryFile()

    def start(self, timeout=15.0):
        cmd = [sys.executable, os.path.join(HERE, "sandbox.py"), "--port", "0",
               "--key", self.key, "--bearer", self.bearer] + self.args
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.errlog,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        buf = b""
        while time.monotonic() < deadline and b"\n" not in buf:
            r, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                break
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("SANDBOX_URL="):
            err = self.stderr()
            self.stop()
            raise RuntimeError("sandbox did not start: %r / %s" % (line, err))
        self.url = line[len("SANDBOX_URL="):]
        p = urlsplit(self.url)
        self.host, self.port = p.hostname, p.port
        return self

    def stderr(self):
        if self.errlog.closed:
            return ""
        self.errlog.seek(0)
        return self.errlog.read().decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        self.errlog.close()
        return self.proc.returncode if self.proc else None
