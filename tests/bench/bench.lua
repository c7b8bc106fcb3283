-- bench.lua: N edits against a sandbox, each followed, fetched and its image downloaded;
-- prints one Markdown table row. Run by tests/bench/run (which starts the sandbox):
--   editflow run tests/bench/bench.lua SANDBOX_URL N IN_FLIGHT FOLLOW OUT_DIR
-- Figures: wall time, client CPU (user+sys of this process, from getrusage), peak RSS,
-- HTTP requests per job besides downloads (the sandbox's counter), and completion-detection
-- latency: the client's wall clock when it learnt a job had ended minus the sandbox's
-- wall clock when it marked the job COMPLETED (same machine, same clock).
local editflow = require "editflow"
local core = require "editflow.core"
local json = require "editflow.json"

local base, n, in_flight, follow, out = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4], arg[5]
assert(base and n and in_flight and follow and out, "usage: bench.lua SANDBOX_URL N IN_FLIGHT FOLLOW OUT_DIR")

local loop = core.loop()  -- a separate loop for the sandbox's introspection routes
local function introspect(method, path)
  local t = assert(loop:request { url = base .. path, method = method, max_body = 1 << 30 })
  while not t:done() do loop:step(50) end
  return json.decode(assert(t:response()).body)
end

-- Saves as users run them: the journal in the output folder (as `editflow grid` keeps it),
-- unless JOURNAL=0.
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

local ended, failures = {}, 0
local inputs = {}
for i = 1, n do
  inputs[i] = { prompt = "bench " .. i, image_urls = { "https://cdn.example/in.png" },
                image_size = "square", seed = i }
end
local _, errs = editflow.map(inputs, function(input, i)
  local _, job = assert(client:edit(input))
  assert(job:save(out, { name = "b" .. i }))
  ended[job.request_id] = job.ended_at
end, { concurrency = in_flight })
for _ in pairs(errs) do failures = failures + 1 end
running = false
if os.getenv("HEAPDIAG") then
  collectgarbage() collectgarbage()
  io.stderr:write(string.format("retained after the run: %.1f MB\n", collectgarbage("count") / 1024))
end

local wall, cpu = core.monotime() - t0, core.cpu_time() - cpu0
local rss = core.peak_rss()  -- before the (large) introspection answers below
local stats = introspect("GET", "/_sandbox/stats")
local lat = {}
for _, j in ipairs(introspect("GET", "/_sandbox/jobs")) do
  if ended[j.request_id] and j.completed_at then lat[#lat + 1] = (ended[j.request_id] - j.completed_at) * 1000 end
end
table.sort(lat)
local function pct(p) return lat[math.max(1, math.ceil(#lat * p))] or 0 / 0 end
local queue_requests = stats.requests - stats.by_route.files
io.stdout:write(string.format(
  "| %d | %d | %s | %.1f | %.2f | %.3f | %.1f | %.1f | %.2f | %.1f | %.1f | %d | %d |\n",
  n, in_flight, follow, wall, cpu, cpu / n * 1000, rss / 1048576, heap_peak / 1048576,
  queue_requests / n, pct(0.5), pct(0.95), stats.max_open_jobs, failures))
os.exit(failures == 0 and 0 or 1)
