-- test_tasks.lua: many jobs at once in one thread: tasks interleave, an error stays in its
-- task, the in-flight cap holds at the server, streaming and polling agree, and a plain host
-- loop can drive everything through editflow.step().
local T = require "testlib"
local editflow = require "editflow"
local runtime = require "editflow.runtime"
local core = require "editflow.core"

local URL = "https://cdn.example/a.png"

local function client(sb, extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02, max_poll_interval = 0.1 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

-- ---- the step budget: how much one step() runs (decisions only, on a counted clock) ----

-- Runs fn with the budget measured on a fake clock that only tasks move (each "costs" what
-- it adds to clock.now), then restores the real clock and the default budget.
local function with_counted_clock(budget_ms, fn)
  T.eq(editflow.pending(), 0, "nothing pending before the case")
  local clock = { now = 1000 }
  runtime._budget_clock(function() return clock.now end)
  editflow.limits { step_budget = budget_ms }
  local ok, err = pcall(fn, clock)
  runtime._budget_clock(nil)
  editflow.limits { step_budget = 4 }
  if not ok then error(err, 0) end
end

-- Spawns n tasks costing `cost` seconds each on the counted clock; they record their order.
local function costly_tasks(clock, n, cost, order)
  for i = 1, n do
    editflow.spawn(function()
      clock.now = clock.now + cost
      order[#order + 1] = i
    end)
  end
end

-- Steps until nothing is pending; -> the number of tasks each step ran.
local function step_all(order)
  local per_step, guard = {}, 0
  while editflow.pending() > 0 do
    local before = #order
    editflow.step(0)
    per_step[#per_step + 1] = #order - before
    guard = guard + 1
    if guard > 1000 then error("the tasks never finished") end
  end
  return per_step
end

T.case("limits{step_budget}: milliseconds >= 0.01, other values refused with the field named", function()
  T.eq(editflow.limits().step_budget, 4, "4 ms by default")
  T.eq(editflow.limits { step_budget = 2.5 }.step_budget, 2.5, "a fraction of a millisecond is fine")
  T.eq(editflow.limits().step_budget, 2.5, "and kept")
  for _, bad in ipairs { 0, -1, 0 / 0, math.huge, "4", true, 5e-324, 0.009 } do
    T.raises(function() editflow.limits { step_budget = bad } end,
      "editflow.limits: step_budget must be a number of milliseconds >= 0.01, got " .. tostring(bad))
  end
  T.eq(editflow.limits().step_budget, 2.5, "a refused value changes nothing")
  T.eq(math.type(editflow.limits { step_budget = 3 }.step_budget), "integer", "an integer comes back as given")
  T.raises(function() editflow.limits { step_budgt = 4 } end,
    "unknown option 'step_budgt' (accepted: max_connections, step_budget)")
  editflow.limits { step_budget = 4 }
end)

T.case("a step runs tasks for its budget, leaves the rest ready, and timeout() says 0", function()
  with_counted_clock(4, function(clock)
    local order = {}
    costly_tasks(clock, 20, 0.001, order)  -- 20 tasks of 1 ms against a 4 ms budget
    T.eq(editflow.pending(), 20, "twenty tasks pending")
    editflow.step(0)
    T.ok(#order >= 1 and #order <= 4, "the first step ran 1 to 4 of them, ran " .. #order)
    T.eq(editflow.pending(), 20 - #order, "the rest still pending")
    T.eq(editflow.timeout(), 0, "timeout() is 0 while tasks are left over")
    -- a step asked to wait does not, while tasks are ready
    local t0 = core.monotime()
    local before = #order
    editflow.step(20000)
    T.ok(core.monotime() - t0 < 10, "step(20000) with ready tasks did not wait")
    T.ok(#order > before, "and ran more of them")
    local per_step = step_all(order)
    for i, n in ipairs(per_step) do
      T.ok(n >= 1 and n <= 4, "step " .. i .. " ran 1 to 4 tasks (4 ms of 1 ms tasks), ran " .. n)
    end
    T.eq(#order, 20, "every task ran")
    for i = 1, 20 do T.eq(order[i], i, "in the order they were made ready") end
    T.eq(editflow.timeout(), nil, "nothing left: no due time")
  end)
end)

T.case("tasks are planned to end a margin short of the budget (3 ms of 4), not at it", function()
  with_counted_clock(4, function(clock)
    local order = {}
    costly_tasks(clock, 40, 0.00025, order)  -- the estimate learns what a task costs here
    step_all(order)
    order = {}
    costly_tasks(clock, 60, 0.00025, order)  -- 60 tasks of 0.25 ms: 15 would fill 4 ms
    local spent, guard = {}, 0
    while editflow.pending() > 0 do
      local t0 = clock.now
      editflow.step(0)
      spent[#spent + 1] = (clock.now - t0) * 1000
      guard = guard + 1
      if guard > 100 then error("the tasks never finished") end
    end
    T.eq(#order, 60, "every task ran")
    for i, ms in ipairs(spent) do
      T.ok(ms <= 3 + 1e-6, string.format("step %d ended by 3 ms (the budget less its quarter), took %.3f ms", i, ms))
      if i < #spent then
        T.ok(ms >= 2.5 - 1e-6, string.format("step %d used the budget up to its margin (2.5 to 3 ms), took %.3f ms", i, ms))
      end
    end
  end)
end)

T.case("a budget smaller than a task still runs one task a step (never starves)", function()
  with_counted_clock(0.01, function(clock)
    local order = {}
    costly_tasks(clock, 10, 0.001, order)  -- each task alone takes 100 budgets
    local per_step = step_all(order)
    T.eq(#order, 10, "every task ran")
    T.eq(#per_step, 10, "one step each")
    for i, n in ipairs(per_step) do T.eq(n, 1, "step " .. i .. " ran one task") end
  end)
end)

T.case("one very long task (or a clock stepping back) does not void or stall the budget", function()
  with_counted_clock(4, function(clock)
    local order = {}
    editflow.spawn(function() clock.now = clock.now + 0.5 end)  -- one task of 500 ms
    editflow.step(0)
    costly_tasks(clock, 30, 0.0005, order)  -- then thirty of 0.5 ms
    local per_step = step_all(order)
    T.eq(#order, 30, "every task ran")
    -- An unclamped sample of 500 ms would keep the estimate above the budget for dozens of
    -- steps, one task each; clamped to the budget it is forgotten within a few.
    T.ok(#per_step <= 12, "the 30 short tasks took " .. #per_step .. " steps after the long one")
  end)
  with_counted_clock(4, function(clock)
    local order = {}
    editflow.spawn(function() clock.now = clock.now - 1 end)  -- the clock steps back 1 s
    editflow.step(0)
    costly_tasks(clock, 20, 0.001, order)
    editflow.step(0)
    T.ok(#order >= 1 and #order <= 4, "the budget still holds after a negative sample: ran " .. #order)
    step_all(order)
  end)
end)

T.case("editflow's own blocking drive runs every ready task a turn (no host waits for the thread)", function()
  with_counted_clock(4, function(clock)
    local order, turns = {}, 0
    costly_tasks(clock, 20, 0.001, order)  -- 20 ms of tasks against a 4 ms budget
    runtime.on_turn = function() turns = turns + 1 end
    local ok, err = pcall(editflow.run)
    runtime.on_turn = nil
    assert(ok, err)
    T.eq(#order, 20, "every task ran")
    T.ok(turns <= 2, "run() took " .. turns .. " turns: the budget is for hosts, not for editflow's own loop")
  end)
end)

T.case("a large budget runs everything ready in one step; what tasks wake runs next step", function()
  with_counted_clock(1e6, function(clock)
    local order = {}
    costly_tasks(clock, 50, 0.001, order)
    local sig = runtime.signal()
    editflow.spawn(function() sig:wait() order[#order + 1] = "woken" end)
    editflow.spawn(function() sig:fire() end)
    editflow.step(0)
    T.eq(#order, 50, "all fifty ran in the first step")
    T.eq(editflow.pending(), 1, "the woken task waits for the next step")
    editflow.step(0)
    T.eq(order[51], "woken", "and ran then")
    T.eq(editflow.pending(), 0, "nothing left")
  end)
end)

T.case("a host waiting on pollfd() is woken at once while a step's budget left tasks ready", function()
  -- In a lua5.4 of its own: pollfd() hands the loop to the host for good. The host (luv)
  -- waits on the descriptor alone, with a 5 s guard timer: each wake must come from the
  -- descriptor, never the guard, until every task has run.
  if core.poller == "poll" then return end  -- the poll(2) engine has no descriptor (timeout() alone)
  local st, vals, _, err = T.lua_child([=[
local uv = require "luv"
local editflow = require "editflow"
local runtime = require "editflow.runtime"
local clock = { now = 0 }
runtime._budget_clock(function() return clock.now end)
local fd = assert(editflow.pollfd(), "the epoll engine has a descriptor")
local ran = 0
for _ = 1, 20 do editflow.spawn(function() clock.now = clock.now + 0.001 ran = ran + 1 end) end
local poll, guard = uv.new_poll(fd), uv.new_timer()
local wakes, guarded, left_after_first = 0, 0, nil
poll:start("r", function()
  wakes = wakes + 1
  editflow.step(0)
  left_after_first = left_after_first or editflow.pending()
  if editflow.pending() == 0 then poll:stop() guard:stop() end
end)
guard:start(5000, 5000, function() guarded = guarded + 1 poll:stop() guard:stop() end)
uv.run()
print("ran=" .. ran)
print("wakes=" .. wakes)
print("guarded=" .. guarded)
print("left=" .. tostring(left_after_first))
]=])
  T.eq(st, 0, "the host ran: " .. err)
  T.eq(vals.ran, "20", "every task ran")
  T.eq(vals.guarded, "0", "no wake needed the guard timer")
  T.ok(tonumber(vals.left) and tonumber(vals.left) > 0, "the first step left tasks over, left " .. tostring(vals.left))
  T.ok(tonumber(vals.wakes) >= 5, "the descriptor woke the host once a step, 4 ms of 1 ms tasks each: " .. tostring(vals.wakes))
end)

T.case("a task made ready outside a turn (a host's callback) wakes a host waiting on pollfd() alone", function()
  if core.poller == "poll" then return end  -- the poll(2) engine has no descriptor
  local st, _, out, err = T.lua_child([=[
local uv = require "luv"
local editflow = require "editflow"
local runtime = require "editflow.runtime"
local fd = assert(editflow.pollfd())
local sig, woke = runtime.signal(), false
editflow.spawn(function() sig:wait() woke = true end)
local poll, later, guard = uv.new_poll(fd), uv.new_timer(), uv.new_timer()
local guarded = 0
poll:start("r", function()
  editflow.step(0)
  if woke then poll:stop() guard:stop() end
end)
later:start(50, 0, function() sig:fire() end)  -- the host's own callback, between turns
guard:start(5000, 0, function() guarded = 1 poll:stop() end)
uv.run()
print("woke=" .. tostring(woke))
print("guarded=" .. guarded)
]=])
  T.eq(st, 0, "the host ran: " .. err)
  T.contains(out, "woke=true", "the task woken by the host's callback ran")
  T.contains(out, "guarded=0", "the descriptor woke the host, not its 5 s guard")
end)

T.case("tasks interleave at their waits", function()
  local order = {}
  local function worker(name)
    for i = 1, 3 do
      order[#order + 1] = name .. i
      editflow.sleep(0.01)
    end
    return name
  end
  local a, b = editflow.spawn(worker, "a"), editflow.spawn(worker, "b")
  T.eq(select(2, editflow.join(a)), "a", "a's result")
  T.eq(select(2, editflow.join(b)), "b", "b's result")
  T.eq(table.concat(order, " "), "a1 b1 a2 b2 a3 b3", "interleaved")
  T.eq(editflow.pending(), 0, "nothing left pending")
end)

T.case("an error in one task is reported with its traceback; the others finish", function()
  local reported = {}
  local saved = runtime.on_error
  runtime.on_error = function(task, msg) reported[#reported + 1] = msg end
  local function explode() error("task went wrong") end
  local bad = editflow.spawn(function() editflow.sleep(0.01); explode() end)
  local good = editflow.spawn(function() editflow.sleep(0.03); return 42 end)
  local ok, err = editflow.join(bad)
  T.eq(ok, false, "the failing task")
  T.contains(err, "task went wrong", "its error")
  T.contains(err, "stack traceback", "with a traceback")
  T.contains(err, "in upvalue 'explode'", "naming the function")
  T.eq(select(2, editflow.join(good)), 42, "the other task finished")
  T.eq(#reported, 1, "reported once")
  -- map records failures by position and goes on with the rest
  local results, errs = editflow.map({ 1, 2, 3, 4 }, function(x)
    if x == 2 then error("item two") end
    return x * 10
  end, { concurrency = 2 })
  T.eq(results[1] + results[3] + results[4], 80, "other items done")
  T.contains(errs[2], "item two", "failure recorded at its position")
  T.raises(function()
    editflow.map({ 1, 2, 3 }, function(x) if x == 1 then error("first fails") end end,
      { concurrency = 1, stop_on_error = true })
  end, "first fails")
  runtime.on_error = saved
end)

T.case("map over many edits: concurrency and the in-flight cap are what the server sees", function()
  local sb = T.sandbox { "--workers", "8", "--job-time", "0.05" }
  local c = client(sb, { max_in_flight = 3 })
  local inputs = {}
  for i = 1, 24 do inputs[i] = { prompt = "item " .. i, image_urls = { URL }, seed = i } end
  local d = T.tmpdir()
  local results, errs = editflow.map(inputs, function(input, i)
    local result, job = assert(c:edit(input))
    return assert(job:save(d, { name = "item" .. i }))[1]
  end, { concurrency = 8 })
  T.eq(next(errs), nil, "no failures")
  T.eq(#results, 24, "every item")
  for i, p in ipairs(results) do T.eq(p, d .. "/item" .. i .. "-1.png", "saved " .. i) end
  local s = sb.stats()
  T.eq(s.by_route.submit, 24, "one submit per item")
  T.ok(s.max_open_jobs <= 3, "never more than 3 open jobs at the server, saw " .. s.max_open_jobs)
  T.ok(s.max_open_jobs >= 2, "but more than one at a time, saw " .. s.max_open_jobs)
  T.eq(s.by_route.stream, 24, "followed by one status stream each")
  T.eq(s.by_route.status, 0, "without polling")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("streaming and polling reach the same results", function()
  local sb = T.sandbox { "--workers", "4", "--job-time", "0.05" }
  local function run(follow)
    local c = client(sb, { follow = follow })
    local results = editflow.map({ 1, 2, 3, 4, 5 }, function(i)
      return assert(c:edit { prompt = "same " .. i, image_urls = { URL }, seed = 100 + i })
    end, { concurrency = 5 })
    return results
  end
  local streamed = run("stream")
  local s1 = sb.stats()
  local polled = run("poll")
  local s2 = sb.stats()
  for i = 1, 5 do
    T.eq(streamed[i].seed, polled[i].seed, "seed " .. i)
    T.eq(streamed[i].images[1].file_size, polled[i].images[1].file_size, "image " .. i)
  end
  T.eq(s1.by_route.stream, 5, "streaming used the stream")
  T.eq(s1.by_route.status, 0, "streaming never polled")
  T.eq(s2.by_route.stream - s1.by_route.stream, 0, "polling never streamed")
  T.ok(s2.by_route.status - s1.by_route.status >= 5, "polling polled")
  -- requests per job while streaming: submit, stream, result
  T.eq(s1.requests, 15, "three requests per streamed job")
  sb.stop()
end)

T.case("a server without the stream route: the client falls back to polling", function()
  local sb = T.sandbox { "--no-stream", "--job-time", "0.05" }
  local c = client(sb)
  local results, errs = editflow.map({ 1, 2, 3 }, function(i)
    return assert(c:edit { prompt = "fallback " .. i, image_urls = { URL } })
  end)
  T.eq(next(errs), nil, "no failures")
  T.eq(#results, 3, "all finished")
  local s = sb.stats()
  T.eq(s.by_route.stream, 3, "each tried the stream once")
  T.ok(s.by_route.status >= 3, "then polled")
  sb.stop()
end)

T.case("a plain host loop drives everything through editflow.step()", function()
  local sb = T.sandbox { "--workers", "4", "--job-time", "0.05" }
  local c = client(sb)
  local done = 0
  for i = 1, 6 do
    editflow.spawn(function()
      assert(c:edit { prompt = "embedded " .. i, image_urls = { URL } })
      done = done + 1
    end)
  end
  local turns, longest = 0, 0
  while true do
    local t0 = core.monotime()
    local pending = editflow.step(20)
    longest = math.max(longest, core.monotime() - t0)
    turns = turns + 1
    if pending == 0 then break end
    T.ok(turns < 10000, "bounded")
  end
  T.eq(done, 6, "every task finished")
  T.ok(turns > 1, "it took several turns")
  -- step(20) waits 20 ms at most; 30 s is a guard against a turn stuck on a transfer
  T.ok(longest < 30, "no turn blocked (longest " .. longest .. " s)")
  sb.stop()
end)

T.case("driving the loop from a plain coroutine inside a task is refused clearly", function()
  local t = editflow.spawn(function()
    local co = coroutine.wrap(function() editflow.sleep(0.01) end)
    co()
  end)
  local saved = runtime.on_error
  runtime.on_error = function() end
  local ok, err = editflow.join(t)
  runtime.on_error = saved
  T.eq(ok, false, "the task failed")
  T.contains(err, "not an editflow task", "with a clear message")
  -- and the scheduler still works afterwards
  local again = editflow.spawn(function() editflow.sleep(0.01) return "fine" end)
  T.eq(select(2, editflow.join(again)), "fine", "scheduler intact")
end)

T.case("a callback that raises while a job is streamed does not leave the stream open", function()
  local sb = T.sandbox { "--job-time", "0.2" }
  local c = client(sb, { on_status = function() error("callback failed") end })
  local result, err = c:edit { prompt = "p", image_urls = { URL } }
  T.eq(result, nil, "the job fails")
  T.eq(err.code, "INTERNAL", "as an internal error")
  T.contains(err.message, "callback failed", "naming the cause")
  T.eq(runtime.loop():running(), 0, "no transfer left running")
  sb.stop()
end)

T.case("a callback that yields is an error naming it, not a job stalled until its deadline", function()
  local sb = T.sandbox { "--job-time", "0.05" }
  -- job_timeout 60: a yield that stalled the job would end it with TIMEOUT after 60 s instead
  -- (the bound of 30 s guards against that stall; the jobs take 0.05 s)
  local yields = {
    on_status = function() coroutine.yield() end,
    on_log = function() coroutine.yield("as cqueues.sleep would") end,
    on_finish = function() coroutine.yield() end,
  }
  for name, fn in pairs(yields) do
    local c = client(sb, { job_timeout = 60, [name] = fn })
    local t0 = core.monotime()
    local result, err = c:edit { prompt = "yield in " .. name, image_urls = { URL } }
    if name == "on_finish" then
      -- It runs once the job has ended, as its watcher task's last act (whose errors the job
      -- no longer reports): a yield there would leave that task suspended for ever.
      T.ok(result, name .. ": the job itself succeeded")
      for _ = 1, 100 do if editflow.step(20) == 0 then break end end
      T.eq(editflow.pending(), 0, name .. ": no task left suspended")
    else
      T.eq(result, nil, name .. ": the job fails")
      T.contains(tostring(err and err.message), "editflow: " .. name .. " must not yield (it ran inside "
        .. "editflow's loop); do waiting work in editflow.spawn", name .. ": the error names the callback")
    end
    T.ok(core.monotime() - t0 < 30, name .. ": no stall until the job's 60 s deadline")
  end
  -- an editflow call that waits, made from a callback inside a turn, is refused by name too
  local c = client(sb, { job_timeout = 5, on_status = function() editflow.sleep(0.01) end })
  local _, err = c:edit { prompt = "sleep in on_status", image_urls = { URL } }
  T.contains(tostring(err and err.message), "editflow: on_status must not wait", "a wait in on_status")
  -- on_saved runs where job:save was called: from the main chunk a yield is named as well
  c = client(sb, { on_saved = function() coroutine.yield() end })
  local _, job = assert(c:edit { prompt = "saved", image_urls = { URL } })
  local d = T.tmpdir()
  T.raises(function() job:save(d) end, "editflow: on_saved must not yield")
  os.execute("rm -rf " .. T.quote(d))
  -- a callback that neither yields nor raises still runs (in its own coroutine), and its own
  -- coroutines may yield inside it
  local seen = 0
  c = client(sb, { on_status = function()
    local gen = coroutine.wrap(function() coroutine.yield(1) end)
    seen = seen + gen()
  end })
  assert(c:edit { prompt = "fine", image_urls = { URL } })
  T.ok(seen >= 1, "on_status ran")
  T.eq(runtime.loop():running(), 0, "no transfer left running")
  sb.stop()
end)

T.case("a subscriber that yields is reported as a warning; the job goes on", function()
  local sb = T.sandbox { "--job-time", "0.05" }
  local warned = {}
  local saved_warn = warn
  warn = function(...) warned[#warned + 1] = table.concat({ ... }) end  -- luacheck: ignore
  local unsubscribe = editflow.subscribe(function(name)
    if name == "finished" then coroutine.yield() end
  end)
  local t0 = core.monotime()
  -- job_timeout 60, bound 30: a stall until the deadline fails, a loaded machine does not
  local result, err = client(sb, { job_timeout = 60 }):edit { prompt = "subscribed", image_urls = { URL } }
  unsubscribe()
  warn = saved_warn  -- luacheck: ignore
  T.ok(result, "the job succeeded: " .. tostring(err))
  T.ok(core.monotime() - t0 < 30, "no stall until the job's 60 s deadline")
  T.contains(table.concat(warned, "\n"), "editflow: subscriber must not yield", "the warning names it")
  sb.stop()
end)

T.case("job:wait from the main chunk while other jobs run in the background", function()
  -- one worker: the queue runs the jobs strictly in order, 0.2 s apart, so
  -- when the last one is done the three before it are done and their
  -- results fetched, if waiting on the last one moved them too
  local sb = T.sandbox { "--workers", "1", "--job-time", "0.2" }
  local c = client(sb)
  local jobs = {}
  for i = 1, 4 do jobs[i] = assert(c:submit { prompt = "bg " .. i, image_urls = { URL } }) end
  assert(jobs[4]:wait())  -- waiting for the last one moves all four
  for i = 1, 3 do T.ok(jobs[i].finished.set, "job " .. i .. " finished meanwhile") end
  local results, errs = editflow.wait(jobs)
  T.eq(#results, 4, "wait() on a list")
  T.eq(next(errs), nil, "no errors")
  sb.stop()
end)

T.run()
