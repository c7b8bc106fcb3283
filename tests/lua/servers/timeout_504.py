# timeout_504.py: a queue whose status (argv[1] = "status") or result (argv[1] = "result") call
# answers 504 with X-Fal-Request-Timeout-Type: user, fal's own timeout of the request (SPEC §4:
# final, never retried). The result's 504 carries no x-fal-request-id and no error type, so only
# that header makes it final. Prints its port, then serves on 127.0.0.1 until killed; GET
# /_calls gives the calls per route. Standard library only.
import json, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1] if len(sys.argv) > 1 else "status"
calls = {"submit": 0, "status": 0, "stream": 0, "result": 0, "cancel": 0}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, doc, headers=()):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def count(self, route):
        with lock:
            calls[route] += 1

    def timed_out(self, headers=()):
        self.answer(504, {"detail": "Request timed out before it started"},
                    (("X-Fal-Request-Timeout-Type", "user"),) + tuple(headers))

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.count("submit")
        self.answer(200, {"status": "IN_QUEUE", "request_id": "t-1", "queue_position": 0},
                    (("x-fal-request-id", "t-1"),))

    def do_PUT(self):
        self.count("cancel")
        self.answer(202, {"status": "CANCELLATION_REQUESTED"}, (("x-fal-request-id", "t-1"),))

    def do_GET(self):
        if self.path.startswith("/_calls"):
            return self.answer(200, calls)
        if "/status/stream" in self.path:
            self.count("stream")
            return self.answer(404, {"detail": "no stream here"})
        if "/status" in self.path:
            self.count("status")
            if MODE == "status":
                return self.timed_out((("x-fal-request-id", "t-1"),))
            return self.answer(200, {"status": "COMPLETED"}, (("x-fal-request-id", "t-1"),))
        self.count("result")
        self.timed_out()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
