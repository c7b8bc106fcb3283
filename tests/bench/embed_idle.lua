-- embed_idle.lua: the CPU a luv host spends while editflow waits 10 s for one job, with the
-- old pattern (a 10 ms luv timer calling editflow.step(10)) and with the hook (a uv poll on
-- editflow.pollfd() plus a timer at editflow.timeout()). Run by hand, against a sandbox:
--   lua5.4 tests/bench/embed_idle.lua SANDBOX_URL step|hook
-- (with LUA_PATH/LUA_CPATH pointing at the build, as tests/CMakeLists.txt sets them).
local uv = require "luv"
local editflow = require "editflow"
local core = require "editflow.core"

local url, mode = arg[1], arg[2]
assert(url and (mode == "step" or mode == "hook"), "usage: embed_idle.lua SANDBOX_URL step|hook")
local client = editflow.client { base_url = url, key = "test-key" }
local done = false
editflow.spawn(function()
  assert(client:edit { prompt = "[slow:10] idle", image_urls = { "https://cdn.example/a.png" } })
  done = true
end)

local cpu0, t0 = core.cpu_time(), core.monotime()
local timer = uv.new_timer()
if mode == "step" then
  timer:start(0, 10, function()
    editflow.step(10)
    if done then timer:stop() end
  end)
else
  local fd = editflow.pollfd()
  local poll = fd and uv.new_poll(fd)
  local function service()
    editflow.step(0)
    timer:stop()
    if done then if poll then poll:stop() end return end
    local t = editflow.timeout()
    if t then timer:start(math.max(1, math.ceil(t * 1000)), 0, service) end
  end
  if poll then poll:start("r", service) end
  service()
end
uv.run()
print(string.format("%s: %.3f s CPU over %.2f s waiting for one job", mode, core.cpu_time() - cpu0,
  core.monotime() - t0))
