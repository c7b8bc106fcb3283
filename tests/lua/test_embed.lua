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
  local st, vals, out, err = T.lua_child(src, "FAL_KEY=test-key EDITFLOW_BASE_URL=" .. T.quote(sb_url))
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

-- A host that waits only on Lua files (darktable's control.read): it gets editflow.pollfile(),
-- an io file on a duplicate of pollfd(). Stock Lua cannot name a file's descriptor, so the
-- host here finds the duplicate as the descriptor that appeared in /proc/self/fd, checks it
-- is an epoll instance other than pollfd(), and waits on it (and on it alone) with luv.
local FILE = PRELUDE .. [[
local uv = require "luv"
local function epolls()  -- the epoll descriptors this process holds
  local set = {}
  local dir = assert(uv.fs_scandir("/proc/self/fd"))
  while true do
    local name = uv.fs_scandir_next(dir)
    if not name then break end
    if uv.fs_readlink("/proc/self/fd/" .. name) == "anon_inode:[eventpoll]" then set[tonumber(name)] = true end
  end
  return set
end
local pfd = editflow.pollfd()
local before = epolls()
local pf = editflow.pollfile()
assert(io.type(pf) == "file", "pollfile is an io file: " .. tostring(pf))
local fd, new = nil, 0
for n in pairs(epolls()) do if not before[n] then fd, new = n, new + 1 end end
print("dup=" .. tostring(new == 1 and fd ~= pfd and before[pfd] == true))
print("kind=" .. tostring(fd ~= nil))
local extra = editflow.pollfile()  -- a second one, closed at once: the loop's own stays open
print("closed=" .. tostring(extra:close()))
-- No timer at timeout(): like darktable's control.read, the host waits on the file alone
-- (editflow's own timers and libcurl's arm the descriptor).
local poll = uv.new_poll(fd)
local heartbeat = uv.new_timer()
local function service()
  wakes = wakes + 1
  editflow.step(0)
  if done then
    poll:stop()
    heartbeat:stop()
  end
end
poll:start("r", service)
heartbeat:start(100, 100, function() ticks = ticks + 1 end)
editflow.spawn(job)
local cpu0, t0 = core.cpu_time(), core.monotime()
service()
uv.run()
print("pfclose=" .. tostring(pf:close()))
]] .. REPORT

local sb = T.sandbox { "--job-time", "0.01" }

T.case("pollfile(): an io file on a duplicate of pollfd(), which a host can wait on alone", function()
  if core.poller == "poll" then
    local st, v, out, err = run_child("local e = require 'editflow' print('pf=' .. tostring(e.pollfile()))", sb.url)
    T.eq(st, 0, tostring(out) .. tostring(err))
    T.eq(v.pf, "nil", "no descriptor on the poll(2) engine: pollfile() is nil like pollfd()")
    return
  end
  local st, v, out, err = run_child(FILE, sb.url)
  T.eq(st, 0, "file host child: " .. tostring(out) .. tostring(err))
  T.eq(v.dup, "true", "exactly one new epoll descriptor, not the loop's own")
  T.eq(v.kind, "true", "the duplicate is an epoll descriptor")
  T.eq(v.closed, "true", "closing a pollfile succeeds")
  T.eq(v.ok, "true", "the job ran to its saved result with the host waiting on the pollfile")
  T.eq(v.pfclose, "true", "the host closes its pollfile when done")
  T.ok(tonumber(v.wakes) <= 100, "no busy polling through the duplicate: " .. v.wakes .. " wakes")
end)

T.case("pollfile() refuses a duplicate select() cannot wait on, and leaves the loop to editflow", function()
  if core.poller == "poll" then return end  -- no descriptor to duplicate there
  local st, v, out, err = run_child([[
local core = require "editflow.core"
core.raise_nofile()
local editflow = require "editflow"
local keep = {}
for i = 1, 1100 do keep[i] = assert(io.open("/dev/null")) end  -- every number below 1024 taken
local ok, err = pcall(editflow.pollfile)
print("refused=" .. tostring(not ok))
print("names=" .. tostring(tostring(err):find("below 1024", 1, true) ~= nil))
for i = 1, #keep do keep[i]:close() end
-- the loop is still editflow's: a blocking call outside a task is allowed and runs
local c = editflow.client {}
local res = c:edit { prompt = "after a refused pollfile", image_urls = { "]] .. URL .. [[" } }
print("blocking=" .. tostring(res ~= nil))
]], sb.url)
  T.eq(st, 0, tostring(out) .. tostring(err))
  T.eq(v.refused, "true", "pollfile() raises when only descriptors >= FD_SETSIZE are free")
  T.eq(v.names, "true", "the message names the limit")
  T.eq(v.blocking, "true", "a refused pollfile does not hand the loop to the host")
end)

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
