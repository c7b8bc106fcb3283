-- editflow.experiment.manifest: the folder's manifest.jsonl, one JSON object a line, one line per
-- job per run (the fields: README, "The manifest"). A run writes its own lines and keeps every
-- line of the folder's other runs, so the folder remembers each run made in it: the gallery's
-- run picker and `editflow report` read them all.
local core = require "editflow.core"
local json = require "editflow.json"

local M = {}

M.FILE = "manifest.jsonl"

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

-- A run's identity: its start in UTC to the millisecond (so ids sort by time) and a few
-- characters that tell apart two runs started in the same millisecond. A run's lines are
-- written after every other run's, so the latest run's lines are also the file's last.
function M.new_run()
  local now = core.walltime()
  local secs = math.floor(now)
  local ms = math.min(999, math.floor((now - secs) * 1000))
  local tag = core.hash(string.format("%.6f|%s|%s", now, tostring({}), tostring(core.monotime()))):sub(1, 4)
  return { id = os.date("!%Y%m%dT%H%M%S", secs) .. string.format("%03dZ-", ms) .. tag,
    started = os.date("!%Y-%m-%dT%H:%M:%S", secs) .. string.format(".%03dZ", ms) }
end

local function path_of(u)
  if type(u) == "table" then return u.path end
  return u
end

-- A local image as its path (it was sent as a data: URI or an upload of that file), a data:
-- URI given directly by its size, never megabytes of base64.
local function image_text(u)
  u = path_of(u)
  if type(u) == "string" and u:find("^data:") then return string.format("(data: URI, %d bytes)", #u) end
  return u
end

-- A copy of an input for the manifest (image fields as image_text has them).
function M.recordable(input)
  local out = {}
  for k, v in pairs(input) do out[k] = v end
  if out.image_url ~= nil then out.image_url = image_text(out.image_url) end
  if out.image_urls then
    local list = json.array {}
    for i, u in ipairs(out.image_urls) do list[i] = image_text(u) end
    out.image_urls = list
  end
  return out
end

-- The input images as given, in order (paths, URLs; data: URIs by their size).
function M.inputs(images)
  local list = json.array {}
  for i, u in ipairs(images or {}) do list[i] = image_text(u) end
  return list
end

-- manifest.write(dir, run_id, records) -> path. Lines of other runs are kept as they are (a
-- line that is not JSON too: it is not this run's to drop); this run's lines are replaced.
function M.write(dir, run_id, records)
  local lines = {}
  local path = join(dir, M.FILE)
  local old = io.open(path, "rb")
  if old then
    for line in old:lines() do
      local r = line ~= "" and json.decode(line)
      if line ~= "" and not (type(r) == "table" and r.run == run_id) then lines[#lines + 1] = line end
    end
    old:close()
  end
  for _, rec in ipairs(records) do lines[#lines + 1] = json.encode(rec) end
  local ok, err = core.write_file(path, table.concat(lines, "\n") .. "\n")
  if not ok then error("editflow: cannot write " .. path .. ": " .. tostring(err), 0) end
  return path
end

return M
