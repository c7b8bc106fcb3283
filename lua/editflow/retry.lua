-- editflow.retry: the one retry loop every call goes through (submit, status, stream, result,
-- cancel, downloads), with per-kind rules for what is worth another try (SPEC §4).
--
--   * A submit is retried only when the server cannot have the job (editflow.lifecycle's
--     submit_answer says which answers those are: 408, 429, 503 without a request id, an
--     ingress's 502/504), or a connection that was never made. A connection that broke after
--     the request left may have created the job: retrying it could pay twice, so it is final
--     ("unknown").
--   * Following a job (status, stream, result) is idempotent: 408, 409, 429, any 5xx that is
--     not the job's outcome, transport failures and unreadable answers are retried until the
--     job's deadline -- never turned into a failed job. A result answer from the queue (it
--     carries x-fal-request-id) with `error_type` (body) or `X-Fal-Error-Type` (header) IS
--     the job's outcome: final. Without that header it came from the ingress: passing.
--   * cancel and downloads: 408, 409, 429, 5xx and transport failures, `attempts` times.
--   * Never: a 504 that carries X-Fal-Request-Timeout-Type (fal's own timeout), any other 4xx.
-- Waits grow exponentially with jitter up to a cap, are never shorter than the server's
-- Retry-After, and never run past the deadline: a wait that would is not started.
local core = require "editflow.core"
local errors = require "editflow.errors"

local M = {}

M.DEFAULTS = {
  attempts = 4,      -- tries per call (submit, cancel, download), the first included
  base = 0.5,        -- seconds before the first retry
  factor = 2,
  cap = 30,          -- longest wait between tries
  jitter = 0.25,     -- ± this share of the wait, so many clients do not retry in step
  job_budget = 20,   -- retries one job may spend on its submit, cancel and downloads together
}

local OTHER_STATUS = { [408] = true, [409] = true, [429] = true, [500] = true, [502] = true,
  [503] = true, [504] = true }
-- For a submit, only answers that mean "not taken".
local SUBMIT_STATUS = { [408] = true, [429] = true, [503] = true }
local FOLLOWING = { status = true, stream = true, result = true }
-- Failures that happen before anything reaches the server.
local NOT_SENT = { COULDNT_CONNECT = true, COULDNT_RESOLVE_HOST = true, COULDNT_RESOLVE_PROXY = true,
  URL_MALFORMAT = true, UNSUPPORTED_PROTOCOL = true, START = true, FILE_OPEN = true }
-- Failures a retry cannot mend.
local FINAL = { URL_MALFORMAT = true, UNSUPPORTED_PROTOCOL = true, BODY_TOO_LARGE = true,
  FILE_WRITE = true, FILE_OPEN = true, ABORTED = true, OUT_OF_MEMORY = true, START = true,
  BAD_IMAGE = true, TOO_MANY_IMAGES = true, TIMEOUT = true }

function M.not_sent(code) return NOT_SENT[code] == true end

-- Seconds from a Retry-After header (delta-seconds form); nil when absent or a date.
function M.retry_after(headers)
  local v = headers and headers["retry-after"]
  local n = type(v) == "string" and tonumber(v:match("^%s*(%d+)%s*$"))
  if n then return math.min(n, 3600) end
  return nil
end

-- retry.verdict(kind, e) -> true, Retry-After | false.
-- e describes one failed try: { status=, headers=, type=, code= } -- an HTTP answer that was
-- not a success (status, headers, the error_type it carried), or a failure with no answer
-- (code: the transport's, or BAD_RESPONSE for an answer that could not be read).
function M.verdict(kind, e)
  local st, h = e.status, e.headers or {}
  if st then
    -- fal's own timeout of the request (the user's start timeout): final, as fal_client has it
    if st == 504 and (h["x-fal-request-timeout-type"] or "") ~= "" then return false end
    if kind == "submit" then
      -- What the answer means is editflow.lifecycle's (submit_answer): only "retry" is retried.
      if e.submit then return e.submit == "retry", M.retry_after(h) end
      if SUBMIT_STATUS[st] then return true, M.retry_after(h) end
      return false
    end
    if kind == "result" and st >= 500 and (e.type or h["x-fal-error-type"]) and h["x-fal-request-id"] then
      return false  -- the job's outcome, from the queue itself, not a passing fault
    end
    if OTHER_STATUS[st] or (st >= 500 and (FOLLOWING[kind] or kind == "download")) then
      return true, M.retry_after(h)
    end
    return false
  end
  local code = e.code
  if kind == "submit" then
    return NOT_SENT[code] == true and not FINAL[code]
  end
  return code ~= nil and not FINAL[code]
end

-- The older face, kept for scripts and tests: retryable(what, resp, err).
function M.retryable(what, resp, err)
  if resp then
    return M.verdict(what, { status = resp.status, headers = resp.headers })
  end
  return M.verdict(what, { code = err and err.code })
end

-- The wait before try number `attempt` + 1 (attempt counts from 1).
function M.delay(policy, attempt, hint, random)
  local d = math.min(policy.cap, policy.base * policy.factor ^ (math.min(attempt, 60) - 1))
  d = d * (1 + policy.jitter * (2 * (random or math.random)() - 1))
  if hint and hint > d then d = hint end
  return d
end

-- A policy from user options (a table with any of the DEFAULTS' fields, or false: no retries).
function M.policy(opts)
  if opts == false then opts = { attempts = 1, job_budget = 0 } end
  local p = {}
  for k, v in pairs(M.DEFAULTS) do p[k] = v end
  for k, v in pairs(opts or {}) do
    if M.DEFAULTS[k] == nil then
      error(string.format("editflow.client: retry.%s is not an option (attempts, base, factor, cap, jitter, job_budget)", tostring(k)), 3)
    end
    if type(v) ~= "number" or v < 0 or v ~= v or v == math.huge then
      error(string.format("editflow.client: retry.%s must be a number >= 0, got %s", k, tostring(v)), 3)
    end
    p[k] = v
  end
  if p.attempts < 1 then p.attempts = 1 end
  if opts and opts.attempts == 1 and opts.job_budget == nil then p.job_budget = 0 end
  return p
end

-- retry.run(ctx, kind, try) -> the value try returned, or nil, the last error.
--   try(seconds_left) -> value | nil, err   (err: an editflow error; see verdict for fields)
--   ctx.policy       the client's policy
--   ctx.deadline     monotonic time after which nothing more is tried (nil: 300 s from now)
--   ctx.persist      retry until the deadline instead of `attempts` times (following a job)
--   ctx.budget       a table { left = n } shared by a job's calls (ignored when persisting)
--   ctx.sleep        how to wait (runtime.sleep: lets other tasks run); false: stop trying
--   ctx.on_retry(kind, err, wait)   told before each wait
--   ctx.on_deadline(kind, err) -> err   builds the error when the deadline ends the loop
M.DEFAULT_DEADLINE = 300  -- seconds, for a call made outside any job: nothing waits forever

function M.run(ctx, kind, try)
  local policy, n = ctx.policy, 0
  if not ctx.deadline then
    local own = {}
    for k, v in pairs(ctx) do own[k] = v end
    own.deadline = core.monotime() + M.DEFAULT_DEADLINE
    ctx = own
  end
  while true do
    n = n + 1
    local left = ctx.deadline and (ctx.deadline - core.monotime())
    if left and left <= 0 then
      local late = errors.new("TIMEOUT", kind .. ": the deadline has passed")
      return nil, ctx.on_deadline and ctx.on_deadline(kind, late) or late
    end
    local value, err = try(left)
    if value ~= nil then return value end
    -- a try that gave neither (a bug) is a final failure, never an index of nil here
    if err == nil then return nil, errors.new("INTERNAL", kind .. ": the call gave no answer and no error") end
    local again, hint = M.verdict(kind, err)
    if not again then return nil, err end
    local limited = not ctx.persist
    if limited and (n >= policy.attempts or (ctx.budget and ctx.budget.left <= 0)) then
      return nil, err
    end
    local wait = M.delay(policy, n, hint)
    if ctx.deadline and core.monotime() + wait >= ctx.deadline then
      -- The next try would start after the deadline (a long Retry-After, say): stop now.
      return nil, ctx.on_deadline and ctx.on_deadline(kind, err) or err
    end
    if limited and ctx.budget then ctx.budget.left = ctx.budget.left - 1 end
    if ctx.on_retry then ctx.on_retry(kind, err, wait) end
    if ctx.sleep(wait) == false then return nil, err end  -- stopped while waiting
  end
end

return M
