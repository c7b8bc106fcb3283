-- host_stall.lua: how long editflow holds a host. A luv host (a uv poll on editflow.pollfd()
-- plus a uv timer at editflow.timeout(), each calling editflow.step(0), as docs/api.md's luv
-- recipe does) runs N edits with IN_FLIGHT at a time, each saved durably (fsync, folder fsync)
-- with the journal in the output folder, and times every step(0): that is how long the host's
-- own work (a UI frame, a timer) had to wait. Result lag is computed as tests/bench/bench.lua
-- does: the client's wall clock when it learnt a job had ended minus the sandbox's when it
-- marked the job COMPLETED. Prints one Markdown row. Run by tests/bench/run stall, or by hand
-- (LUA_PATH/LUA_CPATH at the build, EDITFLOW_*_URL at the sandbox):
--   lua5.4 tests/bench/host_stall.lua SANDBOX_URL N IN_FLIGHT OUT_DIR
-- Env: JOURNAL=0 leaves the journal out; STEP_BUDGET=MS sets editflow.limits{step_budget=};
-- GC=inc:N runs the host's collector incremental with steps of 2^N bytes (the host's choice:
-- stock lua5.4 runs generational, whose major collections stop the world for the live heap).
if (os.getenv("GC") or "") ~= "" then
  local size = assert(os.getenv("GC"):match("^inc:(%d+)$"), "GC=inc:N")
  collectgarbage("incremental", 0, 0, tonumber(size))
end
local uv = require "luv"
local editflow = require "editflow"
local core = require "editflow.core"
local json = require "editflow.json"

local base, n, in_flight, out = arg[1], tonumber(arg[2]), tonumber(arg[3]), arg[4]
assert(base and n and in_flight and out, "usage: host_stall.lua SANDBOX_URL N IN_FLIGHT OUT_DIR")

local loop = core.loop()  -- a separate loop for the sandbox's introspection routes
local function introspect(method, path)
  local t = assert(loop:request { url = base .. path, method = method, max_body = 1 << 30 })
  while not t:done() do loop:step(50) end
  return json.decode(assert(t:response()).body)
end

if os.getenv("STEP_BUDGET") then editflow.limits { step_budget = tonumber(os.getenv("STEP_BUDGET")) } end
local client = editflow.client {
  base_url = base, key = "test-key", max_in_flight = in_flight, follow = "stream",
  poll_interval = 0.05, max_poll_interval = 0.5,
  journal = os.getenv("JOURNAL") ~= "0" and out or nil,
}
introspect("POST", "/_sandbox/reset")
collectgarbage()

local ended, failures, next_i, finished = {}, 0, 0, 0
local function worker()
  while next_i < n do
    next_i = next_i + 1
    local i = next_i
    local ok, err = pcall(function()
      local _, job = assert(client:edit { prompt = "stall " .. i,
        image_urls = { "https://cdn.example/in.png" }, image_size = "square", seed = i })
      assert(job:save(out, { name = "s" .. i }))
      ended[job.request_id] = job.ended_at
    end)
    if not ok then
      failures = failures + 1
      if failures <= 3 then io.stderr:write("host_stall: job ", i, " failed: ", tostring(err), "\n") end
    end
    finished = finished + 1
  end
end
for _ = 1, math.min(in_flight, n) do editflow.spawn(worker) end

-- The host: every step(0) timed, then a timer for editflow's next due time (the descriptor
-- covers socket and disk activity; timeout() is 0 while work is left over).
local steps = {}
local fd = assert(editflow.pollfd(), "host_stall needs the epoll engine (a descriptor)")
local poll, timer = uv.new_poll(fd), uv.new_timer()
local cpu0, t0 = core.cpu_time(), core.monotime()
local function service()
  local s = core.monotime()
  editflow.step(0)
  steps[#steps + 1] = core.monotime() - s
  timer:stop()
  if finished >= n then
    poll:stop()
    return
  end
  local t = editflow.timeout()
  if t then timer:start(math.ceil(t * 1000), 0, service) end
end
poll:start("r", service)
service()
uv.run()
local wall, cpu = core.monotime() - t0, core.cpu_time() - cpu0

table.sort(steps)
local function pct(list, p) return list[math.max(1, math.ceil(#list * p))] or 0 / 0 end
local lat = {}
for _, j in ipairs(introspect("GET", "/_sandbox/jobs")) do
  if ended[j.request_id] and j.completed_at then lat[#lat + 1] = (ended[j.request_id] - j.completed_at) * 1000 end
end
table.sort(lat)
local over = 0
for i = #steps, 1, -1 do
  if steps[i] <= 0.016 then break end
  over = over + 1
end
io.stdout:write(string.format("| %d | %d | %.1f | %.3f | %d | %.2f | %.2f | %.1f | %d | %.1f | %.1f | %d |\n",
  n, in_flight, wall, cpu / n * 1000, #steps, pct(steps, 0.5) * 1000, pct(steps, 0.99) * 1000,
  steps[#steps] * 1000, over, pct(lat, 0.5), pct(lat, 0.95), failures))
os.exit(failures == 0 and 0 or 1)
