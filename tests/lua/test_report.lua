-- test_report.lua (lua_report): `editflow report` and `editflow rate`, and the library under
-- them (editflow.experiment.report, editflow.experiment.ratings). Synthetic manifests check the
-- choice of run, the dedupe of "all" and the reading of records older than the run fields;
-- a real run against the sandbox checks that report --json's numbers are the manifest's own
-- sums (recomputed here from manifest.jsonl, with a percentile written differently); rate
-- --import then report shows the imported stars, and a bad import changes nothing.
local T = require "testlib"
local editflow = require "editflow"
local json = require "editflow.json"
local core = require "editflow.core"
local report = require "editflow.experiment.report"
local ratings = require "editflow.experiment.ratings"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local A = T.source_dir .. "/tests/fixtures/a.png"

-- The binary with arguments (a report reads files only: no credential, nothing sent).
local function run(...)
  local parts = { "env", "FAL_KEY=", T.quote(BIN) }
  for _, a in ipairs { ... } do parts[#parts + 1] = T.quote(a) end
  return T.sh(table.concat(parts, " "))
end

local function write_lines(dir, lines)
  assert(core.write_file(dir .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n"))
end

local function near(a, b, what)
  T.ok(type(a) == "number" and type(b) == "number" and math.abs(a - b) < 1e-9,
    string.format("%s: expected %s, got %s", what, tostring(b), tostring(a)))
end

local function entry(list, value)
  for _, e in ipairs(list or {}) do if e.value == value then return e end end
end

-- ---- synthetic manifests ----

local R1 = '"run":"20261201T100000000Z-aaaa","started":"2026-12-01T10:00:00.000Z","experiment":"e"'
local R2 = '"run":"20261202T100000000Z-bbbb","started":"2026-12-02T10:00:00.000Z","experiment":"e"'
-- R3 and R3b started in the same millisecond: the one whose lines come last is the latest
local R3 = '"run":"20261203T100000000Z-zzzz","started":"2026-12-03T10:00:00.000Z","experiment":"e"'
local R3b = '"run":"20261203T100000000Z-0000","started":"2026-12-03T10:00:00.000Z","experiment":"e"'

local SYNTH = {
  -- written before issue 18: no run, model, prompt_name or cost
  '{"index":1,"request_id":"old-1","status":"done","cost_estimate":0.5,"elapsed":9,"vars":{"v":"a"}}',
  '{"index":2,"status":"skipped","cost_estimate":0,"vars":{"v":"b"}}',
  '{' .. R1 .. ',"index":1,"request_id":"id-1","status":"done","cost":0.1,"cost_estimate":0.1,"model":"m/x","prompt_name":"p1","elapsed":1,"vars":{"v":"a"}}',
  '{' .. R1 .. ',"index":2,"request_id":"id-2","status":"failed","cost":0.1,"cost_estimate":0.1,"model":"m/x","prompt_name":"p1","vars":{"v":"b"}}',
  '{' .. R2 .. ',"index":1,"request_id":"id-1","status":"done","reused":true,"cost":0.1,"cost_estimate":0,"model":"m/x","prompt_name":"p1","elapsed":0.001,"vars":{"v":"a"}}',
  '{' .. R2 .. ',"index":2,"request_id":"id-3","status":"done","cost":0.1,"cost_estimate":0.1,"model":"m/x","prompt_name":"p1","elapsed":2,"vars":{"v":"b"}}',
  '{' .. R2 .. ',"index":3,"status":"skipped","cost":0.1,"cost_estimate":0,"model":"m/x","prompt_name":"p1","vars":{"v":"c"}}',
  '{' .. R3 .. ',"index":1,"request_id":"id-9","status":"done","cost":0.2,"cost_estimate":0.2,"model":"m/y","prompt_name":"p2","elapsed":3,"vars":{"v":"a"}}',
  '{' .. R3b .. ',"index":1,"request_id":"id-1","status":"done","reused":true,"cost":0.1,"cost_estimate":0,"model":"m/x","prompt_name":"p1","elapsed":0.001,"vars":{"v":"a"}}',
  '{' .. R3b .. ',"index":2,"status":"held","cost":0.1,"cost_estimate":0.1,"model":"m/x","prompt_name":"p1","vars":{"v":"b"}}',
  '{"torn line',
}

T.case("load: the latest run by default, each run by id, old records read as the contract says", function()
  local d = T.tmpdir()
  write_lines(d, SYNTH)
  local recs, meta = assert(report.load(d))
  T.eq(meta.run, "20261203T100000000Z-0000", "same start: the run whose lines come last is the latest")
  T.eq(#recs, 2, "its two records")
  T.eq(#meta.runs, 5, "earlier, R1, R2, R3, R3b")
  T.eq(meta.runs[1].id, "earlier", "records without a run form 'earlier', the oldest")
  T.eq(meta.runs[1].jobs, 2, "earlier's jobs")
  T.eq(meta.runs[3].started, "2026-12-02T10:00:00.000Z", "a run's start")
  T.eq(meta.runs[3].experiment, "e", "a run's experiment")
  T.eq(meta.unreadable, 1, "the torn line is counted, not read")
  T.eq(meta.dir, d, "meta.dir")
  local old = assert(report.load(d, { run = "earlier" }))
  T.eq(#old, 2, "the old run's records")
  T.eq(old[1].model, "(unknown)", "no model: (unknown)")
  T.eq(old[1].prompt_name, "p1", "no prompt_name: p1")
  T.eq(old[1].cost, 0.5, "no cost: cost_estimate")
  T.eq(old[1].run, "earlier", "no run: earlier")
  local r2 = assert(report.load(d, { run = "20261202T100000000Z-bbbb" }))
  T.eq(#r2, 3, "one run by its id")
  local none, err, code = report.load(d, { run = "nope" })
  T.eq(none, nil, "an unknown run")
  T.eq(code, "NO_RUN", "its code")
  T.contains(err, "runs: earlier, 20261201T100000000Z-aaaa", "the message lists the runs")
  local _, merr, mcode = report.load(d .. "/nothing-here")
  T.eq(mcode, "NO_MANIFEST", "no manifest")
  T.contains(merr, d .. "/nothing-here/manifest.jsonl", "the message names the file")
end)

T.case("load all: one record per request id, the latest run's; unsent jobs of the latest run only", function()
  local d = T.tmpdir()
  write_lines(d, SYNTH)
  local recs, meta = assert(report.load(d, { run = "all" }))
  T.eq(meta.run, "all", "meta.run")
  local seen, unsent = {}, 0
  for _, r in ipairs(recs) do
    if r.request_id then
      T.eq(seen[r.request_id], nil, "request id " .. r.request_id .. " once")
      seen[r.request_id] = r
    else
      unsent = unsent + 1
      T.eq(r.run, "20261203T100000000Z-0000", "a record without request id comes from the latest run")
    end
  end
  T.eq(unsent, 1, "the latest run's held job; the skipped ones of older runs are left out")
  T.eq(seen["id-1"].run, "20261203T100000000Z-0000", "id-1: the latest run's record wins")
  T.eq(seen["id-2"].run, "20261201T100000000Z-aaaa", "id-2: only in R1")
  T.eq(seen["old-1"].run, "earlier", "old-1 kept from the old run")
  T.eq(#recs, 6, "old-1, id-1, id-2, id-3, id-9 and the held job")
  T.eq(recs[1].request_id, "old-1", "records in run order: the old run first")
  -- the same line twice in one run (a file written twice by hand): the later line wins
  local d2 = T.tmpdir()
  write_lines(d2, {
    '{' .. R1 .. ',"index":1,"request_id":"same","status":"failed","cost":0.1}',
    '{' .. R1 .. ',"index":1,"request_id":"same","status":"done","cost":0.1}',
  })
  local two = assert(report.load(d2, { run = "all" }))
  T.eq(#two, 1, "one record")
  T.eq(two[1].status, "done", "the later line")
end)

T.case("summarize: counts, means over rated jobs only, nearest-rank latencies, best first", function()
  -- nearest rank: P(p) = x[ceil(p n / 100)]
  local twenty = {}
  for i = 1, 20 do twenty[i] = i end
  T.eq(report.percentile(twenty, 95), 19, "p95 of 1..20")
  T.eq(report.percentile(twenty, 50), 10, "p50 of 1..20")
  T.eq(report.percentile({ 1, 2, 3, 4 }, 50), 2, "p50 of 1..4")
  T.eq(report.percentile({ 1, 2, 3 }, 50), 2, "p50 of 1..3")
  T.eq(report.percentile({ 7 }, 95), 7, "one value")
  T.eq(report.percentile({}, 50), nil, "none")
  local recs = {}
  local function rec(t) recs[#recs + 1] = t return t end
  -- model a: rated 4 and 5 (mean 4.5) and one unrated; b: rated 5 once; c: judged only; d, e:
  -- neither, d with one failure, e cheaper; f: nothing done
  rec { request_id = "a1", model = "a", status = "done", cost = 0.1, elapsed = 1 }
  rec { request_id = "a2", model = "a", status = "done", cost = 0.1, elapsed = 5 }
  rec { request_id = "a3", model = "a", status = "done", cost = 0.1, elapsed = 100, reused = true }
  rec { request_id = "b1", model = "b", status = "done", cost = 0.1, elapsed = 2 }
  rec { request_id = "c1", model = "c", status = "done", cost = 0.1, elapsed = 2, judge = { score = 8, cost = 0.01 } }
  rec { request_id = "c2", model = "c", status = "done", cost = 0.1, elapsed = 2, judge = { score = 6, cost = 0.01 } }
  rec { request_id = "d1", model = "d", status = "failed", cost = 0.05, elapsed = 50 }
  rec { request_id = "e1", model = "e", status = "done", cost = 0.2, elapsed = 3 }
  rec { request_id = "e2", model = "e", status = "done", cost = 0.2, elapsed = 3 }
  rec { request_id = "d2", model = "d", status = "done", cost = 0.05 }
  rec { model = "f", status = "skipped", cost = 0.5 }
  local rt = { a1 = { stars = 4 }, a2 = { stars = 5, best = true }, a3 = { note = "no stars" },
    b1 = { stars = 5 }, c1 = { best = false } }
  local s = report.summarize(recs, rt)
  local order = {}
  for i, e in ipairs(s.by.model) do order[i] = e.value end
  T.eq(table.concat(order, ","), "b,a,c,e,f,d", "stars, then judge, then failures, then cost; missing last")
  local a = entry(s.by.model, "a")
  T.eq(a.stars_mean, 4.5, "mean over the rated jobs only")
  T.eq(a.stars_n, 2, "two rated")
  T.eq(a.best, 1, "one marked best")
  T.eq(a.latency_p50, 1, "p50 of 1 and 5 (the reused job's 100 left out)")
  T.eq(a.latency_p95, 5, "p95 of 1 and 5")
  local c = entry(s.by.model, "c")
  T.eq(c.judge_mean, 7, "judge mean")
  T.eq(c.judge_n, 2, "judge count")
  near(c.judge_cost, 0.02, "judge cost")
  T.eq(c.stars_mean, nil, "no stars")
  local d = entry(s.by.model, "d")
  T.eq(d.latency_p50, nil, "a failed job's elapsed is no latency, a done one without elapsed neither")
  T.eq(d.failed, 1, "d's failure")
  T.eq(s.total.jobs, 11, "total jobs")
  T.eq(s.total.done, 9, "total done")
  T.eq(s.total.failed, 1, "total failed")
  T.eq(s.total.skipped, 1, "total skipped")
  near(s.total.cost, 1.6, "total cost")
  T.eq(s.total.stars_n, 3, "total rated")
  near(s.total.stars_mean, 14 / 3, "total stars mean")
  T.eq(#s.by.prompt, 1, "a dimension with one value is listed")
  T.eq(s.by.prompt[1].value, "p1", "records without prompt_name: p1")
  T.eq(s.by.seed[1].value, "(none)", "no seed")
  T.eq(table.concat(s.dims, ","), "model,prompt,seed", "dimensions")
end)

T.case("summarize: variables are dimensions, the same value of another type stays apart", function()
  local s = report.summarize({
    { request_id = "1", model = "m", status = "done", cost = 1, vars = { v = 1, w = "x" }, seed = 1 },
    { request_id = "2", model = "m", status = "done", cost = 1, vars = { v = "1", w = "x" }, seed = 2 },
    { request_id = "3", model = "m", status = "failed", cost = 1, vars = { v = 2 }, seed = 1 },
  }, {})
  T.eq(table.concat(s.dims, ","), "model,prompt,seed,v,w", "variables after model, prompt, seed, by name")
  T.eq(#s.by.v, 3, "1, \"1\" and 2")
  T.eq(entry(s.by.w, "(none)").jobs, 1, "a record without the variable")
  T.eq(entry(s.by.seed, 1).jobs, 2, "seed 1")
  T.eq(s.by.seed[1].value, 2, "seed 2 first: no failure")
end)

-- ---- ratings ----

T.case("ratings: parse keeps nulls as removals, check names the id and the field, merge keeps the rest", function()
  local doc = assert(ratings.parse('{"a":{"stars":3,"note":null},"b":null,"c":{"best":true}}'))
  T.eq(doc.a.stars, 3, "stars")
  T.eq(doc.a.note, json.null, "a null field is kept as a removal")
  T.eq(doc.b, json.null, "a null entry too")
  T.eq(doc.c.best, true, "best")
  -- the last member of a name wins, as in the decoder
  T.eq(assert(ratings.parse('{"a":{"stars":null,"stars":2}}')).a.stars, 2, "later member wins")
  T.eq(assert(ratings.parse('{"a":{"stars":2,"stars":null}}')).a.stars, json.null, "later null wins")
  -- nulls deeper or inside strings are not removals
  T.eq(assert(ratings.parse('{"a":{"note":"null \\" null"}}')).a.note, 'null " null', "null in a string")
  local _, perr = ratings.parse("[1, 2]")
  T.contains(perr, "expected a JSON object keyed by request id", "an array")
  local function problem(text, known)
    local d = assert(ratings.parse(text))
    local ok, msg = ratings.check(d, known)
    T.eq(ok, nil, text .. " refused")
    return msg
  end
  T.contains(problem('{"r":{"stars":6}}'), '"r".stars must be an integer 1..5', "stars 6")
  T.contains(problem('{"r":{"stars":0}}'), '"r".stars must be an integer 1..5', "stars 0")
  T.contains(problem('{"r":{"stars":2.5}}'), '"r".stars', "stars 2.5")
  T.contains(problem('{"r":{"best":"yes"}}'), '"r".best must be true or false', "best text")
  T.contains(problem('{"r":{"note":5}}'), '"r".note must be text', "note number")
  T.contains(problem('{"r":{"note":"' .. string.rep("x", 2001) .. '"}}'), '"r".note must be at most 2000 bytes', "note too long")
  T.contains(problem('{"r":{"stars":1,"colour":"red"}}'), '"r".colour is not a field of a rating', "extra key")
  T.contains(problem('{"r":[1]}'), '"r" must be an object', "an array entry")
  T.contains(problem('{"r":{"stars":1}}', { s = true }), '"r" is not a request id of this folder', "unknown id")
  T.ok(ratings.check(assert(ratings.parse('{"r":{"stars":5,"best":false,"note":"' .. string.rep("x", 2000) .. '"}}'))),
    "the limits themselves are accepted")
  -- merge: given fields overwrite, others stay; null removes; the file is sorted
  local d = T.tmpdir()
  T.eq(next(ratings.read(d)), nil, "no file: no ratings")
  local m = assert(ratings.merge(d, { a = { stars = 2, note = "first" }, b = { best = true } }))
  T.eq(m.new, 2, "two new")
  m = assert(ratings.merge(d, assert(ratings.parse('{"a":{"stars":4},"b":{"best":true},"c":{"stars":1},"z":null}'))))
  T.eq(m.new .. m.updated .. m.unchanged .. m.removed, "1110", "c new, a updated, b unchanged, z not there")
  local now = ratings.read(d)
  T.eq(now.a.stars, 4, "stars overwritten")
  T.eq(now.a.note, "first", "note kept")
  m = assert(ratings.merge(d, assert(ratings.parse('{"a":{"note":null},"b":null,"c":{"stars":null}}'))))
  T.eq(m.removed, 2, "b removed, c emptied")
  now = ratings.read(d)
  T.eq(now.a.note, nil, "note removed")
  T.eq(now.a.stars, 4, "stars kept")
  T.eq(now.b, nil, "b gone")
  T.eq(now.c, nil, "an entry with no field left is gone")
  T.eq(T.read(d .. "/ratings.json"), '{\n  "a": {"stars":4}\n}\n', "one entry a line")
  -- an existing file that is not a ratings object is never replaced
  assert(core.write_file(d .. "/ratings.json", "not json"))
  local r, w = ratings.read(d)
  T.eq(next(r), nil, "read: no ratings")
  T.contains(w, d .. "/ratings.json", "with a warning naming the file")
  local none, err, code = ratings.merge(d, { a = { stars = 1 } })
  T.eq(none, nil, "not merged")
  T.eq(code, "EXISTING", "code")
  T.contains(err, "ratings.json", "message names the file")
  T.eq(T.read(d .. "/ratings.json"), "not json", "left as it was")
end)

-- ---- a real run ----

local sb = T.sandbox { "--job-time", "0.02", "--workers", "8" }
local function client() return editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key" } end

local MODELS = { "fal-ai/qwen-image-edit-plus", "fal-ai/nano-banana/edit" }
local SPEC = {
  name = "report", prompts = { warm = "a ${animal}, warm light", cold = "a ${animal}, cold light" },
  models = MODELS, vars = { animal = { "cat", "dog [fail:nsfw]" } }, images = { A }, seeds = { 1, 2 },
}

local function manifest_lines(dir)
  local out = {}
  for line in T.read(dir .. "/manifest.jsonl"):gmatch("[^\n]+") do out[#out + 1] = assert(json.decode(line)) end
  return out
end

-- The test's own percentile: the smallest value with at least p % of the values at or below it.
local function pct(values, p)
  table.sort(values)
  for _, v in ipairs(values) do
    local at_or_below = 0
    for _, w in ipairs(values) do if w <= v then at_or_below = at_or_below + 1 end end
    if at_or_below * 100 >= p * #values then return v end
  end
end

-- The sums over a list of manifest records, per dimension value, as report --json has them.
local function sums(records, stars_of)
  local by = {}
  local function add(dim, value, r)
    by[dim] = by[dim] or {}
    local e = by[dim][value]
    if not e then
      e = { jobs = 0, done = 0, failed = 0, cost = 0, lat = {}, stars = {} }
      by[dim][value] = e
    end
    e.jobs = e.jobs + 1
    if r.status == "done" then e.done = e.done + 1 end
    if r.status == "failed" then e.failed = e.failed + 1 end
    e.cost = e.cost + r.cost
    if r.status == "done" and not r.reused then e.lat[#e.lat + 1] = r.elapsed end
    local st = stars_of and stars_of[r.request_id]
    if st then e.stars[#e.stars + 1] = st end
  end
  for _, r in ipairs(records) do
    add("model", r.model, r)
    add("prompt", r.prompt_name, r)
    add("seed", r.seed, r)
    add("animal", r.vars.animal, r)
    add("total", "total", r)
  end
  return by
end

local function check_against(doc, records, stars_of, what)
  local want = sums(records, stars_of)
  for dim, values in pairs(want) do
    for value, w in pairs(values) do
      local got = dim == "total" and doc.total or entry(doc.by[dim], value)
      local label = what .. " " .. dim .. "=" .. tostring(value)
      T.ok(got, label .. " is listed")
      T.eq(got.jobs, w.jobs, label .. " jobs")
      T.eq(got.done, w.done, label .. " done")
      T.eq(got.failed, w.failed, label .. " failed")
      near(got.cost, w.cost, label .. " cost")
      -- (a null decodes as an absent key: nil on both sides when no latency)
      T.eq(got.latency_p50, pct(w.lat, 50), label .. " latency p50")
      T.eq(got.latency_p95, pct(w.lat, 95), label .. " latency p95")
      if stars_of then
        local sum = 0
        for _, v in ipairs(w.stars) do sum = sum + v end
        if #w.stars > 0 then near(got.stars_mean, sum / #w.stars, label .. " stars mean")
        else T.eq(got.stars_mean, nil, label .. " no stars") end
        T.eq(got.stars_n, #w.stars, label .. " stars_n")
      end
    end
  end
  for dim, list in pairs(doc.by) do
    local n = 0
    for _ in pairs(want[dim] or {}) do n = n + 1 end
    T.eq(#list, n, what .. " " .. dim .. ": every value once")
  end
end

local runs = {}  -- the folder of two real runs, shared by the cases below

T.case("a real run: report --json's numbers are the manifest's sums, per model, prompt, seed and value", function()
  local d = T.tmpdir()
  local first = editflow.experiment((function() local s = {} for k, v in pairs(SPEC) do s[k] = v end
    s.dir, s.client = d, client() return s end)())
  T.eq(first.jobs, 16, "2 prompts x 2 models x 2 animals x 2 seeds")
  T.eq(first.done, 8, "the cats are done")
  T.eq(first.failed, 8, "the dogs fail (content policy)")
  local second = editflow.experiment((function() local s = {} for k, v in pairs(SPEC) do s[k] = v end
    s.dir, s.client = d, client() return s end)())
  T.eq(second.reused, 8, "the second run reuses the cats")
  runs.dir = d
  local lines = manifest_lines(d)
  T.eq(#lines, 32, "both runs in the manifest")
  local latest, by_run = lines[#lines].run, {}
  for _, r in ipairs(lines) do
    T.ok(r.run and r.model and r.prompt_name and r.cost, "the contract's fields are written")
    by_run[r.run] = by_run[r.run] or {}
    table.insert(by_run[r.run], r)
  end
  local first_id = lines[1].run
  T.ok(first_id ~= latest, "two runs")
  runs.first, runs.latest = first_id, latest

  local st, out, err = run("report", d, "--json")
  T.eq(st, 0, "report exits 0: " .. tostring(err))
  local doc = assert(json.decode(out), "one JSON object")
  T.eq(select(2, out:gsub("\n", "")), 1, "one line")
  T.eq(doc.run, latest, "the latest run by default")
  T.eq(#doc.runs, 2, "both runs listed")
  T.eq(doc.runs[2].id, latest, "oldest first")
  check_against(doc, by_run[latest], nil, "latest run")
  T.eq(doc.total.latency_p50, nil, "the latest run reused every done job: no latency")
  T.ok(out:find('"latency_p50":null', 1, true), "written as null, not left out")
  T.eq(doc.by.animal[1].value, "cat", "fewer failures first")

  st, out = run("report", d, "--json", "--run", first_id)
  T.eq(st, 0, "--run ID")
  doc = assert(json.decode(out))
  check_against(doc, by_run[first_id], nil, "first run")
  T.ok(type(doc.total.latency_p50) == "number", "the first run's latencies")

  -- all: each request id once, its latest record (the reused cats from the second run, the
  -- dogs of both runs: each failed job was sent again, with a new request id)
  -- one record per request id: the latest, with the latency of the run that ran it (the first
  -- record not reused: a reused record's elapsed is a journal lookup)
  local seen, all, ran = {}, {}, {}
  for _, r in ipairs(lines) do
    if not r.reused and not ran[r.request_id] then ran[r.request_id] = r end
  end
  for i = #lines, 1, -1 do
    local r = lines[i]
    if not seen[r.request_id] then
      seen[r.request_id] = true
      local m = {}
      for k, v in pairs(r) do m[k] = v end
      local first = ran[r.request_id]
      if first then m.elapsed, m.reused = first.elapsed, first.reused end
      table.insert(all, 1, m)
    end
  end
  st, out = run("report", d, "--json", "--run", "all")
  T.eq(st, 0, "--run all")
  doc = assert(json.decode(out))
  T.eq(doc.run, "all", "run all")
  T.eq(doc.total.jobs, #all, "deduplicated by request id")
  T.eq(doc.total.jobs, 24, "8 cats once, 16 dogs")
  check_against(doc, all, nil, "all runs")
  local paid = 0
  for _, r in ipairs(lines) do if r.request_id then paid = paid + r.cost_estimate end end
  T.ok(paid > 0, "the runs spent something")
  near(doc.total.spent, paid, "all runs: spent is what every run spent (the first paid, re-runs reused)")

  -- the library answers the same
  local s = assert(editflow.report(d, { run = first_id }))
  T.eq(s.total.jobs, 16, "editflow.report")
  T.eq(s.run, first_id, "editflow.report's run")
end)

T.case("rate --import then report: the imported stars, per prompt and in the total", function()
  local d = assert(runs.dir, "the real run's folder")
  local lines = manifest_lines(d)
  -- stars for the first run's cats: warm ones 5 and 4, cold ones 2; one note, one best
  local doc, stars_of, n = {}, {}, 0
  for _, r in ipairs(lines) do
    if r.run == runs.first and r.status == "done" then
      n = n + 1
      local s = r.prompt_name == "warm" and (n % 2 == 0 and 5 or 4) or 2
      doc[r.request_id] = { stars = s }
      stars_of[r.request_id] = s
    end
  end
  T.eq(n, 8, "eight done jobs rated")
  local some = next(doc)
  doc[some].best, doc[some].note = true, "the one"
  local file = T.tmpdir() .. "/export.json"
  assert(core.write_file(file, json.encode(doc)))
  local st, out, err = run("rate", d, "--import", file)
  T.eq(st, 0, "rate exits 0: " .. tostring(err))
  T.contains(out, "8 ratings merged (8 new, 0 updated) into " .. d .. "/ratings.json", "what was merged")
  local saved = ratings.read(d)
  T.eq(saved[some].note, "the one", "the note saved")
  T.eq(saved[some].best, true, "best saved")

  st, out = run("report", d, "--json")
  T.eq(st, 0, "report")
  local rep = assert(json.decode(out))
  local latest = {}
  for _, r in ipairs(lines) do if r.run == runs.latest then latest[#latest + 1] = r end end
  check_against(rep, latest, stars_of, "after rate")
  T.eq(rep.by.prompt[1].value, "warm", "the better-rated prompt first")
  T.eq(rep.total.best, 1, "one marked best")
  T.eq(rep.total.stars_n, 8, "the reused cats carry their ratings (same request ids)")

  -- an update through standard input: given fields overwrite, others stay
  st, out = T.sh("printf '%s' " .. T.quote(json.encode { [some] = { stars = 1 } }) .. " | env FAL_KEY= "
    .. T.quote(BIN) .. " rate " .. T.quote(d) .. " --import -")
  T.eq(st, 0, "stdin import")
  T.contains(out, "1 rating merged (0 new, 1 updated)", "one updated")
  saved = ratings.read(d)
  T.eq(saved[some].stars, 1, "stars overwritten")
  T.eq(saved[some].note, "the one", "note kept")
  -- one job from the shell
  st, out, err = run("rate", d, some, "--stars", "3", "--not-best")
  T.eq(st, 0, "rate REQUEST_ID: " .. tostring(err))
  saved = ratings.read(d)
  T.eq(saved[some].stars, 3, "--stars")
  T.eq(saved[some].best, false, "--not-best")
end)

T.case("rate: a bad import exits 2 naming the id and field, and ratings.json is not touched", function()
  local d = assert(runs.dir, "the real run's folder")
  local lines = manifest_lines(d)
  local id = lines[1].request_id
  local before = assert(T.read(d .. "/ratings.json"))
  local tmp = T.tmpdir()
  local cases = {
    { json.encode { [id] = { stars = 6 } }, '"' .. id .. '".stars must be an integer 1..5' },
    { json.encode { [id] = { stars = 4 }, ["not-a-request"] = { stars = 4 } }, '"not-a-request" is not a request id of this folder' },
    { json.encode { [id] = { stars = 4, colour = "red" } }, '"' .. id .. '".colour is not a field of a rating (accepted: stars' },
    { "[1, 2, 3]", "expected a JSON object keyed by request id" },
    { '"text"', "expected a JSON object keyed by request id" },
    { "{not json", "invalid JSON" },
    { json.encode { [id] = { best = "yes" } }, '"' .. id .. '".best must be true or false' },
    { json.encode { [id] = { note = string.rep("n", 2001) } }, '"' .. id .. '".note must be at most 2000 bytes' },
  }
  for i, c in ipairs(cases) do
    local file = tmp .. "/bad" .. i .. ".json"
    assert(core.write_file(file, c[1]))
    local st, out, err = run("rate", d, "--import", file)
    T.eq(st, 2, "bad import " .. i .. " exits 2")
    T.contains(err, c[2], "bad import " .. i .. " named")
    T.eq(out, "", "bad import " .. i .. ": nothing on stdout")
    T.eq(T.read(d .. "/ratings.json"), before, "bad import " .. i .. ": ratings.json unchanged")
  end
  local st, _, err = run("rate", d, "--import", tmp .. "/missing.json")
  T.eq(st, 1, "an import file not there: exit 1")
  T.contains(err, "missing.json", "named")
  st, _, err = run("rate", d, id, "--stars", "9")
  T.eq(st, 2, "--stars 9")
  T.contains(err, "--stars must be a whole number 1..5", "said")
  st, _, err = run("rate", tmp, "--import", tmp .. "/bad1.json")
  T.eq(st, 1, "a folder without a manifest: exit 1")
  T.contains(err, tmp .. "/manifest.jsonl", "the file named")
  T.eq(T.read(d .. "/ratings.json"), before, "ratings.json unchanged after all of them")
end)

T.case("report: the table on stdout, the usage errors", function()
  local d = assert(runs.dir, "the real run's folder")
  local st, out, err = run("report", d)
  T.eq(st, 0, "report: " .. tostring(err))
  T.contains(out, "run " .. runs.latest .. ", 2 of 2, --run all for every run", "the heading says which run of how many")
  for _, h in ipairs { "\nmodel ", "\nprompt ", "\nseed ", "\nanimal ", "\ntotal " } do
    T.contains(out, h, "the section " .. h:sub(2))
  end
  for _, v in ipairs { MODELS[1], MODELS[2], "\nwarm ", "\ncold ", "\ncat ", "\ndog [fail:nsfw] " } do
    T.contains(out, v, "the value " .. v)
  end
  T.match(out, "%$%d+%.%d%d%d%d", "cost as dollars to 4 places")
  T.match(out, "%d%.%d★ %(%d+%)", "stars as 3.5★ (n)")
  st, out = run("report", d, "--by", "prompt")
  T.eq(st, 0, "--by prompt")
  T.contains(out, "\nprompt ", "its section")
  T.eq(out:find("\nmodel ", 1, true), nil, "no other section")
  st, _, err = run("report", d, "--by", "colour")
  T.eq(st, 2, "an unknown dimension")
  T.contains(err, "dimensions: model, prompt, seed, animal", "the dimensions listed")
  st, _, err = run("report", d, "--run", "19990101T000000000Z-xxxx")
  T.eq(st, 2, "an unknown run")
  T.contains(err, runs.first, "the runs listed")
  st, _, err = run("report", d .. "/nowhere")
  T.eq(st, 1, "no manifest")
  T.contains(err, d .. "/nowhere/manifest.jsonl", "the file named")
  st = run("report")
  T.eq(st, 2, "no DIR")
  st, out = run("report", "--help")
  T.eq(st, 0, "--help")
  T.contains(out, "nearest rank", "the help says how latencies are counted")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("hostile folders: escapes not sent to the terminal, axis-named variables kept apart, no FIFO or device read", function()
  local d = T.tmpdir()
  write_lines(d, {
    '{' .. R1 .. ',"index":1,"request_id":"h-1","status":"done","cost":0.1,"cost_estimate":0.1,"model":"m/\\u001b[2Jx",'
      .. '"prompt_name":"p1","elapsed":1,"seed":3,"vars":{"model":"a\\u001b]0;pwned\\u0007","seed":"s"}}',
  })
  local st, out = run("report", d)
  T.eq(st, 0, "report")
  T.ok(not out:find("\27", 1, true) and not out:find("\7", 1, true), "no escape or bell reaches the terminal")
  T.contains(out, "\\x1B", "shown printable")
  local s = assert(editflow.report(d))
  T.ok(entry(s.by.model, "m/\27[2Jx"), "the model axis is the model")
  T.ok(entry(s.by["model (variable)"], "a\27]0;pwned\7"), "the variable named model is its own dimension")
  T.ok(entry(s.by.seed, 3) and entry(s.by["seed (variable)"], "s"), "and the seed too")
  -- a FIFO as ratings.json or as the file to import, a device: refused, never read or waited on
  os.execute("mkfifo " .. T.quote(d .. "/ratings.json"))
  st = run("report", d)
  T.eq(st, 0, "a FIFO in ratings.json's place does not hang report (its ratings read as none)")
  os.remove(d .. "/ratings.json")
  os.execute("mkfifo " .. T.quote(d .. "/in.json"))
  local err
  st, _, err = run("rate", d, "--import", d .. "/in.json")
  T.eq(st, 1, "a FIFO to import is refused: " .. tostring(err))
  st, _, err = run("rate", d, "--import", "/dev/zero")
  T.eq(st, 1, "/dev/zero is refused, not read until memory runs out: " .. tostring(err))
  st, _, err = run("report", d, "--run=")
  T.eq(st, 2, "an empty --run is a usage error, not a traceback: " .. tostring(err))
  T.ok(not err:find("traceback", 1, true), "no traceback")
  st, _, err = run("report", "")
  T.eq(st, 2, "an empty DIR too: " .. tostring(err))
end)

T.case("--run all: a job whose paying run left no record (killed before its manifest) is counted paid once", function()
  local d = T.tmpdir()
  write_lines(d, {
    '{' .. R2 .. ',"index":1,"request_id":"k-1","status":"done","reused":true,"cost":0.25,"cost_estimate":0,"model":"m/x","prompt_name":"p1","elapsed":0.001,"vars":{}}',
    '{' .. R2 .. ',"index":2,"request_id":"k-2","status":"done","cost":0.25,"cost_estimate":0.25,"model":"m/x","prompt_name":"p1","elapsed":4,"vars":{}}',
  })
  local s = assert(editflow.report(d, { run = "all" }))
  near(s.total.spent, 0.5, "both were paid: one by the killed run, one by this")
  local latest = assert(editflow.report(d))
  near(latest.total.spent, 0.25, "the run itself spent what it sent")
end)

T.run()
