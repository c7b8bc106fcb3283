#!/usr/bin/env python3
"""tests/host/cdp.py — drive headless Chromium through the DevTools protocol, for the tests.

    cdp.py --profile DIR [--downloads DIR] [--timeout S] < steps.json > results.json

--dump-dom cannot press a key; this can. Chromium is started with --remote-debugging-pipe: it
reads the protocol's JSON messages on its fd 3 and writes its own on fd 4, each ended by a
NUL byte. One page (Target.createTarget, attached with flatten: one session id on every
message) runs the steps read from stdin, a JSON list, in order:

    {"navigate": URL}                        Page.navigate
    {"reload": true}                         Page.reload
    {"wait": EXPR [, "timeout": S]}          evaluate EXPR until it is truthy (polled every 50 ms)
    {"eval": EXPR [, "name": NAME]}          evaluate EXPR; its value (JSON) saved under NAME
    {"key": KEY [, "repeat": N]}             a key pressed and released: "1", "b", "Escape", "ArrowRight", "Tab"
    {"text": TEXT}                           Input.insertText into whatever has the focus
    {"wait_file": PATH [, "timeout": S]}     a file appears (a download)

and prints {"ok": true, "results": {NAME: value}} or {"ok": false, "step": i, "error": ...,
"results": ...} (exit status 0 or 1). Waiting is for a condition with a generous bound, never
a fixed sleep; --timeout bounds the whole run. Chromium runs in a session of its own and is
stopped by its process group id when the steps end, whatever happened. Standard library only.
"""
import argparse
import json
import os
import select
import signal
import subprocess
import sys
import time

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--disable-sync", "--mute-audio", "--hide-scrollbars", "--window-size=1400,900"]

# key -> (code, virtual key code, text typed)
KEYS = {"Escape": ("Escape", 27, ""), "Enter": ("Enter", 13, "\r"), "Tab": ("Tab", 9, ""),
        "ArrowLeft": ("ArrowLeft", 37, ""), "ArrowRight": ("ArrowRight", 39, ""),
        "ArrowUp": ("ArrowUp", 38, ""), "ArrowDown": ("ArrowDown", 40, "")}


def key_info(key):
    if key in KEYS:
        return KEYS[key]
    if len(key) == 1 and key.isdigit():
        return ("Digit" + key, ord(key), key)
    if len(key) == 1 and key.isalpha():
        return ("Key" + key.upper(), ord(key.upper()), key)
    raise SystemExit(f"cdp.py: no key named {key!r}")


class Browser:
    def __init__(self, profile, deadline):
        self.deadline = deadline
        to_child_r, self.to_child = os.pipe()
        self.from_child, from_child_w = os.pipe()

        def fds():  # the protocol's pipe at fds 3 (in) and 4 (out) of the child
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)
        # pass_fds names the child's fds 3 and 4 (set by fds(), which runs before the child
        # closes every fd it was not told to keep)

        self.proc = subprocess.Popen(["chromium", *FLAGS, "--user-data-dir=" + profile, "--remote-debugging-pipe",
                                      "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=None if os.environ.get("CDP_DEBUG") else subprocess.DEVNULL, pass_fds=(3, 4),
                                     preexec_fn=fds, start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self.buf = b""
        self.next_id = 0
        self.session = None

    def left(self):
        return self.deadline - time.monotonic()

    def send(self, method, params=None, session=True):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        while data:
            n = os.write(self.to_child, data)
            data = data[n:]
        return self.next_id

    def read_message(self):
        while b"\0" not in self.buf:
            wait = self.left()
            if wait <= 0:
                raise TimeoutError("the browser did not answer in time")
            ready, _, _ = select.select([self.from_child], [], [], wait)
            if not ready:
                continue
            chunk = os.read(self.from_child, 65536)
            if not chunk:
                raise EOFError("the browser closed its pipe (it exited)")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=True):
        want = self.send(method, params, session)
        while True:
            msg = self.read_message()
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(f"{expr}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def open_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")

    def key(self, key):
        code, vk, text = key_info(key)
        down = {"type": "keyDown", "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk}
        if text:
            down["text"] = text
        self.call("Input.dispatchKeyEvent", down)
        self.call("Input.dispatchKeyEvent", {"type": "keyUp", "key": key, "code": code,
                                             "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk})

    def stop(self):
        try:
            self.send("Browser.close", session=False)
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        # the browser's helpers (renderer, zygote) share its process group: stop them all by it
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        os.close(self.to_child)
        os.close(self.from_child)


def wait_for(browser, what, bound, check):
    """Polls check() until it is truthy. An exception from the page counts as not yet (during a
    navigation the old document goes away under the expression); the last one is told if the
    bound passes."""
    until = min(time.monotonic() + bound, browser.deadline)
    last = ""
    while True:
        try:
            value = check()
            if value:
                return value
        except RuntimeError as e:
            last = f" (last: {e})"
        if time.monotonic() >= until:
            raise TimeoutError(f"waited {bound} s for {what}{last}")
        time.sleep(0.05)


def run(browser, steps, results, downloads):
    browser.open_page()
    if downloads:
        browser.call("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": downloads}, session=False)
    for i, step in enumerate(steps):
        try:
            if "navigate" in step:
                browser.call("Page.navigate", {"url": step["navigate"]})
            elif "reload" in step:
                browser.call("Page.reload", {"ignoreCache": True})
            elif "wait" in step:
                expr = step["wait"]
                wait_for(browser, expr, step.get("timeout", 30), lambda: browser.evaluate(expr))
            elif "eval" in step:
                value = browser.evaluate(step["eval"])
                if "name" in step:
                    results[step["name"]] = value
            elif "key" in step:
                for _ in range(step.get("repeat", 1)):
                    browser.key(step["key"])
            elif "text" in step:
                browser.call("Input.insertText", {"text": step["text"]})
            elif "wait_file" in step:
                path = step["wait_file"]
                wait_for(browser, path, step.get("timeout", 30), lambda: os.path.isfile(path))
            else:
                raise ValueError(f"unknown step {step!r}")
        except Exception as e:  # noqa: BLE001 - reported with the step that failed
            return {"ok": False, "step": i + 1, "what": step, "error": f"{type(e).__name__}: {e}", "results": results}
    return {"ok": True, "results": results}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", required=True, help="the browser's profile folder (a fresh one per run)")
    ap.add_argument("--downloads", help="allow downloads into this folder")
    ap.add_argument("--timeout", type=float, default=90, help="the whole run's bound in seconds (default 90)")
    args = ap.parse_args()
    steps = json.load(sys.stdin)
    browser = Browser(args.profile, time.monotonic() + args.timeout)
    results = {}
    try:
        out = run(browser, steps, results, args.downloads)
    except Exception as e:  # noqa: BLE001 - the browser's pipe failed before any step
        out = {"ok": False, "step": 0, "error": f"{type(e).__name__}: {e}", "results": results}
    finally:
        browser.stop()
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
