-- editflow.experiment.report: what an experiment folder's runs came to, per prompt, per model,
-- per variable value and per seed: jobs, outcomes, cost, the people's stars (ratings.json), the
-- judge's scores and the latency, sorted best first. Reads DIR/manifest.jsonl (every run made
-- in the folder, see the manifest contract in editflow.experiment) and never writes anything.
-- Library layer: the host's `editflow report` (editflow.cli.report) only formats what this
-- returns; report.text is the terminal table.
--
-- Records written before the manifest named runs, models and prompts are read as the contract
-- says: no run -> one run called "earlier" (older than any named run), no model ->
-- "(unknown)", no prompt_name -> "p1", no cost -> cost_estimate.
local core = require "editflow.core"
local printable = require("editflow.model").printable
local json = require "editflow.json"
local ratings = require "editflow.experiment.ratings"

local M = {}

M.MANIFEST = "manifest.jsonl"
M.EARLIER = "earlier"     -- the run of records that name none
M.UNKNOWN = "(unknown)"   -- the model of records that name none
M.NONE = "(none)"         -- the value of a dimension a record does not have (no seed, no such variable)

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

-- ---- reading the manifest ----

-- A record as the contract's current fields, whatever version wrote it.
local function normalise(r)
  if type(r.run) ~= "string" or r.run == "" then r.run = M.EARLIER end
  if type(r.model) ~= "string" or r.model == "" then r.model = M.UNKNOWN end
  if type(r.prompt_name) ~= "string" or r.prompt_name == "" then r.prompt_name = "p1" end
  if type(r.cost) ~= "number" then r.cost = type(r.cost_estimate) == "number" and r.cost_estimate or 0 end
  if type(r.vars) ~= "table" then r.vars = {} end
  return r
end

-- Every record of the file in file order, and how many lines could not be read (a torn last
-- line of a run that was killed while writing, a line not an object).
M.MAX_MANIFEST = 1024 * 1024 * 1024  -- bytes of manifest.jsonl read at most

local function read_records(path)
  -- a regular file only, read without blocking (a FIFO or a device in its place is refused)
  if not core.file_stamp(path) then return nil, "cannot read " .. path .. ": no such file", "NO_MANIFEST" end
  local text, err = core.read_file(path, M.MAX_MANIFEST)
  if not text then return nil, "cannot read " .. path .. ": " .. tostring(err), "NO_MANIFEST" end
  local records, bad = {}, 0
  for line in text:gmatch("[^\n]+") do
    local r = json.decode(line)
    if type(r) == "table" and getmetatable(r) == nil then
      records[#records + 1] = normalise(r)
    elseif line:find("%S") then
      bad = bad + 1
    end
  end
  return records, bad
end

-- The runs in the file, oldest first: by `started` (a run without one, "earlier" above all,
-- sorts first), then by where the run's last line is: a run writes its lines after every
-- other run's, so of two runs started in the same millisecond the later one ends lower.
local function list_runs(records)
  local by_id, runs = {}, {}
  for i, r in ipairs(records) do
    local run = by_id[r.run]
    if not run then
      run = { id = r.run, jobs = 0 }
      by_id[r.run] = run
      runs[#runs + 1] = run
    end
    run.jobs, run.last = run.jobs + 1, i
    if type(r.started) == "string" and (not run.started or r.started > run.started) then run.started = r.started end
    if type(r.experiment) == "string" then run.experiment = r.experiment end
  end
  table.sort(runs, function(a, b)
    local sa, sb = a.started or "", b.started or ""
    if sa ~= sb then return sa < sb end
    return a.last < b.last
  end)
  for i, run in ipairs(runs) do run.order = i end
  return runs, by_id
end

-- One request id across runs, as "all" counts it: its latest record, with what every run spent
-- on it (the run that paid, and later ones that reused it for nothing) and the latency and
-- judge cost of the run that really ran it (a reused record's elapsed is a journal lookup).
local function merged(latest, list)
  if #list == 1 and latest.reused ~= true then return latest end
  local m = {}
  for k, v in pairs(latest) do m[k] = v end
  local spent, judge_cost, ran, paid_here = 0, 0, nil, false
  for _, p in ipairs(list) do
    local r = p.r
    if type(r.cost_estimate) == "number" then spent = spent + r.cost_estimate end
    if type(r.judge) == "table" and type(r.judge.cost) == "number" then judge_cost = judge_cost + r.judge.cost end
    if r.reused ~= true and r.status == "done" and type(r.elapsed) == "number" and not ran then ran = r end
    if r.reused ~= true then paid_here = true end
  end
  -- every record reused: the run that paid left none (killed before writing its manifest);
  -- it was paid once all the same
  m.cost_estimate = paid_here and spent or (type(latest.cost) == "number" and latest.cost or spent)
  if ran then m.elapsed, m.reused = ran.elapsed, ran.reused end
  if type(m.judge) == "table" then
    local j = {}
    for k, v in pairs(m.judge) do j[k] = v end
    j.cost = judge_cost
    m.judge = j
  end
  return m
end

-- report.load(dir [, {run = ID | "all"}]) -> records, meta | nil, message, code.
-- records: the chosen run's records (default: the latest run, the one whose `started` is
-- greatest), or with run = "all" every run's, one record per request id: the latest run's
-- record wins (a re-run that reused a job writes it again), and a record without a request id
-- (never accepted: skipped, refused) counts only from the latest run, since every run repeats
-- those. meta = {runs = {{id, started, jobs, experiment}, ...} oldest first, run = the chosen
-- id or "all", ratings = ratings.json's table (or {}), dir = dir, unreadable = lines skipped,
-- by_run = {[id] = that run's records}}. In "all", a request id several runs recorded counts
-- what each of them spent on it, and the latency of the run that ran it.
-- Codes: NO_MANIFEST (no file), NO_RUN (no such run; the message lists the runs).
-- The records come normalised (the defaults at the top of this file filled in, vars a table),
-- so a reader never checks for the older shape itself.
function M.load(dir, opts)
  if type(dir) ~= "string" or dir == "" then return nil, "the folder must be a path, got " .. (dir == "" and "''" or type(dir)), "USAGE" end
  opts = opts or {}
  if type(opts) ~= "table" then return nil, "options must be a table { run = ID | \"all\" }", "USAGE" end
  for k in pairs(opts) do
    if k ~= "run" then return nil, "unknown option '" .. tostring(k) .. "' (run)", "USAGE" end
  end
  if opts.run ~= nil and (type(opts.run) ~= "string" or opts.run == "") then
    return nil, "run must be a run id or \"all\", got " .. (opts.run == "" and "''" or tostring(opts.run)), "USAGE"
  end
  local path = join(dir, M.MANIFEST)
  local all, bad, code = read_records(path)
  if not all then return nil, bad, code end
  local runs, by_id = list_runs(all)
  local latest = runs[#runs]
  local chosen = opts.run or (latest and latest.id)
  local records = {}
  if chosen == "all" then
    -- the latest record of each request id: runs in order, and within a run the later line
    local best, picked, every = {}, {}, {}
    for i, r in ipairs(all) do
      local p = { rank = by_id[r.run].order * 1000000000 + i, r = r }
      if type(r.request_id) == "string" then
        local had = best[r.request_id]
        if not had or had.rank < p.rank then best[r.request_id] = p end
        every[r.request_id] = every[r.request_id] or {}
        table.insert(every[r.request_id], p)
      elseif r.run == latest.id then
        picked[#picked + 1] = p
      end
    end
    for id, p in pairs(best) do picked[#picked + 1] = { rank = p.rank, r = merged(p.r, every[id]) } end
    table.sort(picked, function(a, b) return a.rank < b.rank end)
    for i, p in ipairs(picked) do records[i] = p.r end
  elseif chosen then
    if not by_id[chosen] then
      local ids = {}
      for i, run in ipairs(runs) do ids[i] = run.id end
      return nil, string.format("no run '%s' in %s (runs: %s, or all)", chosen, path,
        #ids > 0 and table.concat(ids, ", ") or "none"), "NO_RUN"
    end
    for _, r in ipairs(all) do
      if r.run == chosen then records[#records + 1] = r end
    end
  end
  local meta_runs, by_run = {}, {}
  for i, run in ipairs(runs) do
    meta_runs[i] = { id = run.id, started = run.started, jobs = run.jobs, experiment = run.experiment }
    by_run[run.id] = {}
  end
  for _, r in ipairs(all) do table.insert(by_run[r.run], r) end
  return records, { runs = meta_runs, run = chosen or M.EARLIER, ratings = ratings.read(dir), dir = dir,
    unreadable = bad, by_run = by_run }
end

-- ---- summarising ----

-- Nearest-rank percentile (the smallest value with at least p % of the values at or below it):
-- sorted x[1..n], P(p) = x[ceil(p * n / 100)], so always a value that was measured, never an
-- interpolation; P(50) of {1, 2, 3, 4} is 2, P(95) of 20 values is the 19th. Integer
-- arithmetic: p * n / 100 in floating point can land a hair above a whole number.
local function percentile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local rank = (p * n + 99) // 100
  if rank < 1 then rank = 1 end
  return sorted[rank]
end
M.percentile = percentile

-- A variable's value as a dimension value: as given (text, number, boolean), an image by its path.
local function plain_value(v)
  if v == nil then return M.NONE end
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return v end
  if t == "table" and type(v.path) == "string" then return v.path end
  return (json.encode(v))
end

local function key_of(v) return type(v) .. ":" .. tostring(v) end

local function new_acc(value)
  return { value = value, jobs = 0, done = 0, failed = 0, held = 0, skipped = 0, interrupted = 0,
    cost = 0, spent = 0, judge_cost = 0, unpriced = 0, stars_sum = 0, stars_n = 0, judge_sum = 0, judge_n = 0,
    best = 0, latencies = {} }
end

local STATUS = { done = "done", failed = "failed", held = "held", skipped = "skipped" }

local function add(acc, r, rating)
  acc.jobs = acc.jobs + 1
  local s = STATUS[r.status]
  if s then acc[s] = acc[s] + 1 end
  if r.interrupted == true then acc.interrupted = acc.interrupted + 1 end
  acc.cost = acc.cost + r.cost
  -- a job of a model with no price known: its cost is not $0, it is not known
  if r.unpriced == true then acc.unpriced = acc.unpriced + 1 end
  if type(r.cost_estimate) == "number" then acc.spent = acc.spent + r.cost_estimate end
  local judge = type(r.judge) == "table" and r.judge or nil
  if judge and type(judge.cost) == "number" then acc.judge_cost = acc.judge_cost + judge.cost end
  if judge and type(judge.score) == "number" then
    acc.judge_sum, acc.judge_n = acc.judge_sum + judge.score, acc.judge_n + 1
  end
  if rating then
    if math.type(rating.stars) == "integer" then
      acc.stars_sum, acc.stars_n = acc.stars_sum + rating.stars, acc.stars_n + 1
    end
    if rating.best == true then acc.best = acc.best + 1 end
  end
  -- a latency is a done job's own wait: a reused job's elapsed is only the journal's lookup
  if r.status == "done" and r.reused ~= true and type(r.elapsed) == "number" then
    acc.latencies[#acc.latencies + 1] = r.elapsed
  end
end

local function finish(acc)
  table.sort(acc.latencies)
  local e = { value = acc.value, jobs = acc.jobs, done = acc.done, failed = acc.failed, held = acc.held,
    skipped = acc.skipped, interrupted = acc.interrupted, cost = acc.cost, spent = acc.spent,
    judge_cost = acc.judge_cost, unpriced = acc.unpriced, stars_n = acc.stars_n, judge_n = acc.judge_n, best = acc.best,
    latency_n = #acc.latencies,
    stars_mean = acc.stars_n > 0 and acc.stars_sum / acc.stars_n or nil,
    judge_mean = acc.judge_n > 0 and acc.judge_sum / acc.judge_n or nil,
    latency_p50 = percentile(acc.latencies, 50), latency_p95 = percentile(acc.latencies, 95) }
  return e
end

-- Best first: more stars, then a higher judge score, then fewer failures, then cheaper; a
-- value nobody rated (or judged) after every value that was; then by value, so equal entries
-- keep one order on every run.
local function desc_missing_last(a, b)
  if a == b then return nil end
  if a == nil then return false end
  if b == nil then return true end
  return a > b
end

local function value_before(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" then return a < b end
  return tostring(a) < tostring(b)
end

function M.better(a, b)
  local r = desc_missing_last(a.stars_mean, b.stars_mean)
  if r ~= nil then return r end
  r = desc_missing_last(a.judge_mean, b.judge_mean)
  if r ~= nil then return r end
  if a.failed ~= b.failed then return a.failed < b.failed end
  -- a cost not known (jobs of a model with no price) is no cheaper than any: it sorts last
  local au, bu = (a.unpriced or 0) > 0, (b.unpriced or 0) > 0
  if au ~= bu then return bu end
  if a.cost ~= b.cost then return a.cost < b.cost end
  return value_before(a.value, b.value)
end

-- A variable's dimension: its name, unless an older manifest has a variable named like an
-- axis (model, prompt, seed): then "name (variable)", so neither hides the other.
local AXES = { model = true, prompt = true, seed = true }
function M.var_dim(name) return AXES[name] and (name .. " (variable)") or name end

-- The dimensions of a record: model, prompt, seed, then each variable.
local function dims_of(r, var_names)
  local d = { model = r.model, prompt = r.prompt_name, seed = r.seed ~= nil and r.seed or M.NONE }
  for name in pairs(var_names) do d[M.var_dim(name)] = plain_value(r.vars[name]) end
  return d
end

-- report.summarize(records, ratings) -> summary = {total = entry, by = {model = {entry, ...},
-- prompt = {...}, seed = {...}, <variable> = {...}}, dims = {"model", "prompt", "seed", vars
-- sorted...}}. entry = {value, jobs, done, failed, held, skipped, interrupted, cost (the jobs'
-- price, paid now or earlier), spent (paid by the run that wrote the record), judge_cost,
-- stars_mean, stars_n, judge_mean, judge_n, latency_p50, latency_p95, latency_n, best (jobs
-- marked best)}; a mean or latency nobody has is nil. Stars count only rated jobs; latencies
-- only done jobs not reused. Each dimension lists every value, sorted best first (M.better).
-- Records not from report.load are normalised in place first, as load does.
function M.summarize(records, ratings_doc)
  if type(records) ~= "table" then error("report.summarize: records must be a list of manifest records", 2) end
  ratings_doc = type(ratings_doc) == "table" and ratings_doc or {}
  local var_names = {}
  for _, r in ipairs(records) do
    normalise(r)
    for name in pairs(r.vars) do var_names[name] = true end
  end
  local total = new_acc(nil)
  local accs, order = {}, {}
  for _, r in ipairs(records) do
    local rating = type(r.request_id) == "string" and ratings_doc[r.request_id] or nil
    if type(rating) ~= "table" then rating = nil end
    add(total, r, rating)
    for dim, value in pairs(dims_of(r, var_names)) do
      accs[dim] = accs[dim] or {}
      local k = key_of(value)
      local acc = accs[dim][k]
      if not acc then
        acc = new_acc(value)
        accs[dim][k] = acc
        order[dim] = order[dim] or {}
        order[dim][#order[dim] + 1] = k
      end
      add(acc, r, rating)
    end
  end
  local by = {}
  for dim, keys in pairs(order) do
    local list = {}
    for i, k in ipairs(keys) do list[i] = finish(accs[dim][k]) end
    table.sort(list, M.better)
    by[dim] = list
  end
  local dims = { "model", "prompt", "seed" }
  local vars = {}
  for name in pairs(var_names) do vars[#vars + 1] = name end
  table.sort(vars)
  for _, name in ipairs(vars) do dims[#dims + 1] = M.var_dim(name) end
  local t = finish(total)
  t.value = nil
  -- what each prompt name stands for (the template; the latest record's when it changed)
  local prompts = {}
  for _, r in ipairs(records) do
    if type(r.template) == "string" and r.prompt_name ~= nil then prompts[tostring(r.prompt_name)] = r.template end
  end
  return { total = t, by = by, dims = records[1] and dims or {}, prompts = prompts }
end

-- report.report(dir [, {run = ID | "all"}]) -> summary (report.summarize's, plus run = the
-- chosen run's id or "all", runs = meta.runs, dir) | nil, message, code. editflow.report.
function M.report(dir, opts)
  local records, meta, code = M.load(dir, opts)
  if not records then return nil, meta, code end
  local s = M.summarize(records, meta.ratings)
  s.run, s.runs, s.dir, s.unreadable = meta.run, meta.runs, meta.dir, meta.unreadable
  return s
end

-- ---- the summary as JSON and as a table ----

-- A summary as one JSON-ready object: {"total": {...}, "by": {"model": [...], ...}, "run",
-- "runs"}; a mean nobody has is null (not left out: a reader sees the key either way).
local MEANS = { "stars_mean", "judge_mean", "latency_p50", "latency_p95" }
local function entry_doc(e)
  local d = {}
  for k, v in pairs(e) do d[k] = v end
  for _, k in ipairs(MEANS) do if d[k] == nil then d[k] = json.null end end
  return d
end

function M.document(s)
  local by = {}
  for dim, list in pairs(s.by) do
    local docs = json.array {}
    for i, e in ipairs(list) do docs[i] = entry_doc(e) end
    by[dim] = docs
  end
  local doc = { total = entry_doc(s.total), by = by, dims = json.array(s.dims), run = s.run, dir = s.dir,
    prompts = s.prompts and next(s.prompts) and s.prompts or nil }
  if s.runs then
    local runs = json.array {}
    for i, r in ipairs(s.runs) do runs[i] = { id = r.id, started = r.started, jobs = r.jobs, experiment = r.experiment } end
    doc.runs = runs
  end
  return doc
end

local function money(v) return string.format("$%.4f", v or 0) end
local function stars(v) return v and string.format("%.1f★", v) or "-" end
local function score(v) return v and string.format("%.1f", v) or "-" end
local function secs(v) return v and string.format(v < 10 and "%.2fs" or "%.1fs", v) or "-" end

-- The width of a string on a terminal: UTF-8 characters, not bytes (★ is one column).
local function width(s) return utf8.len(s) or #s end

local function cut(s, n)
  if width(s) <= n then return s end
  local out, w = {}, 0
  for _, c in utf8.codes(s) do
    if w >= n - 1 then break end
    out[#out + 1] = utf8.char(c)
    w = w + 1
  end
  return table.concat(out) .. "…"
end

local COLUMNS = { "jobs", "done", "failed", "cost", "stars", "judge", "p50", "p95" }

local function row_cells(e)
  -- "?" when none of the jobs has a price, "+?" after the sum when some have none
  local cost = (e.unpriced or 0) >= e.jobs and e.jobs > 0 and "?" or (money(e.cost) .. ((e.unpriced or 0) > 0 and "+?" or ""))
  return { tostring(e.jobs), tostring(e.done), tostring(e.failed), cost,
    e.stars_n > 0 and (stars(e.stars_mean) .. " (" .. e.stars_n .. ")") or "-",
    e.judge_n > 0 and (score(e.judge_mean) .. " (" .. e.judge_n .. ")") or "-",
    secs(e.latency_p50), secs(e.latency_p95) }
end

-- The heading: which run, of how many, and how to see the others.
local function heading(s)
  local runs = s.runs or {}
  local name = runs[#runs] and runs[#runs].experiment
  local where = (s.dir and ("report of " .. s.dir) or "report") .. (name and (" (" .. name .. ")") or "")
  if s.run == "all" then
    return string.format("%s: all %d run%s", where, #runs, #runs == 1 and "" or "s")
  end
  local n = 0
  for i, r in ipairs(runs) do if r.id == s.run then n = i end end
  if #runs == 0 then return where end
  return string.format("%s: run %s, %d of %d%s", where, tostring(s.run), n, #runs,
    #runs > 1 and ", --run all for every run, --run ID for one" or "")
end

-- report.text(summary [, {width = columns}]) -> the table: a heading, one section a dimension
-- (its values best first), a total line. Columns are aligned on their widest cell; a value
-- longer than the room left is cut with "…".
function M.text(s, opts)
  opts = opts or {}
  local total_width = opts.width or 100
  local lines = { printable(heading(s)), "" }
  local function values_width(list)
    local w = 5
    for _, e in ipairs(list) do w = math.max(w, width(printable(tostring(e.value)))) end
    return w
  end
  local vw = #"total"
  for _, dim in ipairs(s.dims) do vw = math.max(vw, width(printable(dim)), values_width(s.by[dim] or {})) end
  -- the numbers' columns, each as wide as its widest cell
  local rows, cw = {}, {}
  for i, h in ipairs(COLUMNS) do cw[i] = width(h) end
  local function measure(e)
    local cells = row_cells(e)
    for i, c in ipairs(cells) do cw[i] = math.max(cw[i], width(c)) end
    return cells
  end
  for _, dim in ipairs(s.dims) do
    rows[dim] = {}
    for i, e in ipairs(s.by[dim] or {}) do rows[dim][i] = measure(e) end
  end
  local total_cells = measure(s.total)
  local numbers = 0
  for _, w in ipairs(cw) do numbers = numbers + w + 2 end
  vw = math.max(5, math.min(vw, total_width - numbers))
  local function pad_left(c, w) return string.rep(" ", w - width(c)) .. c end
  local function pad_right(c, w) return c .. string.rep(" ", w - width(c)) end
  local function line(label, cells)
    local parts = { pad_right(cut(label, vw), vw) }
    for i, c in ipairs(cells) do parts[#parts + 1] = pad_left(c, cw[i]) end
    return (table.concat(parts, "  "):gsub("%s+$", ""))
  end
  for _, dim in ipairs(s.dims) do
    lines[#lines + 1] = line(printable(dim), COLUMNS)
    -- (values, names and the heading come from the manifest: shown printable, never as
    -- escape sequences a terminal would act on)
    for i, e in ipairs(s.by[dim] or {}) do lines[#lines + 1] = line(printable(tostring(e.value)), rows[dim][i]) end
    if dim == "prompt" then  -- the templates the names stand for
      for _, e in ipairs(s.by[dim] or {}) do
        local tpl = s.prompts and s.prompts[tostring(e.value)]
        if tpl then lines[#lines + 1] = "  " .. cut(printable(tostring(e.value) .. ": " .. tpl), total_width - 2) end
      end
    end
    lines[#lines + 1] = ""
  end
  if #s.dims == 0 then lines[#lines + 1] = line("", COLUMNS) end  -- no jobs: the columns still named
  lines[#lines + 1] = line("total", total_cells)
  local t = s.total
  local extra = {}
  if (t.interrupted or 0) > 0 then extra[#extra + 1] = t.interrupted .. " interrupted" end
  if (t.unpriced or 0) > 0 then extra[#extra + 1] = t.unpriced .. " of a model with no price (cost ?)" end
  if t.held > 0 then extra[#extra + 1] = t.held .. " held" end
  if t.skipped > 0 then extra[#extra + 1] = t.skipped .. " skipped" end
  if t.best > 0 then extra[#extra + 1] = t.best .. " marked best" end
  if t.judge_cost > 0 then extra[#extra + 1] = "judge " .. money(t.judge_cost) end
  if #extra > 0 then lines[#lines + 1] = "(" .. table.concat(extra, ", ") .. ")" end
  lines[#lines + 1] = "stars: mean of the rated jobs (how many); judge: mean score 0..10 (how many); "
    .. "p50/p95: latency of the done jobs not reused"
  return table.concat(lines, "\n") .. "\n"
end

return M
