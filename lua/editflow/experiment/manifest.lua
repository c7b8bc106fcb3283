-- editflow.experiment.manifest: the folder's manifest.jsonl, one JSON object a line, one line per
-- job per run (the fields: README, "The manifest"). A run writes its own lines and keeps every
-- line of the folder's other runs, so the folder remembers each run made in it: the gallery's
-- run picker and `editflow report` read them all.
local core = require "editflow.core"
local json = require "editflow.json"

local M = {}

M.FILE = "manifest.jsonl"

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

M.MAX_BYTES = 1024 * 1024 * 1024  -- bytes of manifest.jsonl read at most

-- The folder's manifest lines, read as a regular file only (a FIFO or a device in its place
-- is never opened: it would hold the run), none when there is no manifest.
local function each_line(dir)
  local path = join(dir, M.FILE)
  local text = core.file_stamp(path) and core.read_file(path, M.MAX_BYTES) or ""
  return text:gmatch("[^\n]+")
end

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

-- manifest.prompt_names(dir) -> { [template] = name }: the names the folder's earlier runs gave
-- their prompt templates, so a prompt keeps its name (p1, p2, ...) from run to run and a new
-- one gets a name no earlier template had.
-- Every record (JSON object) of the folder's manifest, in file order, to fn(record).
local function each_record(dir, fn)
  for line in each_line(dir) do
    local r = json.decode(line)
    if type(r) == "table" then fn(r) end
  end
end

function M.prompt_names(dir)
  local names = {}
  each_record(dir, function(r)
    if type(r.template) == "string" and type(r.prompt_name) == "string" then names[r.template] = r.prompt_name end
  end)
  return names
end

-- manifest.judged(dir) -> { [model .. "\n" .. slug] = true } for the jobs an earlier run saved
-- and had judged (a score or an answer read; a judge call that failed is to be made again).
function M.judged(dir)
  local set = {}
  each_record(dir, function(r)
    if r.status == "done" and type(r.judge) == "table" and type(r.judge.request_id) == "string"
        and type(r.model) == "string" and type(r.slug) == "string" then
      set[r.model .. "\n" .. r.slug] = true
    end
  end)
  return set
end

-- manifest.write(dir, run_id, records) -> path. Lines of other runs are kept as they are (a
-- line that is not JSON too: it is not this run's to drop); this run's lines are replaced.
function M.write(dir, run_id, records)
  local lines = {}
  local path = join(dir, M.FILE)
  for line in each_line(dir) do
    local r = json.decode(line)
    if not (type(r) == "table" and r.run == run_id) then lines[#lines + 1] = line end
  end
  for _, rec in ipairs(records) do lines[#lines + 1] = json.encode(rec) end
  local ok, err = core.write_file(path, table.concat(lines, "\n") .. "\n")
  if not ok then error("editflow: cannot write " .. path .. ": " .. tostring(err), 0) end
  return path
end

return M
