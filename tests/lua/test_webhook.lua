-- test_webhook.lua: editflow.webhook.verify against signatures made here with a key the test
-- generates (the openssl command line), the JWKS fetched over loopback and cached, and
-- client:ingest_webhook recording a job's outcome so a new run reuses it without a request.
local T = require "testlib"
local core = require "editflow.core"
local json = require "editflow.json"
local editflow = require "editflow"
local webhook = require "editflow.webhook"

local work = T.tmpdir()

local function sh_ok(cmd)
  local status, _, err = T.sh(cmd)
  if status ~= 0 then error(cmd .. ": " .. tostring(err), 2) end
end

local function b64url(bytes)
  return (core.b64encode(bytes):gsub("=", ""):gsub("%+", "-"):gsub("/", "_"))
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- A key pair: -> { pem = path, jwk = { kty, crv, x } }.
local function keypair(name)
  local pem = work .. "/" .. name .. ".pem"
  sh_ok("openssl genpkey -algorithm ed25519 -out " .. T.quote(pem))
  local der = work .. "/" .. name .. ".pub.der"
  sh_ok("openssl pkey -in " .. T.quote(pem) .. " -pubout -outform DER -out " .. T.quote(der))
  local raw = T.read(der):sub(-32)
  return { pem = pem, jwk = { kty = "OKP", crv = "Ed25519", x = b64url(raw), kid = name } }
end

local function sign(key, message)
  local m, s = work .. "/msg", work .. "/sig"
  local f = assert(io.open(m, "wb"))
  f:write(message)
  f:close()
  sh_ok("openssl pkeyutl -sign -rawin -inkey " .. T.quote(key.pem) .. " -in " .. T.quote(m)
    .. " -out " .. T.quote(s))
  return T.read(s)
end

-- The headers fal would send for body, signed by key (fields overridable).
local function signed(key, body, o)
  o = o or {}
  local id, user = o.request_id or "req-123", o.user_id or "user-9"
  local ts = tostring(o.timestamp or os.time())
  local msg = id .. "\n" .. user .. "\n" .. ts .. "\n" .. hex(core.sha256(body))
  return {
    ["x-fal-webhook-request-id"] = o.sign_request_id or id,
    ["X-Fal-Webhook-User-Id"] = user,
    ["X-FAL-WEBHOOK-TIMESTAMP"] = ts,
    ["X-Fal-Webhook-Signature"] = hex(sign(key, msg)),
  }
end

local key, other = keypair("fal"), keypair("other")
local JWKS = { keys = { { kty = "RSA", n = "AQAB", e = "AQAB" }, key.jwk } }
local BODY = '{"request_id":"req-123","status":"OK","payload":{"images":[]}}'

-- code_of(want, what, call(...)): the call's nil, err last, so none of its results is cut.
local function code_of(want, what, ok, err)
  T.eq(ok, nil, what .. ": refused")
  T.ok(editflow.is_error(err), what .. ": an editflow error")
  T.eq(err.code, want, what .. " (" .. tostring(err) .. ")")
end

T.case("core.sha256 and core.ed25519_verify", function()
  T.eq(hex(core.sha256("abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "sha256")
  local pub = T.read(work .. "/fal.pub.der"):sub(-32)
  local sig = sign(key, "hello")
  T.eq(core.ed25519_verify(pub, "hello", sig), true, "verifies")
  T.eq(core.ed25519_verify(pub, "hellO", sig), false, "another message")
  T.eq(core.ed25519_verify(pub:sub(2), "hello", sig), false, "a short key")
  T.eq(core.ed25519_verify(pub, "hello", sig .. "x"), false, "a long signature")
end)

T.case("a valid signature verifies; headers in any case", function()
  T.eq(webhook.verify(signed(key, BODY), BODY, { jwks = JWKS }), true, "valid")
  T.eq(editflow.webhook.verify(signed(key, BODY), BODY, { jwks = JWKS }), true, "exported")
  local now = os.time()
  T.eq(webhook.verify(signed(key, BODY, { timestamp = now - 300 }), BODY, { jwks = JWKS, now = now }), true, "-300 s")
  T.eq(webhook.verify(signed(key, BODY, { timestamp = now + 300 }), BODY, { jwks = JWKS, now = now }), true, "+300 s")
end)

T.case("tampering, another key, stale or malformed headers are refused with their code", function()
  local h = signed(key, BODY)
  code_of("BAD_SIGNATURE", "tampered body", webhook.verify(h, BODY:gsub("OK", "ERROR"), { jwks = JWKS }))
  code_of("BAD_SIGNATURE", "wrong key", webhook.verify(signed(other, BODY), BODY, { jwks = JWKS }))
  code_of("BAD_SIGNATURE", "wrong request id",
    webhook.verify(signed(key, BODY, { sign_request_id = "req-124" }), BODY, { jwks = JWKS }))
  local now = os.time()
  code_of("STALE", "301 s old",
    webhook.verify(signed(key, BODY, { timestamp = now - 301 }), BODY, { jwks = JWKS, now = now }))
  code_of("STALE", "301 s ahead",
    webhook.verify(signed(key, BODY, { timestamp = now + 301 }), BODY, { jwks = JWKS, now = now }))
  for _, name in ipairs { "x-fal-webhook-request-id", "X-Fal-Webhook-User-Id", "X-FAL-WEBHOOK-TIMESTAMP",
      "X-Fal-Webhook-Signature" } do
    local m = signed(key, BODY)
    m[name] = nil
    code_of("BAD_HEADERS", "missing " .. name, webhook.verify(m, BODY, { jwks = JWKS }))
  end
  local bad = signed(key, BODY)
  bad["X-Fal-Webhook-Signature"] = "zz" .. bad["X-Fal-Webhook-Signature"]:sub(3)
  code_of("BAD_SIGNATURE", "non-hex signature", webhook.verify(bad, BODY, { jwks = JWKS }))
  bad["X-Fal-Webhook-Signature"] = "abc"
  code_of("BAD_SIGNATURE", "odd-length signature", webhook.verify(bad, BODY, { jwks = JWKS }))
  local ts = signed(key, BODY)
  ts["X-FAL-WEBHOOK-TIMESTAMP"] = "12.5"
  code_of("BAD_HEADERS", "timestamp not whole seconds", webhook.verify(ts, BODY, { jwks = JWKS }))
  code_of("NO_KEY", "no Ed25519 key",
    webhook.verify(h, BODY, { jwks = { keys = { { kty = "RSA", n = "x", e = "AQAB" } } } }))
  T.raises(function() webhook.verify(nil, BODY) end, "headers must be a table")
end)

-- A JWKS served on loopback: -> url, count(), stop().
local function jwks_server(path)
  local p = io.popen("echo $$; exec python3 " .. T.quote(T.source_dir .. "/tests/lua/servers/jwks.py")
    .. " " .. T.quote(path))
  local pid, port = tonumber(p:read("l")), tonumber(p:read("l"))
  local base = "http://127.0.0.1:" .. port
  local function count()
    local _, out = T.sh("python3 -c " .. T.quote("import urllib.request,sys; "
      .. "print(urllib.request.urlopen(sys.argv[1]).read().decode())") .. " " .. T.quote(base .. "/count"))
    return tonumber(out)
  end
  local function stop()
    if p then
      os.execute("kill " .. pid)
      p:close()
      p = nil
    end
  end
  return base .. "/jwks.json", count, stop
end

T.case("the JWKS is fetched once, cached on disk, and refetched when over 24 h old", function()
  local jpath = work .. "/served.json"
  local f = assert(io.open(jpath, "wb"))
  f:write(json.encode(JWKS))
  f:close()
  local u, count, stop = jwks_server(jpath)
  local ok, err = pcall(function()
    local cache = T.tmpdir()
    local opts = { jwks_url = u, cache_dir = cache }
    T.eq(webhook.verify(signed(key, BODY), BODY, opts), true, "verified with fetched keys")
    T.eq(count(), 1, "one fetch")
    local disk = json.decode(T.read(cache .. "/jwks.json"))
    T.eq(disk.url, u, "cached on disk for its URL")
    T.eq(webhook.verify(signed(key, BODY), BODY, opts), true, "verified again")
    T.eq(count(), 1, "the second verify makes no request")

    -- A new cache folder holding a copy that is a day and a second old: fetched anew.
    local old = T.tmpdir()
    disk.at = os.time() - 24 * 3600 - 1
    assert(core.write_file(old .. "/jwks.json", json.encode(disk)))
    T.eq(webhook.verify(signed(key, BODY), BODY, { jwks_url = u, cache_dir = old }), true, "verified")
    T.eq(count(), 2, "an old cache is refetched")
    T.ok(json.decode(T.read(old .. "/jwks.json")).at >= os.time() - 5, "the cache renewed")

    -- A fresh cache on disk is used without any request (a new process, as it were).
    local fresh = T.tmpdir()
    disk.at = os.time() - 3600
    assert(core.write_file(fresh .. "/jwks.json", json.encode(disk)))
    T.eq(webhook.verify(signed(key, BODY), BODY, { jwks_url = u, cache_dir = fresh }), true, "from disk")
    T.eq(count(), 2, "a fresh disk cache makes no request")
    os.execute("rm -rf " .. T.quote(cache) .. " " .. T.quote(old) .. " " .. T.quote(fresh))
  end)
  stop()
  if not ok then error(err, 0) end
end)

T.case("fal's two key set URLs: the second is asked when the first fails, and cached under its URL", function()
  T.eq(webhook.JWKS_URLS[1], "https://rest.fal.ai/.well-known/jwks.json", "rest.fal.ai first")
  T.eq(webhook.JWKS_URLS[2], "https://rest.alpha.fal.ai/.well-known/jwks.json", "fal's documented URL next")
  local jpath = work .. "/served2.json"
  assert(core.write_file(jpath, json.encode(JWKS)))
  local u, count, stop = jwks_server(jpath)
  local ok, err = pcall(function()
    local cache = T.tmpdir()
    local opts = { jwks_url = { "http://127.0.0.1:9/jwks.json", u }, cache_dir = cache }
    T.eq(webhook.verify(signed(key, BODY), BODY, opts), true, "verified with the second URL's keys")
    T.eq(count(), 1, "the second URL was asked once")
    T.eq(json.decode(T.read(cache .. "/jwks.json")).url, u, "cached under the URL that answered")
    -- a new process (no memory) reads the cache of whichever URL answered
    T.eq(webhook.verify(signed(key, BODY), BODY, { jwks_url = { "http://127.0.0.1:9/x.json", u },
      cache_dir = cache }), true, "from the cache")
    T.eq(count(), 1, "no request for a cached key set")
  end)
  stop()
  if not ok then error(err, 0) end
end)

T.case("no keys to be had: NO_KEY, naming why", function()
  local cache = T.tmpdir()
  local ok, err = webhook.verify(signed(key, BODY), BODY, { jwks_url = "http://127.0.0.1:9/jwks.json",
    cache_dir = cache })
  code_of("NO_KEY", "unreachable JWKS", ok, err)
  T.ok(err.cause and err.cause.code, "the cause is kept")
end)

local sb = T.sandbox {}

T.case("ingest_webhook records the outcome; a new run reuses the job without a request", function()
  local d = T.tmpdir()
  local input = { prompt = "webhook [slow:30]", image_urls = { "https://cdn.example/a.png" }, seed = 7 }
  local c = editflow.client { key = "test-key", base_url = sb.url, storage_url = sb.url, api_url = sb.url, journal = d }
  local job = assert(c:submit(input))
  local id = job.request_id
  local submits = sb.stats().by_route.submit
  local payload = { images = { { url = "https://cdn.example/out.png", width = 8, height = 8 } }, seed = 7 }
  local body = json.encode { request_id = id, gateway_request_id = id, status = "OK", payload = payload }
  local ok, how = c:ingest_webhook(body)
  T.eq(ok, true, "recorded")
  T.eq(how, nil, "recorded now")
  local again, how2 = c:ingest_webhook(body)
  T.eq(again, true, "a second delivery is fine")
  T.eq(how2, "already", "and says so")
  local nf, err = c:ingest_webhook(json.encode { request_id = "nope-1", status = "OK", payload = payload })
  code_of("NOT_FOUND", "unknown request id", nf, err)
  code_of("BAD_WEBHOOK", "not JSON", c:ingest_webhook("not json"))

  local c2 = editflow.client { key = "test-key", base_url = sb.url, storage_url = sb.url, api_url = sb.url, journal = d }
  local job2 = assert(c2:submit(input))
  T.ok(job2.from_journal, "reused from the journal")
  T.eq(job2.request_id, id, "the same job")
  local res = assert(job2:wait())
  T.eq(res.images[1].url, "https://cdn.example/out.png", "the webhook's payload is the result")
  T.eq(sb.stats().by_route.submit, submits, "no new submit")
  T.raises(function() editflow.client { key = "test-key", base_url = sb.url, storage_url = sb.url, api_url = sb.url }:ingest_webhook(body) end,
    "needs a client with a journal")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("an ERROR webhook records the job failed", function()
  local d = T.tmpdir()
  local c = editflow.client { key = "test-key", base_url = sb.url, storage_url = sb.url, api_url = sb.url, journal = d }
  local job = assert(c:submit { prompt = "webhook error [slow:30]",
    image_urls = { "https://cdn.example/a.png" }, seed = 8 })
  T.eq(c:ingest_webhook { request_id = job.request_id, status = "ERROR", error = "out of memory" },
    true, "recorded")
  -- the record on disk (this process keeps only a finished id's fingerprint in memory)
  local jr = require("editflow.journal").open(d, { lock = false })
  local rec = jr:get(jr:owner(require("editflow.journal").id_key(job.request_id)))
  T.eq(rec.state, "failed", "failed in the journal")
  T.eq(c:ingest_webhook { request_id = job.request_id, status = "ERROR", error = "again" }, true,
    "fal's second delivery is taken as already recorded")
  T.contains(rec.error.message, "out of memory", "fal's error kept")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
