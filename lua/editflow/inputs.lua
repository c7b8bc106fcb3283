-- editflow.inputs: images given as local files become inputs the server can read.
-- A string that is not an http(s) or data: URL is a local path; editflow.file(path) says so
-- explicitly (for a file whose name looks like a URL). A local file is checked (exists, is
-- readable, is under the size limit, is really a PNG, JPEG, GIF or WebP by its bytes); it
-- goes out (editflow.storage) as a fal storage URL or a data: URI with the MIME type of what
-- it is, not of its name.
local core = require "editflow.core"

local M = {}

M.MAX_FILE_BYTES = 32 * 1024 * 1024

local FileRef = {}
FileRef.__index = FileRef
FileRef.__tostring = function(f) return "editflow.file(" .. f.path .. ")" end

-- editflow.file(path) -> a reference to a local image file.
function M.file(path)
  if type(path) ~= "string" or path == "" then
    error("editflow.file expects a path string, got " .. type(path), 2)
  end
  return setmetatable({ path = path, __editflow_file = true }, FileRef)
end

function M.is_url(s)
  return type(s) == "string" and (s:find("^[Hh][Tt][Tt][Pp][Ss]?://") ~= nil or s:find("^data:") ~= nil)
end

-- Reads and checks one local image; raises naming the field on any problem. Only a regular
-- file is read (a device such as /dev/zero, a FIFO or a socket is refused without blocking),
-- and never more than max_bytes of it, even if it grows meanwhile (core.read_file).
function M.load(field, path, max_bytes)
  max_bytes = max_bytes or M.MAX_FILE_BYTES
  local bytes, err = core.read_file(path, max_bytes)
  if not bytes then error(string.format("%s: cannot read image: %s", field, err), 0) end
  local _, mime = core.sniff(bytes)
  if not mime then
    error(string.format("%s: '%s' is not a PNG, JPEG, GIF or WebP image", field, path), 0)
  end
  return bytes, mime
end

function M.data_uri(bytes, mime)
  return "data:" .. mime .. ";base64," .. core.b64encode(bytes)
end

local IMAGE_EXT = { png = true, jpg = true, jpeg = true, webp = true, gif = true }

local function glob_to_pattern(g)
  return "^" .. g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", ".*"):gsub("%?", ".") .. "$"
end

-- editflow.images(spec, ...) -> sorted list of image paths. Each spec is a file, a folder (its
-- PNG, JPEG, WebP and GIF files) or a glob with * and ? in the last part ("photos/*.jpg");
-- folders and globs yield only files with an image extension whose bytes are an image, never
-- hidden ones.
-- Raises when a spec matches nothing, so a typo cannot make an empty experiment.
function M.images(...)
  local out = {}
  for _, spec in ipairs({ ... }) do
    if type(spec) ~= "string" or spec == "" then error("editflow.images expects paths or globs", 2) end
    local dir, last = spec:match("^(.*)/([^/]*)$")
    if not dir then dir, last = ".", spec end
    if dir == "" then dir = "/" end
    local found = {}
    local function is_image_file(path, name)
      local ext = name:match("%.([%w]+)$")
      if not ext or not IMAGE_EXT[ext:lower()] or name:sub(1, 1) == "." then return false end
      local f = io.open(path, "rb")
      if not f then return false end
      local head = f:read(16)  -- nil for a folder (read fails) or an empty file
      f:close()
      return head ~= nil and core.sniff(head) ~= nil  -- an image by its bytes, not only its name
    end
    local entries = core.listdir(spec)
    if entries then  -- a folder
      for _, name in ipairs(entries) do
        local path = (spec:sub(-1) == "/" and spec or spec .. "/") .. name
        if is_image_file(path, name) then found[#found + 1] = path end
      end
    elseif last:find("[%*%?]") then
      local pat = glob_to_pattern(last)
      for _, name in ipairs(core.listdir(dir) or {}) do
        local path = (dir == "." and not spec:find("^%./") and "" or (dir == "/" and "/" or dir .. "/")) .. name
        if name:match(pat) and is_image_file(path, name) then found[#found + 1] = path end
      end
    else
      local f = io.open(spec, "rb")
      if f then f:close() found[1] = spec end
    end
    if #found == 0 then error("editflow.images: nothing matches '" .. spec .. "'", 2) end
    table.sort(found)
    for _, p in ipairs(found) do out[#out + 1] = p end
  end
  return out
end

-- Splits a data: URI into its bytes and declared MIME type; nil, message if malformed.
function M.decode_data_uri(s)
  local mime, payload = s:match("^data:([^;,]*);base64,(.*)$")
  if not mime then
    return nil, "unsupported data: URI (only base64 data URIs are read)"
  end
  local bytes, err = core.b64decode(payload)
  if not bytes then return nil, "bad data: URI: " .. err end
  return bytes, mime ~= "" and mime or nil
end

return M
