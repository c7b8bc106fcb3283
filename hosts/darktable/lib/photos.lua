-- lib/photos.lua (editflow_darktable): the darktable side of one photo's edit. Owns the way out (an
-- export through darktable's own pipeline: the photographer's develop settings, RAW files
-- included, capped in size) and the way back (the result imported, grouped with its source,
-- tagged editflow|<endpoint>, its prompt, seed, model, request id and cost in its metadata).
-- No editflow calls here: the entry file runs the jobs; this file only talks to darktable.
local dt = require "darktable"
local core = require "editflow.core"

local M = {}

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, bytes)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  local ok, werr = f:write(bytes)
  f:close()
  return ok ~= nil, werr
end

-- The JPEG as the same photo always exports it: darktable stamps each export with its time,
-- in the Exif and XMP segments (APP1) and in the ICC profile's creation date (lcms writes the
-- profile afresh). Without those the same photo with the same develop settings exports to the
-- same bytes, and the same bytes are what editflow's journal knows a job by: the next edit of
-- that photo reuses the finished (paid) job instead of sending it again. Dropping APP1 also
-- keeps camera serial numbers and GPS positions out of the upload; the profile itself stays
-- (its date zeroed: lcms writes no profile ID over it). nil when the bytes are not a JPEG
-- this walk understands (then they go as they are).
local ICC = "ICC_PROFILE\0"
function M.stable(bytes)
  if bytes:sub(1, 2) ~= "\255\216" then return nil end
  local out, i = { "\255\216" }, 3
  while i + 3 <= #bytes do
    if bytes:byte(i) ~= 0xFF then return nil end
    local marker = bytes:byte(i + 1)
    if marker == 0xDA then  -- start of scan: the rest is image data
      out[#out + 1] = bytes:sub(i)
      return table.concat(out)
    end
    local len = string.unpack(">I2", bytes, i + 2)
    local seg = bytes:sub(i, i + 1 + len)
    -- the first chunk of the profile: marker, length, ICC_PROFILE\0, chunk n/m, then the
    -- profile, whose date and time are its bytes 24..35
    if marker == 0xE2 and seg:sub(5, 16) == ICC and seg:byte(17) == 1 and #seg >= 18 + 36 then
      seg = seg:sub(1, 18 + 24) .. string.rep("\0", 12) .. seg:sub(18 + 37)
    end
    if marker ~= 0xE1 then out[#out + 1] = seg end
    i = i + 2 + len
  end
  return nil
end

-- photos.export(image, cap, dir, run) -> path, width, height | nil, message
-- Writes the image as darktable develops it, as a JPEG at most cap pixels on each side (never
-- upscaled), into dir as <run>-<id>-<name>.jpg: a file of this run alone, so no two runs ever
-- write or remove each other's (the journal knows the job by the bytes, not the name). Every photo goes this way, not only RAW files:
-- editflow takes PNG, JPEG, GIF and WebP only, and what the photographer sees in darktable is
-- the developed image, not the file on disk.
function M.export(image, cap, dir, run)
  local fmt = dt.new_format("jpeg")
  fmt.max_width, fmt.max_height = cap, cap
  local stem = tostring(image.filename):gsub("%.[^.]*$", ""):gsub("[^%w%-_]", "_")
  local path = string.format("%s/%s-%d-%s.jpg", dir, tostring(run or "0"), image.id, stem)
  os.remove(path)
  -- write_image answers dt_imageio_export's status: false (0) when it wrote the file
  local failed = fmt:write_image(image, path)
  local bytes = read(path)
  if failed or not bytes then
    os.remove(path)
    return nil, "darktable could not export " .. tostring(image.filename)
  end
  local clean = M.stable(bytes)
  if clean then
    local ok, err = write(path, clean)
    if not ok then os.remove(path) return nil, "cannot write " .. path .. ": " .. tostring(err) end
  end
  local w, h = core.image_size(clean or bytes)
  return path, w, h
end

-- The record a result keeps in darktable's notes: enough to tell how it was made and what it
-- cost, and to find the job again (its request id). The seed is the one sent: a model that
-- takes none was sent none, whatever was asked.
function M.notes(info)
  local lines = {
    "editflow: " .. info.endpoint,
    "prompt: " .. info.prompt,
    "seed: " .. (info.seed and tostring(info.seed)
      or (info.seed_asked and ("not taken by " .. info.endpoint)) or "none"),
    "model: " .. info.endpoint,
    "request id: " .. tostring(info.request_id),
  }
  if info.cost then
    lines[#lines + 1] = string.format("cost: $%.4f", info.cost)
  else
    lines[#lines + 1] = "cost: unknown"
  end
  if info.reused then lines[#lines + 1] = "reused from the journal (not paid again)" end
  return table.concat(lines, "\n")
end

-- photos.bring_back(paths, source, info) -> images: each result file imported into darktable
-- (next to its source when saved in the source's folder), grouped with the source (whose group
-- leader stays the leader), tagged editflow|<endpoint>, with the prompt as its description and
-- the full record in its notes. Importing a file darktable already has gives that image back,
-- so a reused job lands on the same image, not a copy.
function M.bring_back(paths, source, info)
  local tag = dt.tags.create("editflow|" .. info.endpoint)
  local images = {}
  for i, path in ipairs(paths) do
    local image = dt.database.import(path)
    if not image then return nil, "darktable could not import " .. path end
    image:group_with(source)
    dt.tags.attach(tag, image)
    image.description = info.prompt
    image.notes = M.notes(info)
    images[i] = image
  end
  return images
end

return M
