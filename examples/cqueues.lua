-- examples/cqueues.lua: editflow inside a cqueues program. editflow follows the cqueues
-- convention (pollfd, events, timeout), so cqueues.poll(editflow) waits on it directly; the
-- edit itself runs in an editflow task, and other cqueues coroutines keep running meanwhile.
--   FAL_KEY=... lua5.4 examples/cqueues.lua PHOTO [PROMPT]
local cqueues = require "cqueues"
local editflow = require "editflow"

local photo, prompt = arg[1], arg[2] or "make it a watercolour"
assert(photo, "usage: lua5.4 examples/cqueues.lua PHOTO [PROMPT]")
local client = editflow.client {}
local finished = false

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

local cq = cqueues.new()
cq:wrap(function()                 -- editflow's turn whenever it has work
  while not finished do
    cqueues.poll(editflow)
    editflow.step(0)
  end
end)
cq:wrap(function()                 -- the host's own work goes on
  while not finished do
    cqueues.sleep(1)
    io.stderr:write("(the host is still responsive)\n")
  end
end)
assert(cq:loop())
