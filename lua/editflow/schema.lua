-- editflow.schema: where an endpoint's input schema comes from, best first:
--   1. fetched from fal's OpenAPI document (https://fal.ai/api/openapi/queue/openapi.json
--      ?endpoint_id=ID; the document URL is EDITFLOW_SCHEMA_URL, "off" never fetches) and kept
--      in editflow.cache for a day;
--   2. an older fetched copy, when fal cannot be reached (up to 30 days);
--   3. the copy shipped in editflow.catalog, written from fal's documented fields;
--   4. none: the endpoint is sent unvalidated, with one warning per endpoint and process.
-- A fetch that failed is not tried again for an hour (in this process and, through the cache,
-- in the next ones), so an offline machine does not wait on every run. Fetching is a waiting
-- call (inside a task it yields; outside one it drives the loop). No credential is sent: the
-- documents are public.
local json = require "editflow.json"
local http = require "editflow.http"
local runtime = require "editflow.runtime"
local cache = require "editflow.cache"
local events = require "editflow.events"
local model = require "editflow.model"
local url = require "editflow.url"
local env = require("editflow.env").get

local M = {}

M.DEFAULT_URL = "https://fal.ai/api/openapi/queue/openapi.json"
M.TTL = 24 * 3600            -- a fetched schema is used this long before it is fetched again
M.STALE_TTL = 30 * 24 * 3600 -- and this long when fal cannot be reached
M.RETRY_AFTER = 3600         -- a failed fetch is not repeated sooner
M.MAX_BYTES = 4 * 1024 * 1024

local memory = {}   -- document URL .. " " .. endpoint -> { model =, source = } or { failed_at = }
local pending = {}  -- the same key -> a signal while one task finds the schema (others wait for it)
local warned = {}   -- endpoint -> true once its "sent unvalidated" warning was given

-- The OpenAPI document URL for schemas, or nil when fetching is off.
function M.url(opts)
  local u = opts and opts.schema_url
  if u == false then return nil end
  u = u or env("EDITFLOW_SCHEMA_URL") or M.DEFAULT_URL
  if u == "off" then return nil end
  return u
end

-- The shipped model of an endpoint, or nil.
function M.shipped(endpoint)
  local ok, catalog = pcall(require, "editflow.catalog")
  local entry = ok and type(catalog) == "table" and catalog[endpoint]
  if not (entry and entry.schema) then return nil end
  local text = require(entry.schema)
  local doc = json.decode(text)
  local m, why = model.compile(doc, endpoint, "shipped")
  if not m then error("editflow.catalog: the shipped schema of " .. endpoint .. " is broken: " .. tostring(why), 0) end
  return m
end

local function cache_name(endpoint)
  return "schemas/" .. cache.name_for(endpoint) .. ".json"
end

-- GET the document. -> doc, or nil, err (err.status 404: fal does not know the endpoint).
local function fetch(doc_url, endpoint, timeout)
  runtime.may_wait(4)
  local u = url.with_query(doc_url, { endpoint_id = endpoint })
  local ms = math.max(1, math.floor(math.min(timeout or 15, 15) * 1000))  -- one try, 15 s at most
  local resp, err = http.request(runtime.loop(), { url = u, method = "GET", what = "schema",
    headers = { "Accept: application/json" }, timeout = ms, connect_timeout = math.min(ms, 5000),
    max_body = M.MAX_BYTES })
  if not resp then return nil, err end
  if resp.status < 200 or resp.status > 299 then
    return nil, { status = resp.status, message = "HTTP " .. resp.status }
  end
  local doc = json.decode(resp.body)
  if type(doc) ~= "table" then return nil, { message = "the answer is not JSON" } end
  return doc
end

local function compiled(doc, endpoint, source)
  if not doc then return nil end
  return model.compile(doc, endpoint, source)
end

-- schema.model(endpoint [, opts]) -> model (model.source says where it came from: "fetched",
-- "cache", "stale cache", "shipped"; model.unchecked when there is none; model.why, when fal's
-- copy was asked for and not used, says why).
-- opts: schema_url (false: never fetch), cache_dir, timeout (seconds for the one fetch: 15 at most).
function M.model(endpoint, opts)
  opts = opts or {}
  local doc_url = M.url(opts)
  local slot = tostring(doc_url) .. " " .. endpoint .. " " .. tostring(opts.cache_dir)
  while pending[slot] do pending[slot]:wait() end  -- a thousand submits at once: one fetch
  local known = memory[slot]
  if known and known.model then return known.model end
  local done = runtime.signal()
  pending[slot] = done
  local ok, m = pcall(M._find, endpoint, opts, doc_url, slot, known)
  pending[slot] = nil
  done:fire()
  if not ok then error(m, 0) end
  return m
end

function M._find(endpoint, opts, doc_url, slot, known)
  local now = os.time()
  local name, dir = cache_name(endpoint), opts.cache_dir
  local why  -- why fal's schema could not be had, when it was asked for and not had
  local unusable  -- why the cached copy could not be used (a broken or too costly schema)
  if doc_url and not (known and now - known.failed_at < M.RETRY_AFTER) then
    local entry = cache.get(name, doc_url, M.TTL, dir)
    local m
    if entry then m, unusable = compiled(entry.value, endpoint, "cache") end
    if m then
      memory[slot] = { model = m }
      return m
    end
    local failed = cache.get(name .. ".failed", doc_url, M.RETRY_AFTER, dir)
    if not failed then
      local doc, err = fetch(doc_url, endpoint, opts.timeout)
      local broken
      m, broken = compiled(doc, endpoint, "fetched")
      if m then
        cache.put(name, doc_url, doc, dir)
        memory[slot] = { model = m }
        return m
      end
      why = doc and ("its answer has no usable input schema: " .. tostring(broken))
        or (err and err.status == 404 and "fal does not know it") or tostring(err and err.message)
      cache.put(name .. ".failed", doc_url, { why = why }, dir)
    else
      why = "an earlier try failed: " .. tostring(type(failed.value) == "table" and failed.value.why)
    end
    -- (the fresh copy that could not be used is not tried again as a stale one)
    local stale = not unusable and cache.get(name, doc_url, M.STALE_TTL, dir)
    if stale then m, unusable = compiled(stale.value, endpoint, "stale cache") end
    if m then
      events.warning(string.format("schema of %s: fal's could not be had (%s); using the copy fetched "
        .. "%d days ago", endpoint, why, (now - stale.at) // 86400))
      memory[slot] = { model = m }
      return m
    end
  end
  if unusable then
    why = "the cached copy cannot be used: " .. unusable .. (why and ("; " .. why) or "")
  end
  local m = M.shipped(endpoint)
  if m then
    if why and (unusable or not why:find("^an earlier try")) then
      events.warning(string.format("schema of %s: fal's could not be had from %s (%s); using the copy "
        .. "shipped with editflow", endpoint, doc_url, why))
      m.why = why  -- for `editflow schema`, which shows it instead of the warning
    end
    memory[slot] = { model = m }
    return m
  end
  if not warned[endpoint] then
    warned[endpoint] = true
    events.warning(string.format("no schema for %s (not shipped with editflow%s): its input is sent "
      .. "unchecked apart from its images", endpoint, why and (", and fal's could not be had: " .. why) or ""))
  end
  m = model.unchecked(endpoint)
  memory[slot] = { model = m, failed_at = now }
  return m
end

-- Forget what this process knows (tests; a long-lived host after changing EDITFLOW_SCHEMA_URL).
function M.forget()
  memory, warned = {}, {}
end

return M
