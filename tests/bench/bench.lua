-- bench.lua: N edits against a sandbox, each followed, fetched and its image downloaded and
-- saved (durably: fsync, folder fsync, and the journal in the output folder, as `editflow
-- grid` keeps it; JOURNAL=0 leaves the journal out); prints one Markdown table row.
-- Run by tests/bench/run (which starts the sandbox):
--   editflow run tests/bench/bench.lua SANDBOX_URL N IN_FLIGHT FOLLOW OUT_DIR [lag|flat]
-- Figures: wall time, client CPU (user+sys of this process and its disk workers, from
-- getrusage), peak RSS, the Lua heap's peak, HTTP requests per job besides downloads (the
-- sandbox's counter), fdatasyncs and folder fsyncs per job, and
--   lag:  result lag -- the client's wall clock when it learnt a job had ended minus the
--         sandbox's wall clock when it marked the job COMPLETED (same machine, same clock);
--   flat: no per-job record at all (so the run's own bookkeeping cannot grow), and the
--         resident set (VmRSS) after the first tenth of the jobs and at the end.
-- Jobs are made as they are needed by IN_FLIGHT workers, never listed up front.
local editflow = require "editflow"
local core = require "editflow.core"
local json = require "editflow.json"

local base, n, in_flight, follow, out, mode = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5], arg[6] or "lag"
assert(base and n and in_flight and follow and out and (mode == "lag" or mode == "flat"),
  "usage: bench.lua SANDBOX_URL N IN_FLIGHT FOLLOW OUT_DIR [lag|flat]")

local loop = core.loop()  -- a separate loop for the sandbox's introspection routes
local function introspect(method, path)
  local t = assert(loop:request { url = base .. path, method = method, max_body = 1 << 30 })
  while not t:done() do loop:step(50) end
  return json.decode(assert(t:response()).body)
end

-- The resident set now, in bytes (Linux /proc; nil elsewhere).
local function rss_now()
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local kb = f:read("a"):match("VmRSS:%s*(%d+)")
  f:close()
  return kb and tonumber(kb) * 1024
end

local client = editflow.client {
  base_url = base, key = "test-key", max_in_flight = in_flight, follow = follow,
  poll_interval = 0.05, max_poll_interval = 0.5,
  journal = os.getenv("JOURNAL") ~= "0" and out or nil,
}
introspect("POST", "/_sandbox/reset")
collectgarbage()
local cpu0, t0 = core.cpu_time(), core.monotime()

-- The Lua heap's peak, sampled every 50 ms while the jobs run (what of the peak RSS is Lua's).
local heap_peak, running = 0, true
editflow.spawn(function()
  while running do
    heap_peak = math.max(heap_peak, collectgarbage("count") * 1024)
    editflow.sleep(0.05)
  end
end)

local ended, failures, next_i, finished = {}, 0, 0, 0
local rss_tenth
local function worker()
  while next_i < n do
    next_i = next_i + 1
    local i = next_i
    local ok, err = pcall(function()
      local _, job = assert(client:edit { prompt = "bench " .. i,
        image_urls = { "https://cdn.example/in.png" }, image_size = "square", seed = i })
      assert(job:save(out, { name = "b" .. i }))
      if mode == "lag" then ended[job.request_id] = job.ended_at end
    end)
    if not ok then
      failures = failures + 1
      if failures <= 3 then io.stderr:write("bench: job ", i, " failed: ", tostring(err), "\n") end
    end
    finished = finished + 1
    if finished == n // 10 then rss_tenth = rss_now() end
  end
end
local workers = {}
for w = 1, math.min(in_flight, n) do workers[w] = editflow.spawn(worker) end
for _, w in ipairs(workers) do editflow.join(w) end
running = false

local wall, cpu = core.monotime() - t0, core.cpu_time() - cpu0
local rss_end = rss_now()
local rss = core.peak_rss()  -- before the (large) introspection answers below
local jr = client.journal
local fdatasyncs = jr and jr.log and jr.log.group.syncs or 0
local folder_syncs = require("editflow.durable").folder_syncs()
local stats = introspect("GET", "/_sandbox/stats")
local queue_requests = stats.requests - stats.by_route.files
local mb = 1048576
local row = string.format("| %d | %d | %s | %.1f | %.2f | %.3f | %.1f | %.1f | %.2f | %.2f | %.2f",
  n, in_flight, follow, wall, cpu, cpu / n * 1000, rss / mb, heap_peak / mb,
  queue_requests / n, fdatasyncs / n, folder_syncs / n)
if mode == "lag" then
  local lat = {}
  for _, j in ipairs(introspect("GET", "/_sandbox/jobs")) do
    if ended[j.request_id] and j.completed_at then lat[#lat + 1] = (ended[j.request_id] - j.completed_at) * 1000 end
  end
  table.sort(lat)
  local function pct(p) return lat[math.max(1, math.ceil(#lat * p))] or 0 / 0 end
  row = row .. string.format(" | %.1f | %.1f | | ", pct(0.5), pct(0.95))
else
  row = row .. string.format(" | | | %.1f | %.1f", (rss_tenth or 0) / mb, (rss_end or 0) / mb)
end
io.stdout:write(row, string.format(" | %d | %d |\n", stats.max_open_jobs, failures))
os.exit(failures == 0 and 0 or 1)
