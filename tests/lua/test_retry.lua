-- test_retry.lua: the retry loop itself (editflow.retry.run), driven with a fake sleep so no
-- case waits: how many tries a call gets, the job's retry budget shared by its calls, and a
-- wait that would end past the deadline never started. test_faults checks the same rules end to
-- end against a sandbox that injects faults.
local T = require "testlib"
local retry = require "editflow.retry"
local core = require "editflow.core"

local function failing(status, headers)
  local n = 0
  return function()
    n = n + 1
    return nil, { status = status, headers = headers or {}, code = "HTTP_" .. status }
  end, function() return n end
end

local function ctx(extra)
  local c = { policy = retry.policy { base = 0.01, cap = 0.01, jitter = 0, attempts = 4 }, waits = {} }
  c.sleep = function(s) c.waits[#c.waits + 1] = s end
  c.deadline = core.monotime() + 600
  for k, v in pairs(extra or {}) do c[k] = v end
  return c
end

T.case("a call gets exactly `attempts` tries, and the last error", function()
  local try, tries = failing(503)
  local c = ctx()
  local v, err = retry.run(c, "cancel", try)
  T.eq(v, nil, "no value")
  T.eq(err.status, 503, "the last answer")
  T.eq(tries(), 4, "four tries")
  T.eq(#c.waits, 3, "three waits between them")
  local ok_on = 0
  local v2 = retry.run(ctx(), "cancel", function()
    ok_on = ok_on + 1
    if ok_on < 4 then return nil, { status = 502, headers = {} } end
    return "fine"
  end)
  T.eq(v2, "fine", "the fourth try's success is returned")
end)

T.case("the job's retry budget is shared by its calls and spent by each retry", function()
  local budget = { left = 3 }
  local try1, tries1 = failing(503)
  retry.run(ctx { budget = budget, policy = retry.policy { attempts = 10, base = 0.01, jitter = 0 } }, "cancel", try1)
  T.eq(tries1(), 4, "the first call: one try and the three retries the budget allows")
  T.eq(budget.left, 0, "the budget is spent")
  local try2, tries2 = failing(503)
  local c2 = ctx { budget = budget, policy = retry.policy { attempts = 10, base = 0.01, jitter = 0 } }
  retry.run(c2, "download", try2)
  T.eq(tries2(), 1, "a later call of the same job gets no retry")
  T.eq(#c2.waits, 0, "and does not wait")
  -- following a job persists until the deadline, whatever the budget
  local n = 0
  local v = retry.run(ctx { budget = { left = 0 }, persist = true }, "status", function()
    n = n + 1
    if n < 6 then return nil, { status = 503, headers = {} } end
    return "st"
  end)
  T.eq(v, "st", "status retried past the budget")
  T.eq(n, 6, "six tries")
end)

T.case("a wait that would end after the deadline is not started", function()
  local try, tries = failing(429, { ["retry-after"] = "30" })
  local c = ctx { deadline = core.monotime() + 5, persist = true }
  local deadline_told
  c.on_deadline = function(kind, err) deadline_told = kind return err end
  local t0 = core.monotime()
  local v, err = retry.run(c, "status", try)
  T.eq(v, nil, "nothing")
  T.eq(err.status, 429, "the last answer")
  T.eq(tries(), 1, "one try: the next would start after the deadline")
  T.eq(#c.waits, 0, "no wait was started")
  T.eq(deadline_told, "status", "the deadline was told")
  T.ok(core.monotime() - t0 < 4, "returned before the deadline itself")
  -- with room before the deadline the same answer is waited for, as long as the server asked
  local c2 = ctx { persist = true }
  local m = 0
  retry.run(c2, "status", function()
    m = m + 1
    if m == 1 then return nil, { status = 429, headers = { ["retry-after"] = "30" } } end
    return true
  end)
  T.eq(c2.waits[1], 30, "Retry-After honoured when the deadline allows it")
  -- a deadline already passed: no try at all
  local n = 0
  local _, late = retry.run(ctx { deadline = core.monotime() - 1 }, "status", function() n = n + 1 return true end)
  T.eq(n, 0, "no try after the deadline")
  T.eq(late.code, "TIMEOUT", "a TIMEOUT")
end)

T.run()
