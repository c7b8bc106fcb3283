#!/usr/bin/env python3
# run_with_sandbox.py - runs one command with a fresh sandbox beside it (used by CTest for
# the C engine tests). Starts tests/sandbox/sandbox.py on a free loopback port, exports its
# URL as EDITFLOW_SANDBOX_URL, runs the command with a time limit, and always stops the
# sandbox by its PID. Exit status: the command's (124 if it ran out of time).
#   usage: run_with_sandbox.py [SANDBOX_ARGS...] -- COMMAND [ARGS...]
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv):
    if "--" not in argv:
        sys.stderr.write("usage: run_with_sandbox.py [SANDBOX_ARGS...] -- COMMAND [ARGS...]\n")
        return 2
    cut = argv.index("--")
    sandbox_args, command = argv[:cut], argv[cut + 1:]
    sb = subprocess.Popen([sys.executable, "-u", os.path.join(HERE, "sandbox", "sandbox.py"),
                           "--port", "0", "--quiet", "--exit-with-parent"] + sandbox_args,
                          stdout=subprocess.PIPE, text=True)
    try:
        line = sb.stdout.readline().strip()  # the sandbox prints this once it listens
        if not line.startswith("SANDBOX_URL="):
            sys.stderr.write("sandbox did not start: %r\n" % line)
            return 1
        env = dict(os.environ, EDITFLOW_SANDBOX_URL=line.split("=", 1)[1])
        limit = float(os.environ.get("EDITFLOW_TEST_TIMEOUT", "600"))
        try:
            return subprocess.run(command, env=env, timeout=limit).returncode
        except subprocess.TimeoutExpired:
            sys.stderr.write("command ran out of time (%g s)\n" % limit)
            return 124
    finally:
        sb.terminate()
        deadline = time.time() + 5
        while sb.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        if sb.poll() is None:
            sb.kill()
            sb.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
