-- editflow.storage: local files as inputs fal can read (SPEC §5), wherever the model's schema
-- has a file slot, nested ones included (model.lua file_slots: image_urls, loras[].path).
-- A job's body names each local file by its content, "editflow-file:sha256:<hex>", until it is
-- sent: that is what the journal's job identity hashes, so a re-run recognises the job
-- whatever the upload URL. Just before the submit, each name becomes
--   * with a fal key: the file's fal storage URL. A file is uploaded once per content:
--     POST {storage}/storage/upload/initiate?storage_type=fal-cdn-v3 (Key auth) with
--     {content_type, file_name} -> {upload_url, file_url}, then PUT of the bytes to upload_url
--     without the credential (the URL is signed); over MULTIPART_BYTES in parts, as fal's own
--     client does. Uploads are remembered in this process, in the output folder's journal and
--     in editflow.cache (for UPLOAD_TTL), and jobs waiting for the same content share one
--     upload;
--   * with a Bearer proxy (no fal storage for proxy tokens), with inline = true, or without a
--     credential: a data: URI of the bytes.
local core = require "editflow.core"
local json = require "editflow.json"
local cache = require "editflow.cache"
local errors = require "editflow.errors"
local inputs = require "editflow.inputs"
local runtime = require "editflow.runtime"
local url = require "editflow.url"

local M = {}

M.DEFAULT_STORAGE_URL = "https://rest.fal.ai"
M.UPLOAD_TTL = 24 * 3600            -- a remembered upload URL is reused this long
M.MULTIPART_BYTES = 90 * 1024 * 1024 -- larger files go up in parts
M.PART_BYTES = 10 * 1024 * 1024
M.SCHEME = "editflow-file:sha256:"

local uploaded = {}  -- storage URL .. " " .. sha -> { url, at } (this process; UPLOAD_TTL, as any copy)
local pending = {}   -- storage URL .. " " .. sha -> signal while an upload is on its way
local failed = {}    -- storage URL .. " " .. sha -> { err, at }: jobs waiting for it share it
M.SHARE_FAILURE = 30 -- seconds a failed upload answers the jobs that waited for it

-- Whether a URL from fal storage (fresh, or remembered in the journal or the cache, which a
-- local user could have edited) may go into a job's body or receive a file: http(s) only, no
-- spaces or control characters, no longer than any server URL editflow takes.
function M.usable_url(u)
  return type(u) == "string" and #u <= url.MAX and u:find("^[Hh][Tt][Tt][Pp][Ss]?://[^/?#%s]") ~= nil
    and not u:find("[%s%c]")
end

-- Seconds a remembered upload is reused: a day, or half the lifetime asked for the inputs.
local function reuse_ttl(client)
  local life = client.input_lifetime
  return life and math.min(M.UPLOAD_TTL, life // 2) or M.UPLOAD_TTL
end

local function hex(bytes)
  return (bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local IMAGE_SLOT = { image = true, strict = true }
local MAX_DEPTH = 64  -- nesting walked in an input (validation allows 32)

-- Whether a path slot's string names a local file: in a field that takes other text too (a
-- LoRA's path takes a Hugging Face model name), only a file that exists is one.
local function is_local_file(path)
  return core.file_stamp(path) ~= nil and not core.listdir(path)
end

-- storage.name(client, field, v [, slot]) -> the body's name for one file input `v` (a local
-- path or editflow.file), as the model's slot (model.lua file_slots: { image, strict }; an
-- image field by default) takes it; URLs are returned as they are, and so is a path slot's
-- string that names no file. Reads and checks the file (raises naming the field), once per
-- path and client.
function M.name(client, field, v, slot)
  slot = slot or IMAGE_SLOT
  if type(v) == "string" and inputs.is_url(v) then return v end
  if type(v) == "string" and not slot.strict and not is_local_file(v) then return v end
  local path = type(v) == "table" and v.path or v
  local files = client.files
  -- Read once per path while the file stays as it was (device, inode, size, times): a file
  -- replaced meanwhile is read and named anew. A file first met in a field that takes any
  -- file is checked again when an image field names it.
  local stamp = core.file_stamp(path)
  local known = files.by_path[path]
  if known and stamp and known.stamp == stamp
      and not (slot.image and files[known.sha].mime == inputs.OCTET_STREAM) then
    return M.SCHEME .. known.sha
  end
  local bytes, mime = inputs.load(field, path, client.max_file_bytes, not slot.image)
  local sha = hex(core.sha256(bytes))
  files.by_path[path] = { sha = sha, stamp = stamp }
  files[sha] = files[sha] or { path = path, mime = mime, size = #bytes,
    name = path:match("([^/]*)$") }
  return M.SCHEME .. sha
end

-- walk(slot, v, at, fn, depth) -> v with fn(x, slot.file, at) in place of every string or
-- editflow.file x at a file slot of the model's slot tree (model.lua file_slots), or nil,
-- err from fn. Lists are walked by items, objects by their fields' slots; what lies outside
-- the tree is left as it is.
local function walk(slot, v, at, fn, depth)
  if slot == nil or depth > MAX_DEPTH then return v end
  if slot.file and (type(v) == "string" or (type(v) == "table" and v.__editflow_file)) then
    return fn(v, slot.file, at)
  end
  if type(v) ~= "table" or v.__editflow_file then return v end
  if #v > 0 then
    for i = 1, #v do
      local x, err = walk(slot.items, v[i], string.format("%s[%d]", at, i), fn, depth + 1)
      if x == nil then return nil, err end
      v[i] = x
    end
  elseif slot.props or slot.extra then
    for k, x in pairs(v) do
      local sub = (slot.props and slot.props[k]) or slot.extra
      if sub then
        local y, err = walk(sub, x, at .. "." .. tostring(k), fn, depth + 1)
        if y == nil then return nil, err end
        v[k] = y
      end
    end
  end
  return v
end

-- An editflow.file left where the model has no file slot (the model took it as a value of
-- its own): refused, rather than sent as a table.
local function stray(v, at, depth)
  if type(v) ~= "table" or depth > MAX_DEPTH then return end
  if v.__editflow_file then
    error(string.format("%s: %s is taken only in a file field", at, tostring(v)), 0)
  end
  for k, x in pairs(v) do
    stray(x, math.type(k) == "integer" and string.format("%s[%d]", at, k) or (at .. "." .. tostring(k)), depth + 1)
  end
end

-- Resolves every file of a validated input in place (see name()), at any depth: the
-- model's slot tree (m.slots) says where files may be, so the same text elsewhere -- a
-- prompt reading "photo.png" -- is sent as written.
function M.name_all(client, m, normal)
  local slots = m.slots and m.slots.props or {}
  for field, v in pairs(normal) do
    normal[field] = walk(slots[field], v, field, function(x, slot, at)
      return M.name(client, at, x, slot)
    end, 1)
    stray(normal[field], field, 1)
  end
  return normal
end

-- The bytes of a registered file, checked against the content it was planned with.
local function bytes_of(client, sha)
  local f = client.files[sha]
  if not f then return nil, "no file registered for " .. sha end
  local bytes, err = core.read_file(f.path, math.max(f.size, client.max_file_bytes or inputs.MAX_FILE_BYTES))
  if not bytes then return nil, "cannot read " .. f.path .. ": " .. tostring(err) end
  if hex(core.sha256(bytes)) ~= sha then
    return nil, f.path .. " changed since the job was planned; run it again"
  end
  return bytes, f
end

-- Whether this client puts files in fal storage (else inline data: URIs).
function M.uploads(client)
  return client.inline ~= true and client:platform_ok("storage")
end

local function fail(message, cause)
  return nil, errors.new("UPLOAD_FAILED", "upload: " .. message
    .. (cause and cause.message and (": " .. cause.message) or ""), { cause = cause })
end

-- One part or whole-file PUT, without the credential. -> response or nil, err.
local function put(client, u, bytes, mime)
  local resp, err = client:platform_call("upload", "PUT", u, bytes, mime and { ["Content-Type"] = mime } or {}, true)
  if not resp then return nil, err end
  if resp.status < 200 or resp.status > 299 then
    return nil, errors.from_http(resp, "upload")
  end
  return resp
end

-- How long fal keeps an uploaded input (client input_lifetime, seconds): fal's JS client sends
-- X-Fal-Object-Lifecycle on initiate, the Python client that and -Preference; both are sent.
local function lifetime_headers(client)
  local s = client.input_lifetime
  if not s then return nil end
  local v = string.format('{"expiration_duration_seconds":%d}', s)
  return { ["X-Fal-Object-Lifecycle"] = v, ["X-Fal-Object-Lifecycle-Preference"] = v }
end

local function initiate(client, route, f)
  local u = client:platform_url("storage") .. "/storage/upload/" .. route .. "?storage_type=fal-cdn-v3"
  local resp, err = client:platform_call("initiate", "POST", u,
    json.encode { content_type = f.mime, file_name = f.name }, lifetime_headers(client))
  if not resp then return nil, err end
  if resp.status < 200 or resp.status > 299 then return nil, errors.from_http(resp, "upload initiate") end
  local doc = json.decode(resp.body)
  if type(doc) ~= "table" or not M.usable_url(doc.upload_url) or not M.usable_url(doc.file_url) then
    return nil, errors.new("BAD_RESPONSE", "upload initiate: the answer has no upload_url and file_url")
  end
  return doc
end

-- The part URL fal's multipart flow uses: /<n> (or /complete) after the upload URL's path,
-- before its query.
local function part_url(upload_url, tail)
  local head, query = upload_url:match("^([^?#]*)(%??[^#]*)")
  return head:gsub("/$", "") .. "/" .. tail .. query
end

local function upload(client, sha)
  local bytes, f = bytes_of(client, sha)
  if not bytes then return fail(f) end
  if #bytes <= (client.multipart_bytes or M.MULTIPART_BYTES) then
    local doc, err = initiate(client, "initiate", f)
    if not doc then return fail("cannot start the upload of " .. f.path, err) end
    local _, perr = put(client, doc.upload_url, bytes, f.mime)
    if perr then return fail("cannot send " .. f.path, perr) end
    return doc.file_url
  end
  local doc, err = initiate(client, "initiate-multipart", f)
  if not doc then return fail("cannot start the upload of " .. f.path, err) end
  local size = client.part_bytes or M.PART_BYTES
  local parts = json.array {}
  for i = 1, (#bytes + size - 1) // size do
    -- A part carries no Content-Type, as fal's JS client sends parts (the initiate named it).
    local resp, perr = put(client, part_url(doc.upload_url, tostring(i)),
      bytes:sub((i - 1) * size + 1, i * size), nil)
    if not resp then return fail(string.format("cannot send part %d of %s", i, f.path), perr) end
    -- fal's answer to a part is JSON {partNumber, etag}; an ETag header serves as well
    local doc = json.decode(resp.body or "")
    local etag = type(doc) == "table" and type(doc.etag) == "string" and doc.etag
      or (resp.headers and resp.headers.etag)
    if type(etag) ~= "string" or etag == "" then
      return fail(string.format("part %d of %s: the answer has no ETag", i, f.path))
    end
    parts[i] = { partNumber = i, etag = etag }
  end
  local resp, cerr = client:platform_call("upload", "POST", part_url(doc.upload_url, "complete"),
    json.encode { parts = parts }, { ["Content-Type"] = "application/json" }, true)
  if not resp then return fail("cannot complete the upload of " .. f.path, cerr) end
  if resp.status < 200 or resp.status > 299 then
    return fail("cannot complete the upload of " .. f.path, errors.from_http(resp, "upload complete"))
  end
  return doc.file_url
end

-- The file_url of content `sha`: remembered, or uploaded now (one upload per content at a
-- time; others wait for it). -> url or nil, err. A waiting call.
local function file_url(client, sha)
  local base = client:platform_url("storage")
  local slot = base .. " " .. sha
  while pending[slot] do pending[slot]:wait() end
  local jr, now, ttl = client.journal, os.time(), reuse_ttl(client)
  local known = uploaded[slot]
  if known and now - known.at < ttl then return known.url end
  local rec = jr and jr.uploads[sha]
  if rec and rec.storage == base and M.usable_url(rec.file_url) and type(rec.at) == "number"
      and now - rec.at < ttl and rec.at <= now + 60 then
    uploaded[slot] = { url = rec.file_url, at = rec.at }
    return rec.file_url
  end
  local name = "uploads/" .. sha .. ".json"
  local entry = cache.get(name, base, ttl)
  if entry and type(entry.value) == "table" and M.usable_url(entry.value.file_url) then
    uploaded[slot] = { url = entry.value.file_url, at = entry.at }
    if jr then jr:append { t = "upload", sha256 = sha, file_url = entry.value.file_url, storage = base, at = entry.at } end
    return entry.value.file_url
  end
  local f = failed[slot]
  if f and os.time() - f.at < M.SHARE_FAILURE then return nil, f.err end
  local done = runtime.signal()
  pending[slot] = done
  local ok, u, err = pcall(upload, client, sha)
  pending[slot] = nil
  if ok and not u then failed[slot] = { err = err, at = os.time() } end
  done:fire()
  if not ok then error(u, 0) end
  if not u then return nil, err end
  failed[slot] = nil
  uploaded[slot] = { url = u, at = now }
  cache.put(name, base, { file_url = u })
  if jr then
    local wok, werr = jr:append { t = "upload", sha256 = sha, file_url = u, storage = base, at = now }
    if not wok then return nil, errors.new("JOURNAL", tostring(werr)) end
  end
  return u
end

-- storage.materialize(client, body) -> the body to send (every file name at a file slot
-- replaced by its fal storage URL or a data: URI), or nil, err. Only the model's file slots
-- are looked at (m.slots, nested ones too: loras[].path), so a prompt that happens to read
-- like a file name is sent as written. A waiting call when it uploads.
function M.materialize(client, body)
  if not body:find(M.SCHEME, 1, true) then return body end
  local doc = json.decode(body)
  if type(doc) ~= "table" then return body end
  local m = client:model()
  local slots = m.slots and m.slots.props or {}
  local upload_them = M.uploads(client)
  local urls = {}
  local function resolve(v)
    local sha = type(v) == "string" and v:sub(1, #M.SCHEME) == M.SCHEME and v:sub(#M.SCHEME + 1)
    if not sha then return v end
    if not client.files[sha] then  -- prepared by another client: its file is not known here
      return nil, errors.new("NOT_SENT", "a file named " .. v .. " was prepared by another client; "
        .. "prepare the input with the client that sends it")
    end
    if urls[sha] then return urls[sha] end
    local u, err
    if upload_them then
      u, err = file_url(client, sha)
    else
      -- a data: URI for any file, as fal_client's encode_file makes one; for a file that is
      -- no image (a LoRA's weights) it says application/octet-stream, and whether the model
      -- reads it is the model's: with a fal key such files go to fal storage instead
      local bytes, f = bytes_of(client, sha)
      if bytes then u = inputs.data_uri(bytes, f.mime) else err = errors.new("FILE_CHANGED", f) end
    end
    if not u then return nil, err end
    urls[sha] = u
    return u
  end
  for field, v in pairs(doc) do
    local x, err = walk(slots[field], v, field, resolve, 1)
    if x == nil then return nil, err end
    doc[field] = x
  end
  return json.encode(doc)
end

-- Forget this process's uploads (tests).
function M.forget() uploaded, pending, failed = {}, {}, {} end

return M
