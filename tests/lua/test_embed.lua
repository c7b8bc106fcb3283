-- test_embed.lua: editflow inside other Lua event loops, as their hosts would use it.
-- luv (libuv) and cqueues each drive editflow through the hook (editflow.pollfd, timeout,
-- step(0)) while a heartbeat timer of the host's own must keep ticking during the jobs; an
-- idle wait with a job in flight must wake the host only a few times (no busy polling: counted
-- as host wake-ups, which the machine's load does not raise; the CPU it costs is measured by
-- tests/bench/embed_idle.lua); and once the host owns the loop, a waiting call outside an
-- editflow task raises instead of freezing the host.
-- Run in a process of its own per host (the hook hands the loop over for good).
local T = require "testlib"
local core = require "editflow.core"

local URL = "https://cdn.example/a.png"
local LUA = "lua5.4"

-- Each host runs in its own lua5.4 process (the loop is handed over once per Lua state);
-- the child prints "KEY=VALUE" lines the test reads.
local function run_child(src, sb_url)
  local d = T.tmpdir()
  local f = assert(io.open(d .. "/child.lua", "w"))
  f:write(src)
  f:close()
  -- Not through T.sh: the child is a Lua host like this one and, in the sanitizer build, needs
  -- the same preloaded ASan runtime to load the instrumented editflow.core.
  local _, how, code = os.execute(string.format("cd %s && FAL_KEY=test-key EDITFLOW_BASE_URL=%s "
    .. "timeout 60 %s child.lua >out.txt 2>err.txt", T.quote(d), T.quote(sb_url), LUA))
  local st = how == "exit" and code or 128 + code
  local out, err = T.read(d .. "/out.txt"), T.read(d .. "/err.txt")
  local vals = {}
  for k, v in (out or ""):gmatch("(%w+)=([^\n]*)") do vals[k] = v end
  os.execute("rm -rf " .. T.quote(d))
  return st, vals, out, err
end

-- Common to both hosts: a client, a job slow enough to wait for, the heartbeat's ticks and the
-- host's wake-ups (each time it handed editflow a turn).
local PRELUDE = [[
local editflow = require "editflow"
local core = require "editflow.core"
local client = editflow.client { poll_interval = 0.05 }
local ticks, wakes, done, result_ok = 0, 0, false, false
local function job()
  local res, j = client:edit { prompt = "[slow:3] embedded", image_urls = { "]] .. URL .. [[" } }
  result_ok = res ~= nil and #assert(j:save("out")) == 1
  done = true
end
]]

local REPORT = [[
local cpu = core.cpu_time() - cpu0
print("ticks=" .. ticks)
print("wakes=" .. wakes)
print("ok=" .. tostring(result_ok))
print("cpu=" .. string.format("%.3f", cpu))
print("wall=" .. string.format("%.3f", core.monotime() - t0))
print("fd=" .. tostring(fd))
-- a waiting call outside a task, now that the host owns the loop, raises with the remedy
local ok, err = pcall(client.edit, client, { prompt = "outside", image_urls = { "]] .. URL .. [[" } })
print("outside=" .. tostring(not ok and tostring(err):find("editflow.spawn", 1, true) ~= nil))
]]

local LUV = PRELUDE .. [[
local uv = require "luv"
local fd = editflow.pollfd()
local timer = uv.new_timer()
local poll = fd and uv.new_poll(fd)
local heartbeat = uv.new_timer()
local service
-- One turn of editflow, then a timer for its next due time (the fd covers the rest).
function service()
  wakes = wakes + 1
  editflow.step(0)
  timer:stop()
  if done then
    if poll then poll:stop() end
    heartbeat:stop()
    return
  end
  local t = editflow.timeout()
  if t then timer:start(math.max(1, math.ceil(t * 1000)), 0, service) end
end
if poll then poll:start("r", service) end
heartbeat:start(100, 100, function() ticks = ticks + 1 end)
editflow.spawn(job)
local cpu0, t0 = core.cpu_time(), core.monotime()
service()
uv.run()
]] .. REPORT

local CQUEUES = PRELUDE .. [[
local cqueues = require "cqueues"
local cq = cqueues.new()
local fd = editflow.pollfd()
cq:wrap(function()
  while not done do
    cqueues.poll(editflow)   -- editflow:pollfd(), :events(), :timeout(): the cqueues convention
    wakes = wakes + 1
    editflow.step(0)
  end
end)
cq:wrap(function()
  while not done do
    cqueues.sleep(0.1)
    ticks = ticks + 1
  end
end)
editflow.spawn(job)
local cpu0, t0 = core.cpu_time(), core.monotime()
assert(cq:loop())
]] .. REPORT

local sb = T.sandbox { "--job-time", "0.01" }

for _, host in ipairs { { "luv", LUV }, { "cqueues", CQUEUES } } do
  T.case(host[1] .. " drives editflow: its heartbeat keeps ticking, an idle wait wakes it a few times", function()
    local before = sb.stats().by_route.submit
    local st, v, out, err = run_child(host[2], sb.url)
    T.eq(sb.stats().by_route.submit - before, 1, "one submit: the refused call outside a task sent nothing")
    T.eq(st, 0, host[1] .. " child: " .. tostring(out) .. tostring(err))
    T.eq(v.ok, "true", "the job's result was saved")
    local wall, cpu, ticks, wakes = tonumber(v.wall), tonumber(v.cpu), tonumber(v.ticks), tonumber(v.wakes)
    T.ok(wall >= 2.9, "the job took its 3 s (" .. wall .. ")")
    -- A 100 ms heartbeat: ~30 ticks; a host frozen by a blocking turn gets 0 or 1. A loaded
    -- machine makes ticks late, never many fewer than a quarter.
    T.ok(ticks >= wall * 10 / 4, string.format("the heartbeat ticked through the job: %d ticks in %.1f s", ticks, wall))
    -- Wake-ups during the wait: ~20 with a descriptor (the job's events and timers); without
    -- one (poll(2)) one each POLL_SLICE (20 ms) more. A busy host (timeout() 0) makes one per
    -- millisecond or a spin: thousands. Load only delays wake-ups, so it cannot raise the count.
    local cap = 100 + (core.poller == "poll" and math.floor(wall / 0.02) or 0)
    T.ok(wakes > 0 and wakes <= cap, string.format("no busy polling: %d host wake-ups in %.1f s (at most %d)", wakes, wall, cap))
    T.ok(v.fd ~= "nil" or core.poller == "poll", "a pollable descriptor on this engine (" .. tostring(v.fd) .. ")")
    T.eq(v.outside, "true", "a blocking call outside a task raises, naming editflow.spawn")
    print(string.format("  %s: %.3f s CPU over a %.1f s job, %d heartbeat ticks, %s wakes", host[1], cpu, wall, ticks, v.wakes))
  end)
end

T.case("a stock lua5.4 started with stdout and stderr closed: the module fills them with /dev/null", function()
  -- Left closed, the first file opened (here a journal through core.open_log) would be fd 1
  -- or 2, and whatever the script or a host then writes to "stderr" would land in it.
  local d = T.tmpdir()
  local f = assert(io.open(d .. "/child.lua", "w"))
  f:write([[
local core = require "editflow.core"
local log = assert(core.open_log("journal.jsonl"))
io.stderr:write("stray text on stderr\n")
io.stderr:flush()
print("stray text on stdout")
io.stdout:flush()
assert(log:append('{"t":"record"}\n'))
log:close()
]])
  f:close()
  local _, how, code = os.execute(string.format("cd %s && %s child.lua >&- 2>&-", T.quote(d), LUA))
  T.eq(how == "exit" and code or -code, 0, "the child ran")
  T.eq(T.read(d .. "/journal.jsonl"), '{"t":"record"}\n', "the journal holds its record only")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
