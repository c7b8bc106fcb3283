-- editflow.runtime: the one engine loop a Lua state shares, and the tasks that run on it.
--
-- Tasks are coroutines. Code written sequentially runs concurrently: a call that must wait
-- (a transfer, a sleep, a signal) yields when made inside a task and, made from the main
-- chunk (or any coroutine that is not a task), drives the loop itself until it can return.
-- step() is one turn of the scheduler: run ready tasks, wait on the engine at most as long as
-- asked (less if a timer is due), wake the tasks whose transfers finished or received events,
-- fire due timers. A task that raises is reported with its traceback (on_error) and ends;
-- other tasks go on. Everything here is per Lua state, like the engine loop it owns.
local core = require "editflow.core"
local events = require "editflow.events"

local M = {}

M.now = core.monotime
local now = core.monotime

local SLICE_MS = 100    -- longest single wait, so a SIGINT hook set by the host runs promptly

local loop              -- the engine loop, created on first use
local waiting = {}      -- transfer -> waiter {co=}, for news or completion
local ready = {}        -- FIFO of waiters to resume
local rhead, rtail = 1, 0
local timers = {}       -- binary heap of {at=, waiter=, dead=}; cancelled ones stay until popped
local live_timers = 0   -- timers in the heap not cancelled
local tasks = setmetatable({}, { __mode = "k" })  -- coroutine -> task
local alive = 0         -- tasks started and not finished

function M.loop()
  if not loop then
    core.raise_nofile()  -- many jobs in flight want many sockets; the hard limit is ours to use
    loop = core.loop()
  end
  return loop
end

-- The loop's own limits, set once for every client of this Lua state (a client's options
-- never change them for another): max_connections caps open connections, per host too;
-- step_budget is how long one step() may run tasks, in milliseconds (see M._step).
local DEFAULT_BUDGET_MS = 4
local limits = {}
local budget_ms = DEFAULT_BUDGET_MS       -- as given (an integer stays one)
local budget = DEFAULT_BUDGET_MS / 1000  -- seconds, as now() counts
local MIN_BUDGET_MS = 0.01               -- 10 µs: below it a budget is a typo, not a wish
local ACCEPTED = "(accepted: max_connections, step_budget)"
local budget_clock = now  -- what the budget is measured on (a test may count instead)

-- runtime._budget_clock(fn): measure the step budget on fn() (seconds) instead of the
-- monotonic clock, so a test can decide how long each task takes; nil restores the clock.
-- Samples taken on the old clock mean nothing on the new one: the estimate starts afresh.
function M._budget_clock(fn)
  budget_clock = fn or now
  M._forget_costs()
end
function M.limits(opts)
  if opts ~= nil then
    if type(opts) ~= "table" then error("editflow.limits expects a table", 2) end
    for k, v in pairs(opts) do
      if k == "max_connections" then
        if math.type(v) ~= "integer" or v < 1 then
          error("editflow.limits: max_connections must be an integer >= 1, got " .. tostring(v), 2)
        end
      elseif k == "step_budget" then
        -- a number of milliseconds, fractions allowed; inf and NaN are not a budget
        if type(v) ~= "number" or not (v >= MIN_BUDGET_MS and v < math.huge) then
          error("editflow.limits: step_budget must be a number of milliseconds >= 0.01, got " .. tostring(v), 2)
        end
      else
        error("editflow.limits: unknown option '" .. tostring(k) .. "' " .. ACCEPTED, 2)
      end
    end
    if opts.max_connections then
      limits.max_connections = opts.max_connections
      M.loop():limits(opts.max_connections, opts.max_connections)
    end
    if opts.step_budget then budget_ms, budget = opts.step_budget, opts.step_budget / 1000 end
  end
  return { max_connections = limits.max_connections, step_budget = budget_ms }
end

-- ---- the ready queue and timers ----

local function cancel_timer(item)
  if item and not item.dead then
    item.dead = true
    live_timers = live_timers - 1
  end
end

-- Makes a waiter runnable, once: a waiter woken by a signal cancels its timer and vice versa.
local stepping = false
local hosted = false   -- set once a host took the loop: then nothing here may block

local function push_ready(w)
  if w.fired then return end
  w.fired = true
  cancel_timer(w.timer)
  rtail = rtail + 1
  ready[rtail] = w
  -- Made ready outside a turn (a host's callback fired a signal): a host waiting on the
  -- descriptor alone must wake for it. Inside a turn, the turn's end arms it once.
  if hosted and not stepping and M._arm then M._arm() end
end

local function heap_push(item)
  item.waiter.timer = item
  live_timers = live_timers + 1
  local h = timers
  h[#h + 1] = item
  local i = #h
  while i > 1 do
    local p = i // 2
    if h[p].at <= h[i].at then break end
    h[p], h[i] = h[i], h[p]
    i = p
  end
end

local function heap_pop()
  local h = timers
  local n = #h
  local top, last = h[1], h[n]
  h[n] = nil
  n = n - 1
  if n == 0 then return top end
  h[1] = last
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and h[l].at < h[m].at then m = l end
    if r <= n and h[r].at < h[m].at then m = r end
    if m == i then break end
    h[m], h[i] = h[i], h[m]
    i = m
  end
  return top
end

-- Milliseconds until the earliest live timer (0 if overdue), or nil when none; cancelled
-- timers at the top of the heap are dropped on the way.
local function next_timer_ms()
  while timers[1] and timers[1].dead do heap_pop() end
  if not timers[1] then return nil end
  return math.max(0, math.ceil((timers[1].at - now()) * 1000))
end

-- ---- tasks ----

-- The task the caller runs in, or nil (main chunk, or a coroutine that is not a task).
function M.current()
  local co, main = coroutine.running()
  if main then return nil end
  return tasks[co]
end

-- Called with (task, message_with_traceback) when a task raises; replaceable. By default a
-- warning event (the host shows it; a plain Lua host sees it through warn(), `lua -W`).
M.on_error = function(task, msg)
  events.warning("task " .. tostring(task.name or task.id) .. " failed: " .. msg)
end

local function resume(w)
  local co = w.co
  if coroutine.status(co) ~= "suspended" then return end
  local ok, err = coroutine.resume(co)
  if not ok then  -- only a bug in the task wrapper itself gets here
    events.warning("internal task error: " .. tostring(err))
  end
end

-- What one resume takes (seconds on the budget's clock): a smoothed mean and mean deviation,
-- as TCP estimates a round trip (RFC 6298). A task is started only while mean + 4 deviations
-- still fits before the deadline, so a turn ends within its budget unless one task alone
-- runs longer than expected.
local cost_mean, cost_dev = 0, 0

local function likely_cost() return cost_mean + 4 * cost_dev end

function M._forget_costs() cost_mean, cost_dev = 0, 0 end

-- A sample is clamped to [0, budget]: a clock that stepped back cannot make the mean negative
-- (and the budget void), and one task that ran very long cannot make every later step run a
-- single task until the mean forgets it.
local function observe_cost(dt)
  if dt < 0 then dt = 0 elseif dt > budget then dt = budget end
  cost_dev = cost_dev + (math.abs(dt - cost_mean) - cost_dev) / 4
  cost_mean = cost_mean + (dt - cost_mean) / 8
end

-- Tasks are planned to end a quarter of the budget short of it (1 ms of the default 4): the
-- estimate is of a typical resume, and what it cannot see -- a task that runs long, the
-- host's collector stopping the world inside one, the rest of the turn after the last task --
-- then lands within the budget instead of past it; a full step ends near 3 ms, not at 4.
local MARGIN = 1 / 4

-- Resumes ready tasks in order while the next one likely ends before `deadline`, and at least
-- `least` of them (a step always moves: a budget smaller than one task still runs one). Only
-- what is ready now runs; what this round makes ready runs in a later round (no starvation).
-- What the budget leaves stays at the head of the queue, first for the next round.
-- -> tasks resumed
local function run_ready(deadline, least)
  local last, n = rtail, 0
  local t = budget_clock()
  while rhead <= last and (n < least or t + likely_cost() <= deadline) do
    local w = ready[rhead]
    ready[rhead] = nil
    rhead = rhead + 1
    resume(w)
    n = n + 1
    local t2 = budget_clock()
    observe_cost(t2 - t)
    t = t2
  end
  if rhead > rtail then rhead, rtail = 1, 0 end
  return n
end

local next_id = 0
local unhandled = {}  -- tasks that raised and were not joined (their error went unread)

-- The number of tasks that failed and whose error nobody collected with join (or map, wait):
-- `editflow run` exits 1 when there are any.
function M.unhandled_failures()
  local n = 0
  for _ in pairs(unhandled) do n = n + 1 end
  return n
end

-- spawn(fn, ...) -> task. The task starts at the next turn of the scheduler.
function M.spawn(fn, ...)
  if type(fn) ~= "function" then error("spawn expects a function", 2) end
  next_id = next_id + 1
  local args = table.pack(...)
  local task = { id = next_id, done = false, waiters = {} }
  task.co = coroutine.create(function()
    local res = table.pack(xpcall(fn, debug.traceback, table.unpack(args, 1, args.n)))
    task.done = true
    alive = alive - 1
    if res[1] then
      task.ok, task.results = true, table.pack(table.unpack(res, 2, res.n))
    else
      task.ok, task.error = false, res[2]
      unhandled[task] = true  -- until someone joins it and so receives the error
      pcall(M.on_error, task, tostring(res[2]))  -- a failing reporter must not strand joiners
    end
    for _, w in ipairs(task.waiters) do push_ready(w) end
    task.waiters = nil
  end)
  tasks[task.co] = task
  alive = alive + 1
  push_ready { co = task.co }  -- made outside a turn, this also wakes a host's descriptor
  return task
end

-- ---- waiting: yield inside a task, drive the loop outside ----

-- Suspends the current task until `w` is made ready (by a transfer, a timer or a signal).
local function suspend(w)
  w.co = coroutine.running()
  coroutine.yield()
end

-- Rebuilds the timer heap without its cancelled entries once they outnumber the live ones.
local function compact_timers()
  if #timers < 64 or live_timers * 2 > #timers then return end
  local live = {}
  for _, item in ipairs(timers) do
    if not item.dead then live[#live + 1] = item end
  end
  timers = {}
  live_timers = 0
  for _, item in ipairs(live) do heap_push(item) end
end

-- One turn of the scheduler; waits at most timeout_ms. Returns how much is still pending
-- (tasks alive + transfers running + timers), so an embedding host knows when to stop.
function M.step(timeout_ms)
  local pending = M._turn(timeout_ms, false, 2)  -- not a tail call: error levels count this frame
  return pending
end

-- A turn: `whole` runs every ready task (editflow driving its own loop: a blocking call from
-- plain code, run(), finish(), `editflow run`, where no host waits for the thread), else the
-- step budget applies (a host called step()).
function M._turn(timeout_ms, whole, level)
  if stepping then
    local callback = events.callback()  -- a callback waiting would stall the task it ran in
    if callback then
      error("editflow: " .. callback .. " must not wait (it ran inside editflow's loop); do "
        .. "waiting work in editflow.spawn", level + 1)
    end
    error("editflow: the scheduler is already turning: a blocking editflow call was made from a "
      .. "coroutine that is not an editflow task (run it with editflow.spawn instead)", level + 1)
  end
  stepping = true
  local ok, res = pcall(M._step, timeout_ms, whole)
  stepping = false
  if not ok then
    M._arm()  -- a turn that failed midway still leaves the host's descriptor armed
    error(res, 0)
  end
  return res
end

-- A function the host runs at the start of every turn, outside any task (or nil): where a
-- stop signal the host only noted is acted on (`--on-interrupt finish`), at a point where
-- spawning tasks and cancelling jobs is safe.
M.on_turn = nil

-- The turn itself: the engine first (waiting only when no task is ready), then the ready
-- tasks for what is left of the step budget (limits{step_budget=}, 4 ms, counted from the
-- turn's start or from the end of its wait), less its margin (MARGIN); all of them when
-- `whole`. What the budget leaves stays ready for the next turn, which then waits for nothing
-- (timeout() is 0, pollfd() stays readable), so a host's own work gets the thread between
-- turns. The engine is stepped every turn, so sockets and the disk are
-- served however long the queue is; tasks left over run before those woken now.
function M._step(timeout_ms, whole)
  local l = M.loop()
  local start = budget_clock()
  -- A host waits on the descriptor: it is armed once, at the turn's end (M._arm), not at
  -- every move of libcurl's timer the turn's transfers make (a system call each).
  if hosted and l.hold then l:hold() end
  if M.on_turn then M.on_turn() end
  compact_timers()
  local wait = timeout_ms or 0
  if rhead <= rtail then wait = 0 end
  local ms = next_timer_ms()
  if ms and ms < wait then wait = ms end
  local finished, err = l:step(wait)
  if not finished then error("editflow: transfer loop failed: " .. tostring(err), 0) end
  -- The budget is for work, not for waiting: after a wait, it starts again. Tasks are
  -- planned against the budget less its margin.
  local deadline = whole and math.huge or (wait > 0 and budget_clock() or start) + budget * (1 - MARGIN)
  for i = 1, #finished do
    local t = finished[i]
    local w = waiting[t]
    if w then
      waiting[t] = nil
      push_ready(w)
    end
  end
  local t = now()
  while timers[1] and timers[1].at <= t do
    local item = heap_pop()
    if not item.dead then push_ready(item.waiter) end
  end
  run_ready(deadline, 1)
  M._arm()
  return alive + l:running() + live_timers
end

-- ---- a host's loop owns the scheduling (editflow.pollfd / timeout / embed) ----

local core_has_fd = core.poller ~= "poll"
local POLL_SLICE = 0.02  -- seconds between steps a host must make when there is no descriptor

function M.embed() hosted = true end

function M.events() return "r" end

-- Seconds until step() must run at the latest: 0 when a task is ready, the next timer of
-- editflow's own, or the engine's (libcurl's) timer; nil when nothing at all is pending.
function M.timeout()
  if rhead <= rtail then return 0 end
  local t = next_timer_ms()
  t = t and t / 1000
  local l = loop
  if l and l.timeout then
    local ms = l:timeout()
    if ms and ms >= 0 and (not t or ms / 1000 < t) then t = ms / 1000 end
  end
  if not t and M.pending() > 0 then t = SLICE_MS / 1000 end  -- transfers, no timer known
  -- Without a descriptor (the poll(2) engine) socket activity is seen only by stepping: a
  -- host with transfers in flight must come back at least this often.
  if l and not core_has_fd and l:running() > 0 then t = math.min(t or POLL_SLICE, POLL_SLICE) end
  return t
end

-- Arms the engine's descriptor for editflow's own next due time, so a host that waits only
-- on pollfd() (and timeout()) misses neither a ready task nor a timer.
local function arm()
  local l = loop
  if not (hosted and l and l.arm) then return end
  if rhead <= rtail then l:arm(0) return end
  l:arm(next_timer_ms() or -1)
end

M._arm = arm

-- The descriptor a host waits on (readable when editflow has work), or nil where the engine
-- has none (the poll(2) backend): then timeout() alone says when to step.
function M.pollfd()
  hosted = true
  local l = M.loop()
  local fd = l.pollfd and l:pollfd() or nil
  arm()
  return fd
end

-- The same as a Lua file (a duplicate of pollfd(), the caller's to close), for hosts that wait
-- only on Lua files: darktable's control.read(file) releases darktable's Lua lock while it
-- waits. nil where pollfd() is nil (the poll(2) backend): step on timeout() alone there.
function M.pollfile()
  local l = M.loop()
  local f, err = nil, nil
  if l.pollfile then f, err = l:pollfile() end
  if f == nil and err then error("editflow.pollfile: " .. err, 2) end  -- the loop stays ours
  hosted = true
  arm()
  return f
end

-- runtime.hosted() -> whether a host's loop owns editflow's (pollfd, pollfile or embed).
function M.hosted() return hosted end

-- runtime.can_wait() -> whether a waiting call may wait here (inside a task, or from plain
-- code while editflow drives its own loop and is not in the middle of a turn). Where it may
-- not, a caller that must finish anyway does its work in place (editflow.durable).
function M.can_wait()
  if M.current() then return true end
  return not hosted and not stepping
end

local HOSTED_WAIT = "editflow: this call waits, and the host's event loop owns editflow's loop "
  .. "(editflow.pollfd/embed): call it inside editflow.spawn(function() ... end) instead"

-- runtime.may_wait(): raises unless the caller may wait here -- inside a task, or while
-- editflow drives its own loop. Calls that wait check it first, before they send anything.
function M.may_wait(level)
  if hosted and not M.current() then error(HOSTED_WAIT, (level or 1) + 1) end
end

-- Drives the scheduler from outside any task until cond() holds. Refused once a host owns
-- the loop: driving it here would freeze the host until the wait ended.
local function drive_until(cond)
  if hosted and not cond() then error(HOSTED_WAIT, 3) end
  while not cond() do M._turn(SLICE_MS, true, 3) end
end

-- Waits until transfer t is done.
function M.await(t)
  if t:done() then return end
  if M.current() then
    local w = {}
    waiting[t] = w
    suspend(w)
    while not t:done() do  -- woken by news of an event stream: keep waiting
      w = {}
      waiting[t] = w
      suspend(w)
    end
  else
    drive_until(function() return t:done() end)
  end
end

-- Waits until the event-stream transfer t has events or is done; returns its new events.
function M.await_events(t)
  local ev = t:events()
  if #ev > 0 or t:done() then return ev end
  if M.current() then
    local w = {}
    waiting[t] = w
    suspend(w)
    return t:events()
  end
  drive_until(function()
    ev = t:events()
    return #ev > 0 or t:done()
  end)
  return ev
end

-- Waits `seconds`, letting everything else run.
function M.sleep(seconds)
  local at = now() + seconds
  if M.current() then
    local w = {}
    heap_push { at = at, waiter = w }
    suspend(w)
  else
    drive_until(function() return now() >= at end)
  end
end

-- join(task) -> true, results... | false, error. Waits for the task to finish.
function M.join(task)
  if not task.done then
    if M.current() then
      local w = {}
      task.waiters[#task.waiters + 1] = w
      suspend(w)
    else
      drive_until(function() return task.done end)
    end
  end
  if task.ok then return true, table.unpack(task.results, 1, task.results.n) end
  unhandled[task] = nil  -- the joiner has the error now: its to handle
  return false, task.error
end

-- ---- signals: one-shot "it happened" with any number of waiters ----

local Signal = {}
Signal.__index = Signal

function M.signal()
  return setmetatable({ set = false, waiters = {} }, Signal)
end

function Signal:fire()
  if self.set then return end
  self.set = true
  for _, w in ipairs(self.waiters) do push_ready(w) end
  self.waiters = {}
end

-- signal:wait([deadline]) -> true once fired, false if the monotonic deadline passed first.
function Signal:wait(deadline)
  if self.set then return true end
  if M.current() then
    local w = {}
    self.waiters[#self.waiters + 1] = w
    if deadline then heap_push { at = deadline, waiter = w } end
    suspend(w)  -- whichever comes first wakes us; the other finds w already fired
    if not self.set then  -- the deadline won: forget this waiter
      for i, x in ipairs(self.waiters) do
        if x == w then table.remove(self.waiters, i) break end
      end
    end
    return self.set
  end
  drive_until(function() return self.set or (deadline ~= nil and now() >= deadline) end)
  return self.set
end

-- ---- semaphores: at most `limit` holders, the rest wait in order ----
-- The limit can change while held (adaptive concurrency): lowering it only delays new
-- holders; raising it lets waiting ones in at once.

local Semaphore = {}
Semaphore.__index = Semaphore

function M.semaphore(n)
  return setmetatable({ limit = n, held = 0, queue = {}, qhead = 1, qtail = 0 }, Semaphore)
end

function Semaphore:waiting() return self.qtail - self.qhead + 1 end

function Semaphore:full() return self.held >= self.limit or self:waiting() > 0 end

local function grant(self)
  while self.held < self.limit and self.qhead <= self.qtail do
    local ticket = self.queue[self.qhead]
    self.queue[self.qhead] = nil
    self.qhead = self.qhead + 1
    self.held = self.held + 1
    ticket.granted = true
    if ticket.waiter then push_ready(ticket.waiter) end
  end
end

function Semaphore:acquire()
  if not self:full() then
    self.held = self.held + 1
    return
  end
  local ticket = { granted = false }
  self.qtail = self.qtail + 1
  self.queue[self.qtail] = ticket
  if M.current() then
    local w = {}
    ticket.waiter = w
    suspend(w)
  else
    drive_until(function() return ticket.granted end)
  end
end

function Semaphore:release()
  self.held = self.held - 1
  grant(self)
end

function Semaphore:set_limit(n)
  self.limit = n
  grant(self)
end

-- ---- stopping: the host was asked to stop the run ----
-- Once the host stops the run (a stop signal: Ctrl-C, SIGTERM, SIGHUP), nothing that has not
-- started starts: a submit not yet sent is not sent (client.lua asks before each try), while
-- jobs already accepted go on as the host decides. `answered` is when the queue last gave an
-- answer (any that is not a passing refusal): the host's outage display reads it.

local stopping, declined = false, 0

function M.stop() stopping = true end

-- runtime.stopping([decline]) -> whether the run is stopping. A caller that leaves something
-- undone because of it passes decline = true: runtime.declined() counts those for the report.
function M.stopping(decline)
  if stopping and decline then declined = declined + 1 end
  return stopping
end

function M.declined() return declined end

M.answered = 0  -- monotonic time of the queue's last answer

function M.heard() M.answered = now() end

-- How much is pending: tasks alive, transfers running, timers set.
function M.pending()
  return alive + (loop and loop:running() or 0) + live_timers
end

-- Runs the scheduler until nothing is pending.
function M.run()
  M.may_wait(2)
  while M._turn(SLICE_MS, true, 2) > 0 do end
end

-- finish() -> 0 once every task has ended (what `editflow run` does after the script's main
-- chunk, as node and luvit do); or the number of tasks still alive when nothing is left that
-- could wake them (no task ready, no transfer or disk work, no timer): they would wait forever.
function M.finish()
  while alive > 0 do
    M._turn(SLICE_MS, true, 2)
    if alive > 0 and rhead > rtail and live_timers == 0 and (not loop or loop:running() == 0) then
      return alive
    end
  end
  return 0
end

return M
