# echo_key.py: a hostile queue that echoes the credential it was sent. argv[1] "id": every
# submit is answered 200 with the credential as its request_id (body and x-fal-request-id);
# "logs": jobs get a normal id, but their status carries a log line holding the credential;
# "detail": every submit is refused 401 with a detail that quotes the credential.
# Prints its port, then serves on 127.0.0.1 until killed. Standard library only.
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODE = sys.argv[1] if len(sys.argv) > 1 else "id"
PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgAAIAAAUAAaJPXQAAAABJRU5ErkJggg=="


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def key(self):
        return self.headers.get("Authorization", "").partition(" ")[2]

    def answer(self, code, doc, rid=None):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if rid:
            self.send_header("x-fal-request-id", rid)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if MODE == "detail":
            return self.answer(401, {"detail": "Invalid key: " + self.key()})
        rid = self.key() if MODE == "id" else "job-1"
        self.answer(200, {"status": "IN_QUEUE", "request_id": rid}, rid)

    def do_GET(self):
        if self.path.split("?")[0].endswith("/status"):
            self.answer(200, {"status": "COMPLETED", "logs": [
                {"message": "loading with key " + self.key(), "level": "INFO"},
                {"message": "done", "level": "INFO"}]}, "job-1")
        else:
            self.answer(200, {"images": [{"url": PNG, "width": 1, "height": 1}]}, "job-1")


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
