-- editflow.price: what a job will cost, in its endpoint's own unit (SPEC §7).
-- The unit price comes, best first, from fal's pricing API (GET {EDITFLOW_API_URL}
-- /v1/models/pricing?endpoint_id=ID, Key auth: only with a fal key) kept in editflow.cache for
-- a day; an older copy when the API cannot be reached (30 days); the table shipped in
-- editflow.catalog. Units: per image (the number of output images), per megapixel (of the
-- output size the model will really produce: the size asked for, else the model's default,
-- which for some models is the first input image's size), per request; any other unit counts
-- once per job and says so.
local core = require "editflow.core"
local json = require "editflow.json"
local cache = require "editflow.cache"
local events = require "editflow.events"
local model = require "editflow.model"
local url = require "editflow.url"
local runtime = require "editflow.runtime"

local M = {}

M.TTL = 24 * 3600
M.STALE_TTL = 30 * 24 * 3600
M.RETRY_AFTER = 3600
M.MAX_PAGES = 20
M.ASSUMED_PIXELS = 1024 * 1024  -- an output size editflow cannot know (an input given by URL)

local memory = {}  -- api URL .. " " .. endpoint -> price, or { failed_at = }
local input_sizes = {}  -- local path -> { stamp, pixels }: the output size of models that follow it
local pending = {} -- the same key -> a signal while one task looks the price up

local function catalog_entry(endpoint)
  local ok, catalog = pcall(require, "editflow.catalog")
  return ok and type(catalog) == "table" and catalog[endpoint] or nil
end

local function shipped(endpoint)
  local e = catalog_entry(endpoint)
  local p = e and e.price
  if not (p and type(p.unit_price) == "number") then return nil end
  return { endpoint_id = endpoint, unit_price = p.unit_price, unit = p.unit, currency = p.currency or "USD",
    source = "shipped" }
end

-- A unit price as fal's pricing API gives it: documented as a number, shown as a string
-- ("0.003") in public fixtures; both are taken. -> number or nil.
local function number_of(v)
  if type(v) == "string" and v:match("^%s*%d+%.?%d*%s*$") then v = tonumber(v) end
  if type(v) == "number" and v >= 0 and v < math.huge then return v end
  return nil
end

local function valid(p, endpoint)
  return type(p) == "table" and p.endpoint_id == endpoint and number_of(p.unit_price) ~= nil
    and type(p.unit) == "string"
end

-- One lookup at the pricing API, following its pages. -> price or nil, err.
local function fetch(client, endpoint)
  local base = client:platform_url("api")
  local cursor
  local deadline = runtime.now() + client.lookup_timeout  -- the whole lookup, every page
  for _ = 1, M.MAX_PAGES do
    local u = url.with_query(base .. "/v1/models/pricing", { endpoint_id = endpoint, cursor = cursor })
    local resp, err = client:platform_call("pricing", "GET", u, nil, nil, false, { once = true, deadline = deadline })
    if not resp then return nil, err end
    if resp.status == 401 or resp.status == 403 then
      return nil, { refused = true, message = string.format("fal's pricing API refused this key "
        .. "(HTTP %d; it may want an admin key)", resp.status) }
    end
    if resp.status < 200 or resp.status > 299 then
      return nil, { message = "the pricing API answered HTTP " .. resp.status }
    end
    local doc = json.decode(resp.body)
    if type(doc) ~= "table" or type(doc.prices) ~= "table" then
      return nil, { message = "the pricing API's answer has no prices" }
    end
    for _, p in ipairs(doc.prices) do
      if valid(p, endpoint) then
        return { endpoint_id = endpoint, unit_price = number_of(p.unit_price), unit = p.unit,
          currency = type(p.currency) == "string" and p.currency or "USD", source = "pricing API" }
      end
    end
    if doc.has_more ~= true or type(doc.next_cursor) ~= "string" or doc.next_cursor == "" then break end
    cursor = doc.next_cursor
  end
  return nil, { message = "fal's pricing API does not list " .. endpoint, unlisted = true }
end

-- price.lookup(client, endpoint) -> price { endpoint_id, unit_price, unit, currency, source },
-- or nil, why. A waiting call when it asks the pricing API.
function M.lookup(client, endpoint)
  endpoint = endpoint or client.endpoint
  local slot = client:platform_url("api") .. " " .. endpoint .. " " .. tostring(client:platform_ok("api"))
  while pending[slot] do pending[slot]:wait() end  -- many jobs priced at once: one lookup
  local done = runtime.signal()
  pending[slot] = done
  local ok, p, why = pcall(M._lookup, client, endpoint, slot)
  pending[slot] = nil
  done:fire()
  if not ok then error(p, 0) end
  return p, why
end

function M._lookup(client, endpoint, slot)
  local can_ask = client:platform_ok("api")
  local why
  local base = client:platform_url("api")
  local known = memory[slot]
  local now = os.time()
  if known and known.unit_price then return known end
  local name = "prices/" .. cache.name_for(endpoint) .. ".json"
  if can_ask and not (known and now - known.failed_at < M.RETRY_AFTER) then
    local entry = cache.get(name, base, M.TTL)
    if entry and valid(entry.value, endpoint) then
      local p = entry.value
      p.unit_price = number_of(p.unit_price)
      p.source = "pricing API, cached"
      memory[slot] = p
      return p
    end
    local failed = cache.get(name .. ".failed", base, M.RETRY_AFTER)
    if failed then
      why = type(failed.value) == "table" and failed.value.why or nil
    else
      local p, err = fetch(client, endpoint)
      if p then
        cache.put(name, base, p)
        memory[slot] = p
        return p
      end
      why = tostring(err and err.message)
      cache.put(name .. ".failed", base, { why = why })
      if err and err.refused then  -- told once: the failure is remembered for RETRY_AFTER
        events.warning(string.format("price of %s: %s; %s; give the price with --price DOLLARS/UNIT "
          .. "(price = in Lua)", endpoint, why, shipped(endpoint) and "using the price editflow ships"
          or "editflow ships none"))
      elseif not (err and err.unlisted) then
        events.warning(string.format("price of %s: fal's pricing API cannot be reached (%s)", endpoint, why))
      end
    end
    local stale = cache.get(name, base, M.STALE_TTL)
    if stale and valid(stale.value, endpoint) then
      local p = stale.value
      p.unit_price = number_of(p.unit_price)
      local days = (now - stale.at) // 86400
      p.source = string.format("pricing API, cached %d day%s ago", days, days == 1 and "" or "s")
      memory[slot] = p
      return p
    end
    memory[slot] = { failed_at = now, why = why }
  elseif known then
    why = known.why
  end
  local p = shipped(endpoint)
  if p then return p end
  return nil, string.format("no price for %s: %s, and editflow ships none; give one (a price in "
    .. "dollars per image, megapixel or request)", endpoint, why or (can_ask and "fal's pricing API has none"
      or M.not_asked(client)))
end

-- Why fal's pricing API was not asked, true to the client's credential: "takes only a fal key"
-- was said with a key set too (a bearer credential, or a queue that is not fal's).
function M.not_asked(client)
  if not client:has_key() then return "fal's pricing API needs a fal key, and none is set (FAL_KEY)" end
  if client.auth ~= "key" then
    return "the credential is sent as a bearer token (--auth bearer, EDITFLOW_AUTH), which never goes "
      .. "to fal's pricing API (--auth key if it is a fal key)"
  end
  return "the pricing API is not fal's own here, so the key is not sent there (set EDITFLOW_API_URL "
    .. "or trust its origin)"
end

-- price.given(endpoint, price) -> a price the user gave: dollars (per the endpoint's known
-- unit), or "DOLLARS/UNIT" ("0.039/image", "0.03/megapixel", "0.1/request"). Raises when the
-- unit is neither given nor known.
function M.given(endpoint, given)
  local dollars, unit = given, nil
  if type(given) == "string" then
    local d, u = given:match("^%s*([%d.]+)%s*/%s*(%a+)%s*$")
    dollars, unit = tonumber(d or given), u
  end
  if type(dollars) ~= "number" or dollars < 0 or dollars ~= dollars or dollars == math.huge
      or (unit and not M.kind(unit)) then
    error("price must be dollars, or DOLLARS/UNIT with UNIT image, megapixel or request, got '"
      .. tostring(given) .. "'", 0)
  end
  local known = shipped(endpoint)
  unit = unit or (known and known.unit)
  if not unit then
    error(string.format("the unit of %s's price is not known: give it as DOLLARS/image, "
      .. "DOLLARS/megapixel or DOLLARS/request", endpoint), 0)
  end
  return { endpoint_id = endpoint, unit_price = dollars, unit = unit, currency = "USD", source = "given" }
end

-- The unit's kind: "image", "megapixel", "request" or nil (something else).
function M.kind(unit)
  local u = tostring(unit or ""):lower():gsub("^per%s+", ""):gsub("[%s_-]", "")
  if u == "image" or u == "images" then return "image" end
  if u == "megapixel" or u == "megapixels" or u == "mp" or u == "mps" then return "megapixel" end
  if u == "request" or u == "requests" or u == "call" or u == "calls" or u == "run" then return "request" end
  return nil
end

local function size_pixels(v)
  if type(v) == "string" then
    local s = model.SIZES[model.SIZE_ALIASES[v] or v]
    if s then return s[1] * s[2] end
    local w, h = v:match("^(%d+)x(%d+)$")
    if w then return tonumber(w) * tonumber(h) end
  elseif type(v) == "table" and math.tointeger(v.width) and math.tointeger(v.height) then
    return v.width * v.height
  end
  return nil
end

-- The pixels of the first input image, when it is a local file editflow can read; else nil.
local function input_pixels(normal, m)
  local field = m and m:image_field() or (normal.image_urls and "image_urls") or "image_url"
  local v = normal[field]
  if type(v) == "table" and not v.__editflow_file then v = v[1] end
  local path = type(v) == "table" and v.path or v
  if type(path) ~= "string" or path:find("^[%a][%w+.-]*:") then return nil end
  -- a plan prices every job: one photo under a 100-job grid is read once (while unchanged)
  local stamp = core.file_stamp(path)
  local known = stamp and input_sizes[path]
  if known and known.stamp == stamp then return known.pixels end
  local head = core.read_file(path, 512 * 1024)
  local w, h
  if head then w, h = core.image_size(head) end
  local pixels = w and w * h or nil
  if stamp then input_sizes[path] = { stamp = stamp, pixels = pixels } end
  return pixels
end

-- price.estimate(p, m, normal) -> { units, unit, cost, images, megapixels, approx }
-- for one job with the validated input `normal` of model `m` (nil for an unchecked endpoint).
function M.estimate(p, m, normal)
  local endpoint = m and m.endpoint
  local out = (catalog_entry(endpoint) or {}).output or {}
  local count_field = out.count_field or "num_images"
  local count = normal[count_field]
  if count == nil and m and m.field then
    local f = m:field(count_field)
    count = f and math.tointeger(f.default)
  end
  count = math.tointeger(count) or 1
  -- a model that may give up to max_field images per request (Seedream's max_images): the
  -- estimate is the most it can bill, so a budget holds
  local upto = out.max_field and (math.tointeger(normal[out.max_field])
    or (m and m.field and m:field(out.max_field) and math.tointeger(m:field(out.max_field).default)))
  if upto and upto > 1 then count = count * upto end
  local est = { images = count, unit = p and p.unit, approx = false, upper_bound = upto and upto > 1 or nil }
  local size_field = out.size_field or "image_size"
  local px = size_pixels(normal[size_field])
  if not px then
    local default = out.default_size
    if default == nil and m and m.field then
      local f = m:field(size_field)
      default = f and f.default
    end
    if default == "input" then
      px = input_pixels(normal, m)
    else
      px = size_pixels(default)
    end
  end
  local assumed = not px
  est.megapixels = (px or M.ASSUMED_PIXELS) * count / 1e6
  local kind = M.kind(p and p.unit)
  if kind == "image" then
    est.units = count
  elseif kind == "megapixel" then
    est.units, est.approx = est.megapixels, assumed
  else
    est.units, est.approx = 1, kind == nil  -- an unknown unit: once per job, and said so
    if kind == nil then est.cost_note = "counted once per job (unit '" .. tostring(p and p.unit) .. "')" end
  end
  est.cost = p and est.units * p.unit_price or nil
  return est
end

-- "$0.0300 per megapixel (pricing API)"
function M.describe(p)
  if not p then return "no price known" end
  local kind = M.kind(p.unit)
  local unit = kind or tostring(p.unit):gsub("^per%s+", "")
  return string.format("$%.4f per %s (%s)", p.unit_price, unit, p.source)
end

-- Forget what this process knows (tests).
function M.forget() memory = {} end

return M
