-- editflow.save: a result's images into files of their real format, never outside the folder,
-- never over a file this job did not write.
-- Downloads stream into a temporary file in the target folder and are renamed into place
-- only when complete and recognised as an image (fsync, then the name, off the loop's thread:
-- editflow.durable); data: URIs (and the inline images the journal kept as files) are written
-- the same way. A save returns once its folder's names are on disk too (one folder fsync
-- for all the jobs saving there at about the same time).
-- The file name is a cleaned stem (core.safe_name) plus the extension of the bytes' real
-- format, so a hostile URL, file_name or content type cannot choose where a file lands. When
-- that name is taken by a file this job did not write (another job, another run), the job's
-- request id goes into the name instead of replacing it.
-- Bounded: at most `max_images` images a result, downloads through the client's semaphore
-- (a few at a time however many images), each retried through editflow.retry within the
-- job's deadline, slow ones cut off (under 512 B/s for 30 s).
-- Image URLs are fetched as they are, without any credential (they live on a CDN).
local core = require "editflow.core"
local durable = require "editflow.durable"
local http = require "editflow.http"
local errors = require "editflow.errors"
local inputs = require "editflow.inputs"
local retry = require "editflow.retry"
local runtime = require "editflow.runtime"
local url = require "editflow.url"

local M = {}


local function join(dir, name)
  if dir:sub(-1) == "/" then return dir .. name end
  return dir .. "/" .. name
end

local function fail(code, msg, request_id)
  if request_id then msg = msg .. " [request " .. request_id .. "]" end
  return errors.new(code, msg, { request_id = request_id })
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

-- Whether the file at `path` holds exactly these bytes (or the bytes of the file `other`).
local function same_content(path, bytes, other)
  local f = io.open(path, "rb")
  if not f then return false end
  local size = f:seek("end")
  local want = bytes and #bytes
  local g
  if not want then
    g = io.open(other, "rb")
    want = g and g:seek("end")
    if g then g:seek("set", 0) end
  end
  local same = size == want
  if same then
    f:seek("set", 0)
    local mine = f:read("a")
    same = mine == (bytes or g:read("a"))
  end
  f:close()
  if g then g:close() end
  return same
end

-- The path for image `stem` of format `ext`, and whether it already holds these very bytes
-- (a run that saved it and stopped before recording that: nothing to write). The plain name,
-- unless another file holds it; then the job's request id goes into the name.
local function target(dir, stem, ext, opts, bytes, tmp)
  local tag = core.safe_name(opts.request_id or "job"):sub(1, 12)
  for n = 0, 100 do
    local path = n == 0 and join(dir, stem .. "." .. ext)
      or join(dir, string.format("%s.%s%s.%s", stem, tag, n > 1 and ("-" .. n) or "", ext))
    if not exists(path) then return path, false end
    for _, p in ipairs(opts.own or {}) do
      if p == path then return path, false end  -- this job wrote it in an earlier run
    end
    if same_content(path, bytes, tmp) then return path, true end
  end
  return nil
end

local function write_bytes(dir, stem, bytes, opts, what)
  local ext = core.sniff(bytes)
  if not ext then return nil, fail("BAD_IMAGE", what .. ": the data is not an image", opts.request_id) end
  local path, already = target(dir, stem, ext, opts, bytes)
  if not path then return nil, fail("FILE_WRITE", what .. ": no free file name for " .. stem, opts.request_id) end
  if already then return path end
  local ok, werr = durable.write(path, bytes)
  if not ok then return nil, fail("FILE_WRITE", werr, opts.request_id) end
  return path
end

local function save_inline(dir, stem, u, opts)
  local bytes, err
  local blob = u:match("^editflow%-blob:([%w._-]+)$")
  if blob then  -- an inline image the journal kept (editflow.lifecycle)
    if not opts.blob_dir then return nil, fail("BAD_IMAGE", "image " .. stem .. ": its journal copy is not here", opts.request_id) end
    local f
    f, err = io.open(join(opts.blob_dir, blob), "rb")
    if f then bytes = f:read("a") f:close() end
  else
    bytes, err = inputs.decode_data_uri(u)
  end
  if not bytes then return nil, fail("BAD_IMAGE", "image " .. stem .. ": " .. tostring(err), opts.request_id) end
  return write_bytes(dir, stem, bytes, opts, "image " .. stem)
end

-- One download try. -> path, or nil, err (err.status for an HTTP answer).
local function download_once(loop, dir, u, stem, opts, left)
  local budget = math.min(left or 300, 300)
  local t, err = http.start(loop, {
    url = u, file = dir, follow = true, max_body = opts.max_bytes, what = "download " .. stem,
    timeout = math.max(1, math.floor(budget * 1000)), headers = { "Accept: image/*" },
    connect_timeout = math.max(1, math.floor(math.min(budget, 10) * 1000)),
    low_speed_limit = 512, low_speed_time = 30,
  })
  if not t then return nil, err end
  local resp, tr = http.finish(loop, t, "download " .. stem, true)
  if not resp then
    tr.request_id = opts.request_id  -- on failure the second value is the error
    return nil, tr
  end
  local path
  if resp.status ~= 200 then
    err = errors.from_http(resp, "download " .. stem, opts.request_id)
  else
    local ext = core.sniff(resp.head)
    if not ext then
      err = fail("BAD_IMAGE", "download " .. stem .. ": the server sent something that is not an image", opts.request_id)
    else
      -- The name is taken between the look and the commit only by another process; the
      -- commit never replaces, so look again then.
      for _ = 1, 10 do
        local already
        path, already = target(dir, stem, ext, opts, nil, resp.file)
        if not path then
          err = fail("FILE_WRITE", "download " .. stem .. ": no free file name", opts.request_id)
          break
        end
        if already then break end
        local ok, cerr, code = durable.commit(tr, path, "new")
        if ok then break end
        path = nil
        if code ~= "EXISTS" then err = fail("FILE_WRITE", cerr, opts.request_id) break end
      end
    end
  end
  tr:close()  -- removes the temporary file if it was not committed
  return path, err
end

-- save.save(loop, result, dir, opts) -> paths, or nil, err, paths saved before the failure.
-- opts: name (stem), max_bytes, max_images, request_id, retry (an editflow.retry context:
-- policy, deadline, budget), slots (a semaphore for downloads), blob_dir, own (paths this job
-- wrote before), made (a table of folders already created, kept by the caller).
function M.save(loop, result, dir, opts)
  local rid = opts.request_id
  local images = type(result) == "table" and result.images
  if type(images) ~= "table" or #images == 0 then
    return nil, fail("BAD_RESPONSE", "the result holds no images", rid), {}
  end
  local max = opts.max_images or 100
  if #images > max then
    return nil, fail("TOO_MANY_IMAGES", string.format("the result holds %d images, over the limit of %d",
      #images, max), rid), {}
  end
  local made = opts.made or {}
  if not made[dir] then
    local ok, merr = core.mkdir(dir)
    if not ok then return nil, fail("FILE_WRITE", merr, rid), {} end
    made[dir] = true
  end
  local base = core.safe_name(opts.name or "image")
  local ctx = opts.retry or { policy = retry.policy(), sleep = runtime.sleep }

  local function one(i)
    local img = images[i]
    local stem = string.format("%s-%d", base, i)
    local u = type(img) == "table" and img.url
    if type(u) ~= "string" then return nil, fail("BAD_RESPONSE", "image " .. i .. " has no url", rid) end
    if u:find("^data:") or u:find("^editflow%-blob:") then return save_inline(dir, stem, u, opts) end
    if #u > url.MAX then return nil, fail("BAD_RESPONSE", "image " .. i .. " has a URL over " .. url.MAX .. " bytes", rid) end
    if not u:find("^[Hh][Tt][Tt][Pp][Ss]?://") then
      return nil, fail("BAD_RESPONSE", "image " .. i .. " has an unsupported URL scheme", rid)
    end
    if opts.slots then opts.slots:acquire() end
    local ok, path, err = pcall(retry.run, ctx, "download", function(left)
      return download_once(loop, dir, u, stem, opts, left)
    end)
    if opts.slots then opts.slots:release() end
    if not ok then error(path, 0) end
    return path, err
  end

  -- Images of one result download concurrently (each in its own task), within the slots;
  -- a single image needs no task of its own.
  -- The names on disk too: what a crash must not lose is the folder entry as much as the bytes.
  local function synced(paths, err)
    local ok, ferr = durable.folder(dir)
    if not ok and not err then err = fail("FILE_WRITE", ferr, rid) end
    if err then return nil, err, paths end
    return paths
  end
  if #images == 1 then
    local path, err = one(1)
    if not path then return nil, err, {} end
    return synced({ path })
  end
  local results, pending = {}, #images
  local done = runtime.signal()
  for i = 1, #images do
    runtime.spawn(function()
      local ok, path, err = pcall(one, i)
      if not ok then path, err = nil, fail("INTERNAL", tostring(path), rid) end
      results[i] = { path = path, err = err }
      pending = pending - 1
      if pending == 0 then done:fire() end
    end)
  end
  done:wait()
  local paths, first_err = {}, nil
  for i = 1, #images do
    local r = results[i]
    if r.path then paths[#paths + 1] = r.path elseif not first_err then first_err = r.err end
  end
  return synced(paths, first_err)
end

return M
