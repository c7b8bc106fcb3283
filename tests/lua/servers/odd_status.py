# odd_status.py: a look-alike queue whose final status is not fal's COMPLETED (a proxy's
# "SUCCEEDED", or COMPLETED with an empty "error") while the result call answers 200 with the
# output. SPEC §1: the result call decides, so this is a success. Prints its port, then serves
# on 127.0.0.1 until killed. Standard library only.
import base64, json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PNG = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")).decode()
FINAL = sys.argv[1] if len(sys.argv) > 1 else "SUCCEEDED"
submits = 0


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global submits
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        submits += 1
        self.answer(200, {"status": "IN_QUEUE", "request_id": "odd-%d" % submits})

    def do_GET(self):
        if self.path.startswith("/_submits"):
            return self.answer(200, {"submits": submits})
        if "/stream" in self.path:
            return self.answer(404, {"detail": "no stream here"})
        if "/status" in self.path:
            st = {"status": FINAL} if FINAL != "EMPTY_ERROR" else {"status": "COMPLETED", "error": ""}
            return self.answer(200, st)
        self.answer(200, {"images": [{"url": "data:image/png;base64," + PNG}], "seed": 1})


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
