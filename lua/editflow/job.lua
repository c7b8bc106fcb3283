-- editflow.job: one request on the queue, from its request id to its saved images.
-- Follows the job (status), reads its outcome (result), stops it (cancel) and saves its
-- images. Policy from SPEC §1: only IN_QUEUE and IN_PROGRESS mean "still running"; any other
-- status ends the following, and the result call decides the outcome. A result answer that
-- says "still running" (202, or 400 "in progress", or 200 with a running status) means keep
-- following. A job that ended COMPLETED with an error is a failure even if the result call
-- answers 200.
local runtime = require "editflow.runtime"
local json = require "editflow.json"
local errors = require "editflow.errors"
local save = require "editflow.save"

local M = {}

local Job = {}
Job.__index = Job
Job.__name = "editflow.Job"

local RUNNING = { IN_QUEUE = true, IN_PROGRESS = true }

function M.new(client, doc)
  local id = doc.request_id
  local root = client:url_for(client.app) .. "/requests/" .. id
  return setmetatable({
    client = client,
    request_id = id,
    status_url = client:follow_url(doc.status_url) or (root .. "/status"),
    response_url = client:follow_url(doc.response_url) or root,
    cancel_url = client:follow_url(doc.cancel_url) or (root .. "/cancel"),
    state = doc.status or "IN_QUEUE",  -- the last status seen (job:status() asks anew)
    queue_position = doc.queue_position,
    logs_seen = 0,
  }, Job)
end

Job.__tostring = function(j)
  return string.format("editflow.Job(%s, %s)", j.request_id, j.state)
end

-- Records a status answer and reports what is new: the status itself, then each new log line.
function Job:_observe(st)
  self.state = st.status
  self.queue_position = st.queue_position
  local c = self.client
  if c.on_status then c.on_status(self, st) end
  local logs = st.logs
  if type(logs) == "table" then
    -- Each answer carries the whole log so far; show only what was not seen.
    for i = self.logs_seen + 1, #logs do
      if c.on_log and type(logs[i]) == "table" then c.on_log(self, logs[i]) end
    end
    if #logs > self.logs_seen then self.logs_seen = #logs end
  end
end

-- job:status([{logs=false}]) -> status table, or nil, err.
function Job:status(opts)
  local u = self.status_url
  if not (opts and opts.logs == false) then u = u .. (u:find("?", 1, true) and "&" or "?") .. "logs=1" end
  local resp, err = self.client:call("status", "GET", u, nil, nil, self.request_id)
  if not resp then return nil, err end
  if resp.status < 200 or resp.status > 299 then
    return nil, errors.from_http(resp, "status", self.request_id)
  end
  local st = json.decode(resp.body)
  if type(st) ~= "table" or type(st.status) ~= "string" then
    return nil, errors.new("BAD_RESPONSE", "status failed: the answer is not a status object [request "
      .. self.request_id .. "]", { request_id = self.request_id })
  end
  self:_observe(st)
  return st
end

local function not_ready(id)
  return errors.new("NOT_READY", "result not ready: the job is still running [request " .. id .. "]",
    { request_id = id })
end

-- job:result() -> the model's output table, or nil, err (code NOT_READY while running).
function Job:result()
  local id = self.request_id
  local resp, err = self.client:call("result", "GET", self.response_url, nil, nil, id)
  if not resp then return nil, err end
  local doc = json.decode(resp.body)
  if resp.status == 202 or (type(doc) == "table" and RUNNING[doc.status] and doc.images == nil) then
    return nil, not_ready(id)
  end
  if resp.status == 400 and type(doc) == "table" and type(doc.detail) == "string"
      and doc.detail:lower():find("in progress", 1, true) then
    return nil, not_ready(id)
  end
  if resp.status < 200 or resp.status > 299 then return nil, errors.from_http(resp, "result", id) end
  if type(doc) ~= "table" then
    return nil, errors.new("BAD_RESPONSE", "result failed: the answer is not JSON [request " .. id .. "]",
      { request_id = id })
  end
  return doc
end

-- The failure a COMPLETED-with-error status describes, when the result call did not.
local function status_failure(self, st)
  return errors.new("JOB_FAILED", string.format("job failed: %s%s [request %s]", tostring(st.error),
    st.error_type and (" (" .. tostring(st.error_type) .. ")") or "", self.request_id),
    { type = st.error_type, request_id = self.request_id, detail = st.error })
end

-- job:wait([{timeout=seconds, poll_interval=seconds}]) -> result, or nil, err.
-- Polls with a growing interval; on a client deadline the job is cancelled and TIMEOUT returned.
function Job:wait(opts)
  opts = opts or {}
  if self.output then return self.output end
  local c = self.client
  local interval = opts.poll_interval or c.poll_interval
  local deadline = opts.timeout and (runtime.now() + opts.timeout)
  while true do
    local st, err = self:status()
    if not st then return nil, err end
    if not RUNNING[st.status] then
      local res, rerr = self:result()
      if res then
        if st.error then
          self.error = status_failure(self, st)
          return nil, self.error
        end
        self.output = res
        return res
      elseif rerr.code ~= "NOT_READY" then
        self.error = rerr
        return nil, rerr
      end
    end
    if deadline and runtime.now() + interval > deadline then
      self:cancel()
      self.error = errors.new("TIMEOUT", string.format("job did not finish within %g s; cancel requested [request %s]",
        opts.timeout, self.request_id), { request_id = self.request_id })
      return nil, self.error
    end
    runtime.sleep(c.loop, interval)
    interval = math.min(interval * 1.5, opts.max_poll_interval or c.max_poll_interval)
  end
end

-- job:cancel() -> "CANCELLATION_REQUESTED", or nil, err (code ALREADY_COMPLETED, NOT_FOUND, ...).
function Job:cancel()
  local id = self.request_id
  local resp, err = self.client:call("cancel", "PUT", self.cancel_url, nil, nil, id)
  if not resp then return nil, err end
  local doc = json.decode(resp.body)
  local status = type(doc) == "table" and doc.status
  if resp.status >= 200 and resp.status <= 299 then return status or "CANCELLATION_REQUESTED" end
  if status == "ALREADY_COMPLETED" or status == "NOT_FOUND" then
    return nil, errors.new(status, string.format("cancel: %s [request %s]",
      status == "ALREADY_COMPLETED" and "the job had already completed" or "no such request", id),
      { status = resp.status, request_id = id })
  end
  return nil, errors.from_http(resp, "cancel", id)
end

-- job:save(dir [, {name=}]) -> list of saved paths, or nil, err, paths saved before the failure.
function Job:save(dir, opts)
  if type(dir) ~= "string" or dir == "" then error("job:save expects a folder path", 2) end
  local res = self.output
  if not res then
    local err
    res, err = self:wait(opts)
    if not res then return nil, err, {} end
  end
  opts = opts or {}
  return save.save(self.client.loop, res, dir, {
    name = opts.name or self.request_id, max_bytes = self.client.max_image_bytes,
    timeout = opts.download_timeout or 300, request_id = self.request_id,
  })
end

return M
