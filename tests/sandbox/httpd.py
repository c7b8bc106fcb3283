# httpd.py - a small asyncio HTTP/1.1 server (and a tiny loopback POST client) for the sandbox.
# Owns the wire: request parsing (keep-alive, pipelining, Content-Length and chunked bodies,
# Expect: 100-continue), response framing, server-sent-event streams sent with chunked
# encoding (the connection stays reusable; a client EOF mid-stream ends the stream) or under a
# declared Content-Length (slow or cut-off downloads), the number of requests each connection
# already served (faults aimed at reused keep-alive connections), and the open-connection counters. It knows nothing about fal: a handler maps Request -> Response|Stream.

import asyncio
import json
import sys
import traceback
from http import HTTPStatus
from urllib.parse import parse_qs, unquote, urlsplit

MAX_HEADER = 64 * 1024
MAX_BODY = 256 * 1024 * 1024
IDLE_TIMEOUT = 120.0

_REASONS = {s.value: s.phrase for s in HTTPStatus}
_REASONS[499] = "Client Closed Request"


class HTTPError(Exception):
    def __init__(self, status, detail):
        super().__init__(detail)
        self.status, self.detail = status, detail


class Request:
    __slots__ = ("method", "target", "path", "query_string", "version", "headers", "body",
                 "keep_alive", "_query", "inject_job_error", "served", "repeated")

    def __init__(self, method, target, version, headers):
        self.method, self.target, self.version, self.headers = method, target, version, headers
        self.inject_job_error = False
        self.repeated = set()    # header names sent more than once (a signed URL refuses some)
        self.served = 0          # requests this connection answered before this one
        if target.startswith("http://") or target.startswith("https://"):
            parts = urlsplit(target)
            raw_path, self.query_string = parts.path or "/", parts.query
        else:
            raw_path, _, self.query_string = target.partition("?")
        self.path = unquote(raw_path)
        self.body = b""
        conn = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            self.keep_alive = "close" not in conn
        else:
            self.keep_alive = "keep-alive" in conn
        self._query = None

    @property
    def query(self):
        """dict name -> last value."""
        if self._query is None:
            self._query = {k: v[-1] for k, v in
                           parse_qs(self.query_string, keep_blank_values=True).items()}
        return self._query


class Response:
    __slots__ = ("status", "headers", "body", "close")

    def __init__(self, status, body=b"", headers=None, content_type=None):
        self.status, self.body = status, body
        self.headers = list(headers or ())
        if content_type:
            self.headers.append(("Content-Type", content_type))
        self.close = False

    @classmethod
    def json(cls, status, obj, headers=None):
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(status, body, headers, "application/json")


class Stream:
    """A streamed answer: producer(send) is awaited; send(bytes) writes one chunk.
    With length set the body goes out raw under that Content-Length instead of chunked; a
    producer that returns before sending length bytes leaves the connection closed, which is
    how a download cut off mid-body looks to the client."""
    __slots__ = ("status", "headers", "producer", "length")

    def __init__(self, status, headers, producer, length=None):
        self.status, self.headers, self.producer = status, list(headers), producer
        self.length = length


class _Conn:
    __slots__ = ("reader", "writer", "buf")

    def __init__(self, reader, writer):
        self.reader, self.writer, self.buf = reader, writer, bytearray()

    async def fill(self):
        data = await self.reader.read(65536)
        if not data:
            raise EOFError
        self.buf += data

    async def read_exact(self, n):
        while len(self.buf) < n:
            await self.fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def read_line(self, limit=8192):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > limit:
                raise HTTPError(400, "line too long")
            await self.fill()


def _head(status, headers, version="HTTP/1.1"):
    lines = ["%s %d %s" % (version, status, _REASONS.get(status, "Unknown"))]
    lines += ["%s: %s" % kv for kv in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Server:
    def __init__(self, handler):
        self.handler = handler
        self.connections = 0
        self.max_connections = 0
        self._server = None
        self._tasks = set()

    async def start(self, host, port):
        self._server = await asyncio.start_server(self._serve, host, port, backlog=1024,
                                                  limit=MAX_HEADER)
        sock = self._server.sockets[0]
        return sock.getsockname()[:2]

    async def close(self):
        if self._server:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset_counters(self):
        self.max_connections = self.connections

    # ------------------------------------------------------------ per connection

    async def _serve(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        self.connections += 1
        if self.connections > self.max_connections:
            self.max_connections = self.connections
        conn = _Conn(reader, writer)
        served = 0
        try:
            while True:
                try:
                    req = await self._read_request(conn)
                except HTTPError as e:
                    body = json.dumps({"detail": e.detail}).encode()
                    writer.write(_head(e.status, [("Content-Type", "application/json"),
                                                  ("Content-Length", str(len(body))),
                                                  ("Connection", "close")]) + body)
                    await writer.drain()
                    break
                if req is None:
                    break
                req.served = served
                served += 1
                try:
                    resp = await self.handler(req)
                except Exception:
                    traceback.print_exc(file=sys.stderr)
                    resp = Response.json(500, {"detail": "Internal sandbox error"})
                if isinstance(resp, Stream):
                    if not await self._send_stream(conn, req, resp):
                        break
                    continue
                if resp.status == 0:  # an injected fault: hang up without answering
                    break
                keep = req.keep_alive and not resp.close
                hdrs = resp.headers + [("Content-Length", str(len(resp.body))),
                                       ("Connection", "keep-alive" if keep else "close")]
                head = _head(resp.status, hdrs, "HTTP/1.1")
                writer.write(head if req.method == "HEAD" else head + resp.body)
                await writer.drain()
                if not keep:
                    break
        except (EOFError, ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self.connections -= 1
            self._tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _read_request(self, conn):
        """Next request on conn, or None at a clean end of the connection."""
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                while True:
                    end = conn.buf.find(b"\r\n\r\n")
                    if end >= 0:
                        break
                    if len(conn.buf) > MAX_HEADER:
                        raise HTTPError(431, "Request header fields too large")
                    try:
                        await conn.fill()
                    except EOFError:
                        return None
        except TimeoutError:
            return None
        block = bytes(conn.buf[:end]).decode("latin-1")
        del conn.buf[:end + 4]
        lines = block.split("\r\n")
        while lines and not lines[0]:          # tolerate stray CRLF between requests
            lines.pop(0)
        parts = lines[0].split(" ") if lines else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HTTPError(400, "Malformed request line")
        headers, repeated = {}, set()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HTTPError(400, "Malformed header line")
            name = name.strip().lower()
            value = value.strip()
            if name in headers:
                repeated.add(name)
            headers[name] = headers[name] + ", " + value if name in headers else value
        req = Request(parts[0].upper(), parts[1], parts[2], headers)
        req.repeated = repeated
        te = headers.get("transfer-encoding", "").lower()
        clen = headers.get("content-length")
        chunked = "chunked" in te
        if not chunked and clen is not None:
            try:
                n = int(clen)
            except ValueError:
                raise HTTPError(400, "Bad Content-Length")
            if n < 0:
                raise HTTPError(400, "Bad Content-Length")
            if n > MAX_BODY:
                raise HTTPError(413, "Request body too large")
        else:
            n = 0
        if (chunked or n) and "100-continue" in headers.get("expect", "").lower() \
                and req.version == "HTTP/1.1" and len(conn.buf) < max(n, 1):
            conn.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            async with asyncio.timeout(IDLE_TIMEOUT):
                if chunked:
                    req.body = await self._read_chunked(conn)
                elif n:
                    req.body = await conn.read_exact(n)
        except TimeoutError:
            raise HTTPError(408, "Request body timeout")
        return req

    async def _read_chunked(self, conn):
        body = bytearray()
        while True:
            line = await conn.read_line()
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HTTPError(400, "Bad chunk size")
            if size == 0:
                while await conn.read_line():       # trailers, up to the blank line
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise HTTPError(413, "Request body too large")
            body += await conn.read_exact(size)
            if await conn.read_exact(2) != b"\r\n":
                raise HTTPError(400, "Bad chunk terminator")

    async def _send_stream(self, conn, req, stream):
        """Send a Stream. Returns True if the connection can carry another request."""
        writer = conn.writer
        sized = stream.length is not None
        chunked = req.version == "HTTP/1.1" and not sized
        keep = (chunked or sized) and req.keep_alive   # an unframed body ends at close
        hdrs = stream.headers + ([("Transfer-Encoding", "chunked")] if chunked else [])
        if sized:
            hdrs.append(("Content-Length", str(stream.length)))
        hdrs.append(("Connection", "keep-alive" if keep else "close"))
        writer.write(_head(stream.status, hdrs))
        if req.method == "HEAD":
            writer.write(b"0\r\n\r\n" if chunked else b"")
            await writer.drain()
            return keep

        sent = [0]

        async def send(data):
            if writer.is_closing():
                raise ConnectionResetError
            writer.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            sent[0] += len(data)
            await writer.drain()

        producer = asyncio.ensure_future(stream.producer(send))
        watcher = asyncio.ensure_future(conn.fill())     # notices the client hanging up
        try:
            await asyncio.wait({producer, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not producer.done() and watcher.exception() is not None:
                return False                              # EOF or reset: the client is gone
            await asyncio.wait({producer})                # (client pipelined: carry on)
        finally:
            for t in (producer, watcher):
                t.cancel()
            await asyncio.gather(producer, watcher, return_exceptions=True)
        exc = producer.exception()
        if exc is not None:
            if not isinstance(exc, (ConnectionError, EOFError)):
                traceback.print_exception(exc, file=sys.stderr)
            return False
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        if sized and sent[0] < stream.length:
            return False                                  # short body: only a close ends it
        return keep


async def post_json(host, port, path, obj, timeout=5.0):
    """POST obj as JSON to http://host:port/path; returns the status code (raises on error)."""
    body = json.dumps(obj, separators=(",", ":")).encode()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(("POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                          "Content-Length: %d\r\nConnection: close\r\n\r\n"
                          % (path, host, port, len(body))).encode("latin-1") + body)
            await writer.drain()
            line = await reader.readline()
            return int(line.split()[1])
        finally:
            writer.close()
