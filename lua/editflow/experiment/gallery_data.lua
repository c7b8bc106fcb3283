-- editflow.experiment.gallery_data: what an experiment folder's index.html shows, as one table
-- the page carries as JSON. Read from the folder, never from a run in memory: every run in
-- DIR/manifest.jsonl (through editflow.experiment.report, which owns reading it: the runs,
-- their order, the records of "all" runs and the summaries), the ratings in DIR/ratings.json.
--
-- The data: dims (the dimensions a job can be placed or filtered by: prompt, model, every
-- variable, seed, run and status, each with its values in order of first use), one entry per
-- job of every run (its value in each dimension as k[i], a 0-based index into dims[i].values),
-- the input images (local ones copied once into DIR/inputs/, URLs only linked), the runs, one
-- summary per run and for "all", the folder's ratings and the first view. Records written
-- before runs, models and prompts were named read as the manifest contract says (report.lua).
local core = require "editflow.core"
local inputs = require "editflow.inputs"
local json = require "editflow.json"
local price = require "editflow.price"
local report = require "editflow.experiment.report"

local M = {}

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end
M.join = join

-- A relative URL for a file beside the page: every byte outside a small safe set is
-- percent-encoded, so a name with '#', '?', '%' or a space still points at its file.
function M.rel_url(path)
  return (path:gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", c:byte()) end))
end
local rel_url = M.rel_url

local IMAGE_FILE = { png = true, jpg = true, jpeg = true, webp = true, gif = true }

-- A variable's value in full (an image by its path) and as a header shows it: an image path
-- by its file's stem, as the images' own names do.
local function value_text(v)
  if type(v) == "table" and v.path then return tostring(v.path) end
  if type(v) == "table" then return json.encode(v) end
  return tostring(v)
end

function M.value_label(v)
  local s = value_text(v)
  local ext = s:match("%.(%w+)$")
  if not inputs.is_url(s) and (s:find("/", 1, true) or (ext and IMAGE_FILE[ext:lower()])) then
    s = s:match("([^/]*)$"):gsub("%.%w+$", "")
  end
  return s
end
local value_label = M.value_label

-- A copy of a value the JSON encoder can write and a browser reads back exactly: integers
-- past 2^53 (fal's seeds) as text, anything else odd by its tostring.
local function plain(v, depth)
  local ty = type(v)
  if ty == "string" or ty == "boolean" then return v end
  if ty == "number" then
    if math.type(v) == "integer" and (v >= 2^53 or v <= -2^53) then return tostring(v) end
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    return v
  end
  if ty == "table" and v ~= json.null then
    if v.path ~= nil then return tostring(v.path) end
    if depth > 16 then return "(too deep)" end
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    local list = n > 0 and n == #v or getmetatable(v) ~= nil
    local out = list and json.array {} or {}
    for k, x in pairs(v) do out[list and k or tostring(k)] = plain(x, depth + 1) end
    return out
  end
  return tostring(v)
end
M.plain = plain

local function num(v) return type(v) == "number" and v == v and v or nil end
local function text(v) return type(v) == "string" and v or nil end

-- ---- input images ----

-- Copies a local input image into dir/inputs; returns its relative path, or nil when it
-- cannot be read (it is listed by name then).
local function copy_input(dir, path)
  local ok, bytes = pcall(inputs.load, "gallery", path)
  if not ok then return nil end
  local ext = core.sniff(bytes) or "img"
  local stem = core.safe_name(path:match("([^/]*)$")):gsub("%.[^.]*$", "")
  local name = core.hash(path):sub(1, 10) .. "-" .. stem .. "." .. ext
  assert(core.mkdir(join(dir, "inputs")))
  assert(core.write_file(join(join(dir, "inputs"), name), bytes))
  return "inputs/" .. name
end

-- Registers one input image (a path, a URL or a data: URI) once; returns its 0-based number
-- in the page's list of inputs.
local function add_input(dir, list, u)
  if type(u) == "table" and u.path then u = u.path end
  if type(u) ~= "string" then return nil end
  if list.index[u] then return list.index[u] end
  local e
  if u:find("^data:") then
    e = { kind = "inline", name = "inline image", title = string.format("data: URI, %d bytes", #u) }
  elseif inputs.is_url(u) then
    e = { kind = "url", href = u, name = u:match("([^/?#]*)[?#]?[^/]*$") or u, title = u }
  else
    local src = copy_input(dir, u)
    e = { kind = src and "file" or "missing", src = src and rel_url(src), name = u:match("([^/]*)$"), title = u }
  end
  if e.name == "" then e.name = e.title end
  list[#list + 1] = e
  list.index[u] = #list - 1
  return #list - 1
end

-- A record's input images in order: `inputs` as given, or (records before it) the body's
-- image_urls or image_url.
local IMAGE_FIELDS = { image_urls = true, image_url = true }
local function images_of(r)
  if type(r.inputs) == "table" then return r.inputs end
  local input = type(r.input) == "table" and r.input or {}
  local v = input.image_urls or input.image_url
  if v == nil then return {} end
  if type(v) ~= "table" or v.path then return { v } end
  return v
end

-- ---- dimensions ----

-- Every distinct value of a dimension gets a label unique within it and never empty, so a
-- filter in the URL (filter=style:oil) names exactly one value and "style:" can mean none.
local function add_value(dim, key, label, title)
  if dim.at[key] then return dim.at[key] end
  if label == "" then label = "(empty)" end
  local base, n = label, 1
  while dim.taken[label] do n = n + 1; label = base .. " (" .. n .. ")" end
  dim.taken[label] = true
  dim.values[#dim.values + 1] = { label = label, title = title ~= label and title or nil }
  dim.at[key] = #dim.values - 1
  return #dim.values - 1
end

local STATUS_ORDER = { "done", "failed", "held", "skipped", "missing" }

-- The seed a job was planned with (the body's seed), not the one fal chose for a job sent
-- without one: those differ on every job and would make a useless axis.
local function planned_seed(r)
  if type(r.input) == "table" then return r.input.seed end
  return r.seed  -- (a record without its input: the seed it has)
end

-- The dimensions: variables take their own names; prompt, model, seed, run, status and the
-- "none" axis take theirs unless a variable (in records the experiment did not check) has it.
local function new_dims(records)
  local names, seen = {}, {}
  local any_seed = false
  for _, r in ipairs(records) do
    for k in pairs(r.vars) do
      if not seen[k] then seen[k] = true; names[#names + 1] = k end
    end
    if planned_seed(r) ~= nil then any_seed = true end
  end
  table.sort(names)
  local taken = {}
  for _, k in ipairs(names) do taken[k] = true end
  local function free(id) while taken[id] do id = id .. "*" end taken[id] = true return id end
  local dims = {}
  local function dim(id, label, axis, kind, var)
    local d = { id = id, label = label, axis = axis, kind = kind, var = var, values = {}, at = {}, taken = {} }
    dims[#dims + 1] = d
    return d
  end
  local by = {}
  by.prompt = dim(free("prompt"), "prompt", true, "prompt")
  by.model = dim(free("model"), "model", true, "model")
  by.vars = {}
  for _, k in ipairs(names) do by.vars[#by.vars + 1] = dim(k, k, true, "var", k) end
  if any_seed then by.seed = dim(free("seed"), "seed", true, "seed") end
  by.run = dim(free("run"), "run", true, "run")
  by.status = dim(free("status"), "status", false, "status")
  return dims, by, free("none")
end

-- ---- jobs ----

local function outputs_of(r)
  local outs = json.array {}
  for i, o in ipairs(type(r.outputs) == "table" and r.outputs or {}) do
    if type(o) == "table" and type(o.path) == "string" then
      local j = type(o.judge) == "table" and o.judge or nil
      outs[#outs + 1] = { src = rel_url(o.path), name = o.path, width = num(o.width), height = num(o.height),
        bytes = num(o.bytes), score = j and num(j.score), judge = j and (text(j.text) or (type(j.error) == "table" and text(j.error.message))) }
    end
    if i > 64 then break end
  end
  return outs
end

local function judge_of(r)
  local j = type(r.judge) == "table" and r.judge or nil
  if not j then return nil end
  local err = type(j.error) == "table" and j.error or nil
  return { score = num(j.score), text = text(j.text), endpoint = text(j.endpoint), n = num(j.n),
    cost = num(j.cost), request_id = text(j.request_id),
    error = err and ((text(err.code) or "") .. (err.message and (": " .. tostring(err.message)) or "")) or nil }
end

local function price_text(p)
  if type(p) ~= "table" then return nil end
  if type(p.unit_price) ~= "number" then return text(p.source) end
  local ok, s = pcall(price.describe, p)
  return ok and s or nil
end

-- One job of the page from one manifest record (normalised by report.lua).
local function job_of(dir, list, r, run_pos)
  local input = type(r.input) == "table" and r.input or {}
  local params = {}
  for k, v in pairs(input) do
    if k ~= "prompt" and k ~= "seed" and not IMAGE_FIELDS[k] then params[k] = plain(v, 0) end
  end
  local refs = json.array {}
  for _, u in ipairs(images_of(r)) do refs[#refs + 1] = add_input(dir, list, u) end
  local e = type(r.error) == "table" and r.error or nil
  local seed = r.seed
  if seed == nil then seed = input.seed end
  return {
    index = math.type(r.index) == "integer" and r.index or 0, run = run_pos, slug = text(r.slug),
    status = text(r.status) or "missing", prompt = text(r.prompt) or text(input.prompt) or "",
    params = params, inputs = refs, outputs = outputs_of(r),
    request_id = text(r.request_id), reused = r.reused == true or nil, interrupted = r.interrupted == true or nil,
    seed = seed ~= nil and tostring(seed) or nil, cost = num(r.cost) or 0, spent = num(r.cost_estimate),
    price = price_text(r.price), timings = type(r.timings) == "table" and plain(r.timings, 0) or nil,
    elapsed = num(r.elapsed), nsfw = type(r.nsfw) == "table" and plain(r.nsfw, 0) or nil,
    error = e and { code = e.code and tostring(e.code), type = e.type and tostring(e.type),
      message = e.message and tostring(e.message) } or nil,
    judge = judge_of(r),
  }
end

-- ---- the whole ----

-- Reads the folder: -> records by run ({id -> list}), the runs oldest first, the records of
-- the "all" view, the ratings. No manifest: no runs.
local function load(dir)
  local all, meta = report.load(dir, { run = "all" })
  if not all then return {}, {}, {}, {} end
  -- every run's records from the one reading (the file is read once, however many runs)
  return meta.by_run or {}, meta.runs, all, meta.ratings or {}
end

-- The folder's ratings as the page reads them: only well-formed fields (a hand-edited file
-- with a bad field shows the rest).
local function clean_ratings(doc)
  local out = {}
  for id, e in pairs(doc) do
    if type(id) == "string" and type(e) == "table" then
      local c = {}
      if math.type(e.stars) == "integer" and e.stars >= 1 and e.stars <= 5 then c.stars = e.stars end
      if type(e.best) == "boolean" then c.best = e.best end
      if type(e.note) == "string" then c.note = e.note end
      if next(c) then out[id] = c end
    end
  end
  return out
end

-- The first view: model across when there are several models, else the dimension with the
-- most values in the latest run; down the one with the most values after it (ties: the order
-- of dims, prompt first).
local function first_view(dims, by, jobs, latest, none)
  local counts = {}
  for i, d in ipairs(dims) do
    if d.axis and d ~= by.run then
      local seen, n = {}, 0
      for _, j in ipairs(jobs) do
        if j.run == latest and not seen[j.k[i]] then seen[j.k[i]] = true; n = n + 1 end
      end
      counts[#counts + 1] = { d = d, n = n, i = i }
    end
  end
  table.sort(counts, function(a, b) if a.n ~= b.n then return a.n > b.n end return a.i < b.i end)
  local across, down = none, none
  local model_n = 0
  for _, c in ipairs(counts) do if c.d == by.model then model_n = c.n end end
  if model_n > 1 then across = by.model.id elseif counts[1] then across = counts[1].d.id end
  for _, c in ipairs(counts) do
    if c.d.id ~= across and c.n > 1 then down = c.d.id break end
  end
  return across, down
end

-- gallery_data.collect(dir [, name]) -> data, inputs list. name: the experiment's name when the
-- records do not say it (records before runs were named).
function M.collect(dir, name)
  local by_run, runs, all, ratings = load(dir)
  local records = {}
  for pos, run in ipairs(runs) do
    for _, r in ipairs(by_run[run.id]) do records[#records + 1] = { r = r, run = pos } end
  end
  local plain_records = {}
  for i, x in ipairs(records) do plain_records[i] = x.r end
  local dims, by, none = new_dims(plain_records)
  local list = { index = {} }
  local latest = #runs

  -- the "all" view: one record per request id as report.lua picks them, matched by run and index
  local in_all = {}
  for _, r in ipairs(all) do in_all[r.run .. "\0" .. tostring(r.index)] = true end

  local jobs, statuses = json.array {}, {}
  for _, x in ipairs(records) do
    local r = x.r
    local j = job_of(dir, list, r, x.run)
    j.all = in_all[r.run .. "\0" .. tostring(r.index)] or nil
    statuses[j.status] = true
    local input = type(r.input) == "table" and r.input or {}
    local k = json.array {}
    for i, d in ipairs(dims) do
      local vi
      if d == by.prompt then
        local title = text(r.template) or text(r.prompt) or text(input.prompt)
        vi = add_value(d, r.prompt_name, r.prompt_name, title)
      elseif d == by.model then
        vi = add_value(d, r.model, r.model)
      elseif d.kind == "var" then
        local v = r.vars[d.var]
        if v == nil then
          vi = add_value(d, "\0none", "(none)")
        else
          local t = value_text(v)
          vi = add_value(d, t, value_label(v), t)
          if list.index[t] and d.values[vi + 1].input == nil then d.values[vi + 1].input = list.index[t] end
        end
      elseif d == by.seed then
        local s = planned_seed(r)
        vi = add_value(d, s == nil and "\0none" or tostring(s), s == nil and "(none)" or tostring(s))
      elseif d == by.run then
        vi = x.run - 1
      end
      k[i] = vi
    end
    j.k = k
    jobs[#jobs + 1] = j
  end
  for pos, run in ipairs(runs) do
    by.run.values[pos] = { label = run.id, title = run.started and ("started " .. run.started) or nil }
  end
  for _, st in ipairs(STATUS_ORDER) do
    if statuses[st] then add_value(by.status, st, st) end
  end
  for _, j in ipairs(jobs) do j.k[#dims] = by.status.at[j.status] end

  local across, down = first_view(dims, by, jobs, latest, none)
  for _, d in ipairs(dims) do
    d.at, d.taken, d.var = nil, nil, nil
    d.values = json.array(d.values)
  end

  -- one summary per run and for all of them, report.lua's numbers with the folder's ratings
  local summaries = {}
  for _, run in ipairs(runs) do
    summaries[run.id] = report.document(report.summarize(by_run[run.id], ratings))
  end
  if #runs > 1 then summaries.all = report.document(report.summarize(all, ratings)) end
  for _, s in pairs(summaries) do s.dir = nil end  -- the page may travel: no path of this machine

  local meta_runs = json.array {}
  for i, run in ipairs(runs) do meta_runs[i] = { id = run.id, started = run.started, jobs = run.jobs } end
  local exp_name = runs[latest] and runs[latest].experiment or name or dir:gsub("/+$", ""):match("([^/]*)$")
  if exp_name == "" then exp_name = "experiment" end
  return {
    name = exp_name,
    -- the browser keeps its ratings per experiment: the name and the folder's first run, so
    -- two experiments of one name in two folders do not share them
    key = "editflow-ratings:" .. exp_name .. ":" .. (runs[1] and runs[1].id or ""),
    none = none, across = across, down = down, run = runs[latest] and runs[latest].id or "",
    runs = meta_runs, dims = json.array(dims), inputs = json.array(list), jobs = jobs,
    ratings = plain(clean_ratings(ratings), 0), summaries = summaries,
  }, list
end

return M
