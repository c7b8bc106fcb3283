-- editflow.job: one request on the queue, from its request id to its saved images.
--
-- Every accepted job is followed by a watcher task (runtime.spawn), so many jobs progress at
-- once in one thread and job:wait() only waits for the watcher's verdict. The watcher follows
-- the status stream (SSE: completion seen as soon as the server says it) and falls back to
-- polling with a growing interval when streaming is off or fails. Policy from SPEC §1 and §4:
--   * only IN_QUEUE and IN_PROGRESS mean "still running"; any other status ends the following
--     and the result call decides; a result that says "still running" means keep following;
--   * following is idempotent, so every passing failure of it (an outage, a timeout, a bare
--     5xx, an unreadable answer) is retried until the job's deadline: it never makes the job
--     "failed" -- the job stays accepted (in the journal too) and a new run follows it again;
--   * the outcome is what the server declares: a result, or an error that carries
--     error_type / X-Fal-Error-Type, a 4xx on the result, a failed final status;
--   * every job has a deadline (client job_timeout, default 3600 s): it bounds following,
--     the result, retries and Retry-After waits, and downloads; at expiry the job is
--     cancelled at the queue (a few more seconds at most) and reported TIMEOUT.
-- Values the server sends are checked for type before use: a hostile queue_position or log
-- list is ignored, never trusted.
local core = require "editflow.core"
local runtime = require "editflow.runtime"
local json = require "editflow.json"
local errors = require "editflow.errors"
local http = require "editflow.http"
local save = require "editflow.save"
local events = require "editflow.events"
local retry = require "editflow.retry"
local url = require "editflow.url"
local lifecycle = require "editflow.lifecycle"

local M = {}

local Job = {}
Job.__index = Job
Job.__name = "editflow.Job"

local RUNNING = { IN_QUEUE = true, IN_PROGRESS = true }
M.CANCEL_GRACE = 5   -- seconds a cancel may take once the deadline has passed

-- Jobs being followed right now belong to their client (client.live, a set); the host cancels
-- every client's on a signal (lifecycle.clients knows them, weakly).
-- job.live([client]) -> that client's jobs in flight, or every client's.
function M.live(client)
  local list = {}
  for c in pairs(client and { [client] = true } or lifecycle.clients) do
    for j in pairs(c.live or {}) do list[#list + 1] = j end
  end
  table.sort(list, function(a, b) return a.request_id < b.request_id end)
  return list
end

local function short_url(u)
  if type(u) == "string" and #u <= url.MAX then return u end
  return nil
end

function M.new(client, doc)
  lifecycle.track(client)
  local id = doc.request_id
  local net = client:transport()
  local root = net:url_for(net.app) .. "/requests/" .. id
  return setmetatable({
    client = client,
    request_id = id,
    net = net,
    status_url = net:follow_url(short_url(doc.status_url)) or (root .. "/status"),
    response_url = net:follow_url(short_url(doc.response_url)) or root,
    cancel_url = net:follow_url(short_url(doc.cancel_url)) or (root .. "/cancel"),
    state = type(doc.status) == "string" and doc.status or "IN_QUEUE",  -- last status seen
    queue_position = math.tointeger(doc.queue_position),
    logs_seen = 0,
    budget = { left = client.retry.job_budget },
    finished = runtime.signal(),
  }, Job)
end

-- A job an earlier run finished, rebuilt from the journal: no request is made for it.
function M.restored(client, life)
  local rec = life.record
  local job = M.new(client, { request_id = rec.request_id or life.key, status = "COMPLETED" })
  job.life, job.output, job.paths, job.from_journal = life, rec.output, rec.paths, true
  job.files = rec.files  -- the saved images' {size, sha256}, when the journal has them
  life.job = job
  job.finished:fire()
  events.emit("reused", job)
  events.emit("finished", job)
  if client.on_finish then events.call("on_finish", client.on_finish, job) end  -- as for any job
  return job
end

Job.__tostring = function(j)
  return string.format("editflow.Job(%s, %s)", j.request_id, j.state)
end

-- Records a status object and reports what is new: the status itself, then each new log line.
function Job:_observe(st)
  local c = self.client
  local pos = st.queue_position
  pos = (math.type(pos) == "integer" or (type(pos) == "number" and pos == pos)) and math.tointeger(pos) or nil
  local changed = self.state ~= st.status or self.queue_position ~= pos
  self.state = st.status
  self.queue_position = pos
  if changed then events.emit("status", self) end
  if not RUNNING[st.status] and not self.ended_at then
    self.ended_at = core.walltime()  -- when the client learnt the job had ended
  end
  if c.on_status then events.call("on_status", c.on_status, self, st) end
  local logs = st.logs
  if type(logs) == "table" then
    -- Each answer carries the whole log so far; show only what was not seen.
    for i = self.logs_seen + 1, #logs do
      local entry = logs[i]
      if type(entry) == "table" and self.net:leaks(entry.message) then  -- never shown nor kept
        entry = { message = "(a log line that held the credential, withheld)", level = entry.level,
          timestamp = entry.timestamp }
      end
      if type(entry) == "table" then
        events.emit("log", self, entry)
        if c.on_log then events.call("on_log", c.on_log, self, entry) end
      end
    end
    if #logs > self.logs_seen then self.logs_seen = #logs end
  end
end

-- A status URL with logs=1 while someone reads log lines (on_log, on_status, a subscriber of
-- "log" events), else logs=0, as fal's clients ask: the server then sends no log list.
local function with_logs(u, path, c)
  local want = not c or c.logs
  if want == nil then want = c.on_log ~= nil or c.on_status ~= nil or events.wants("log", c) end
  local base, query = u:match("^([^?]*)(.*)$")
  return base .. (path or "") .. (query ~= "" and (query .. "&") or "?") .. (want and "logs=1" or "logs=0")
end

local function bad_answer(what, id)
  return errors.new("BAD_RESPONSE", string.format("%s failed: the answer is not a %s [request %s]",
    what, what == "status" and "status object" or "JSON object", id), { request_id = id })
end

-- One status call, no retry. -> status table, or nil, err.
function Job:_status_once(u, left)
  local resp, err = self.net:exchange("status", "GET", u, nil, nil, left)
  if not resp then
    err.request_id = self.request_id
    return nil, err
  end
  if resp.status < 200 or resp.status > 299 then
    return nil, errors.from_http(resp, "status", self.request_id)
  end
  local st = json.decode(resp.body)
  if type(st) ~= "table" or type(st.status) ~= "string" then return nil, bad_answer("status", self.request_id) end
  self:_observe(st)
  return st
end

-- job:status([{logs=false}]) -> status table, or nil, err. One status call (retried per policy).
function Job:status(opts)
  runtime.may_wait(2)
  local u = (opts and opts.logs == false) and self.status_url or with_logs(self.status_url)
  return retry.run(self.net:retry_context(self, false), "status", function(left)
    return self:_status_once(u, left)
  end)
end

local NOT_READY = {}  -- the result call said "still running"

-- One result call, no retry. -> output, NOT_READY, or nil, err (err.outcome: the job's own
-- failure, as opposed to a failure to fetch it).
function Job:_result_once(left)
  local id = self.request_id
  local resp, err = self.net:exchange("result", "GET", self.response_url, nil, nil, left)
  if not resp then
    err.request_id = id
    return nil, err
  end
  local doc = lifecycle.output(json.decode(resp.body))
  local meaning = lifecycle.result_answer(resp, doc)
  if meaning == "running" then return NOT_READY end
  if meaning ~= "output" then
    local e = errors.from_http(resp, "result", id)
    e.outcome = lifecycle.result_outcome(resp, e.type)
    return nil, e
  end
  if type(doc) ~= "table" then return nil, bad_answer("result", id) end
  return doc
end

local function not_ready(id)
  return errors.new("NOT_READY", "result not ready: the job is still running [request " .. id .. "]",
    { request_id = id })
end

-- job:result() -> the model's output table, or nil, err (code NOT_READY while running).
function Job:result()
  runtime.may_wait(2)
  local out, err = retry.run(self.net:retry_context(self, false), "result", function(left)
    return self:_result_once(left)
  end)
  if out == NOT_READY then return nil, not_ready(self.request_id) end
  return out, err
end

-- The failure a final status describes when the result call did not: COMPLETED with an
-- error, or a proxy's FAILED / CANCELLED / ERROR (whatever the result call then answered).
local function status_failure(self, st, res)
  local detail = st.error or (type(res) == "table" and (res.detail or res.error)) or st.status
  local etype = st.error_type or (type(res) == "table" and res.error_type) or nil
  if type(etype) ~= "string" then etype = nil end
  return errors.new("JOB_FAILED", string.format("job failed: %s%s [request %s]",
    errors.clean(type(detail) == "string" and detail or st.status), etype and (" (" .. errors.clean(etype, 100) .. ")") or "",
    self.request_id), { type = etype, request_id = self.request_id, detail = detail, state = st.status,
    outcome = true })
end

local function seconds_left(self)
  return self.deadline and (self.deadline - runtime.now()) or nil
end

-- Follows the status stream until a final status. Returns it; or nil, err when following
-- cannot go on at all (credential refused); or nil when the stream failed and polling should
-- take over. The stream lives at most until the job's deadline, keep-alive comments or not.
function Job:_stream()
  local c = self.client
  local u = with_logs(self.status_url, "/stream", c)
  local left = seconds_left(self)
  local t = http.start(runtime.loop(), self.net:request_options("stream", "GET", u, nil,
    { Accept = "text/event-stream" }, { sse = true, low_speed_limit = 1,
      -- in whole seconds, as libcurl takes them (a fractional stream_idle is rounded up)
      low_speed_time = math.max(1, math.min(math.ceil(c.stream_idle), 1 << 30)),
      timeout = left and math.max(1, math.floor(left * 1000)) or 0 }))
  if not t then return nil end
  -- Whatever ends this function (a callback that raises included) closes the stream.
  local guard <close> = setmetatable({}, { __close = function() t:close() end })
  -- Each event repeats the URLs, the metrics and every log line so far: of those the job reads
  -- only the new lines, so the rest never becomes Lua values. Unless on_status wants the
  -- whole status object.
  local keep = { status = true, queue_position = true, logs = 0, error = true, error_type = true }
  while true do
    local evs = runtime.await_events(t)
    local final
    for _, data in ipairs(evs) do
      data = self.net:scrub(data)  -- a server that echoes the credential: never shown or kept
      local st
      if not c.on_status then
        keep.logs = self.logs_seen
        st = json.decode_some(data, keep)
      else
        st = json.decode(data)
      end
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
      self.net:trace("stream", "GET", u, resp and resp.status or "failed", "falling back to polling")
      if resp and (resp.status == 401 or resp.status == 403) then
        return nil, errors.from_http(resp, "status stream", self.request_id)
      end
      return nil
    end
  end
end

-- Polls the status with a growing interval until a final status; or nil, err (the deadline,
-- or an answer no retry can mend). Failures of single polls are retried until the deadline.
function Job:_poll()
  local c = self.client
  local interval = c.poll_interval
  local u = with_logs(self.status_url, nil, c)
  local ctx = self.net:retry_context(self, true)
  while true do
    local st, err = retry.run(ctx, "status", function(left) return self:_status_once(u, left) end)
    if not st then return nil, err end
    if not RUNNING[st.status] then return st end
    local left = seconds_left(self)
    if left and left <= interval then
      return nil, ctx.on_deadline("status", errors.new("RUNNING", "the job was still " .. st.status))
    end
    if self.finished:wait(runtime.now() + interval) then return nil end
    interval = math.min(interval * 1.5, c.max_poll_interval)
  end
end

-- The end of the job for this run. `outcome` says whether the server declared it (then the
-- lifecycle records it) or only this run's following ended (the job stays accepted).
function Job:_finish(output, err)
  if self.finished.set then return end
  self.client.live[self] = nil
  if self.quiet_cancel and not output and lifecycle.cancelled(err) then
    -- an earlier run's cancel took: client.send sends it anew; nothing is recorded or told
    self.error = err
    if self.holds_slot then
      self.holds_slot = false
      self.client.slots:release()
    end
    return self.finished:fire()
  end
  self.output, self.error = output, err
  if output and self.sent_mono then  -- how long this client's jobs take (a lost submit's wait)
    local took, c = runtime.now() - self.sent_mono, self.client
    if took > (c.longest_job or 0) then c.longest_job = took end
  end
  local life = self.life
  if life then
    if output then life:finished(self, output)
    elseif err and err.outcome then life:failed(self, err) end
  end
  if self.holds_slot then
    self.holds_slot = false
    self.client.slots:release()
  end
  self.finished:fire()
  events.emit("finished", self)
  if self.client.on_finish then events.call("on_finish", self.client.on_finish, self) end
end

-- Ends this run's following of a job the server may still run: what the user can do.
local function following_ended(self, err)
  err = err or errors.new("INTERNAL", "following the job failed")
  if self.life and self.life.journal then
    err.message = err.message .. "; the job stays in the journal and a new run follows it by its id"
  else
    err.message = err.message .. "; it may still finish: editflow result " .. self.request_id
  end
  return err
end

-- Starts the watcher task (once). Submitted jobs start it at once; a job found again by its
-- id starts it when first waited for.
function Job:_watch()
  if self.watcher or self.finished.set then return end
  self.client.live[self] = true
  self.deadline = self.deadline or (runtime.now() + self.client.job_timeout)
  self.watcher = runtime.spawn(self._run, self)
  self.watcher.name = self.request_id
  runtime.spawn(function()  -- the job's own deadline: cancel it and say so
    if self.finished:wait(self.deadline) then return end
    local limit = self.client.job_timeout
    self.deadline = runtime.now() + M.CANCEL_GRACE
    local ok = self:cancel()
    local err = errors.new("TIMEOUT", string.format("job did not finish within %g s (job_timeout); %s [request %s]",
      limit, ok and "cancel requested" or "the cancel was not confirmed", self.request_id),
      { request_id = self.request_id })
    if ok and self.life and self.life.journal then
      err.message = err.message .. "; a new run follows it by its id: its result is kept if it "
        .. "finished anyway, else it is sent anew"
    else
      err = following_ended(self, err)
    end
    self:_finish(nil, err)
  end)
end

-- The watcher task's body: follow, then fetch the result; passing failures are retried until
-- the deadline, which the task above enforces.
function Job:_run()
  local ok, e = pcall(function()
    local c = self.client
    local streaming = c.follow == "stream"
    local rounds = 0
    while not self.finished.set do
      local st, err
      if streaming then
        st, err = self:_stream()
        streaming = false
      end
      if not st and not err then st, err = self:_poll() end
      if self.finished.set then return end
      -- The deadline's own task cancels the job and reports it; this one only stops.
      if (not st and err and err.code == "TIMEOUT") then return self.finished:wait() end
      if not st then return self:_finish(nil, following_ended(self, err)) end
      local res, rerr = retry.run(self.net:retry_context(self, true), "result", function(left)
        return self:_result_once(left)
      end)
      if self.finished.set then return end
      if res and res ~= NOT_READY then
        -- The result call decides (SPEC §1): an output with images is a success whatever the
        -- final status said; a status that ended in error with no output is a failure.
        local has_output = type(res.images) == "table"
        if lifecycle.ended_in_error(st, res) then
          return self:_finish(nil, status_failure(self, st, res))
        end
        if has_output and #res.images > c.max_images then  -- our limit, not the job's outcome
          return self:_finish(nil, following_ended(self, errors.new("TOO_MANY_IMAGES", string.format(
            "the result holds %d images, over the limit of %d (max_images) [request %s]", #res.images,
            c.max_images, self.request_id), { request_id = self.request_id })))
        end
        return self:_finish(res)
      elseif not res then
        if rerr.outcome then return self:_finish(nil, rerr) end
        if rerr.code == "TIMEOUT" then return self.finished:wait() end
        return self:_finish(nil, following_ended(self, rerr))
      end
      -- Ended, but the result says "still running": follow again, with a growing wait.
      rounds = rounds + 1
      self.finished:wait(runtime.now() + math.min(c.poll_interval * 1.5 ^ rounds, c.max_poll_interval))
    end
  end)
  if not ok then  -- a bug must not leave the job waiting forever
    self:_finish(nil, following_ended(self, errors.new("INTERNAL", "editflow: following the job failed: "
      .. tostring(e), { request_id = self.request_id })))
  end
end

-- job:wait([{timeout=seconds}]) -> result, or nil, err.
-- On a client deadline the job is cancelled and TIMEOUT returned.
function Job:wait(opts)
  if not self.finished.set then runtime.may_wait(2) end
  local timeout = opts and opts.timeout
  if timeout ~= nil and (type(timeout) ~= "number" or timeout <= 0) then
    error("timeout must be a positive number of seconds", 2)
  end
  self:_watch()
  if not self.finished:wait(timeout and (runtime.now() + timeout)) then
    local ok = self:cancel()
    return nil, errors.new("TIMEOUT", string.format("job did not finish within %g s; %s [request %s]",
      timeout, ok and "cancel requested" or "the cancel was not confirmed", self.request_id),
      { request_id = self.request_id })
  end
  if self.output then return self.output end
  return nil, self.error
end

-- job:cancel() -> "CANCELLATION_REQUESTED", or nil, err (code ALREADY_COMPLETED, NOT_FOUND, ...).
-- Bounded by the job's deadline (plus a short grace once it has passed).
function Job:cancel()
  runtime.may_wait(2)
  local id = self.request_id
  local deadline = self.deadline and math.max(self.deadline, runtime.now() + M.CANCEL_GRACE)
    or (runtime.now() + self.client.timeout)
  local resp, err = self.net:call("cancel", "PUT", self.cancel_url, nil, nil, id,
    { deadline = deadline, budget = self.budget, request_id = id })
  if not resp then return nil, err end
  local doc = json.decode(resp.body)
  local status = type(doc) == "table" and doc.status
  if resp.status >= 200 and resp.status <= 299 then
    if self.life then self.life:cancel_requested(self) end
    return type(status) == "string" and status or "CANCELLATION_REQUESTED"
  end
  if status == "ALREADY_COMPLETED" or status == "NOT_FOUND" then
    return nil, errors.new(status, string.format("cancel: %s [request %s]",
      status == "ALREADY_COMPLETED" and "the job had already completed" or "no such request", id),
      { status = resp.status, request_id = id })
  end
  return nil, errors.from_http(resp, "cancel", id)
end

-- Paths an earlier run saved for this job, if they are all still in this folder as saved.
local function saved_before(self, dir)
  return self.from_journal and save.reused(self.paths, self.files, dir) or nil
end

-- job:save(dir [, {name=, timeout=}]) -> list of saved paths, or nil, err, paths saved before
-- the failure. Never replaces a file this job did not write (editflow.save).
function Job:save(dir, opts)
  if type(dir) ~= "string" or dir == "" then error("job:save expects a folder path", 2) end
  opts = opts or {}
  local before = saved_before(self, dir)
  if before then return before end
  runtime.may_wait(2)  -- downloads wait: refused before any starts
  local res = self.output
  if not res then
    local err
    res, err = self:wait { timeout = opts.timeout }
    if not res then return nil, err, {} end
  end
  local c = self.client
  -- Downloads are bounded by the job's deadline when it is still ahead, else by their own.
  local deadline = self.deadline
  if not deadline or deadline - runtime.now() < 1 then
    deadline = runtime.now() + (opts.timeout or opts.download_timeout or 300)
  end
  local jr = self.life and self.life.journal
  local paths, err, partial, files = save.save(runtime.loop(), res, dir, {
    name = opts.name or self.request_id, max_bytes = c.max_image_bytes, max_images = c.max_images,
    low_speed_time = c.low_speed_time,
    request_id = self.request_id, retry = self.net:retry_context(self, false, deadline),
    slots = c.downloads, blob_dir = jr and jr:blob_dir(), own = self.paths, own_files = self.files,
    made = c.made_dirs,
  })
  self.paths, self.files = paths or partial, files
  if paths then
    if self.life then self.life:saved(self, paths, files) end
    events.emit("saved", self, paths)
  end
  if c.on_saved then events.call("on_saved", c.on_saved, self, paths, err) end
  return paths, err, partial
end

M._methods = Job  -- for tests and the fuzz harness (tests/fuzz/fuzz_json.c)

return M
