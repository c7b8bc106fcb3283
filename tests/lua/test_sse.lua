-- test_sse.lua: jobs followed by their status stream (follow = "stream") while the sandbox
-- writes the stream in each shape the event-stream format allows (tests/sandbox/ssewire.py):
-- LF, CRLF or lone-CR line ends, each event's JSON over many data lines among a comment and
-- an id field, every event cut into pieces written apart (a CRLF's CR and LF, "data" and its
-- colon), a BOM first. Every shape must give what fal's own shape (one line per event, LF)
-- gives: the same statuses and queue positions in the same order, the same log lines, the
-- result; and all of it by the stream: no status poll, no fallback to polling.
local T = require "testlib"
local editflow = require "editflow"
local core = require "editflow.core"

local URL = "https://cdn.example/a.png"
local sb = T.sandbox { "--workers", "1", "--job-time", "0.1" }

-- Waits, driving the loop, until cond() holds; fails at once when a stream was given up for
-- polling (traces), else after 20 s: a hang guard only, each wait being one event away.
local function until_true(what, cond, traces)
  local t0 = core.monotime()
  while not cond() do
    for _, line in ipairs(traces) do
      if line:find("falling back to polling", 1, true) then error("a stream was given up: " .. line, 2) end
    end
    if core.monotime() - t0 > 20 then error("hang guard: " .. what .. " not seen within 20 s", 2) end
    editflow.sleep(0.01)
  end
end

-- One run in the sandbox's current stream shape. Every job is [endless] and one worker runs
-- them in turn, each let go by release_endless only once the client has seen the state it
-- should see: what the client sees depends on nothing but the stream (no timing).
-- -> seen[name] = { "IN_QUEUE 2", ... }, logs[name] = { messages }, results, traces.
local function run_jobs()
  local seen, logs, traces, names = {}, {}, {}, {}
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key",
    follow = "stream", logs = true, poll_interval = 0.05, max_poll_interval = 0.05,
    verbose = function(line) traces[#traces + 1] = line end,
    on_status = function(job, st)
      local name = names[job.request_id]
      local item = st.status .. (st.queue_position ~= nil and (" " .. tostring(st.queue_position)) or "")
      local list = seen[name]
      if list[#list] ~= item then list[#list + 1] = item end
    end,
    on_log = function(job, entry)  -- "Done in 0.21s": how long is the machine's, not the stream's
      table.insert(logs[names[job.request_id]], (entry.message:gsub("^Done in [%d.]+s$", "Done in Ns")))
    end }
  local jobs = {}
  for _, name in ipairs { "blocker", "A", "B", "C" } do
    local job = assert(c:submit { prompt = "[endless] " .. name, image_urls = { URL } })
    names[job.request_id], seen[name], logs[name], jobs[name] = name, {}, {}, job
  end
  local function last(name) return seen[name][#seen[name]] end
  until_true("the first events", function()
    return last("blocker") == "IN_PROGRESS" and last("A") == "IN_QUEUE 0" and last("B") == "IN_QUEUE 1"
      and last("C") == "IN_QUEUE 2"
  end, traces)
  for _, step in ipairs {
    { "A runs, B and C move up", { A = "IN_PROGRESS", B = "IN_QUEUE 0", C = "IN_QUEUE 1" } },
    { "B runs, C moves up", { B = "IN_PROGRESS", C = "IN_QUEUE 0" } },
    { "C runs", { C = "IN_PROGRESS" } },
  } do
    sb.control { release_endless = true }
    until_true(step[1], function()
      for name, want in pairs(step[2]) do
        if last(name) ~= want then return false end
      end
      return true
    end, traces)
  end
  sb.control { release_endless = true }
  local results = {}
  for _, name in ipairs { "blocker", "A", "B", "C" } do
    local res, err = jobs[name]:wait()
    T.ok(res, name .. " reached its result: " .. tostring(err))
    results[name] = res
  end
  return seen, logs, results, traces
end

local MODES = {
  { name = "lf" },  -- fal's shape, the reference
  { name = "crlf, many data lines", sse_newline = "crlf", sse_multiline = true },
  { name = "cr, many data lines", sse_newline = "cr", sse_multiline = true },
  { name = "cr, one line per event", sse_newline = "cr" },
  { name = "lf, many data lines, split", sse_multiline = true, sse_split = true },
  { name = "crlf, many data lines, split, BOM", sse_newline = "crlf", sse_multiline = true, sse_split = true,
    sse_bom = true },
  { name = "cr, many data lines, split, BOM", sse_newline = "cr", sse_multiline = true, sse_split = true,
    sse_bom = true },
}

local WANT = {
  blocker = { "IN_PROGRESS", "COMPLETED" },
  A = { "IN_QUEUE 0", "IN_PROGRESS", "COMPLETED" },
  B = { "IN_QUEUE 1", "IN_QUEUE 0", "IN_PROGRESS", "COMPLETED" },
  C = { "IN_QUEUE 2", "IN_QUEUE 1", "IN_QUEUE 0", "IN_PROGRESS", "COMPLETED" },
}

local reference  -- what the lf run saw: statuses and log lines per job

for _, mode in ipairs(MODES) do
  T.case("followed by a stream in " .. mode.name .. ": the same statuses, positions and logs, by the stream",
    function()
    sb.reset()
    local ctl = {}
    for k, v in pairs(mode) do
      if k ~= "name" then ctl[k] = v end
    end
    if next(ctl) then sb.control(ctl) end
    local shape = sb.stats().sse
    T.eq(shape.newline, mode.sse_newline or "lf", "the sandbox's line ends")
    T.eq(shape.split, mode.sse_split or false, "the sandbox cuts events")
    local seen, logs, results, traces = run_jobs()
    for _, name in ipairs { "blocker", "A", "B", "C" } do
      T.eq(table.concat(seen[name], ", "), table.concat(WANT[name], ", "), name .. "'s statuses")
      T.ok(#logs[name] >= 2, name .. " showed its log lines: " .. table.concat(logs[name], " | "))
      T.eq(#results[name].images, 1, name .. "'s image")
    end
    -- every job by its stream: one stream each, not one status poll, nothing fell back
    local s = sb.stats()
    T.eq(s.by_route.stream, 4, "one stream per job")
    T.eq(s.by_route.status, 0, "no status polls")
    for _, line in ipairs(traces) do
      T.ok(not line:find("falling back to polling", 1, true), "no fallback: " .. line)
    end
    T.ok(s.sse.events >= 13, "the sandbox sent the events (" .. s.sse.events .. ")")
    if mode.sse_split then
      T.ok(s.sse.writes > 10 * s.sse.events, "each event in many pieces (" .. s.sse.writes .. " writes)")
    else
      T.eq(s.sse.writes, s.sse.events, "one write per event")
    end
    if not reference then
      reference = { seen = seen, logs = logs }
    else
      for _, name in ipairs { "blocker", "A", "B", "C" } do
        T.eq(table.concat(seen[name], ", "), table.concat(reference.seen[name], ", "), name .. ": as in lf")
        T.eq(table.concat(logs[name], " | "), table.concat(reference.logs[name], " | "), name .. "'s logs: as in lf")
      end
    end
  end)
end

T.run()
