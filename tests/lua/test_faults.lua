-- test_faults.lua: retries per SPEC §4 against a sandbox that injects faults (seeded, so runs
-- repeat): every job ends, saved or failed with the server's error, no submit is ever paid
-- twice, Retry-After is honoured, a 429 storm lowers the client's concurrency, and what must
-- not be retried is not.
local T = require "testlib"
local editflow = require "editflow"
local retry = require "editflow.retry"
local core = require "editflow.core"

local URL = "https://cdn.example/a.png"

T.case("the retry table of SPEC §4", function()
  local function resp(status, headers) return { status = status, headers = headers or {} } end
  local cases = {
    { "status", resp(503), true }, { "result", resp(502), true }, { "submit", resp(429), true },
    { "submit", resp(408), true }, { "cancel", resp(409), true }, { "status", resp(504), true },
    { "submit", resp(503), true }, { "submit", resp(502), false }, { "submit", resp(504), false },
    { "status", resp(500), true }, { "result", resp(500), true },
    { "result", resp(500, { ["x-fal-error-type"] = "runner_server_error", ["x-fal-request-id"] = "r" }), false },
    { "result", resp(503, { ["x-fal-error-type"] = "runner_scheduling_failure" }), true },  -- an ingress's
    { "submit", resp(500), false },
    { "status", resp(504, { ["x-fal-request-timeout-type"] = "user" }), false },  -- fal's own timeout: final
    { "result", resp(504, { ["x-fal-request-timeout-type"] = "start" }), false },
    { "submit", resp(504, { ["x-fal-request-timeout-type"] = "user" }), false },
    { "submit", resp(422), false }, { "status", resp(401), false }, { "result", resp(404), false },
    { "status", nil, true, { code = "RECV_ERROR" } }, { "submit", nil, false, { code = "RECV_ERROR" } },
    { "submit", nil, true, { code = "COULDNT_CONNECT" } }, { "status", nil, false, { code = "BODY_TOO_LARGE" } },
  }
  local lifecycle = require "editflow.lifecycle"
  for _, c in ipairs(cases) do
    local what = string.format("%s %s", c[1], c[2] and c[2].status or c[4].code)
    T.eq(retry.retryable(c[1], c[2], c[4]), c[3], what)
    if c[1] == "submit" and c[2] then
      -- as the client asks: what the answer means is lifecycle.submit_answer's
      local e = { status = c[2].status, headers = c[2].headers, submit = lifecycle.submit_answer(c[2]) }
      T.eq(retry.verdict("submit", e), c[3], what .. " (" .. e.submit .. ")")
    end
  end
  local _, hint = retry.retryable("submit", resp(429, { ["retry-after"] = "7" }))
  T.eq(hint, 7, "Retry-After read")
  local p = retry.policy { base = 1, jitter = 0 }
  T.eq(retry.delay(p, 1), 1, "first wait")
  T.eq(retry.delay(p, 3), 4, "exponential")
  T.eq(retry.delay(p, 20), 30, "capped")
  T.eq(retry.delay(p, 1, 9), 9, "never shorter than Retry-After")
  local jittered = retry.delay(retry.policy { base = 1, jitter = 0.25 }, 1)
  T.ok(jittered >= 0.75 and jittered <= 1.25, "jitter within ±25%")
  T.raises(function() editflow.client { key = "k", base_url = "http://127.0.0.1:9", retry = { tries = 3 } } end,
    "retry.tries is not an option")
  local v, e = retry.run({ policy = retry.policy(), sleep = function() end }, "status", function() return nil end)
  T.eq(v, nil, "a try that gives nothing")
  T.eq(e and e.code, "INTERNAL", "is a final INTERNAL error, not an index of nil")
end)

T.case("under injected faults every job ends and no submit is paid twice", function()
  local sb = T.sandbox { "--workers", "8", "--job-time", "0.02", "--fault-rate", "0.25", "--fault-seed", "7" }
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02,
    settle_timeout = 2,
    retry = { base = 0.02, cap = 0.2, attempts = 6 } }
  local d = T.tmpdir()
  local inputs = {}
  for i = 1, 40 do inputs[i] = { prompt = "faulty " .. i, image_urls = { URL } } end
  local saved, failed = 0, 0
  local results, errs = editflow.map(inputs, function(input, i)
    local result, second = c:edit(input)
    if result then
      local paths, serr = second:save(d, { name = "f" .. i })  -- on success the job comes second
      if paths then
        saved = saved + 1
        return "saved"
      end
      T.ok(editflow.is_error(serr), "a failed download carries an error value")
      failed = failed + 1
      return "failed"
    end
    T.ok(editflow.is_error(second) and type(second.code) == "string", "failure carries an error value")
    failed = failed + 1
    return "failed"
  end, { concurrency = 10 })
  -- (an assertion inside an item raises there: map keeps it in errs)
  local _, raised = next(errs)
  T.eq(raised, nil, "no item raised")
  local ended = 0
  for i = 1, 40 do if results[i] then ended = ended + 1 end end
  T.eq(ended, 40, "every job ended")
  T.eq(saved + failed, 40, "saved or failed")
  T.ok(saved >= 20, "most were saved despite faults (" .. saved .. ")")
  local s = sb.stats()
  local injected = 0
  for _, n in pairs(s.faults) do injected = injected + n end
  T.ok(injected >= 10, "faults were injected (" .. injected .. ")")
  T.eq(s.duplicate_submits, 0, "no job was submitted twice")
  T.ok(s.by_route.files > saved, "some downloads were retried (" .. s.by_route.files .. " for " .. saved .. " saved)")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("Retry-After is honoured and a 429 storm lowers the concurrency", function()
  local sb = T.sandbox { "--fault-rate", "1", "--faults", "429" }
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", max_in_flight = 8,
    retry = { attempts = 2, base = 0.01, jitter = 0 } }
  local t0 = core.monotime()
  local job, err = c:submit { prompt = "p", image_urls = { URL } }
  local dt = core.monotime() - t0
  T.eq(job, nil, "no job")
  T.eq(err.code, "HTTP_429", "the last answer")
  T.ok(dt >= 0.95, "waited the server's Retry-After: 1 s (" .. dt .. ")")
  T.eq(sb.stats().by_route.submit, 2, "two tries")
  T.ok(c.slots.limit < 8, "jobs allowed in flight lowered to " .. c.slots.limit)
  sb.stop()
end)

T.case("not retried: a 4xx, and a submit whose connection broke after sending", function()
  local sb = T.sandbox { "--fault-rate", "1", "--faults", "drop" }
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", retry = { base = 0.01 },
    settle_timeout = 1 }
  local job, err = c:submit { prompt = "p", image_urls = { URL } }
  T.eq(job, nil, "no job")
  T.eq(err.maybe_submitted, true, "says the job may exist")
  T.ok(sb.stats().listing_calls >= 1, "fal's request listing was asked (the job is not there: no job was made)")
  T.eq(sb.stats().by_route.submit, 1, "one try only: a retry could pay twice")
  sb.stop()
  local ok_sb = T.sandbox()
  local other = editflow.client { base_url = ok_sb.url, storage_url = ok_sb.url, api_url = ok_sb.url, key = "test-key", endpoint = "someone/else",
    retry = { base = 0.01 } }
  local j2, e2 = other:submit { prompt = "p", image_urls = { URL }, num_images = 99 }
  T.eq(j2, nil, "refused")
  T.eq(e2.code, "HTTP_422", "validation error from the server")
  T.eq(ok_sb.stats().by_route.submit, 1, "a 4xx is not retried")
  ok_sb.stop()
end)

-- A timeout_504.py queue (tests/lua/servers) in `mode`: -> its URL, calls() per route, stop().
local function timeout_server(mode)
  local p = io.popen("echo $$; exec python3 " .. T.quote(T.source_dir .. "/tests/lua/servers/timeout_504.py")
    .. " " .. mode)
  local pid, port = tonumber(p:read("l")), tonumber(p:read("l"))
  local base = "http://127.0.0.1:" .. assert(port, "timeout_504.py did not start")
  local function calls()
    local _, out = T.sh("python3 -c " .. T.quote("import urllib.request,sys; "
      .. "print(urllib.request.urlopen(sys.argv[1]).read().decode())") .. " " .. T.quote(base .. "/_calls"))
    return require("editflow.json").decode(out)
  end
  local function stop()
    if p then os.execute("kill " .. pid) p:close() p = nil end
  end
  return base, calls, stop
end

T.case("a status or result answering 504 with X-Fal-Request-Timeout-Type ends the job at once", function()
  for _, mode in ipairs { "status", "result" } do
    local base, calls, stop = timeout_server(mode)
    local ok, err = pcall(function()
      -- (the deadline only bounds a broken run: a 504 retried would be asked until then)
      local c = editflow.client { base_url = base, key = "k", follow = "poll", poll_interval = 0.02,
        job_timeout = 10, retry = { base = 0.02, cap = 0.1 } }
      local res, e = c:edit { prompt = "p", image_urls = { URL } }
      T.eq(res, nil, mode .. ": no result")
      T.eq(e.code, "HTTP_504", mode .. ": the 504 ends it, not the deadline: " .. tostring(e))
      local n = calls()
      T.eq(n.submit, 1, mode .. ": one submit")
      T.eq(n[mode], 1, mode .. ": asked once, never again")
      T.eq(n.cancel, 0, mode .. ": no deadline's cancel")
    end)
    stop()
    if not ok then error(err, 0) end
  end
end)

T.case("a job not started within start_timeout ends with fal's 504, asked once", function()
  local sb = T.sandbox { "--workers", "1", "--job-time", "0.01" }
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key",
    poll_interval = 0.02, job_timeout = 20, retry = { base = 0.02, cap = 0.1 } }
  -- the only worker held by a job sent past the client (nobody asks for its result), let go
  -- only once the late job has waited longer than its start_timeout, however slow the machine
  local st = T.sh("python3 -c " .. T.quote("import json, sys, urllib.request as u; u.urlopen(u.Request("
    .. "sys.argv[1], data=json.dumps({'prompt': '[endless] busy', 'image_urls': [sys.argv[2]]}).encode(), "
    .. "headers={'Authorization': 'Key test-key', 'Content-Type': 'application/json'}))")
    .. " " .. T.quote(sb.url .. "/fal-ai/qwen-image-edit-plus") .. " " .. T.quote(URL))
  T.eq(st, 0, "the busy job was sent")
  local late = assert(c:submit({ prompt = "waits", image_urls = { URL } }, { start_timeout = 1 }))
  T.sh("sleep 1.5")  -- measured from after the submit's answer: the job has waited more than 1 s
  sb.control { release_endless = true }
  local res, err = late:wait()
  T.eq(res, nil, "no result")
  T.eq(err.status, 504, "fal's 504: " .. tostring(err))
  T.eq(err.type, "request_timeout", "its error type")
  local mine
  for _, j in ipairs(sb.jobs()) do if j.request_id == late.request_id then mine = j end end
  T.eq(mine.headers["x-fal-request-timeout"], "1", "X-Fal-Request-Timeout sent")
  T.eq(sb.stats().by_route.result, 1, "its result asked once")
  sb.stop()
end)

T.case("a submit that raises midway gives its in-flight slot back", function()
  local sb = T.sandbox()
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", max_in_flight = 1 }
  T.raises(function() c:submit({ prompt = "p", image_urls = { URL } }, { headers = { ["X-A"] = ("a"):rep(9000) } }) end,
    "4096 bytes at most")
  T.raises(function() c:submit({ prompt = "p", image_urls = { URL } }, { headers = { ["X\r\nEvil"] = "1" } }) end,
    "bad header name")
  local noisy = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", max_in_flight = 1,
    verbose = function() error("verbose callback failed") end }
  T.raises(function() noisy:submit { prompt = "p", image_urls = { URL } } end, "verbose callback failed")
  T.eq(noisy.slots.held, 0, "slot released after the raise")
  local job = assert(c:submit { prompt = "p", image_urls = { URL } })  -- would wait forever if leaked
  assert(job:wait())
  sb.stop()
end)

T.run()
