-- editflow.webhook: whether a webhook request really comes from fal (SPEC §7). Owns the rule:
-- the signed message is request_id \n user_id \n timestamp \n hex(sha256(raw body)), an
-- Ed25519 signature (hex) by any OKP/Ed25519 key of fal's JWKS, and a timestamp within
-- ±300 s. The crypto is editflow.core's (libcrypto); what it means is decided here.
-- Keys: opts.jwks (a table) as given; else fetched with editflow's own HTTP (a waiting call:
-- inside a task it yields) and cached for at most 24 h, in memory and in
-- $XDG_CACHE_HOME/editflow/jwks.json. Signatures that no cached key verifies refetch the keys
-- (fal may have rotated them) at most once a minute; if that fetch fails, the cache stands.
-- The memory cache is the only module-level state: public keys by URL and cache file, so
-- sharing them between clients changes nothing a client does.
local core = require "editflow.core"
local json = require "editflow.json"
local errors = require "editflow.errors"
local http = require "editflow.http"
local runtime = require "editflow.runtime"
local cache = require "editflow.cache"
local env = require("editflow.env").get

local M = {}

M.DEFAULT_JWKS_URL = "https://rest.fal.ai/.well-known/jwks.json"
-- Where fal's signing keys are, in the order tried (SPEC §8): some verifiers read rest.fal.ai,
-- fal's docs and most verifiers rest.alpha.fal.ai. Whichever answers is cached.
M.JWKS_URLS = { M.DEFAULT_JWKS_URL, "https://rest.alpha.fal.ai/.well-known/jwks.json" }
M.TOLERANCE = 300          -- seconds a timestamp may be off, either way
M.CACHE_TTL = 24 * 3600    -- seconds a fetched JWKS is used
M.REFETCH_AFTER = 60       -- seconds before keys that failed a signature are fetched again
M.MAX_JWKS_BYTES = 256 * 1024

local memory = {}  -- url .. "\n" .. cache file -> { jwks = table, fetched_at = seconds }

local function fail(code, message, fields)
  return nil, errors.new(code, "webhook: " .. message, fields)
end

-- The headers by lower-case name. A name given twice (a table of values, as OpenResty gives
-- a repeated header) is refused: the signature covers one value.
local function header(headers, name)
  local want, found = name:lower(), nil
  for k, v in pairs(headers) do
    if type(k) == "string" and k:lower() == want then
      if found ~= nil or type(v) ~= "string" then return nil, name .. " is given more than once" end
      found = v
    end
  end
  if not found or found == "" then return nil, "missing header " .. name end
  return found
end

local function unhex(s)
  if #s % 2 ~= 0 or s:find("[^%x]") then return nil end
  return (s:gsub("%x%x", function(h) return string.char(tonumber(h, 16)) end))
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

-- base64url (RFC 4648 §5, padding optional) -> bytes, or nil.
local function b64url(s)
  if type(s) ~= "string" or s:find("[^%w_%-=]") then return nil end
  return (core.b64decode((s:gsub("%-", "+"):gsub("_", "/"))))
end

-- The raw 32-byte Ed25519 keys of a JWKS; others (RSA, EC, other curves) are skipped.
local function ed25519_keys(jwks)
  local keys = {}
  for _, k in ipairs(type(jwks) == "table" and type(jwks.keys) == "table" and jwks.keys or {}) do
    if type(k) == "table" and k.kty == "OKP" and k.crv == "Ed25519" then
      local raw = b64url(k.x)
      if raw and #raw == 32 then keys[#keys + 1] = raw end
    end
  end
  return keys
end

-- ---- the key cache (memory, then editflow.cache's "jwks.json") ----

local function fetch(u)
  runtime.may_wait(4)
  local resp, err = http.request(runtime.loop(), { url = u, method = "GET", what = "jwks",
    headers = { "Accept: application/json" }, timeout = 10000, connect_timeout = 5000,
    max_body = M.MAX_JWKS_BYTES })
  if not resp then return nil, err end
  if resp.status < 200 or resp.status > 299 then return nil, errors.from_http(resp, "jwks") end
  local doc = json.decode(resp.body)
  if type(doc) ~= "table" or type(doc.keys) ~= "table" then
    return nil, errors.new("BAD_RESPONSE", "jwks: " .. u .. " did not answer a JWKS")
  end
  return { jwks = doc, fetched_at = os.time() }
end

-- The JWKS to verify with: -> entry ({ jwks, fetched_at }), or nil, err (NO_KEY).
-- `refresh`: the cached keys did not verify; fetch again unless they are very new.
-- The key set URLs to try: opts.jwks_url (a URL or a list), $EDITFLOW_JWKS_URL, else fal's two.
local function urls_of(opts)
  local given = opts.jwks_url or env("EDITFLOW_JWKS_URL")
  if type(given) == "table" then return given end
  return given and { given } or M.JWKS_URLS
end

local function keys_for(opts, refresh)
  local urls = urls_of(opts)
  local dir = cache.dir(opts.cache_dir)
  local slot = table.concat(urls, " ") .. "\n" .. tostring(dir)
  local now = os.time()
  local entry = memory[slot]
  if not (entry and now - entry.fetched_at < M.CACHE_TTL) then
    entry = nil
    for _, u in ipairs(urls) do  -- too old or from the future: nil
      local disk = cache.get("jwks.json", u, M.CACHE_TTL, dir)
      if disk and type(disk.value) == "table" then entry = { jwks = disk.value, fetched_at = disk.at } break end
    end
    memory[slot] = entry
  end
  if entry and not (refresh and now - (entry.tried_at or entry.fetched_at) >= M.REFETCH_AFTER) then
    return entry
  end
  local whys, last = {}, nil
  for _, u in ipairs(urls) do
    local got, err = fetch(u)
    last = err
    if got then
      memory[slot] = got
      cache.put("jwks.json", u, got.jwks, dir, got.fetched_at)
      return got
    end
    whys[#whys + 1] = u .. ": " .. tostring(err.message)
  end
  if entry then  -- still within its 24 h: it stands (and is not refetched for a minute)
    entry.tried_at = now
    return entry
  end
  return fail("NO_KEY", "cannot fetch the signing keys (" .. table.concat(whys, "; ") .. ")",
    { cause = last })
end

-- ---- verification ----

local function any_verifies(keys, message, sig)
  for _, k in ipairs(keys) do
    if core.ed25519_verify(k, message, sig) then return true end
  end
  return false
end

-- webhook.verify(headers, body [, opts]) -> true, or nil, err with err.code one of
-- BAD_HEADERS (a header missing, repeated or malformed), STALE (timestamp off by more than
-- 300 s), BAD_SIGNATURE (not hex, or no key verifies it), NO_KEY (no Ed25519 key to check
-- with: none in the JWKS, or it could not be fetched; err.cause says why).
-- opts: jwks (a JWKS table), jwks_url, cache_dir, now (seconds, for the timestamp window).
-- Raises on misuse (headers not a table, body not a string).
function M.verify(headers, body, opts)
  if type(headers) ~= "table" then error("webhook.verify: headers must be a table", 2) end
  if type(body) ~= "string" then error("webhook.verify: body must be the raw body, a string", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("webhook.verify: opts must be a table", 2) end
  local v, herr = {}, nil
  for _, name in ipairs { "X-Fal-Webhook-Request-Id", "X-Fal-Webhook-User-Id",
      "X-Fal-Webhook-Timestamp", "X-Fal-Webhook-Signature" } do
    v[#v + 1], herr = header(headers, name)
    if herr then return fail("BAD_HEADERS", herr) end
  end
  local request_id, user_id, stamp, sig_hex = v[1], v[2], v[3], v[4]
  if request_id:find("\n") or user_id:find("\n") then
    return fail("BAD_HEADERS", "a request or user id must be one line")
  end
  local ts = stamp:match("^%d+$") and math.tointeger(tonumber(stamp))
  if not ts then return fail("BAD_HEADERS", "X-Fal-Webhook-Timestamp must be seconds since 1970") end
  local now = opts.now or os.time()
  if math.abs(now - ts) > M.TOLERANCE then
    return fail("STALE", string.format("timestamp %d is %d s away from now (at most %d)", ts,
      math.floor(math.abs(now - ts)), M.TOLERANCE), { request_id = request_id })
  end
  local sig = unhex(sig_hex)
  if not sig then return fail("BAD_SIGNATURE", "X-Fal-Webhook-Signature is not hex") end
  local message = request_id .. "\n" .. user_id .. "\n" .. stamp .. "\n" .. hex(core.sha256(body))

  local keys
  if opts.jwks then
    keys = ed25519_keys(opts.jwks)
  else
    local entry, kerr = keys_for(opts, false)
    if not entry then return nil, kerr end
    keys = ed25519_keys(entry.jwks)
    if not any_verifies(keys, message, sig) then
      entry, kerr = keys_for(opts, true)  -- fal may have rotated its keys
      if not entry then return nil, kerr end
      keys = ed25519_keys(entry.jwks)
    end
  end
  if #keys == 0 then return fail("NO_KEY", "the JWKS has no Ed25519 key") end
  if not any_verifies(keys, message, sig) then
    return fail("BAD_SIGNATURE", "the signature does not verify with any of fal's keys",
      { request_id = request_id })
  end
  return true
end

return M
