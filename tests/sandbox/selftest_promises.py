#!/usr/bin/env python3
# selftest_promises.py - self-tests of what the sandbox offers tests/lua/test_promises.lua: the
# [slowfile:S], [filewait:S] and [longurls:N] prompt triggers, the files_in_flight high-water
# mark, padded_requests, and the refuse_submits and release_endless controls. Stdlib only, self-
# contained (selftest.py imports this module; it runs alone too:
# `python3 tests/sandbox/selftest_promises.py` or `python3 -m unittest selftest_promises`).
# Fake credentials only; every wait is bounded; the sandbox is ended by its own PID.

import http.client
import json
import os
import sys
import threading
import time
import unittest
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sandboxproc  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = "fake-key-promises"
EP = "fal-ai/qwen-image-edit-plus"
TINY = {"image_urls": ["https://example.invalid/a.png"], "image_size": {"width": 64, "height": 64}}


def _path(url):
    p = urlsplit(url)
    return p.path + ("?" + p.query if p.query else "")


class PromiseSandbox(unittest.TestCase):
    """One sandbox for the class (--job-time 0.02, keep-alive pings never)."""

    @classmethod
    def setUpClass(cls):
        cls.sb = sandboxproc.Sandbox("--quiet", "--job-time", "0.02", "--keepalive", "3600", key=KEY).start()
        cls.host, cls.port = cls.sb.host, cls.sb.port

    @classmethod
    def tearDownClass(cls):
        cls.sb.stop()

    def call(self, method, path, body=None, auth=True):
        """(status, headers, body bytes) on a connection of its own."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = {"Authorization": "Key " + KEY} if auth else {}
        if body is not None:
            body = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def submit(self, prompt):
        st, _, body = self.call("POST", "/" + EP, dict(TINY, prompt=prompt))
        self.assertEqual(st, 200, body)
        return json.loads(body)

    def done(self, sub, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st, _, body = self.call("GET", _path(sub["status_url"]))
            if json.loads(body)["status"] == "COMPLETED":
                st, _, body = self.call("GET", _path(sub["response_url"]))
                self.assertEqual(st, 200, body)
                return json.loads(body)
            time.sleep(0.02)
        self.fail("the job did not complete in %s s" % timeout)

    def stats(self):
        return json.loads(self.call("GET", "/_sandbox/stats", auth=False)[2])

    def control(self, **kw):
        return self.call("POST", "/_sandbox/control", kw, auth=False)[0]

    def timed_get(self, url):
        t0 = time.monotonic()
        st, _, data = self.call("GET", _path(url), auth=False)
        return st, data, time.monotonic() - t0


class TestPromiseTriggers(PromiseSandbox):
    def test_slowfile_slows_the_first_download_only(self):
        img = self.done(self.submit("[slowfile:1.5] slow"))["images"][0]
        st, data, first = self.timed_get(img["url"])
        self.assertEqual((st, len(data)), (200, img["file_size"]))
        self.assertGreaterEqual(first, 1.4)                   # 20 pieces, 0.075 s apart
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n")
        st, again, second = self.timed_get(img["url"])
        self.assertEqual((st, again), (200, data))
        self.assertLess(second, first)
        deadline = time.monotonic() + 5                       # counted out once the body is out
        while self.stats()["files_in_flight"] and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(self.stats()["files_in_flight"], 0)

    def test_filewait_and_the_files_high_water_mark(self):
        img = self.done(self.submit("[filewait:0.5] held"))["images"][0]
        self.call("POST", "/_sandbox/reset", auth=False)
        self.assertEqual(self.stats()["max_files_in_flight"], 0)
        got = []
        threads = [threading.Thread(target=lambda: got.append(self.timed_get(img["url"])))
                   for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertEqual(sorted(st for st, _, _ in got), [200, 200, 200])
        self.assertTrue(all(dt >= 0.45 for _, _, dt in got), got)
        s = self.stats()
        self.assertEqual((s["files_in_flight"], s["max_files_in_flight"]), (0, 3))
        self.assertEqual(s["by_route"]["files"], 3)

    def test_longurls_pads_every_url_to_n_characters(self):
        before = self.stats()["padded_requests"]
        sub = self.submit("[longurls:9000] long")
        for k in ("status_url", "response_url", "cancel_url"):
            self.assertEqual(len(sub[k]), 9000, k)
            self.assertIn("?pad=x", sub[k])
        out = self.done(sub)                                  # status + result: padded URLs
        url = out["images"][0]["url"]
        self.assertEqual(len(url), 9000)
        st, data, _ = self.timed_get(url)
        self.assertEqual((st, len(data)), (200, out["images"][0]["file_size"]))
        self.assertGreaterEqual(self.stats()["padded_requests"] - before, 3)
        plain = self.submit("plain")
        self.assertNotIn("pad=", plain["status_url"])

    def test_refuse_submits_then_accept(self):
        before = self.stats()
        self.assertEqual(self.control(refuse_submits={"count": 2}), 200)
        for _ in range(2):
            st, h, body = self.call("POST", "/" + EP, dict(TINY, prompt="refused"))
            self.assertEqual(st, 429, body)
            self.assertNotIn("x-fal-request-id", h)           # the ingress's: no job
        self.submit("taken")
        s = self.stats()
        self.assertEqual(s["refused_submits"] - before["refused_submits"], 2)
        self.assertEqual(s["submits_by_endpoint"].get(EP, 0)
                         - before["submits_by_endpoint"].get(EP, 0), 1)
        self.assertEqual(self.control(refuse_submits={"count": 1, "status": 503}), 200)
        self.assertEqual(self.call("POST", "/" + EP, dict(TINY, prompt="x"))[0], 503)
        self.assertEqual(self.control(refuse_submits={"count": -1}), 400)
        self.assertEqual(self.control(refuse_submits={"count": 1, "status": 200}), 400)

    def test_release_endless_lets_the_job_finish(self):
        sub = self.submit("[endless] until released")
        time.sleep(0.2)
        st, _, body = self.call("GET", _path(sub["status_url"]))
        self.assertEqual(json.loads(body)["status"], "IN_PROGRESS")
        self.assertEqual(self.control(release_endless=True), 200)
        out = self.done(sub, 5)
        self.assertEqual(len(out["images"]), 1)
        self.assertEqual(self.control(release_endless="yes"), 400)
        later = self.submit("[endless] a later one waits again")
        time.sleep(0.2)
        st, _, body = self.call("GET", _path(later["status_url"]))
        self.assertEqual(json.loads(body)["status"], "IN_PROGRESS")
        self.assertEqual(self.call("PUT", _path(later["cancel_url"]))[0], 202)


if __name__ == "__main__":
    unittest.main()
