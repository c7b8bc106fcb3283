-- examples/luv.lua: editflow inside a luv (libuv) program. libuv owns the loop; editflow only
-- says when it has work: a uv poll on editflow.pollfd() and a uv timer at editflow.timeout().
-- Waiting calls (client:edit, job:save, ...) run inside editflow.spawn tasks; the host's own
-- timers and I/O keep running meanwhile.
--   FAL_KEY=... lua5.4 examples/luv.lua PHOTO [PROMPT]
local uv = require "luv"
local editflow = require "editflow"

local photo, prompt = arg[1], arg[2] or "make it a watercolour"
assert(photo, "usage: lua5.4 examples/luv.lua PHOTO [PROMPT]")
local client = editflow.client {}

local fd = editflow.pollfd()            -- from now on libuv drives editflow
local poll = fd and uv.new_poll(fd)     -- nil on engines without one: the timer alone works
local timer = uv.new_timer()
local heartbeat = uv.new_timer()
local finished = false

-- One turn of editflow, then a timer for its next due time.
local function service()
  editflow.step(0)
  timer:stop()
  if finished then
    if poll then poll:stop() end
    heartbeat:stop()
    return
  end
  local t = editflow.timeout()
  if t then timer:start(math.max(1, math.ceil(t * 1000)), 0, service) end
end

-- A task's failure is a warning event; a host shows it where it shows its own messages.
editflow.subscribe(function(name, _, detail)
  if name == "warning" then io.stderr:write("editflow: ", tostring(detail), "\n") end
end)

editflow.spawn(function()
  local ok, err = pcall(function()  -- whatever happens, the host is told the work is over
    local result, job = client:edit { prompt = prompt, image_urls = { photo } }
    if result then
      for _, path in ipairs(assert(job:save("out"))) do print(path) end
    else
      io.stderr:write("edit failed: ", tostring(job), "\n")
    end
  end)
  if not ok then io.stderr:write("edit failed: ", tostring(err), "\n") end
  finished = true
end)

heartbeat:start(1000, 1000, function() io.stderr:write("(the host is still responsive)\n") end)
if poll then poll:start("r", service) end
service()
uv.run()
