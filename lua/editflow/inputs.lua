-- editflow.inputs: images (and other files) given as local files become inputs the server can
-- read. In a file field a string that is not an http(s) or data: URL is a local path;
-- editflow.file(path) says so explicitly (for a file whose name looks like a URL). A local
-- file is checked (exists, is readable, is under the size limit and, in an image field, is
-- really a PNG, JPEG, GIF or WebP by its bytes); it goes out (editflow.storage) as a fal
-- storage URL or a data: URI with the MIME type of what it is, not of its name.
local core = require "editflow.core"

local M = {}

M.MAX_FILE_BYTES = 32 * 1024 * 1024
M.OCTET_STREAM = "application/octet-stream"  -- a file that is no image (load's any_file)

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

-- Reads and checks one local file -> bytes, MIME type; raises naming the field on any
-- problem. Only a regular file is read (a device such as /dev/zero, a FIFO or a socket is
-- refused without blocking), and never more than max_bytes of it, even if it grows meanwhile
-- (core.read_file). An image field (the default) takes only a PNG, JPEG, GIF or WebP by its
-- bytes; with any_file (a field that is no image field: a LoRA's weights, say) any file goes,
-- typed by its bytes when they are an image, else application/octet-stream (what fal's JS
-- client sends for a Blob of no known type). The type is never taken from the file's name.
function M.load(field, path, max_bytes, any_file)
  max_bytes = max_bytes or M.MAX_FILE_BYTES
  local bytes, err = core.read_file(path, max_bytes)
  if not bytes then
    error(string.format("%s: cannot read %s: %s", field, any_file and "file" or "image", err), 0)
  end
  local _, mime = core.sniff(bytes)
  if not mime then
    if any_file then return bytes, M.OCTET_STREAM end
    error(string.format("%s: '%s' is not a PNG, JPEG, GIF or WebP image", field, path), 0)
  end
  return bytes, mime
end

function M.data_uri(bytes, mime)
  return "data:" .. mime .. ";base64," .. core.b64encode(bytes)
end

local IMAGE_EXT = { png = true, jpg = true, jpeg = true, webp = true, gif = true }

-- A name the folder and glob forms take: an image extension, not hidden, and an image by its
-- first bytes, not only by its name. path is a regular file here (core.glob "files"); it is
-- opened only for those bytes (a FIFO swapped in since would make the open wait).
local function is_image_file(path)
  local name = path:match("[^/]*$")
  local ext = name:match("%.(%w+)$")
  if not ext or not IMAGE_EXT[ext:lower()] or name:sub(1, 1) == "." then return false end
  local f = io.open(path, "rb")
  if not f then return false end
  local head = f:read(16)  -- nil for an empty file
  f:close()
  return head ~= nil and core.sniff(head) ~= nil
end

-- Quotes what glob(3) would read as magic, so a folder's own name matches only itself.
local function glob_quote(s)
  return (s:gsub("[\\%*%?%[{]", "\\%0"):gsub("^~", "\\~"))
end

-- "~" or "~user" at the start: that home folder (glob(3)'s tilde expansion) and the rest of
-- the spec as written, so "~/photos/" is a folder spec like any other. Without a home (no
-- such user, a C library without tilde expansion) the spec stays as it is.
local function split_home(spec)
  local user, rest = spec:match("^(~[^/]*)(.*)$")
  local home = user and core.glob(user)
  if not home or #home ~= 1 then return "", spec end
  return home[1], rest
end

-- One spec's paths in byte order (core.glob sorts so; no table.sort, which follows the
-- locale), or nil, message when glob(3) failed.
local function expand(spec)
  local home, rest = split_home(spec)
  local path = home .. rest
  local pattern
  if core.listdir(path) then  -- a folder: its image files, never those in its subfolders
    pattern = glob_quote(path:sub(-1) == "/" and path or path .. "/") .. "*"
  elseif rest:find("[%*%?%[{]") then
    pattern = glob_quote(home) .. rest
  else
    return core.file_stamp(path) and { path } or {}  -- a file, taken as is (load checks it)
  end
  local found, err = core.glob(pattern, "files")
  if not found then return nil, err end
  local out = {}
  for _, p in ipairs(found) do
    if is_image_file(p) then out[#out + 1] = p end
  end
  return out
end

-- editflow.images(spec, ...) -> list of image paths, each spec's in byte order, the specs in
-- the order given. Each spec is a file (taken as is), a folder (its image files) or a glob:
-- glob(3) patterns with * ? [...] in any part ("shoots/*/*.jpg", "[ab].png"), {a,b} where
-- the C library has it, a leading ~ for the home folder, and \ quoting the next character.
-- Folders and globs yield only regular files with a PNG, JPEG, WebP or GIF extension whose
-- bytes are such an image, and never hidden ones: * and ? never match a leading dot, and a
-- file whose name starts with a dot is left out even when the glob spells the dot; a hidden
-- folder is searched only when named (".drafts/*.png").
-- Raises when a spec matches nothing, so a typo cannot make an empty experiment.
function M.images(...)
  local out = {}
  for _, spec in ipairs({ ... }) do
    if type(spec) ~= "string" or spec == "" then error("editflow.images expects paths or globs", 2) end
    local found, err = expand(spec)
    if not found then error("editflow.images: " .. err, 2) end
    if #found == 0 then error("editflow.images: nothing matches '" .. spec .. "'", 2) end
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
