-- editflow.client: one configured connection to a queue (base URL, credential, endpoint).
-- Owns the credential rule of SPEC §2: the Authorization header goes only to the configured
-- base URL's origin (and origins the user listed in `trust`); URLs the server returns on any
-- other origin are re-based onto the base URL before they are followed. The credential lives
-- in a private weak table, never in the client's fields, so printing or serialising a client
-- cannot reveal it.
-- A submit goes out once: the engine is told never to re-send its body (libcurl would, on a
-- kept-alive connection that died before any answer), and editflow.retry retries it only
-- when the server cannot have the job. What became of each job is editflow.lifecycle's.
local runtime = require "editflow.runtime"
local http = require "editflow.http"
local json = require "editflow.json"
local url = require "editflow.url"
local errors = require "editflow.errors"
local schema = require "editflow.schema"
local storage = require "editflow.storage"
local Job = require "editflow.job"
local events = require "editflow.events"
local retry = require "editflow.retry"
local journal = require "editflow.journal"
local lifecycle = require "editflow.lifecycle"
local listing = require "editflow.listing"
local env = require("editflow.env").get

local M = {}

M.DEFAULT_BASE_URL = "https://queue.fal.run"
M.DEFAULT_API_URL = "https://api.fal.ai"         -- fal's platform API (pricing)
M.DEFAULT_STORAGE_URL = "https://rest.fal.ai"    -- fal storage (uploads of local files)
M.DEFAULT_ENDPOINT = "fal-ai/qwen-image-edit-plus"
-- Seconds a job may take from submit to saved images when no timeout is given, so nothing
-- waits forever; at expiry the job is cancelled at the queue (see job.lua).
M.DEFAULT_JOB_TIMEOUT = 3600

local Client = {}
Client.__index = Client
Client.__name = "editflow.Client"

local secrets = setmetatable({}, { __mode = "k" })  -- client -> Authorization header line
local keys = setmetatable({}, { __mode = "k" })     -- client -> { key, its parts of 8+ bytes }

-- The credential and the parts of it a server's echo is searched for, made once per client:
-- the whole key, and for an id:secret key each half, when 8 bytes or longer (a shorter one --
-- a proxy's test token -- counts only where a string equals the key: as a substring it would
-- match genuine ids); with each part's pattern for gsub.
local function secret_parts(key)
  local list = { key = key, patterns = {} }
  local id, secret = key:match("^([^:]+):(.+)$")
  for _, part in ipairs { key, id, secret } do
    if #part >= 8 then
      list[#list + 1] = part
      list.patterns[#list] = part:gsub("%W", "%%%0")
    end
  end
  return list
end

local OPTIONS = {
  max_connections = "number",
  key = "string or false", base_url = "string", auth = "string", endpoint = "string",
  timeout = "number", connect_timeout = "number", poll_interval = "number",
  max_poll_interval = "number", trust = "table", headers = "table", follow = "string",
  max_in_flight = "number", stream_idle = "number", resubmit_unknown = "boolean",
  max_images = "number", max_downloads = "number", reuse_finished = "boolean",
  on_log = "function", on_status = "function", on_finish = "function", on_saved = "function",
  retry = "table or false", journal = "string", job_timeout = "number",
  verbose = "function or boolean",
  max_file_bytes = "number", max_result_bytes = "number", max_image_bytes = "number",
  api_url = "string", storage_url = "string", schema_url = "string or false", inline = "boolean",
  multipart_bytes = "number", part_bytes = "number",
  disable_fallbacks = "boolean", store_io = "boolean", object_lifecycle = "number",
  input_lifetime = "number", hint = "string", logs = "boolean", settle_timeout = "number",
  lookup_timeout = "number", low_speed_time = "number",
}

local function opt_error(name, v)
  error(string.format("editflow.client: %s must be a %s, got %s", name, OPTIONS[name],
    type(v) == "string" and ("'" .. v .. "'") or type(v)), 3)
end

local function check_types(opts)
  for k, v in pairs(opts) do
    local want = OPTIONS[k]
    if not want then
      local names = {}
      for n in pairs(OPTIONS) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("editflow.client: unknown option '%s' (accepted: %s)", tostring(k),
        table.concat(names, ", ")), 3)
    end
    local ok = want:find(type(v), 1, true) or ((k == "key" or k == "retry" or k == "schema_url") and v == false)
    if not ok then opt_error(k, v) end
    if want == "number" and not (v > 0 and v < math.huge) then
      error(string.format("editflow.client: %s must be a positive number, got %s", k, tostring(v)), 3)
    end
    if (k == "timeout" or k == "connect_timeout") and v < 0.001 then
      error(string.format("editflow.client: %s must be at least 0.001 s, got %s", k, tostring(v)), 3)
    end
  end
end

local function env_key(auth)
  local k = env("FAL_KEY")
  if k then return k end
  local id, secret = env("FAL_KEY_ID"), env("FAL_KEY_SECRET")
  if auth == "key" and id and secret then
    return id .. ":" .. secret
  end
  return nil
end

local function check_header_value(where, v)
  if type(v) ~= "string" or v:find("[\r\n%z]") or #v > 4096 then
    error(string.format("editflow.client: %s must be a string without CR, LF or NUL (4096 bytes at most)", where), 4)
  end
end

local function check_header_name(where, k)
  if type(k) ~= "string" or not k:match("^[%w!#$%%&'*+.^_`|~-]+$") or #k > 256 then
    error(string.format("editflow.client: %s: bad header name %s", where, tostring(k)), 4)
  end
end

-- client.parse_endpoint(id) -> id, app; or nil, id. As fal's clients read an endpoint id
-- (fal-js parseEndpointId): a submit goes to the whole id; its requests' status, result and
-- cancel live under the app, owner/alias -- or namespace/owner/alias for ids that start
-- workflows/ or comfy/. A legacy numeric id "123-app" is "123/app".
local NAMESPACES = { workflows = true, comfy = true }
function M.parse_endpoint(id)
  if type(id) ~= "string" then return nil, id end
  local n, a = id:match("^(%d+)%-([%w-]+)$")
  if n then id = n .. "/" .. a end
  if not id:match("^[%w_.-]+/[%w_.-]+[%w_./-]*$") or id:find("//", 1, true) or id:find("/$")
      or id:find("%.%.") then
    return nil, id
  end
  local first = id:match("^[^/]+")
  if NAMESPACES[first] then
    local app = id:match("^[^/]+/[^/]+/[^/]+")
    if not app then return nil, id end
    return id, app
  end
  return id, id:match("^([^/]+/[^/]+)")
end

-- editflow.client{ key=, base_url=, auth=, endpoint=, ... } -> client. Raises on misuse.
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("editflow.client expects a table of options", 2) end
  check_types(opts)
  local self = setmetatable({}, Client)

  local base_text = opts.base_url or env("EDITFLOW_BASE_URL") or M.DEFAULT_BASE_URL
  local base, err = url.parse(base_text)
  if not base then error("editflow.client: base_url: " .. err, 2) end
  if base.query then error("editflow.client: base_url must not carry a query", 2) end
  self.base, self.base_url = base, url.root(base) .. base.prefix

  if opts.max_connections ~= nil then
    error("editflow.client: max_connections is the shared loop's, not a client's: "
      .. "call editflow.limits{ max_connections = N } once instead", 2)
  end
  local auth = opts.auth or env("EDITFLOW_AUTH") or "key"
  if auth ~= "key" and auth ~= "bearer" then
    error("editflow.client: auth must be 'key' (fal) or 'bearer' (proxies), got '" .. tostring(auth) .. "'", 2)
  end
  self.auth = auth

  local key = opts.key
  if key == nil then key = env_key(auth) end
  if key == nil then
    error("editflow.client: no credential: set FAL_KEY (for a proxy token also set "
      .. "EDITFLOW_AUTH=bearer), or pass key= (key=false sends none)", 2)
  end
  if key then
    check_header_value("key", key)
    secrets[self] = "Authorization: " .. (auth == "key" and "Key " or "Bearer ") .. key
    keys[self] = secret_parts(key)
  end

  local endpoint, app = M.parse_endpoint(opts.endpoint or env("EDITFLOW_ENDPOINT") or M.DEFAULT_ENDPOINT)
  if not endpoint then
    error("editflow.client: endpoint must look like 'owner/app', 'owner/app/path' or "
      .. "'workflows/owner/app', got '" .. tostring(app) .. "'", 2)
  end
  self.endpoint = endpoint
  self.app = app  -- status, result and cancel live here (SPEC §1, §8)

  self.trusted = { [base.origin] = true }
  self.auth_ok, self.auth_ok_n = {}, 0
  for i, o in ipairs(opts.trust or {}) do
    local u, e = url.parse(o)
    if not u then error(string.format("editflow.client: trust[%d]: %s", i, e), 2) end
    self.trusted[u.origin] = true
  end
  -- fal's platform beside the queue (SPEC §2, §5, §7). The key goes there only when it is a
  -- fal key for these origins: auth "key" and the queue is fal's own, or the user named the
  -- platform URL (option or environment) or trusts its origin. A proxy token never goes there.
  self.platform = {}
  local fal_queue = base.origin == url.parse(M.DEFAULT_BASE_URL).origin
  for _, which in ipairs { "api", "storage" } do
    local given = opts[which .. "_url"] or env("EDITFLOW_" .. which:upper() .. "_URL")
    local u, e = url.parse(given or M["DEFAULT_" .. which:upper() .. "_URL"])
    if not u or u.query then error(string.format("editflow.client: %s_url: %s", which, e or "must not carry a query"), 2) end
    self.platform[which] = { url = url.root(u) .. u.prefix, origin = u.origin,
      keyed = given ~= nil or fal_queue or self.trusted[u.origin] == true }
  end
  self.schema_url = opts.schema_url
  self.inline = opts.inline == true
  self.files = { by_path = {} }  -- local inputs by content (editflow.storage)
  self.multipart_bytes, self.part_bytes = opts.multipart_bytes, opts.part_bytes
  self.disable_fallbacks, self.store_io = opts.disable_fallbacks, opts.store_io
  if opts.object_lifecycle ~= nil and not math.tointeger(opts.object_lifecycle) then
    error("editflow.client: object_lifecycle must be a whole number of seconds, got " .. tostring(opts.object_lifecycle), 2)
  end
  self.object_lifecycle = opts.object_lifecycle and math.tointeger(opts.object_lifecycle)
  -- How long fal storage keeps the inputs editflow uploads (fal's clients' upload lifecycle).
  if opts.input_lifetime ~= nil and not (math.tointeger(opts.input_lifetime) and opts.input_lifetime >= 60) then
    error("editflow.client: input_lifetime must be a whole number of seconds >= 60, got " .. tostring(opts.input_lifetime), 2)
  end
  self.input_lifetime = opts.input_lifetime and math.tointeger(opts.input_lifetime)
  if opts.hint ~= nil then check_header_value("hint", opts.hint) end
  self.hint = opts.hint
  self.headers = {}
  for k, v in pairs(opts.headers or {}) do
    check_header_name("headers", k)
    check_header_value("headers['" .. k .. "']", v)
    self.headers[k] = v
  end
  self.header_lines = {}
  for k, v in pairs(self.headers) do self.header_lines[#self.header_lines + 1] = k .. ": " .. v end
  self.header_sets = {}  -- request_options' shared header lists

  self.follow = opts.follow or env("EDITFLOW_FOLLOW") or "stream"
  if self.follow ~= "stream" and self.follow ~= "poll" then
    error("editflow.client: follow must be 'stream' (status stream, polling as fallback) or 'poll', got '"
      .. tostring(self.follow) .. "'", 2)
  end
  local function whole(name, v, lo)
    if v ~= nil and (math.tointeger(v) == nil or v < lo) then
      error(string.format("editflow.client: %s must be an integer >= %d, got %s", name, lo, tostring(v)), 3)
    end
    return v and math.tointeger(v)
  end
  self.max_in_flight = whole("max_in_flight", opts.max_in_flight, 1) or 100
  -- Each followed stream holds a connection; with fewer connections than jobs in flight the
  -- streams would starve every other call, so follow by polling instead.
  local conns = runtime.limits().max_connections
  if conns and conns < self.max_in_flight + 2 then self.follow = "poll" end
  self.slots = runtime.semaphore(self.max_in_flight)
  self.max_images = whole("max_images", opts.max_images, 1) or 100
  self.downloads = runtime.semaphore(whole("max_downloads", opts.max_downloads, 1) or 8)
  -- A download slower than 512 B/s for this many seconds is cut off and retried (whole seconds:
  -- libcurl's low-speed window).
  self.low_speed_time = whole("low_speed_time", opts.low_speed_time, 1) or 30
  self.retry = retry.policy(opts.retry)
  self.resubmit_unknown = opts.resubmit_unknown == true
  self.reuse_finished = opts.reuse_finished == true
  self.made_dirs = {}
  if opts.journal then self.journal = journal.open(opts.journal) end
  self.stream_idle = opts.stream_idle or 60
  self.job_timeout = opts.job_timeout or M.DEFAULT_JOB_TIMEOUT
  self.timeout = opts.timeout or 60
  -- Lookups beside the jobs (prices) are tried once, this long at most: the HTTP timeout when
  -- the user gave one, else 15 s.
  self.lookup_timeout = opts.lookup_timeout or opts.timeout or 15
  -- Seconds a submit whose answer was lost is looked for in fal's request listing (it shows
  -- a request once it has ended) before it is held.
  self.settle_timeout = opts.settle_timeout or 600
  self.connect_timeout = opts.connect_timeout or 10
  self.poll_interval = opts.poll_interval or 0.1
  self.max_poll_interval = opts.max_poll_interval or 2
  self.max_file_bytes = opts.max_file_bytes
  self.max_result_bytes = opts.max_result_bytes or 64 * 1024 * 1024
  self.max_image_bytes = opts.max_image_bytes or 256 * 1024 * 1024
  self.on_log, self.on_status = opts.on_log, opts.on_status
  self.logs = opts.logs  -- ask the queue for log lines: nil = while someone reads them
  self.on_finish, self.on_saved = opts.on_finish, opts.on_saved
  if opts.verbose == true then
    self.verbose = function(line) io.stderr:write("editflow: ", line, "\n") end
  elseif opts.verbose then
    self.verbose = opts.verbose
  end
  return self
end

-- client:sibling(endpoint) -> a client for another endpoint with everything else of this one:
-- the credential (never copied into a table), URLs, trusted origins, options, callbacks, the
-- slots and the journal. An experiment across models runs each model on a sibling, so one
-- folder's journal and one max_in_flight cover them all. The per-endpoint state (its model,
-- its live jobs, its request ids, its subscribers) starts empty.
function Client:sibling(endpoint)
  local e, app = M.parse_endpoint(endpoint)
  if not e then
    error("editflow.client: endpoint must look like 'owner/app', 'owner/app/path' or "
      .. "'workflows/owner/app', got '" .. tostring(app or endpoint) .. "'", 2)
  end
  if e == self.endpoint then return self end
  local c = {}
  for k, v in pairs(self) do c[k] = v end
  c.endpoint, c.app = e, app
  c._model, c._transport, c.live, c.in_doubt, c.ids, c.subscribers = nil, nil, nil, nil, nil, nil
  c.header_sets = {}
  setmetatable(c, Client)
  secrets[c], keys[c] = secrets[self], keys[self]
  return c
end

Client.__tostring = function(c)
  return string.format("editflow.Client(%s, %s, auth=%s%s)", c.base_url, c.endpoint, c.auth,
    secrets[c] and "" or ", no credential")
end

-- Whether the credential may be sent to this URL. Decided once per scheme://authority (the
-- part that fixes the origin) and remembered, since every call asks.
function Client:may_authenticate(u)
  local key = type(u) == "string" and u:match("^[^:/?#]+://[^/?#]*")
  if not key then return false end
  local known = self.auth_ok[key]
  if known == nil then
    local o = url.origin(u)
    known = o ~= nil and self.trusted[o] == true
    if self.auth_ok_n > 256 then self.auth_ok, self.auth_ok_n = {}, 0 end
    self.auth_ok[key], self.auth_ok_n = known, self.auth_ok_n + 1
  end
  return known
end

-- fal's platform (pricing API, storage): its base URL, whether the credential may go there (a
-- fal key, not a proxy token), and one call to it, retried like any call. `anonymous` sends no
-- credential whatever the origin (an upload URL is signed).
function Client:platform_url(which) return self.platform[which].url end

-- which: "api" or "storage".
function Client:platform_ok(which)
  return self.auth == "key" and secrets[self] ~= nil and self.platform[which].keyed
end

-- client:transport() -> the narrow handle a job talks to the queue through (job.lua): its
-- calls (exchange, call), their engine options and retry contexts, the URLs it may follow or
-- build, tracing, and the credential checks on what servers send. Nothing else of the client
-- is reached through it (the client itself is kept in a private table). One per client.
local owners = setmetatable({}, { __mode = "k" })  -- transport -> client
local Transport = {}
Transport.__index = Transport
Transport.__name = "editflow.Transport"
for _, name in ipairs { "exchange", "call", "request_options", "retry_context", "follow_url", "url_for",
    "trace", "scrub", "leaks" } do
  Transport[name] = function(t, ...) return Client[name](owners[t], ...) end
end

function Client:transport()
  local t = self._transport
  if not t then
    t = setmetatable({ app = self.app }, Transport)
    owners[t], self._transport = self, t
  end
  return t
end

-- client:subscribe(fn [, { except = {...} }]) -> unsubscribe: fn(name, job, detail) for the
-- events of this client's jobs only (as editflow.subscribe has them for every client's); they
-- come before the shared hub's subscribers. Must not yield.
function Client:subscribe(fn, opts)
  self.subscribers = self.subscribers or {}
  return events.subscribe_to(self.subscribers, fn, opts)
end

-- Whether the client holds a credential (never which).
function Client:has_key() return secrets[self] ~= nil end

-- client:leaks(s) -> whether a string a server sent holds this client's credential (or its
-- id or secret half): such a string is never used as a request id, written to a file name,
-- the journal or the terminal. A hostile or broken server may echo what it was sent.
function Client:leaks(s)
  local k = keys[self]
  if type(s) ~= "string" or not k then return false end
  if s == k.key then return true end
  for _, part in ipairs(k) do
    if s:find(part, 1, true) then return true end
  end
  return false
end

-- client:scrub(s) -> s with the credential (and its halves) replaced by "(credential withheld)":
-- what a server echoes never reaches an error message, the journal, a file or the terminal.
function Client:scrub(s)
  if not self:leaks(s) then return s end
  local k = keys[self]
  if s == k.key then return "(credential withheld)" end
  for i, part in ipairs(k) do s = s:gsub(k.patterns[i], "(credential withheld)") end
  return s
end

-- client:usable_id(id) -> whether a request id a server gave may be used: its form
-- (lifecycle.valid_id), and not the credential.
function Client:usable_id(id)
  return lifecycle.valid_id(id) and not self:leaks(id)
end

-- opts.once: a lookup (a price): one try, bounded by the client's lookup_timeout (or by
-- opts.deadline, monotonic, for a lookup of several pages), so a silent API never stalls a
-- plan; the caller falls back to what it has.
function Client:platform_call(what, method, u, body, extra_headers, anonymous, opts)
  local origin = url.origin(u)
  local platform = not anonymous and ((origin == self.platform.api.origin and self:platform_ok("api"))
    or (origin == self.platform.storage.origin and self:platform_ok("storage")))
  local last
  local ctx = self:retry_context(nil, false)
  if opts and opts.once then
    ctx = { policy = retry.policy(false), sleep = runtime.sleep,
      deadline = opts.deadline or (runtime.now() + self.lookup_timeout) }
  end
  local resp, err = retry.run(ctx, what, function(left)
    local t0 = self.verbose and runtime.now()
    local r, e = http.request(runtime.loop(), self:request_options(what, method, u, body, extra_headers,
      { anonymous = not platform, signed = anonymous or nil, platform = platform and true or nil }, left))
    if self.verbose then  -- a signed upload URL's query is a write grant: never traced
      self:trace(what, method, (u:gsub("%?.*$", "?...")), string.format("%s (%.0f ms)", r and r.status or e.code,
        (runtime.now() - t0) * 1000))
    end
    if not r then return nil, e end
    last = r
    if r.status >= 200 and r.status <= 299 then return r end
    return nil, { status = r.status, headers = r.headers, code = "HTTP_" .. r.status }
  end)
  if resp then return resp end
  if err.status and last then return last end
  return nil, err
end

-- A URL returned by the server, made safe to follow: kept on a trusted origin, otherwise
-- re-based onto the base URL (SPEC §2). nil for a missing or unusable URL.
function Client:follow_url(u)
  if type(u) ~= "string" then return nil end
  if self:may_authenticate(u) then return u end
  return (url.rebase(u, self.base))
end

function Client:url_for(path)
  return self.base_url .. "/" .. path
end

-- The header lines of a call: Accept, Content-Type with a body, the client's own, the extra
-- ones, the credential when `auth` is given.
local function header_lines(self, body, extra_headers, auth)
  local headers = { "Accept: application/json" }
  if body then headers[#headers + 1] = "Content-Type: application/json" end
  for _, line in ipairs(self.header_lines) do headers[#headers + 1] = line end
  for k, v in pairs(extra_headers or {}) do
    if k == "Accept" then headers[1] = "Accept: " .. v else headers[#headers + 1] = k .. ": " .. v end
  end
  if auth then headers[#headers + 1] = auth end
  return headers
end

-- The header lines of a call to a signed URL (an upload): exactly the given ones, as fal's
-- clients send them. A signed URL covers its Content-Type, so a second one (the client's JSON
-- default) or any of the client's own headers is refused; libcurl's defaults (Accept, a form
-- Content-Type for a body) are taken out by naming them empty.
local function signed_lines(extra_headers)
  local lines, typed = { "Accept:" }, false
  for k, v in pairs(extra_headers or {}) do
    if k:lower() == "content-type" then typed = true end
    lines[#lines + 1] = k .. ": " .. v
  end
  if not typed then lines[#lines + 1] = "Content-Type:" end
  return lines
end

-- The engine request for one queue call: auth (only to trusted origins), JSON headers, limits.
-- `left` (seconds to the job's deadline) shortens the call's own timeout.
-- Without extra headers a call's lines are one of four lists (body or not, credential or
-- not), built once per client and shared: the engine only reads them (lloop.c copies each
-- line into the transfer), so nothing may change a request's `headers` in place.
function Client:request_options(what, method, u, body, extra_headers, more, left)
  local auth = secrets[self]
  local anonymous, platform = more and more.anonymous, more and more.platform
  if not (auth and not anonymous and (platform or self:may_authenticate(u))) then auth = nil end
  local headers
  if more and more.signed then
    auth, headers = nil, signed_lines(extra_headers)
  elseif extra_headers == nil or next(extra_headers) == nil then
    local slot = (body and 1 or 0) + (auth and 2 or 0) + 1
    headers = self.header_sets[slot]
    if not headers then
      headers = header_lines(self, body, nil, auth)
      self.header_sets[slot] = headers
    end
  else
    headers = header_lines(self, body, extra_headers, auth)
  end
  local timeout = self.timeout
  if left then timeout = math.min(timeout, math.max(left, 0.001)) end
  local req = {
    url = u, method = method, body = body, headers = headers, what = what,
    timeout = math.max(1, math.floor(timeout * 1000)),
    connect_timeout = math.max(1, math.floor(math.min(self.connect_timeout, timeout) * 1000)),
    max_body = self.max_result_bytes,
  }
  for k, v in pairs(more or {}) do
    if k ~= "anonymous" and k ~= "platform" and k ~= "signed" then req[k] = v end
  end
  return req
end

-- A line of --verbose output (URLs only: the credential is never in them).
function Client:trace(what, method, u, outcome, note)
  if self.verbose then
    self.verbose(string.format("%s %s -> %s%s", method, u, tostring(outcome), note and ("; " .. note) or ""))
  end
end

-- Adaptive concurrency: a 429 halves the number of jobs allowed in flight; each accepted
-- submit gives one back, up to max_in_flight. A storm of 429s slows the rate of new
-- submissions instead of hammering the server.
function Client:_throttle(accepted)
  local s = self.slots
  if accepted then
    if s.limit < self.max_in_flight then s:set_limit(s.limit + 1) end
  elseif s.limit > 1 then
    s:set_limit(math.max(1, s.limit // 2))
  end
end

-- One HTTP exchange, no retry. -> resp (any HTTP status) or nil, err.
function Client:exchange(what, method, u, body, extra_headers, left, more)
  local t0 = self.verbose and runtime.now()
  local resp, err = http.request(runtime.loop(),
    self:request_options(what, method, u, body, extra_headers, more, left))
  if resp and keys[self] and type(resp.body) == "string" then resp.body = self:scrub(resp.body) end
  if self.verbose then
    self:trace(what, method, u, string.format("%s (%.0f ms)", resp and resp.status or err.code,
      (runtime.now() - t0) * 1000))
  end
  if resp and resp.status == 429 and what == "submit" then self:_throttle(false) end
  if resp and resp.status < 500 and resp.status ~= 429 and resp.status ~= 408 then runtime.heard() end  -- the queue answers (outage display)
  return resp, err
end

-- The context of editflow.retry.run for a call made for `job` (or for no job): its deadline,
-- its retry budget, and where retries are told.
function Client:retry_context(job, persist, deadline)
  -- A job's contexts are made once and kept: every status and result call asks for one.
  local cache = job and not deadline and job.finished and (persist and "ctx_follow" or "ctx_call")
  if cache then
    local ctx = job[cache]
    if ctx and ctx.deadline == job.deadline then return ctx end
    ctx = self:_new_context(job, persist)
    job[cache] = ctx
    return ctx
  end
  return self:_new_context(job, persist, deadline)
end

function Client:_new_context(job, persist, deadline)
  local c = self
  local sleep = runtime.sleep
  if persist and job and job.finished then  -- a job that ends meanwhile (its deadline) stops following
    sleep = function(s) return not job.finished:wait(runtime.now() + s) end
  end
  return {
    policy = self.retry, persist = persist, sleep = sleep,
    deadline = deadline or (job and job.deadline),
    budget = job and job.budget,
    on_retry = function(kind, err, wait)
      c:trace(kind, "", err.request_id or "", err.status or err.code, string.format("retrying in %.2f s", wait))
      events.emit("retry", job and job.request_id and job or nil, { what = kind, why = err.code, wait = wait })
    end,
    on_deadline = function(kind, err)
      return errors.new("TIMEOUT", string.format("%s: the job's deadline came before it could be "
        .. "done (last: %s)%s", kind, tostring(err and err.message or "?"),
        (job and job.request_id) and (" [request " .. job.request_id .. "]") or ""),
        { request_id = job and job.request_id, last = err, maybe_submitted = err and err.maybe_submitted })
    end,
  }
end

-- One queue call, retried per editflow.retry. -> resp (any HTTP status: callers judge it)
-- or nil, err. For scripts and the one-shot commands; jobs use retry.run directly.
function Client:call(what, method, u, body, extra_headers, request_id, job)
  local last
  local resp, err = retry.run(self:retry_context(job, false), what, function(left)
    local r, e = self:exchange(what, method, u, body, extra_headers, left)
    if not r then
      e.request_id = request_id
      return nil, e
    end
    last = r
    if r.status >= 200 and r.status <= 299 then return r end
    return nil, { status = r.status, headers = r.headers, code = "HTTP_" .. r.status }
  end)
  if resp then return resp end
  if err.status and last then return last end  -- the caller judges the answer
  return nil, err
end

-- Submit options: webhook (URL), max_queue_length, start_timeout (seconds: the server-side
-- X-Fal-Request-Timeout), priority ('normal'|'low'), headers (extra, for this job).
local function submit_request(self, opts)
  local q, h = {}, {}
  if opts.webhook then
    if not url.parse(opts.webhook) then error("webhook must be an http(s) URL", 0) end
    q.fal_webhook = opts.webhook
  end
  if opts.max_queue_length then
    local n = math.tointeger(opts.max_queue_length)
    if not n or n < 0 then error("max_queue_length must be an integer >= 0", 0) end
    q.fal_max_queue_length = n
  end
  if opts.start_timeout then
    if type(opts.start_timeout) ~= "number" or opts.start_timeout <= 0 then
      error("start_timeout must be a positive number of seconds", 0)
    end
    h["X-Fal-Request-Timeout"] = tostring(math.ceil(opts.start_timeout))
  end
  if opts.priority then
    if opts.priority ~= "normal" and opts.priority ~= "low" then
      error("priority must be 'normal' or 'low', got '" .. tostring(opts.priority) .. "'", 0)
    end
    h["X-Fal-Queue-Priority"] = opts.priority
  end
  -- fal's per-request preferences: no fallback model (another model gives another image for
  -- the same seed), whether fal keeps the request's input and output, how long its output
  -- files live. Client options, which a submit's own options override.
  local fallbacks = opts.disable_fallbacks
  if fallbacks == nil then fallbacks = self.disable_fallbacks end
  if fallbacks then
    h["X-Fal-Disable-Fallbacks"] = "true"
    h["x-app-fal-disable-fallback"] = "true"  -- the spelling fal's app gateway reads too
  end
  local store = opts.store_io
  if store == nil then store = self.store_io end
  if store ~= nil then h["X-Fal-Store-IO"] = store and "1" or "0" end
  local life = opts.object_lifecycle or self.object_lifecycle
  if life ~= nil then
    if not math.tointeger(life) or life < 1 then error("object_lifecycle must be a whole number of seconds >= 1", 0) end
    h["X-Fal-Object-Lifecycle-Preference"] = string.format('{"expiration_duration_seconds":%d}', life)
  end
  -- fal's runner hint: requests with the same hint go to the same runner when fal can (one
  -- that has a LoRA loaded, say).
  local hint = opts.hint or self.hint
  if hint ~= nil then
    check_header_value("hint", hint)
    h["X-Fal-Runner-Hint"] = hint
  end
  for k, v in pairs(opts.headers or {}) do
    check_header_name("submit headers", k)
    check_header_value("headers['" .. tostring(k) .. "']", v)
    h[k] = v
  end
  return url.with_query(self:url_for(self.endpoint), q), h
end

-- client:model() -> the endpoint's model (editflow.schema: fetched, cached or shipped), which
-- validates inputs and describes fields. A waiting call the first time it fetches.
function Client:model()
  local m = self._model
  if not m then
    m = schema.model(self.endpoint, { schema_url = self.schema_url, timeout = self.lookup_timeout })
    self._model = m
  end
  return m
end

-- client:price() -> the endpoint's price { unit_price, unit, currency, source }, or nil, why
-- (editflow.price: fal's pricing API with a fal key, its cache, the shipped table).
function Client:price()
  return require("editflow.price").lookup(self)
end

-- client:prepare(input) -> the body that would be sent, and the normalised input.
-- Validation and local files happen here: any problem raises before a request is made. In the
-- body a local file is named by its content (editflow.storage) until it is sent.
function Client:prepare(input)
  local normal = self:model():validate(input)
  storage.name_all(self, self:model(), normal)
  return json.encode(normal), normal
end

-- client:submit(input [, opts]) -> job, or nil, err. Raises on invalid input.
-- Waits its turn while max_in_flight jobs are in flight (in order); the job is then followed
-- in the background until it ends.
function Client:submit(input, opts)
  return self:send(self:prepare(input), opts)
end

local function acquire_slot(self)
  local waits = self.slots:full()
  if waits then events.emit("waiting") end
  self.slots:acquire()
  if waits then events.emit("unwaiting") end
end

-- One submit try. -> { doc = } (accepted), { header_id = } (2xx whose body cannot be read
-- but whose x-fal-request-id names the job), or nil, err. Sent once: never re-sent by libcurl.
local function submit_once(self, life, u, body, headers, left)
  -- the host is stopping the run (a signal): a submit not yet sent is not sent (refused: a new run sends it)
  if runtime.stopping(true) then return nil, errors.new("NOT_SENT", "not sent: the run was stopped before this job was sent") end
  life.on_wire = true  -- from here until the answer, the queue may be taking the job
  local resp, err = self:exchange("submit", "POST", u, body, headers, left, { once = true, want_headers = true })
  life.on_wire = false
  if not resp then
    err.maybe_submitted = not retry.not_sent(err.code)
    return nil, err
  end
  local meaning = lifecycle.submit_answer(resp)
  local hid = resp.headers and resp.headers["x-fal-request-id"]
  if meaning == "exists" and self:usable_id(hid) then return { header_id = hid, status = resp.status } end
  if meaning == "exists" then meaning = "unknown" end
  if meaning ~= "accepted" then
    local e = errors.from_http(resp, "submit")
    e.submit, e.maybe_submitted = meaning, meaning == "unknown"
    return nil, e
  end
  local doc = json.decode(resp.body)
  if type(doc) == "table" and self:usable_id(doc.request_id) then return { doc = doc } end
  if self:usable_id(hid) then return { header_id = hid } end
  return nil, errors.new("BAD_RESPONSE", "submit: the server answered " .. resp.status
    .. " but the answer carries no readable request_id; the job may exist and be billed",
    { maybe_submitted = true })
end

-- A 2xx submit answer that could not be read but named the job in its header: the job is
-- taken as accepted under that id once a status call confirms the queue knows it.
local function settle(self, job)
  local u = job.status_url
  local st = retry.run(self:retry_context(job, true, math.min(job.deadline, runtime.now() + 30)),
    "status", function(left) return job:_status_once(u, left) end)
  return st ~= nil
end

-- The job's record says "follow it by its id" (an earlier run had it accepted).
local function resume(self, life)
  acquire_slot(self)
  local job = Job.new(self, life.record)
  job.holds_slot, job.resumed, job.life = true, true, life
  -- an earlier run asked the queue to cancel it: told only once it is known whether the
  -- cancel took (then it is sent anew) or the job finished all the same
  job.quiet_cancel = life.record.cancel_requested
  life.job = life.job or job
  job:_watch()
  if not job.quiet_cancel then events.emit("submitted", job, "resumed") end
  return job
end

-- A request fal's listing shows for a job whose submit answer was lost: adopted as the job
-- (accepted under its id, never sent again), finished at once when the listing carries its
-- output, else followed like any job. -> job, or nil, err (the id is another job's).
local function adopt(self, life, item)
  lifecycle.reserve(self, life, item.request_id)  -- before anything yields: no other settler takes it
  acquire_slot(self)
  local j = Job.new(self, { request_id = item.request_id })
  j.deadline = runtime.now() + self.job_timeout
  local done, ok, aerr = pcall(life.accepted, life, j)
  if not (done and ok) then
    self.slots:release()
    if not done then error(ok, 0) end
    return nil, aerr
  end
  j.holds_slot, j.found = true, true
  events.emit("submitted", j, "found")
  local out = lifecycle.listed_output(item)
  if out then j:_finish(out) else j:_watch() end
  return j
end

-- How long a lost submit is looked for: a job that exists shows in the listing once it has
-- ended, so three times the longest job this client has seen end (at least MIN_SETTLE s), and
-- settle_timeout before any has; never more than settle_timeout.
M.MIN_SETTLE = 20
local function settle_window(self)
  local seen = self.longest_job
  return math.min(self.settle_timeout, seen and math.max(M.MIN_SETTLE, 3 * seen) or self.settle_timeout)
end

-- Looks for a lost submit in fal's request listing until `until_` (monotonic; one look when
-- nil). -> job, or nil, why.
local function settle_lost(self, life, until_)
  local wait, why, first = 1, nil, true
  while true do
    local item, err = listing.look(self, self.endpoint, life.fp, life.sent_at,
      function(id) return lifecycle.claimed(self, id) or not self:usable_id(id) end)
    -- (taken meanwhile by another settler of an equal body while this look waited: look again)
    if item and not lifecycle.claimed(self, item.request_id) then return adopt(self, life, item) end
    why = err and err.message or "it is not in fal's request listing"
    -- a listing this client cannot use, or cannot reach at all, is not waited for; the last
    -- look is at the end of the window
    local left = until_ and (until_ - runtime.now()) or 0
    if (err and (err.unavailable or (err.unreachable and first))) or left <= 0 then
      return nil, why
    end
    first = false
    runtime.sleep(math.min(wait, left))
    wait = math.min(wait * 1.5, 15)
  end
end

-- client:send(body [, opts]) -> job, or nil, err: submit() for a body from client:prepare().
-- With a journal, editflow.lifecycle decides first: a job done or accepted in an earlier run
-- is not sent again, and one whose earlier submit may have been lost is held back.
function Client:send(body, opts)
  runtime.may_wait(2)  -- a submit waits for the queue's answer: refused before anything is sent
  opts = opts or {}
  local u, headers = submit_request(self, opts)
  local life = lifecycle.begin(self, body)
  if life.decision == "reuse" then return Job.restored(self, life) end
  if life.decision == "follow" then
    local job = resume(self, life)
    if not life.record.cancel_requested then return job end
    -- An interrupted run asked the queue to cancel it: it may have finished all the same
    -- (then its result is kept); if the cancel took, it is sent anew, once.
    local res, ferr = job:wait()
    if res or not lifecycle.cancelled(ferr) then
      events.emit("submitted", job, "resumed")
      return job
    end
    -- "3 jobs were cancelled at the queue by an earlier run: sending them again"
    events.emit("resent", job, "cancelled at the queue by an earlier run")
    life:resend()
  end
  if life.resent then
    local id = life.record and life.record.request_id
    events.emit("resent", self:usable_id(id) and Job.new(self, { request_id = id }) or nil,
      "cancelled at the queue by an earlier run")
  end
  if life.decision == "settle" then
    -- a submit of an earlier run: looked for while it may still be running (its intent is
    -- recent), else once
    local recent = (life.sent_at or 0) + self.settle_timeout - os.time()
    local found = settle_lost(self, life, runtime.now() + math.max(0, math.min(settle_window(self), recent)))
    if found then return found end
    life.decision = "hold"
  end
  if life.decision == "hold" then
    events.emit("held", nil, life.error, self)  -- the client's subscribers hear it too
    return nil, life.error
  end
  acquire_slot(self)
  -- The job-to-be's deadline and retry budget, which the accepted job then carries on.
  local job = { deadline = runtime.now() + self.job_timeout, budget = { left = self.retry.job_budget },
    sent_mono = runtime.now() }
  -- Nothing below may keep the slot if it raises (a journal that cannot be written, a
  -- callback that fails): release it, then let the error go on.
  local sent, accepted, err = pcall(function()
    local wire, uerr = storage.materialize(self, body)  -- uploads, or data: URIs
    if not wire then return nil, uerr end
    body = wire
    -- the body's fingerprint, to find it in fal's request listing should its answer be lost
    local fp = self:platform_ok("api") and listing.fingerprint(body) or nil
    life:intent(fp)
    -- Every try is journaled: a try the queue certainly did not take is recorded refused at
    -- once, and the next try writes its own intent first, so a process killed between tries
    -- (a submit outage's backoff) leaves "refused" -- sent by the next run -- never an intent
    -- that would be held as if the queue might have the job.
    local got, serr = retry.run(self:retry_context(job, false), "submit", function(left)
      if life:phase_is("refused") then life:intent(fp) end
      local g, e = submit_once(self, life, u, body, headers, left)
      if not g and lifecycle.failed_submit(e) == "refused" then life:refused(e) end
      return g, e
    end)
    if not got then return nil, serr end
    life.answered = true
    local j = Job.new(self, got.doc or { request_id = got.header_id })
    j.deadline, j.budget, j.sent_mono = job.deadline, job.budget, job.sent_mono
    if got.header_id and not settle(self, j) then
      return nil, errors.new("UNKNOWN", string.format("submit: %s and the queue did not confirm "
        .. "request %s; the job may exist and be billed", got.status and ("the queue answered HTTP "
        .. got.status .. " naming the job") or "the answer could not be read", got.header_id),
        { request_id = got.header_id, maybe_submitted = true })
    end
    local ok, rerr = life:accepted(j)
    if not ok then return nil, rerr end
    return j
  end)
  if not sent then
    self.slots:release()
    -- Raised (an interrupt, a callback while settling): unknown if a submit was on its way
    -- or answered, refused if none was (a wait between tries, say): then nothing was taken.
    local left = lifecycle.raised_submit(life)
    local why = errors.code(accepted) == "INTERRUPTED" and "the run was interrupted" or tostring(accepted)
    if left == "unknown" then
      life:unknown(errors.new("UNKNOWN", why .. " while the submit was on its way", { maybe_submitted = true }))
    elseif left == "refused" then
      life:refused(errors.new("NOT_SENT", why .. " before the submit was sent again"))
    end
    error(accepted, 0)
  end
  if accepted then
    accepted.holds_slot = true  -- released when its watcher finishes
    self:_throttle(true)
    accepted:_watch()
    events.emit("submitted", accepted, "submitted")
    return accepted
  end
  self.slots:release()
  if life:phase_is("new") then return nil, err end  -- nothing was sent (an upload failed, say)
  if lifecycle.failed_submit(err) == "unknown" then
    err.maybe_submitted = true
    if not life:phase_is("unknown") then life:unknown(err) end
    -- The job may exist: fal's request listing shows it once it has ended.
    if life.fp and err.code ~= "REPEATED_ID" then
      local window = math.min(job.deadline - runtime.now(), settle_window(self))
      events.warning(string.format("a submit's answer was lost (%s); looking for the job in fal's "
        .. "request listing for up to %.0f s (it lists a request once it has ended); it is not sent again",
        err.message, window))
      local found, why = settle_lost(self, life, runtime.now() + window)
      if found then return found end
      err.message = err.message .. "; fal's request listing: " .. tostring(why)
    end
    err.message = err.message .. "; editflow does not send it again by itself"
      .. (self.journal and " (a new run holds it back unless told --resubmit-unknown)" or "")
  elseif not life:phase_is("refused") then
    life:refused(err)  -- certainly not accepted: a new run sends it
  end
  return nil, err
end

M.valid_id = lifecycle.valid_id

-- client:job(request_id) -> the job with that id (URLs built from the base URL).
function Client:job(request_id)
  if not M.valid_id(request_id) then
    error("request_id must be a string of letters, digits, '-', '_', '.', ':'", 2)
  end
  local root = self:url_for(self.app) .. "/requests/" .. request_id
  return Job.new(self, {
    request_id = request_id, response_url = root, status_url = root .. "/status",
    cancel_url = root .. "/cancel",
  })
end

-- client:complete(): this run did all it set out to do (see editflow.lifecycle): a new run of
-- the same jobs without a seed gets new samples instead of this run's results.
function Client:complete() lifecycle.complete(self) end

-- client:ingest_webhook(body) -> true [, "already"], or nil, err: fal's webhook body (the raw
-- JSON text or its decoded table) recorded as its job's outcome in this client's journal, so
-- a later run reuses the job without a request. Verify the request first (editflow.webhook).
-- What it means for the job is editflow.lifecycle's (lifecycle.webhook).
function Client:ingest_webhook(body)
  local doc = body
  if type(body) == "string" then
    doc = json.decode(body)
    if type(doc) ~= "table" then return nil, errors.new("BAD_WEBHOOK", "webhook: the body is not JSON") end
  elseif type(body) ~= "table" then
    error("ingest_webhook: body must be the webhook's JSON text or its decoded table", 2)
  end
  return lifecycle.webhook(self, doc)
end

-- client:edit(input [, opts]) -> result, job; or nil, err, job. Submits and waits.
function Client:edit(input, opts)
  local job, err = self:submit(input, opts)
  if not job then return nil, err end
  local result, werr = job:wait(opts)
  if not result then return nil, werr, job end
  return result, job
end

return M
