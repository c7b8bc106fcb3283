-- editflow.retry: which failed calls are tried again, and after how long (SPEC §4).
-- Retried: 408, 409, 429, 502, 503, 504 (status streams and polls also 500) and transport
-- failures; never a 504 that says the user's own start deadline passed
-- (X-Fal-Request-Timeout-Type: user), never another 4xx. A submit is retried only when the
-- server cannot have the job: 408, 429 or 503 (refusals before the job exists), or a
-- connection that was never made. A gateway's 502/504 may come after it forwarded the request. Anything else (the connection broke after the request went out) might have created a
-- job, and a retry could pay twice, so it is reported, not retried. The wait is exponential
-- with jitter, capped, and never shorter than the server's Retry-After.
local M = {}

M.DEFAULTS = {
  attempts = 4,      -- tries per call, the first included
  base = 0.5,        -- seconds before the first retry
  factor = 2,
  cap = 30,          -- longest wait between tries
  jitter = 0.25,     -- ± this share of the wait, so many clients do not retry in step
  job_budget = 20,   -- retries one job may spend on all its calls together
}

local RETRY_STATUS = { [408] = true, [409] = true, [429] = true, [502] = true, [503] = true, [504] = true }
-- For a submit, only answers that mean "not taken": a gateway's 502/504 may come after it
-- forwarded the request, so retrying those could pay twice.
local SUBMIT_RETRY_STATUS = { [408] = true, [429] = true, [503] = true }
local FOLLOWING = { status = true, stream = true }
-- Failures that happen before anything reaches the server.
local NOT_SENT = { COULDNT_CONNECT = true, COULDNT_RESOLVE_HOST = true, COULDNT_RESOLVE_PROXY = true,
  URL_MALFORMAT = true, UNSUPPORTED_PROTOCOL = true, START = true, FILE_OPEN = true }

function M.not_sent(code) return NOT_SENT[code] == true end
-- Transport failures a retry cannot mend.
local FINAL = { URL_MALFORMAT = true, UNSUPPORTED_PROTOCOL = true, BODY_TOO_LARGE = true,
  FILE_WRITE = true, FILE_OPEN = true, ABORTED = true, OUT_OF_MEMORY = true, START = true }

-- Seconds from a Retry-After header (delta-seconds form); nil when absent or a date.
function M.retry_after(resp)
  local v = resp and resp.headers and resp.headers["retry-after"]
  local n = v and tonumber(v:match("^%s*(%d+)%s*$"))
  if n then return math.min(n, 3600) end
  return nil
end

-- retry.retryable(what, resp, err) -> true/false, Retry-After seconds or nil.
-- `what` names the call: "submit", "status", "stream", "result", "cancel", ...
function M.retryable(what, resp, err)
  if resp then
    local st = resp.status
    if st == 504 and resp.headers and (resp.headers["x-fal-request-timeout-type"] or ""):lower() == "user" then
      return false
    end
    if what == "submit" then
      if SUBMIT_RETRY_STATUS[st] then return true, M.retry_after(resp) end
      return false
    end
    if RETRY_STATUS[st] or (st == 500 and FOLLOWING[what]) then return true, M.retry_after(resp) end
    return false
  end
  local code = err and err.code
  if what == "submit" then
    return NOT_SENT[code] == true and code ~= "URL_MALFORMAT" and code ~= "UNSUPPORTED_PROTOCOL"
      and code ~= "START" and code ~= "FILE_OPEN"
  end
  return code ~= nil and not FINAL[code]
end

-- The wait before try number `attempt` + 1 (attempt counts from 1).
function M.delay(policy, attempt, hint, random)
  local d = math.min(policy.cap, policy.base * policy.factor ^ (attempt - 1))
  d = d * (1 + policy.jitter * (2 * (random or math.random)() - 1))
  if hint and hint > d then d = hint end
  return d
end

-- A policy from user options (a table with any of the DEFAULTS' fields, or false: no retries).
function M.policy(opts)
  if opts == false then opts = { attempts = 1 } end
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
  return p
end

return M
