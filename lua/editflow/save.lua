-- editflow.save: a result's images into files of their real format, never outside the folder,
-- never over a file this job did not write.
-- Downloads stream into a temporary file in the target folder and are renamed into place
-- only when complete and recognised as an image (fsync, then the name, off the loop's thread:
-- editflow.durable); data: URIs (and the inline images the journal kept as files) are written
-- the same way. A save returns once its folder's names are on disk too (one folder fsync
-- for all the jobs saving there at about the same time).
-- The file name is a cleaned stem (core.safe_name) plus the extension of the bytes' real
-- format, so a hostile URL, file_name or content type cannot choose where a file lands. When
-- that name is taken by a file holding other bytes (another job, another run, the user's
-- edit of an image saved before), the job's request id goes into the name instead: nothing
-- is ever replaced.
-- Each saved image's size and sha256 go to the journal with its path: a later run reuses a
-- file only when it is in the same folder (by identity, however the path is spelled) and
-- still holds those bytes, and brings back only the images that are missing or changed.
-- Bounded: at most `max_images` images a result, downloads through the client's semaphore
-- (a few at a time however many images), each retried through editflow.retry within the
-- job's deadline, slow ones cut off (under 512 B/s for 30 s: opts.low_speed_time).
-- Image URLs are fetched as they are, without any credential (they live on a CDN).
local core = require "editflow.core"
local durable = require "editflow.durable"
local http = require "editflow.http"
local errors = require "editflow.errors"
local events = require "editflow.events"
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

-- Whether the file at `path` holds exactly these bytes (a string), or the bytes of this digest
-- ({size, sha256}: a download, never read into memory).
local function same_content(path, bytes)
  if type(bytes) == "table" then
    local sum, size = core.sha256_file(path)
    return sum ~= nil and size == bytes.size and sum == bytes.sha256
  end
  local f = io.open(path, "rb")
  if not f then return false end
  local same = f:seek("end") == #bytes
  if same then
    f:seek("set", 0)
    same = f:read("a") == bytes
  end
  f:close()
  return same
end

-- The path for image `stem` of format `ext`, and whether it already holds these very bytes
-- (a run that saved it and stopped before recording that: nothing to write). The plain name,
-- unless a file with other bytes holds it -- whoever wrote it, this job included (the user
-- may have edited it since) -- then the job's request id goes into the name.
local function target(dir, stem, ext, opts, bytes)
  local tag = core.safe_name(opts.request_id or "job"):sub(1, 12)
  for n = 0, 100 do
    local path = n == 0 and join(dir, stem .. "." .. ext)
      or join(dir, string.format("%s.%s%s.%s", stem, tag, n > 1 and ("-" .. n) or "", ext))
    if not exists(path) then return path, false end
    if same_content(path, bytes) then return path, true end
  end
  return nil
end

-- What the journal keeps of a saved image: {size, sha256 (hex)}.
local function digest(bytes)
  return { size = #bytes, sha256 = (core.sha256(bytes):gsub(".", function(ch)
    return string.format("%02x", ch:byte())
  end)) }
end

-- "dev:ino" and the size of what path names (symlinks followed), or nil.
local function identity(path)
  local dev_ino, size = (core.file_stamp(path) or ""):match("^(%d+:%d+):(%d+):")
  return dev_ino, tonumber(size)
end

-- Where an image an earlier save recorded as `path` (with `rec` = {size, sha256}, or nil from
-- a journal older than those) is now, under the folder `dir`: -> that path and its digest when
-- the file is there and holds what editflow wrote; else nil and why not. The folders are
-- compared by identity, so `out`, `./out/`, `/abs/out` and a symlink to it are one folder.
local function kept(path, rec, dir)
  if type(path) ~= "string" or (rec ~= nil and type(rec) ~= "table") then return nil, "not recorded" end
  local folder, name = path:match("^(.*)/([^/]+)$")
  local here_dir = identity(dir)
  if not (folder and here_dir and identity(folder) == here_dir) then return nil, "saved in another folder" end
  local here = join(dir, name)
  local id, size = identity(here)
  if not id then return nil, "no longer there" end
  if rec and size ~= rec.size then return nil, "changed since it was saved" end
  local sum, n = core.sha256_file(here)
  if not sum then return nil, "no longer readable" end
  local d = { size = n, sha256 = sum }
  if rec and (d.sha256 ~= rec.sha256 or n ~= rec.size) then return nil, "changed since it was saved" end
  return here, d
end

-- save.reused(paths, files, dir) -> the paths (spelled under dir) of every image an earlier
-- save recorded (paths, and files: their {size, sha256}, absent in older journals), when all
-- are still there as editflow wrote them; else nil.
function M.reused(paths, files, dir)
  if type(paths) ~= "table" or #paths == 0 then return nil end
  local list = {}
  for i, p in ipairs(paths) do
    list[i] = kept(p, type(files) == "table" and files[i] or nil, dir)
    if not list[i] then return nil end
  end
  return list
end

local function write_bytes(dir, stem, bytes, opts, what)
  local ext = core.sniff(bytes)
  if not ext then return nil, fail("BAD_IMAGE", what .. ": the data is not an image", opts.request_id) end
  -- As for a download: the write never replaces, so a name taken between the look and the
  -- write (another process, or another save of this one while the write was on the disk
  -- thread) is looked for again.
  for _ = 1, 10 do
    local path, already = target(dir, stem, ext, opts, bytes)
    if not path then break end
    if already then return path, nil, digest(bytes) end
    local ok, werr, code = durable.write(path, bytes, "new")
    if ok then return path, nil, digest(bytes) end
    if code ~= "EXISTS" then return nil, fail("FILE_WRITE", werr, opts.request_id) end
  end
  return nil, fail("FILE_WRITE", what .. ": no free file name for " .. stem, opts.request_id)
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

-- One download try. -> path, or nil, err (err.status for an HTTP answer); got.digest is set
-- to the saved bytes' digest.
local function download_once(loop, dir, u, stem, opts, left, got)
  local budget = math.min(left or 300, 300)
  local file, ferr = durable.tempfile(dir)
  if not file then return nil, errors.from_transport("download " .. stem, ferr, "FILE_OPEN") end
  local t, err = http.start(loop, {
    url = u, file = file, follow = true, max_body = opts.max_bytes, what = "download " .. stem,
    timeout = math.max(1, math.floor(budget * 1000)), headers = { "Accept: image/*" },
    connect_timeout = math.max(1, math.floor(math.min(budget, 10) * 1000)),
    low_speed_limit = 512, low_speed_time = opts.low_speed_time or 30,
  })
  if file ~= dir then file:close() end  -- the transfer took its file (or removed it failing)
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
      -- Its digest, read in pieces on a disk worker (never the image in Lua's memory, nor
      -- the loop's thread held): compared with a file already under the name, and recorded.
      local sum, size_or_err = durable.digest(resp.file)
      local mine = sum and { size = size_or_err, sha256 = sum }
      if not mine then err = fail("FILE_WRITE", "download " .. stem .. ": " .. tostring(size_or_err), opts.request_id) end
      -- The name is taken between the look and the commit only by another process; the
      -- commit never replaces, so look again then.
      for _ = 1, mine and 10 or 0 do
        local already
        path, already = target(dir, stem, ext, opts, mine)
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
      if path then got.digest = mine
      elseif not err then  -- every name tried was taken meanwhile: a failure, never nil, nil
        err = fail("FILE_WRITE", "download " .. stem .. ": no free file name", opts.request_id)
      end
    end
  end
  tr:close()  -- removes the temporary file if it was not committed
  return path, err
end

-- save.save(loop, result, dir, opts) -> paths, nil, nil, files; or nil, err, paths saved
-- before the failure, their files. files[k] = {size=, sha256=} of paths[k] (for the journal).
-- opts: name (stem), max_bytes, max_images, low_speed_time (seconds a download may stay under
-- 512 B/s before it is cut off and retried, 30), request_id, retry (an editflow.retry context:
-- policy, deadline, budget), slots (a semaphore for downloads), blob_dir, own and own_files
-- (the paths, one an image, and their files this job saved before), made (a table of folders
-- already created, kept by the caller).
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

  local function fetch(i, stem)
    local img = images[i]
    local u = type(img) == "table" and img.url
    if type(u) ~= "string" then return nil, fail("BAD_RESPONSE", "image " .. i .. " has no url", rid) end
    if u:find("^data:") or u:find("^editflow%-blob:") then return save_inline(dir, stem, u, opts) end
    if #u > url.MAX then return nil, fail("BAD_RESPONSE", "image " .. i .. " has a URL over " .. url.MAX .. " bytes", rid) end
    if not u:find("^[Hh][Tt][Tt][Pp][Ss]?://") then
      return nil, fail("BAD_RESPONSE", "image " .. i .. " has an unsupported URL scheme", rid)
    end
    if opts.slots then opts.slots:acquire() end
    local got = {}
    local ok, path, err = pcall(retry.run, ctx, "download", function(left)
      return download_once(loop, dir, u, stem, opts, left, got)
    end)
    if opts.slots then opts.slots:release() end
    if not ok then error(path, 0) end
    return path, err, got.digest
  end

  -- An image an earlier save of this job recorded (one path an image, in order) and that is
  -- still here as editflow wrote it is kept as it is: not fetched again. One that is gone or
  -- was changed is saved again -- under another name if its own is taken -- and a failure
  -- to do so names the image and why it was not kept.
  local own = type(opts.own) == "table" and #opts.own == #images and opts.own or nil
  local own_files = type(opts.own_files) == "table" and opts.own_files or nil
  local function one(i)
    local stem = string.format("%s-%d", base, i)
    local why
    if own then
      local path, got = kept(own[i], own_files and own_files[i], dir)
      if path then return path, nil, got end
      why = got
    end
    local path, err, d = fetch(i, stem)
    if own and why ~= "saved in another folder" and why ~= "not recorded" then
      if path and why == "changed since it was saved" then
        events.warning(string.format("%s was changed since editflow saved it: left as it is; "
          .. "image %d saved as %s [request %s]", own[i], i, path, tostring(rid)))
      elseif not path and err then
        err.message = string.format("image %d (saved before as %s, %s) could not be saved again: %s",
          i, own[i], why, err.message)
      end
    end
    return path, err, d
  end

  -- Images of one result download concurrently (each in its own task), within the slots;
  -- a single image needs no task of its own.
  -- The names on disk too: what a crash must not lose is the folder entry as much as the bytes.
  local function synced(paths, err, files)
    local ok, ferr = durable.folder(dir)
    if not ok and not err then err = fail("FILE_WRITE", ferr, rid) end
    if err then return nil, err, paths, files end
    return paths, nil, nil, files
  end
  if #images == 1 then
    local path, err, d = one(1)
    if not path then return nil, err, {} end
    return synced({ path }, nil, { d })
  end
  local results, pending = {}, #images
  local done = runtime.signal()
  for i = 1, #images do
    runtime.spawn(function()
      local ok, path, err, d = pcall(one, i)
      if not ok then path, err = nil, fail("INTERNAL", tostring(path), rid) end
      results[i] = { path = path, err = err, digest = d }
      pending = pending - 1
      if pending == 0 then done:fire() end
    end)
  end
  done:wait()
  local paths, files, first_err = {}, {}, nil
  for i = 1, #images do
    local r = results[i]
    if r.path then
      local k = #paths + 1
      paths[k], files[k] = r.path, r.digest
    elseif not first_err then
      first_err = r.err
    end
  end
  return synced(paths, first_err, files)
end

return M
