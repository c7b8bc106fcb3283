-- editflow.job: one request on the queue, from its request id to its saved images.
--
-- Every submitted job is followed by a watcher task (runtime.spawn), so many jobs progress at
-- once in one thread and job:wait() only waits for the watcher's verdict. The watcher follows
-- the status stream (SSE: one connection, completion seen as soon as the server says it) and
-- falls back to polling with a growing interval when streaming is off or fails. Policy from
-- SPEC §1: only IN_QUEUE and IN_PROGRESS mean "still running"; any other status ends the
-- following and the result call decides. A result answer that says "still running" (202, 400
-- "in progress", or 200 with a running status) means keep following. A job that ended
-- COMPLETED with an error is a failure even if the result call answers 200.
local core = require "editflow.core"
local runtime = require "editflow.runtime"
local json = require "editflow.json"
local errors = require "editflow.errors"
local http = require "editflow.http"
local save = require "editflow.save"
local progress = require "editflow.progress"
local retry = require "editflow.retry"

local M = {}

local Job = {}
Job.__index = Job
Job.__name = "editflow.Job"

local RUNNING = { IN_QUEUE = true, IN_PROGRESS = true }

-- Jobs being followed right now (for cancelling everything on Ctrl-C).
local live = {}
function M.live()
  local list = {}
  for j in pairs(live) do list[#list + 1] = j end
  table.sort(list, function(a, b) return a.request_id < b.request_id end)
  return list
end

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
    retries_left = client.retry.job_budget,
    finished = runtime.signal(),
  }, Job)
end

-- A job an earlier run finished, rebuilt from the journal: no request is made for it.
function M.restored(client, key, rec)
  local job = M.new(client, { request_id = rec.request_id or key, status = "COMPLETED" })
  job.key, job.output, job.paths, job.from_journal = key, rec.output, rec.paths, true
  job.finished:fire()
  progress.note("finished", job)
  return job
end

Job.__tostring = function(j)
  return string.format("editflow.Job(%s, %s)", j.request_id, j.state)
end

-- Records a status object and reports what is new: the status itself, then each new log line.
function Job:_observe(st)
  local c = self.client
  local changed = self.state ~= st.status or self.queue_position ~= st.queue_position
  self.state = st.status
  self.queue_position = st.queue_position
  if changed then progress.note("status", self) end
  if not RUNNING[st.status] and not self.ended_at then
    self.ended_at = core.walltime()  -- when the client learnt the job had ended
  end
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

local function with_logs(u, path)
  local base, query = u:match("^([^?]*)(.*)$")
  return base .. (path or "") .. (query ~= "" and (query .. "&") or "?") .. "logs=1"
end

-- job:status([{logs=false}]) -> status table, or nil, err. One status call.
function Job:status(opts)
  local u = (opts and opts.logs == false) and self.status_url or with_logs(self.status_url)
  local resp, err = self.client:call("status", "GET", u, nil, nil, self.request_id, self)
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
  local resp, err = self.client:call("result", "GET", self.response_url, nil, nil, id, self)
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

-- The failure a final status describes when the result call did not: COMPLETED with an
-- error, or a proxy's FAILED / CANCELLED / ERROR (whatever the result call then answered).
local function status_failure(self, st, res)
  local detail = st.error or (type(res) == "table" and (res.detail or res.error)) or st.status
  local etype = st.error_type or (type(res) == "table" and res.error_type) or nil
  return errors.new("JOB_FAILED", string.format("job failed: %s%s [request %s]",
    type(detail) == "string" and detail or st.status, etype and (" (" .. tostring(etype) .. ")") or "",
    self.request_id), { type = etype, request_id = self.request_id, detail = detail, state = st.status })
end

-- Follows the status stream until a final status. Returns it; or nil, err when following
-- cannot go on at all (credential refused); or nil when the stream failed and polling should
-- take over.
function Job:_stream()
  local c = self.client
  local u = with_logs(self.status_url, "/stream")
  local t = http.start(runtime.loop(), c:request_options("stream", "GET", u, nil,
    { Accept = "text/event-stream" }, { sse = true, timeout = 0, low_speed_limit = 1,
      low_speed_time = c.stream_idle }))
  if not t then return nil end
  -- Whatever ends this function (a callback that raises included) closes the stream.
  local guard <close> = setmetatable({}, { __close = function() t:close() end })
  while true do
    local events = runtime.await_events(t)
    local final
    for _, data in ipairs(events) do
      local st = json.decode(data)
      if type(st) == "table" and type(st.status) == "string" then
        self:_observe(st)
        if not RUNNING[st.status] then final = st end
      end
    end
    if final then
      t:close()
      return final
    end
    if t:done() then
      local resp = t:response()
      t:close()
      c:trace("stream", "GET", u, resp and resp.status or "failed", "falling back to polling")
      if resp and (resp.status == 401 or resp.status == 403) then
        return nil, errors.from_http(resp, "status stream", self.request_id)
      end
      return nil
    end
  end
end

-- An unreadable answer (a broken proxy, a truncated body) is worth another try while the
-- job's retry budget lasts; other errors were already retried by client:call.
function Job:_spend_on(err)
  if err and err.code == "BAD_RESPONSE" and self.retries_left > 0 then
    self.retries_left = self.retries_left - 1
    runtime.sleep(retry.delay(self.client.retry, 1))
    return true
  end
  return false
end

-- Polls the status with a growing interval until a final status; or nil, err.
function Job:_poll()
  local c = self.client
  local interval = c.poll_interval
  while true do
    local st, err = self:status()
    if not st and self:_spend_on(err) then goto continue end
    if not st then return nil, err end
    if not RUNNING[st.status] then return st end
    runtime.sleep(interval)
    interval = math.min(interval * 1.5, c.max_poll_interval)
    ::continue::
  end
end

function Job:_finish(output, err)
  if self.finished.set then return end
  live[self] = nil
  self.output, self.error = output, err
  local jr = self.client.journal
  if jr and self.key then
    local rec = output and { t = "done", key = self.key, request_id = self.request_id, output = output }
      or { t = "failed", key = self.key, request_id = self.request_id,
           error = err and { code = err.code, message = err.message, type = err.type } or nil }
    local ok, jerr = pcall(jr.append, jr, rec)
    if not ok then  -- the outcome still reaches the caller; the next run follows the job again
      io.stderr:write("editflow: ", tostring(jerr), "\n")
    end
  end
  if self.holds_slot then
    self.holds_slot = false
    self.client.slots:release()
  end
  self.finished:fire()
  progress.note("finished", self)
  if self.client.on_finish then self.client.on_finish(self) end
end

-- Starts the watcher task (once). Submitted jobs start it at once; a job found again by its
-- id starts it when first waited for.
function Job:_watch()
  if not self.watcher then
    live[self] = true
    self.watcher = runtime.spawn(self._run, self)
    self.watcher.name = self.request_id
    local limit = self.client.job_timeout
    if limit then  -- the client's own deadline for the whole job: cancel it and say so
      runtime.spawn(function()
        if not self.finished:wait(runtime.now() + limit) then
          self:cancel()
          self:_finish(nil, errors.new("TIMEOUT", string.format(
            "job did not finish within %g s (job_timeout); cancel requested [request %s]", limit,
            self.request_id), { request_id = self.request_id }))
        end
      end)
    end
  end
end

-- The watcher task's body: follow, then fetch the result.
function Job:_run()
  local ok, e = pcall(function()
    local streaming = self.client.follow == "stream"
    while not self.finished.set do
      local st, err
      if streaming then
        st, err = self:_stream()
        streaming = false
      end
      if not st and not err then st, err = self:_poll() end
      if not st then return self:_finish(nil, err) end
      local res, rerr = self:result()
      if res then
        if st.error or st.status ~= "COMPLETED" then return self:_finish(nil, status_failure(self, st, res)) end
        return self:_finish(res)
      elseif rerr.code ~= "NOT_READY" and not self:_spend_on(rerr) then
        return self:_finish(nil, rerr)
      end
      -- Ended, but the result says "still running": poll again, with a growing wait, and
      -- charged to the job's retry budget so a server that never delivers cannot keep us.
      if self.retries_left <= 0 then
        return self:_finish(nil, errors.new("NOT_READY", "the job ended (" .. tostring(st.status)
          .. ") but its result never became available [request " .. self.request_id .. "]",
          { request_id = self.request_id }))
      end
      self.retries_left = self.retries_left - 1
      self.not_ready_rounds = (self.not_ready_rounds or 0) + 1
      runtime.sleep(math.min(self.client.poll_interval * 1.5 ^ self.not_ready_rounds, self.client.max_poll_interval))
    end
  end)
  if not ok then  -- a bug must not leave the job waiting forever
    self:_finish(nil, errors.new("INTERNAL", "editflow: following the job failed: " .. tostring(e),
      { request_id = self.request_id }))
  end
end

-- job:wait([{timeout=seconds}]) -> result, or nil, err.
-- On a client deadline the job is cancelled and TIMEOUT returned.
function Job:wait(opts)
  local timeout = opts and opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout <= 0) then
    error("timeout must be a positive number of seconds", 2)
  end
  self:_watch()
  if not self.finished:wait(timeout and (runtime.now() + timeout)) then
    self:cancel()
    return nil, errors.new("TIMEOUT", string.format("job did not finish within %g s; cancel requested [request %s]",
      timeout, self.request_id), { request_id = self.request_id })
  end
  if self.output then return self.output end
  return nil, self.error
end

-- job:cancel() -> "CANCELLATION_REQUESTED", or nil, err (code ALREADY_COMPLETED, NOT_FOUND, ...).
function Job:cancel()
  local id = self.request_id
  local resp, err = self.client:call("cancel", "PUT", self.cancel_url, nil, nil, id, self)
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
  opts = opts or {}
  if self.from_journal and type(self.paths) == "table" and #self.paths > 0 then
    -- Saved by an earlier run: nothing to fetch, if the files are still there, in this
    -- folder, under the name asked for now.
    local all, stem = true, core.safe_name(opts.name or self.request_id) .. "-"
    for _, p in ipairs(self.paths) do
      local f = io.open(p, "rb")
      local here = p:sub(1, #dir) == dir and p:match("([^/]*)$"):sub(1, #stem) == stem
      if f then f:close() end
      if not (f and here) then all = false end
    end
    if all then return self.paths end
  end
  local res = self.output
  if not res then
    local err
    res, err = self:wait { timeout = opts.timeout }
    if not res then return nil, err, {} end
  end
  local paths, err, partial = save.save(runtime.loop(), res, dir, {
    name = opts.name or self.request_id, max_bytes = self.client.max_image_bytes,
    timeout = opts.download_timeout or 300, request_id = self.request_id, retry = self.client.retry,
  })
  self.paths = paths or partial
  if paths and self.client.journal and self.key then
    self.client.journal:append { t = "saved", key = self.key, paths = json.array(paths) }
  end
  if self.client.on_saved then self.client.on_saved(self, paths, err) end
  return paths, err, partial
end

M._methods = Job  -- for tests and the fuzz harness (tests/fuzz/fuzz_json.c)

return M
