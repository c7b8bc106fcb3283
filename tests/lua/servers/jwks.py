# jwks.py: serves a JWKS file (argv[1]) at /jwks.json, read anew on every request, and how
# many times it was asked at /count. Prints its port, then serves on 127.0.0.1 until killed.
# Standard library only.
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATH = sys.argv[1]
count = 0


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        global count
        if self.path == "/count":
            body = str(count).encode()
        else:
            count += 1
            with open(PATH, "rb") as f:
                body = f.read()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
