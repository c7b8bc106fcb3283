-- editflow.save: a result's images into files of their real format, never outside the folder.
-- Downloads stream into a temporary file in the target folder and are renamed into place
-- only when complete and recognised as an image (engine: fsync, rename, fsync the folder);
-- data: URIs are decoded and written the same way. The file name is built from a cleaned
-- stem (core.safe_name: no separators, no leading dots) and the extension of the bytes'
-- real format, so a hostile URL, file_name or content type cannot choose where a file lands.
-- Image URLs are fetched as they are, without any credential (they live on a CDN).
local core = require "editflow.core"
local http = require "editflow.http"
local errors = require "editflow.errors"
local inputs = require "editflow.inputs"
local retry = require "editflow.retry"
local runtime = require "editflow.runtime"

local M = {}

-- Folders this process has already created: mkdir -p once per folder, not once per job.
local made = {}

local function join(dir, name)
  if dir:sub(-1) == "/" then return dir .. name end
  return dir .. "/" .. name
end

local function fail(code, msg, request_id)
  if request_id then msg = msg .. " [request " .. request_id .. "]" end
  return errors.new(code, msg, { request_id = request_id })
end

local function save_data_uri(dir, stem, uri, request_id)
  local bytes, err = inputs.decode_data_uri(uri)
  if not bytes then return nil, fail("BAD_IMAGE", "image " .. stem .. ": " .. err, request_id) end
  local ext = core.sniff(bytes)
  if not ext then return nil, fail("BAD_IMAGE", "image " .. stem .. ": the data is not an image", request_id) end
  local path = join(dir, stem .. "." .. ext)
  local ok, werr = core.write_file(path, bytes)
  if not ok then return nil, fail("FILE_WRITE", werr, request_id) end
  return path
end

local function finish_download(loop, t, dir, stem, request_id)
  local resp, tr = http.finish(loop, t, "download " .. stem, true)
  if not resp then
    tr.request_id = request_id  -- on failure the second value is the error
    return nil, tr
  end
  local path, err
  if resp.status ~= 200 then
    err = errors.from_http(resp, "download " .. stem, request_id)
  else
    local ext = core.sniff(resp.head)
    if not ext then
      err = fail("BAD_IMAGE", "download " .. stem .. ": the server sent something that is not an image", request_id)
    else
      path = join(dir, stem .. "." .. ext)
      local ok, cerr = tr:commit(path)
      if not ok then path, err = nil, fail("FILE_WRITE", cerr, request_id) end
    end
  end
  tr:close()  -- removes the temporary file if it was not committed
  return path, err
end

-- save.save(loop, result, dir, {name=, max_bytes=, timeout=, request_id=})
--   -> paths, or nil, err, paths saved before the failure
function M.save(loop, result, dir, opts)
  local rid = opts.request_id
  local images = type(result) == "table" and result.images
  if type(images) ~= "table" or #images == 0 then
    return nil, fail("BAD_RESPONSE", "the result holds no images", rid), {}
  end
  if not made[dir] then
    local ok, merr = core.mkdir(dir)
    if not ok then return nil, fail("FILE_WRITE", merr, rid), {} end
    made[dir] = true
  end
  local base = core.safe_name(opts.name or "image")

  local function start(u, stem)
    local t, err = http.start(loop, {
      url = u, file = dir, follow = true, max_body = opts.max_bytes, what = "download " .. stem,
      timeout = math.floor((opts.timeout or 300) * 1000), headers = { "Accept: image/*" },
      low_speed_limit = 1, low_speed_time = 60,
    })
    return t and { t = t, stem = stem, url = u } or { err = err }
  end

  -- Start every download first so they run concurrently on the loop.
  local started = {}
  for i, img in ipairs(images) do
    local stem = string.format("%s-%d", base, i)
    local u = type(img) == "table" and img.url
    if type(u) ~= "string" then
      started[i] = { err = fail("BAD_RESPONSE", "image " .. i .. " has no url", rid) }
    elseif u:find("^data:") then
      started[i] = { data = u, stem = stem }
    elseif u:find("^[Hh][Tt][Tt][Pp][Ss]?://") then
      started[i] = start(u, stem)
    else
      started[i] = { err = fail("BAD_RESPONSE", "image " .. i .. " has an unsupported URL scheme", rid) }
    end
  end

  local paths, first_err = {}, nil
  for i = 1, #images do
    local s, path, err = started[i], nil, nil
    if s.err then err = s.err
    elseif s.data then path, err = save_data_uri(dir, s.stem, s.data, rid)
    else
      -- A download that failed on the way (5xx, 429, a dropped connection) is tried again,
      -- per the client's retry policy; a file that is not an image is not.
      local policy = opts.retry or retry.policy()
      for attempt = 1, policy.attempts do
        path, err = finish_download(loop, s.t, dir, s.stem, rid)
        local resp_like = err and err.status and { status = err.status, headers = {} } or nil
        if path or attempt == policy.attempts or err.code == "BAD_IMAGE" or err.code == "FILE_WRITE"
            or not retry.retryable("download", resp_like, not resp_like and err or nil) then
          break
        end
        runtime.sleep(retry.delay(policy, attempt))
        local again = start(s.url, s.stem)
        if again.err then err = again.err break end
        s.t = again.t
      end
    end
    if path then paths[#paths + 1] = path elseif not first_err then first_err = err end
  end
  if first_err then return nil, first_err, paths end
  return paths
end

return M
