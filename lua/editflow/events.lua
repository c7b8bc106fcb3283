-- editflow.events: the library tells, the host shows.
-- One hub per Lua state (like the engine loop it sits beside): the library emits what happens
-- to jobs, and whoever wants to show it subscribes (the host's progress display and --json,
-- a script's own logger). Nothing in the library prints; with nobody subscribed an event is
-- dropped, except a "warning", which then goes to Lua's warn() (shown by `lua -W`).
--
-- Events, each emit(name, job, detail):
--   waiting / unwaiting  a submit waits for an in-flight slot / got one (job is nil)
--   submitted            the queue accepted the job (detail: "submitted", "resumed", or
--                        "found": its lost submit was found in fal's request listing)
--   resent               an earlier run's cancel took at the queue: the job is sent anew
--                        (detail: why); a "submitted" event follows
--   reused               the job was finished in an earlier run: nothing is sent
--   status               job.state or job.queue_position changed
--   log                  a new log line (detail: the entry as the server sent it)
--   retry                a call failed and is tried again (detail: {what=, why=, wait=})
--   finished             the job ended: job.output or job.error says how
--   saved                its images are on disk (detail: the paths)
--   held                 a job not sent: an earlier submit of it may have made it (detail: the
--                        error its submit returned; job is nil, its client's subscribers hear it)
--   warning              something the user should know (detail: the text; job may be nil)
--
-- Callbacks (these subscribers, and a client's on_status, on_log, on_finish, on_saved) run
-- inside editflow's tasks, in the middle of the scheduler's turn. A callback that yielded
-- there (coroutine.yield, cqueues.sleep, an editflow call that waits) would suspend the task
-- that called it with nothing set to wake it: its job would stall until its deadline. So
-- events.call runs each callback in a coroutine of its own and makes a yield an error.
local M = {}

local subscribers = {}   -- list of functions, called in subscription order

-- ---- callbacks: run in their own coroutine, never yielding into the scheduler ----

local DONE = {}          -- what a runner yields once its callback has returned
local runners = {}       -- idle runner coroutines, reused (a callback can run per event)
local running = nil      -- name of the callback running now (innermost), or nil

-- A runner calls one callback after another: a tail call keeps its stack flat.
local function runner(fn, ...)
  fn(...)
  return runner(coroutine.yield(DONE))
end

-- events.call(name, fn, ...): fn(...) as a callback named name ("on_status", "subscriber").
-- An error it raises comes out unchanged; a yield becomes an error naming it.
function M.call(name, fn, ...)
  local co = table.remove(runners) or coroutine.create(runner)
  local outer = running
  running = name
  local ok, res = coroutine.resume(co, fn, ...)
  running = outer
  if not ok then error(res, 0) end
  if res ~= DONE then
    coroutine.close(co)
    error("editflow: " .. name .. " must not yield (it ran inside editflow's loop); do waiting "
      .. "work in editflow.spawn", 0)
  end
  runners[#runners + 1] = co
end

-- The name of the callback running now, or nil: a wait made from one is refused by name.
function M.callback() return running end

local skips = setmetatable({}, { __mode = "k" })  -- subscriber -> { [event name] = true } it does not want

-- events.subscribe(fn [, { except = { name, ... } }]) -> unsubscribe(). fn(name, job, detail)
-- must not yield (see call). `except` names events fn does not want: a job asks the queue
-- for log lines only while someone wants "log" events (events.wants).
function M.subscribe(fn, opts)
  if type(fn) ~= "function" then error("events.subscribe expects a function", 2) end
  return M.subscribe_to(subscribers, fn, opts)
end

-- events.wants(name [, client]) -> whether any subscriber (of the shared hub, or the client's
-- own) takes events of that name.
function M.wants(name, client)
  for _, list in ipairs { subscribers, client and client.subscribers or {} } do
    for _, fn in ipairs(list) do
      if not (skips[fn] and skips[fn][name]) then return true end
    end
  end
  return false
end

-- A subscriber that raises must not stop the job that emitted: its error becomes a warning.
local function deliver(list, name, job, detail)
  for _, fn in ipairs(list) do
    local skip = skips[fn]
    local ok, err = true, nil
    if not (skip and skip[name]) then ok, err = pcall(M.call, "subscriber", fn, name, job, detail) end
    if not ok then
      -- told as a warning event when another subscriber of the shared hub can hear it (the
      -- host's display shows warnings), else -- or when it failed on a warning -- to warn()
      local others = #subscribers > (list == subscribers and 1 or 0)
      if name ~= "warning" and others then
        M.emit("warning", nil, "an events subscriber failed: " .. tostring(err))
      else
        warn("editflow: an events subscriber failed: ", tostring(err))
      end
    end
  end
end

-- A job's event goes to its client's own subscribers (client:subscribe), then to the shared
-- hub's. `client` names the client of an event without a job (a job held back before it had
-- one).
function M.emit(name, job, detail, client)
  client = client or (type(job) == "table" and job.client)
  local own = type(client) == "table" and client.subscribers
  if own and #own > 0 then deliver(own, name, job, detail) end
  if #subscribers == 0 then
    if name == "warning" and not (own and #own > 0) then warn("editflow: ", tostring(detail)) end
    return
  end
  deliver(subscribers, name, job, detail)
end

-- events.subscribe_to(list, fn [, opts]) -> unsubscribe: fn joins `list` (a client's own).
function M.subscribe_to(list, fn, opts)
  if type(fn) ~= "function" then error("subscribe expects a function", 3) end
  if opts and opts.except then
    local set = {}
    for _, name in ipairs(opts.except) do set[name] = true end
    skips[fn] = set
  end
  list[#list + 1] = fn
  return function()
    for i, f in ipairs(list) do
      if f == fn then table.remove(list, i) return end
    end
  end
end

function M.warning(text, job) M.emit("warning", job, text) end

return M
