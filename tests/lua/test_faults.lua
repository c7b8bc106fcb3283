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
  for _, c in ipairs(cases) do
    local got = retry.retryable(c[1], c[2], c[4])
    T.eq(got, c[3], string.format("%s %s", c[1], c[2] and c[2].status or c[4].code))
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
  local results = editflow.map(inputs, function(input, i)
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
  T.eq(#results, 40, "every job ended")
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
