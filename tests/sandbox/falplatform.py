# falplatform.py - fal's platform around the queue, for the sandbox (SPEC §5, §7): the OpenAPI
# schema route, the pricing API, and storage (initiate, signed PUT, multipart as @fal-ai/client
# does it, the CDN that serves what was uploaded). Owns the shipped catalog as the sandbox reads
# it (lua/editflow/catalog: the index parsed for ids, prices and output facts, each module's JSON
# between [==[ and ]==]), the run-time overrides set through /_sandbox/control (schema, price,
# pricing_page_size, fail_next), per-endpoint validation of submits against a document, and the
# platform counters. A credential sent to a signed upload URL is refused and counted: that is how
# tests prove a client keeps its key to the origin it belongs to.

import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from urllib.parse import parse_qs, quote

from httpd import Response
from images import FAL_SIZES
from falschema import validate_doc
import judge

HERE = os.path.dirname(os.path.abspath(__file__))
CATALOG_DIR = os.path.normpath(os.path.join(HERE, "..", "..", "lua", "editflow", "catalog"))
ROUTES = ("schema", "pricing", "storage", "media", "listing")
FAIL_ROUTES = ("initiate", "upload", "complete", "pricing", "schema", "listing", "cancel")
# What a signed upload URL takes besides the bytes: the headers of HTTP itself and of fal's
# clients' fetch (accept */*); anything else of a client's (its JSON Accept, a user's header,
# fal's own headers) is counted in upload_extra_headers.
SIGNED_OK = {"host", "content-type", "content-length", "transfer-encoding", "expect", "user-agent",
             "connection", "accept-encoding", "te"}
CONTROL_KEYS = ("schema", "price", "pricing_page_size", "fail_next")
SEED_MODEL = "fal-ai/qwen-image-edit-plus"   # validate.py keeps judging it (existing behaviour)
MAX_IDS = 50                                  # fal: "Accepts 1-50 endpoint IDs"

# A sandbox-only endpoint with a field no qwen model has: a client that fetched this document
# refuses a body without "strength" before sending it; one that did not, learns it from the 422.
STRICT_ID = "sandbox/strict-edit"
STRICT_DOC = {
    "openapi": "3.0.4",
    "info": {"title": "Queue OpenAPI for " + STRICT_ID, "version": "1.0.0",
             "x-fal-metadata": {"endpointId": STRICT_ID, "category": "image-to-image"}},
    "components": {"schemas": {"SandboxStrictEditInput": {
        "title": "SandboxStrictEditInput", "type": "object",
        "x-fal-order-properties": ["prompt", "image_urls", "strength", "num_images"],
        "properties": {
            "prompt": {"title": "Prompt", "type": "string", "minLength": 1},
            "image_urls": {"title": "Image Urls", "type": "array", "items": {"type": "string"},
                           "minItems": 1, "maxItems": 2},
            "strength": {"title": "Strength", "type": "number", "minimum": 0, "maximum": 1,
                         "description": "How far the edit may move from the input."},
            "num_images": {"title": "Num Images", "type": "integer", "minimum": 1, "maximum": 2,
                           "default": 1}},
        "required": ["prompt", "image_urls", "strength"],
        "additionalProperties": False}}},
    "paths": {"/" + STRICT_ID: {"post": {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/SandboxStrictEditInput"}}}}}}},
}

_ENTRY = re.compile(r'\["([^"]+)"\]\s*=\s*\{(.*?)\n  \},', re.S)
_STR = r'%s\s*=\s*"([^"]*)"'


def load_catalog(directory=CATALOG_DIR):
    """{endpoint: {"doc", "price", "output"}} from the shipped Lua catalog ({} if absent)."""
    try:
        with open(os.path.join(directory, "init.lua"), encoding="utf-8") as f:
            index = f.read()
    except OSError:
        return {}
    out = {}
    for endpoint, body in _ENTRY.findall(index):
        m = re.search(_STR % "schema", body)
        if not m:
            continue
        module = m.group(1).rsplit(".", 1)[-1]
        with open(os.path.join(directory, module + ".lua"), encoding="utf-8") as f:
            text = f.read()
        doc = json.loads(text[text.index("[==[") + 4:text.index("]==]")])
        price = None
        p = re.search(r'price\s*=\s*\{\s*unit_price\s*=\s*([0-9.]+)\s*,\s*unit\s*=\s*"([^"]+)"\s*,'
                      r'\s*currency\s*=\s*"([^"]+)"', body)
        if p:
            price = {"unit_price": float(p.group(1)), "unit": p.group(2), "currency": p.group(3)}
        o = re.search(r"output\s*=\s*\{([^}]*)\}", body)
        output = dict(re.findall(r'(\w+)\s*=\s*"([^"]*)"', o.group(1))) if o else {}
        out[endpoint] = {"doc": doc, "price": price, "output": output}
    return out


def _query_lists(req):
    return parse_qs(req.query_string, keep_blank_values=True)


def _missing(where, name):
    return Response.json(422, {"detail": [{"loc": [where, name], "msg": "Field required",
                                           "type": "missing"}]})


def _iso(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _iso_time(text):
    """An ISO 8601 time (Z or an offset; naive is UTC) as Unix seconds."""
    d = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if d.tzinfo is None:
        d = d.replace(tzinfo=datetime.timezone.utc)
    return d.timestamp()


def _error(status, detail):
    return Response.json(status, {"detail": detail})


class Upload:
    __slots__ = ("token", "sig", "content_type", "file_name", "multipart", "parts", "done")

    def __init__(self, content_type, file_name, multipart):
        self.token = secrets.token_hex(12)
        self.sig = secrets.token_hex(16)
        self.content_type, self.file_name, self.multipart = content_type, file_name, multipart
        self.parts = {}          # part number -> (etag, bytes)
        self.done = False


class Platform:
    def __init__(self, own_origin, key, bearer, catalog_dir=CATALOG_DIR):
        self.origin, self.key, self.bearer = own_origin, key, bearer
        self.catalog = load_catalog(catalog_dir)
        self.uploads = {}        # token -> Upload (kept across /_sandbox/reset, like /files)
        self.media = {}          # token -> (content_type, bytes)
        self.reset()

    def reset(self):
        self.docs = {}           # run-time documents: endpoint -> doc, or None = removed
        self.prices = {}         # run-time prices: endpoint -> price, or None = removed
        self.page_size = None
        self.fail_next = {}      # route -> [status, count]
        self.counters = dict.fromkeys(("schema_calls", "pricing_calls", "upload_initiates",
                                       "uploads", "upload_bytes", "multipart_parts",
                                       "upload_credential_leaks", "upload_extra_headers",
                                       "upload_signature_mismatches", "listing_calls"), 0)
        self.extra_header_names = set()
        self.lifecycles = []     # X-Fal-Object-Lifecycle values initiates carried

    def stats(self):
        out = dict(self.counters)
        out["upload_lifecycles"] = list(self.lifecycles)
        out["upload_extra_header_names"] = sorted(self.extra_header_names)
        return out

    # ------------------------------------------------------------ documents and prices

    def doc(self, endpoint):
        if endpoint in self.docs:
            return self.docs[endpoint]
        if endpoint == STRICT_ID:
            return STRICT_DOC
        entry = self.catalog.get(endpoint)
        return entry["doc"] if entry else None

    def price(self, endpoint):
        if endpoint in self.prices:
            return self.prices[endpoint]
        entry = self.catalog.get(endpoint)
        # the judge's sandbox price where editflow ships none (judge.py)
        return (entry["price"] if entry else None) or judge.SANDBOX_PRICES.get(endpoint)

    def validate_submit(self, endpoint, body):
        """(errors, spec) when endpoint's submits are judged by a document, else None (validate.py
        judges: the seed's model with its shipped document, and endpoints without one)."""
        if endpoint not in self.docs and endpoint == SEED_MODEL:
            return None
        doc = self.doc(endpoint)
        if doc is None:
            return None
        errs = validate_doc(doc, body)
        if errs:
            return errs, None
        return [], self._spec(endpoint, body)

    def _spec(self, endpoint, body):
        """What the fake runner needs (prompt, size, count, format, seed, sync) from a body that
        passed its document; sizes the sandbox cannot name fall back to the catalog's default."""
        out = (self.catalog.get(endpoint) or {}).get("output", {})
        size = body.get(out.get("size_field", "image_size"))
        dims = None
        if isinstance(size, str) and size in FAL_SIZES:
            dims = FAL_SIZES[size]
        elif isinstance(size, str) and re.fullmatch(r"\d+x\d+", size):
            dims = tuple(int(v) for v in size.split("x"))
        elif isinstance(size, dict) and all(isinstance(size.get(k), (int, float)) for k in ("width", "height")):
            dims = (int(size["width"]), int(size["height"]))
        if dims is None:
            default = out.get("default_size", "")
            dims = FAL_SIZES.get(default) or (
                tuple(int(v) for v in default.split("x")) if re.fullmatch(r"\d+x\d+", default)
                else (1024, 1024))
        w, h = (min(max(int(v), 16), 4096) for v in dims)
        n = body.get(out.get("count_field", "num_images"), 1)
        n = int(n) if isinstance(n, (int, float)) and not isinstance(n, bool) else 1
        fmt = body.get("output_format")
        seed = body.get("seed")
        return {"prompt": body["prompt"] if isinstance(body.get("prompt"), str) else "",
                "width": w, "height": h, "num_images": min(max(n, 1), 16),
                "seed": int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None,
                "output_format": fmt if fmt in ("png", "jpeg") else "png",
                "sync_mode": body.get("sync_mode") is True}

    # ------------------------------------------------------------ routing

    @staticmethod
    def route_name(req, path):
        if path == "/api/openapi/queue/openapi.json":
            return "schema"
        if path == "/v1/models/pricing":
            return "pricing"
        if path.startswith("/storage/upload/"):
            return "storage"
        if path.startswith("/media/"):
            return "media"
        if path == "/v1/models/requests/by-endpoint":
            return "listing"
        return None

    def handle(self, route, req, path):
        return getattr(self, "_" + route)(req, path)

    def _injected(self, name):
        """fail_next: the next N calls of route name answer the given status."""
        spec = self.fail_next.get(name)
        if not spec:
            return None
        spec[1] -= 1
        if spec[1] <= 0:
            del self.fail_next[name]
        return Response.json(spec[0], {"detail": "Injected failure (%s)" % name})

    def _key_ok(self, req):
        scheme, _, value = req.headers.get("authorization", "").strip().partition(" ")
        return scheme.lower() == "key" and hmac.compare_digest(value.strip().encode(), self.key.encode())

    def _unauthorized(self, req):
        scheme = req.headers.get("authorization", "").strip().partition(" ")[0].lower()
        detail = ("This route takes a fal key (Authorization: Key ...), not a Bearer token"
                  if scheme == "bearer" else "Invalid or missing credentials")
        return Response.json(401, {"detail": detail}, [("WWW-Authenticate", "Key")])

    # ------------------------------------------------------------ schema

    def _schema(self, req, path):
        self.counters["schema_calls"] += 1
        if req.method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed")
        bad = self._injected("schema")
        if bad:
            return bad
        ids = _query_lists(req).get("endpoint_id")
        if not ids or not ids[-1]:
            return _missing("query", "endpoint_id")
        doc = self.doc(ids[-1])
        if doc is None:
            return _error(404, "Endpoint not found: %s" % ids[-1])
        return Response.json(200, doc)

    # ------------------------------------------------------------ pricing

    def _pricing(self, req, path):
        self.counters["pricing_calls"] += 1
        if req.method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed")
        bad = self._injected("pricing")
        if bad:
            return bad
        if not self._key_ok(req):
            return self._unauthorized(req)
        q = _query_lists(req)
        ids = []
        for v in q.get("endpoint_id", ()):   # comma-separated and/or repeated, as fal documents
            for e in v.split(","):
                e = e.strip()
                if e and e not in ids:
                    ids.append(e)
        if not ids:
            return _missing("query", "endpoint_id")
        if len(ids) > MAX_IDS:
            return Response.json(422, {"detail": [{"loc": ["query", "endpoint_id"],
                                                   "msg": "At most %d endpoint IDs" % MAX_IDS,
                                                   "type": "too_long"}]})
        prices = [dict(self.price(e), endpoint_id=e) for e in ids if self.price(e)]
        page = 1
        if q.get("cursor"):
            try:
                page = int(base64.b64decode(q["cursor"][-1], validate=True).decode())
                assert page >= 1
            except (ValueError, AssertionError, UnicodeDecodeError):
                return _error(400, "Invalid cursor")
        size = self.page_size or max(len(prices), 1)
        chunk = prices[(page - 1) * size:page * size]
        more = page * size < len(prices)
        nxt = base64.b64encode(str(page + 1).encode()).decode() if more else None
        order = ("endpoint_id", "unit_price", "unit", "currency")
        return Response.json(200, {"prices": [{k: p[k] for k in order} for p in chunk],
                                   "next_cursor": nxt, "has_more": more})

    # ------------------------------------------------------------ requests by endpoint

    def _listing(self, req, path):
        """GET /v1/models/requests/by-endpoint (SPEC §8): the queue's ended requests of the
        given endpoints in [start, end], newest first, a page at a time; with expand=payloads
        each item holds json_input (the body as sent) and json_output (a success's result)."""
        self.counters["listing_calls"] += 1
        if req.method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed")
        bad = self._injected("listing")
        if bad:
            return bad
        if not self._key_ok(req):
            return self._unauthorized(req)
        q = _query_lists(req)
        ids = [e.strip() for v in q.get("endpoint_id", ()) for e in v.split(",") if e.strip()]
        if not ids:
            return _missing("query", "endpoint_id")
        if len(ids) > MAX_IDS:
            return _error(422, "At most %d endpoint IDs" % MAX_IDS)
        rid = (q.get("request_id") or [None])[-1]
        now = time.time()
        try:
            start = _iso_time(q["start"][-1]) if q.get("start") else now - (90 if rid else 1) * 86400
            end = _iso_time(q["end"][-1]) if q.get("end") else now
            limit = int((q.get("limit") or ["50"])[-1])
            page = int(base64.b64decode(q["cursor"][-1], validate=True).decode()) if q.get("cursor") else 0
            assert 1 <= limit <= 100 and page >= 0
        except (ValueError, AssertionError, UnicodeDecodeError):
            return _error(422, "Invalid start, end, limit or cursor")
        status = (q.get("status") or [None])[-1]
        if status not in (None, "success", "error", "user_error"):
            return _error(422, "status must be success, error or user_error")
        payloads = "payloads" in ",".join(q.get("expand", ()))
        items = []
        for j in self.queue.jobs.values():
            if j.status != "COMPLETED" or j.endpoint not in ids or (rid and j.id != rid):
                continue
            if not start <= j.created_at <= end:
                continue
            kind = ("success" if 200 <= j.result_status < 300 else
                    "user_error" if 400 <= j.result_status < 500 else "error")
            if status and kind != status:
                continue
            items.append(j)
        items.sort(key=lambda j: j.completed_at, reverse=True)
        chunk = items[page * limit:(page + 1) * limit]
        more = (page + 1) * limit < len(items)
        out = []
        for j in chunk:
            item = {"request_id": j.id, "endpoint_id": j.endpoint, "sent_at": _iso(j.created_at),
                    "started_at": _iso(j.started_at) if j.started_at else None,
                    "ended_at": _iso(j.completed_at), "status_code": j.result_status,
                    "duration": round(j.completed_at - (j.started_at or j.created_at), 3)}
            if payloads:
                item["json_input"] = j.raw
                if 200 <= j.result_status < 300:
                    item["json_output"] = json.loads(j.result_body)
            out.append(item)
        nxt = base64.b64encode(str(page + 1).encode()).decode() if more else None
        return Response.json(200, {"items": out, "next_cursor": nxt, "has_more": more})

    # ------------------------------------------------------------ storage

    def _storage(self, req, path):
        segs = path.split("/")[3:]             # after /storage/upload/
        if segs in (["initiate"], ["initiate-multipart"]):
            if req.method != "POST":
                return _error(405, "Method Not Allowed")
            return self._initiate(req, segs[0] == "initiate-multipart")
        if len(segs) >= 2 and segs[0] in ("put", "multipart"):
            up = self.uploads.get(segs[1])
            if up is None or up.multipart != (segs[0] == "multipart"):
                return _error(404, "No such upload")
            if not hmac.compare_digest(_query_lists(req).get("signature", [""])[-1], up.sig):
                return _error(403, "Signature does not match")
            if "authorization" in req.headers:   # a signed URL needs no key: a client sent it anyway
                self.counters["upload_credential_leaks"] += 1
                return _error(400, "Authorization header not accepted on a signed upload URL")
            rest = segs[2:]
            extra = [h for h in req.headers if h not in SIGNED_OK
                     and not (h == "accept" and req.headers[h] == "*/*")]
            if extra:
                self.counters["upload_extra_headers"] += 1
                self.extra_header_names.update(extra)
            bad = self._signed_type(req, up, rest)
            if bad:
                return bad
            if not up.multipart and not rest and req.method == "PUT":
                return self._put(req, up)
            if up.multipart and len(rest) == 1 and rest[0].isdigit() and req.method == "PUT":
                return self._put_part(req, up, int(rest[0]))
            if up.multipart and rest == ["complete"] and req.method == "POST":
                return self._complete(req, up)
            return _error(405, "Method Not Allowed")
        return _error(404, "Not Found")

    def _signed_type(self, req, up, rest):
        """A signed URL covers the Content-Type (SPEC §8): the single PUT must carry exactly one,
        the initiate's; a part carries none or that one; complete carries JSON. Anything else
        is 403 SignatureDoesNotMatch, as the storage behind fal answers."""
        ct = req.headers.get("content-type")
        if not up.multipart:
            want = up.content_type
        elif rest == ["complete"]:
            want = "application/json"
        else:
            want = None if ct is None else up.content_type
        if "content-type" in req.repeated or ct != want:
            self.counters["upload_signature_mismatches"] += 1
            return Response.json(403, {"detail": "SignatureDoesNotMatch: the request's Content-Type "
                                       "(%s) is not the signed one (%s)" % (ct, want)})
        return None

    def _initiate(self, req, multipart):
        self.counters["upload_initiates"] += 1
        bad = self._injected("initiate")
        if bad:
            return bad
        if not self._key_ok(req):
            return self._unauthorized(req)
        try:
            body = json.loads(req.body or b"null")
        except (ValueError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            return Response.json(422, {"detail": [{"loc": ["body"], "msg": "Input should be a valid "
                                                   "dictionary", "type": "model_attributes_type"}]})
        errs = [{"loc": ["body", k], "msg": "Field required" if k not in body else
                 "Input should be a valid string", "type": "missing" if k not in body else "string_type"}
                for k in ("content_type", "file_name") if not isinstance(body.get(k), str)]
        if errs:
            return Response.json(422, {"detail": errs})
        life = req.headers.get("x-fal-object-lifecycle")
        if life is not None:
            self.lifecycles.append(life)
        up = Upload(body["content_type"] or "application/octet-stream",
                    os.path.basename(body["file_name"]) or "file", multipart)
        self.uploads[up.token] = up
        kind = "multipart" if multipart else "put"
        return Response.json(200, {
            "upload_url": "%s/storage/upload/%s/%s?signature=%s" % (self.origin, kind, up.token, up.sig),
            "file_url": self._file_url(up)})

    def _file_url(self, up):
        return "%s/media/%s/%s" % (self.origin, up.token, quote(up.file_name))

    def _put(self, req, up):
        bad = self._injected("upload")
        if bad:
            return bad
        data = bytes(req.body)
        self.media[up.token] = (req.headers.get("content-type") or up.content_type, data)
        up.done = True
        self.counters["uploads"] += 1
        self.counters["upload_bytes"] += len(data)
        return Response(200, b"", [("ETag", '"%s"' % hashlib.md5(data).hexdigest())])

    def _put_part(self, req, up, number):
        bad = self._injected("upload")
        if bad:
            return bad
        if not 1 <= number <= 10000:
            return _error(400, "Part number must be 1..10000")
        data = bytes(req.body)
        etag = hashlib.md5(data).hexdigest()
        up.parts[number] = (etag, data)
        self.counters["multipart_parts"] += 1
        return Response.json(200, {"partNumber": number, "etag": etag}, [("ETag", '"%s"' % etag)])

    def _complete(self, req, up):
        bad = self._injected("complete")
        if bad:
            return bad
        try:
            parts = json.loads(req.body or b"null")["parts"]
            listed = [(int(p["partNumber"]), str(p["etag"])) for p in parts]
        except (ValueError, TypeError, KeyError, UnicodeDecodeError):
            return _error(400, 'Body must be {"parts":[{"partNumber","etag"},...]}')
        if not listed:
            return _error(400, "No parts listed")
        if [n for n, _ in listed] != sorted({n for n, _ in listed}):
            return _error(400, "Parts must be listed once each, in ascending partNumber order")
        for n, etag in listed:
            if n not in up.parts or up.parts[n][0] != etag.strip('"'):
                return _error(400, "Part %d: not uploaded or ETag does not match" % n)
        data = b"".join(up.parts[n][1] for n, _ in listed)
        self.media[up.token] = (up.content_type, data)
        up.done = True
        self.counters["uploads"] += 1
        self.counters["upload_bytes"] += len(data)
        return Response.json(200, {"file_url": self._file_url(up)})

    # ------------------------------------------------------------ the CDN for uploads

    def _media(self, req, path):
        if req.method not in ("GET", "HEAD"):
            return _error(405, "Method Not Allowed")
        segs = path.split("/")
        item = self.media.get(segs[2]) if len(segs) >= 3 else None
        if item is None:
            return _error(404, "File not found")
        return Response(200, item[1], [("Cache-Control", "public, max-age=3600")], item[0])

    # ------------------------------------------------------------ /_sandbox/control

    def parse_control(self, body):
        """(list of closures to apply, None) or (None, error); nothing is applied here."""
        acts = []
        if "schema" in body:
            s = body["schema"]
            if not (isinstance(s, dict) and isinstance(s.get("endpoint_id"), str) and s["endpoint_id"]
                    and "doc" in s and (s["doc"] is None or isinstance(s["doc"], dict))):
                return None, 'schema must be {"endpoint_id": "...", "doc": {...} or null}'
            acts.append(lambda s=s: self.docs.__setitem__(s["endpoint_id"], s["doc"]))
        if "price" in body:
            p = body["price"]
            if not (isinstance(p, dict) and isinstance(p.get("endpoint_id"), str) and p["endpoint_id"]):
                return None, 'price must be {"endpoint_id", "unit_price", "unit", "currency"?}'
            up = p.get("unit_price")
            if isinstance(up, str):           # fal's public fixtures show "0.003"
                try:
                    assert float(up) >= 0
                except (ValueError, AssertionError):
                    return None, "price.unit_price as a string must hold a number >= 0"
            elif up is not None and (type(up) not in (int, float) or up < 0
                                   or not isinstance(p.get("unit"), str)
                                   or not isinstance(p.get("currency", "USD"), str)):
                return None, "price.unit_price must be a number >= 0 (or null) with a unit string"
            val = None if up is None else {"unit_price": up, "unit": p["unit"],
                                           "currency": p.get("currency", "USD")}
            acts.append(lambda e=p["endpoint_id"], v=val: self.prices.__setitem__(e, v))
        if "pricing_page_size" in body:
            n = body["pricing_page_size"]
            if n is not None and (type(n) is not int or n < 1):
                return None, "pricing_page_size must be an integer >= 1 or null"
            acts.append(lambda n=n: setattr(self, "page_size", n))
        if "fail_next" in body:
            f = body["fail_next"]
            if f is None:
                acts.append(self.fail_next.clear)
            else:
                if not (isinstance(f, dict) and f.get("route") in FAIL_ROUTES):
                    return None, "fail_next.route must be one of %s" % ", ".join(FAIL_ROUTES)
                st, n = f.get("status", 500), f.get("count", 1)
                if type(st) is not int or not 400 <= st <= 599 or type(n) is not int or n < 0:
                    return None, "fail_next needs status 400..599 and count >= 0"
                acts.append(lambda r=f["route"], st=st, n=n: self.fail_next.__setitem__(r, [st, n])
                            if n else self.fail_next.pop(r, None))
        return acts, None
