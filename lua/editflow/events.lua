-- editflow.events: the library tells, the host shows.
-- One hub per Lua state (like the engine loop it sits beside): the library emits what happens
-- to jobs, and whoever wants to show it subscribes (the host's progress display and --json,
-- a script's own logger). Nothing in the library prints; with nobody subscribed an event is
-- dropped, except a "warning", which then goes to Lua's warn() (shown by `lua -W`).
--
-- Events, each emit(name, job, detail):
--   waiting / unwaiting  a submit waits for an in-flight slot / got one (job is nil)
--   submitted            the queue accepted the job (detail: "submitted" or "resumed")
--   reused               the job was finished in an earlier run: nothing is sent
--   status               job.state or job.queue_position changed
--   log                  a new log line (detail: the entry as the server sent it)
--   retry                a call failed and is tried again (detail: {what=, why=, wait=})
--   finished             the job ended: job.output or job.error says how
--   saved                its images are on disk (detail: the paths)
--   warning              something the user should know (detail: the text; job may be nil)
local M = {}

local subscribers = {}   -- list of functions, called in subscription order

-- events.subscribe(fn) -> unsubscribe(). fn(name, job, detail) must not yield.
function M.subscribe(fn)
  if type(fn) ~= "function" then error("events.subscribe expects a function", 2) end
  subscribers[#subscribers + 1] = fn
  return function()
    for i, f in ipairs(subscribers) do
      if f == fn then table.remove(subscribers, i) return end
    end
  end
end

-- A subscriber that raises must not stop the job that emitted: its error becomes a warning.
function M.emit(name, job, detail)
  if #subscribers == 0 then
    if name == "warning" then warn("editflow: ", tostring(detail)) end
    return
  end
  for _, fn in ipairs(subscribers) do
    local ok, err = pcall(fn, name, job, detail)
    if not ok and name ~= "warning" then
      warn("editflow: an events subscriber failed: ", tostring(err))
    end
  end
end

function M.warning(text, job) M.emit("warning", job, text) end

return M
