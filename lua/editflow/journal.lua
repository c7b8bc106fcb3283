-- editflow.journal: the durable file under a folder's jobs; editflow.lifecycle decides what
-- its records mean. One append-only file per output folder, `.editflow-journal.jsonl`, one
-- JSON record a line, each on disk (fdatasync) before the step that follows it -- records
-- of many jobs written at about the same time share one fdatasync, run off the loop's thread
-- (editflow.durable); a record counts, in memory too, only once it is durable:
--   {"t":"intent","key":K}                        before a submit is sent
--   {"t":"accepted","key":K,"request_id":..,"status_url":..,"response_url":..,"cancel_url":..}
--   {"t":"refused","key":K,"error":{..}}          the server certainly did not take the job
--   {"t":"unknown","key":K,"error":{..}}          the submit may have created a job: no answer
--   {"t":"done","key":K,"request_id":..,"output":{...}}      the job's result
--   {"t":"failed","key":K,"request_id":..,"error":{..}}      the job's outcome was an error
--   {"t":"cancel","key":K,"request_id":..}        the queue was asked to cancel it
--   {"t":"saved","key":K,"paths":[...],"files":[{"size":N,"sha256":H},...]}  (files: one a path)
--   {"t":"complete"}                              a run finished all it set out to do
--   {"t":"upload","sha256":H,"file_url":..,"storage":..,"at":..}  a local file in fal storage
-- Durability: a failed append (a full disk) is cut back by the engine so the file always ends
-- on a record boundary; a line torn by a crash, or glued to the next record by an older
-- editflow, is repaired on reading without losing the records after it.
-- One process at a time per folder: open() takes a lock (flock on `.editflow.lock`, released
-- when the process ends however it ends) and, holding it, removes temporary files that a
-- killed run left behind.
local core = require "editflow.core"
local durable = require "editflow.durable"
local json = require "editflow.json"
local errors = require "editflow.errors"

local M = {}

M.FILE = ".editflow-journal.jsonl"
M.LOCK = ".editflow.lock"
M.BLOBS = ".editflow-blobs"
M.MAX_RECORD = 1024 * 1024   -- a record over this is refused (data: images go to files)

local Journal = {}
Journal.__index = Journal

-- Folders this Lua state holds the lock of: a second journal on the same folder in the same
-- process shares it (flock would refuse a second open of the file even in one process).
local locks = {}

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

-- Temporary files of the engine's file sink (".editflow-XXXXXX.part") and atomic writes
-- (".NAME.XXXXXX.part"), see ef_xfer.c and ef_fs.c.
local function is_temp(name)
  return name:match("^%.editflow%-%w+%.part$") ~= nil or name:match("^%..+%.%w%w%w%w%w%w%.part$") ~= nil
end

local function clean_temps(dir)
  for _, name in ipairs(core.listdir(dir) or {}) do
    if is_temp(name) then os.remove(join(dir, name)) end
  end
end

-- The records in one line: normally one; a torn record glued to the next one (what an older
-- editflow left after a failed append) gives the ones that still read.
-- Whether a record found inside a damaged line has the shape of one editflow writes (a line
-- can hold server data with any shape, a nested object with "t" and "key" included).
local KINDS = { intent = true, accepted = true, refused = true, unknown = true, done = true,
  failed = true, cancel = true, saved = true }
local function plausible(r)
  if type(r) ~= "table" or type(r.t) ~= "string" then return false end
  -- never "complete" (a nested {"t":"complete"} in server output must not end a crashed
  -- run: its seedless jobs would be sent again; a real one lost only means reuse over resample)
  if r.t == "upload" then return type(r.sha256) == "string" and r.sha256:match("^%x+$") ~= nil end
  return KINDS[r.t] and type(r.key) == "string" and r.key:match("^%x+%-%d+[%-r%d]*$") ~= nil
end

-- The records in one line: normally one; a torn record glued to the next one (what an older
-- editflow left after a failed append) gives the last one that still reads. A line the file
-- ends with, unterminated, is torn by a crash and never repaired.
local function records_of(line, terminated)
  local rec = json.decode(line)
  if type(rec) == "table" then return { rec } end
  if not terminated then return {} end
  local from = 1
  while true do  -- keys are sorted, so a record may start with any of them
    local at = line:find('{"', from + 1, true)
    if not at then break end
    local r = json.decode(line:sub(at))
    if plausible(r) then return { r } end
    from = at
  end
  return {}
end

-- journal.open(dir [, {lock = false}]) -> journal; raises an error (errors.new: code FOLDER, or
-- LOCKED when another editflow process holds it) naming the folder when it cannot be used.
function M.open(dir, opts)
  local ok, merr = core.mkdir(dir)
  if not ok then error(errors.new("FOLDER", "editflow: cannot use the folder " .. dir .. ": " .. tostring(merr)), 0) end
  local self = setmetatable({ dir = dir, path = join(dir, M.FILE), jobs = {}, seen = core.fpmap(),
    ids = {}, finished = core.fpmap(), uploads = {}, torn = 0, epoch = 0 }, Journal)
  local lockpath = join(dir, M.LOCK)
  if not (opts and opts.lock == false) and locks[lockpath] then
    self.lock = locks[lockpath]
  elseif not (opts and opts.lock == false) then
    local lock, lerr, code = core.lock(lockpath)
    if not lock then
      if code == "LOCKED" then
        error(errors.new("LOCKED", string.format("editflow: the folder %s is in use by another "
          .. "editflow run (%s); wait for it to end, or choose another output folder", dir, tostring(lerr))), 0)
      end
      error(errors.new("FOLDER", "editflow: cannot lock the folder " .. dir .. ": " .. tostring(lerr)), 0)
    end
    self.lock, locks[lockpath] = lock, lock
    clean_temps(dir)
  end
  local f = io.open(self.path, "rb")
  if f then
    -- opts.upto: read only that many bytes (what is durable, when a journal reads back its own),
    -- whole lines of it
    local lines = f:lines("L")
    if opts and opts.upto then lines = ((f:read(opts.upto) or ""):match("^.*\n") or ""):gmatch("[^\n]*\n") end
    for raw in lines do
      local terminated = raw:sub(-1) == "\n"
      local line = terminated and raw:sub(1, -2) or raw
      local recs = records_of(line, terminated)
      if #recs == 0 and line ~= "" then self.torn = self.torn + 1 end
      for _, rec in ipairs(recs) do
        if rec.t == "complete" then
          self.epoch = self.epoch + 1
        elseif rec.t == "upload" then
          if type(rec.sha256) == "string" then self.uploads[rec.sha256] = rec end
        elseif type(rec.key) == "string" and type(rec.t) == "string" then
          self:_apply(rec)
        end
      end
    end
    f:close()
  end
  return self
end

-- The key of a request id in `ids` and `finished`: its 64-bit fingerprint, an integer, so a
-- finished job of a long run costs 12 bytes there (core.fpmap), not a string.
local function id_key(id) return core.hash64(id) end
M.id_key = id_key

-- journal:owner(h) -> the key of the job that was given the request id of fingerprint h, 0
-- when that job finished in this process (only the fingerprint is kept), or nil: never seen.
function Journal:owner(h)
  local key = self.ids[h]
  if key == nil and self.finished:get(h) then return 0 end
  return key
end

-- journal:claim(h, key): the request id of fingerprint h is the job key's from now on.
function Journal:claim(h, key) self.ids[h] = key or true end

-- What a record written by this process leaves in memory. The process holds the job itself
-- (its Job, its output), so the journal keeps only what later calls ask of it -- which
-- request ids it has seen (a server repeating one is caught) and, while a job is in flight,
-- its state and id (a webhook for it) -- and a 100,000-job run's memory stays nearly flat: a
-- finished job leaves its id's and its body's fingerprints, 24 bytes. Records read from the
-- file keep everything (a new run reuses or follows them).
local function apply_live(self, rec)
  local t, key = rec.t, rec.key
  if t == "accepted" then
    if type(rec.request_id) == "string" then self.ids[id_key(rec.request_id)] = key end
    self.jobs[key] = { state = "accepted", request_id = rec.request_id }
  elseif t == "done" or t == "failed" then
    if type(rec.request_id) == "string" then  -- finished here: its fingerprint only
      local h = id_key(rec.request_id)
      self.ids[h] = nil
      self.finished:set(h, 0)
    end
    self.jobs[key] = nil
  elseif t == "intent" or t == "refused" or t == "unknown" then
    self.jobs[key] = nil
  end
end

-- Folds one record into the job's state (the last word wins, except that an outcome is never
-- undone by an older kind of record).
function Journal:_apply(rec)
  local j = self.jobs[rec.key] or {}
  self.jobs[rec.key] = j
  local t = rec.t
  if t == "intent" then
    j.state, j.sent_at, j.fp = "intent", rec.at, rec.fp  -- what finds it in fal's listing
  elseif t == "accepted" then
    j.state, j.request_id, j.cancel_requested = "accepted", rec.request_id, nil
    j.status_url, j.response_url, j.cancel_url = rec.status_url, rec.response_url, rec.cancel_url
    if type(rec.request_id) == "string" then self.ids[id_key(rec.request_id)] = rec.key end
  elseif t == "refused" then
    j.state, j.error = "refused", rec.error
  elseif t == "unknown" then
    j.state, j.error = "unknown", rec.error
  elseif t == "failed" then
    j.state, j.error = "failed", rec.error
  elseif t == "done" then
    j.state, j.output, j.request_id = "done", rec.output, rec.request_id or j.request_id
  elseif t == "saved" then
    j.paths, j.files = rec.paths, rec.files
  elseif t == "cancel" then
    j.cancel_requested = true
  end
end

-- The key of a body about to be sent: a fingerprint of endpoint and body, the how-many-th
-- equal body of this run it is, and -- for a job without a seed, whose every run gives a new
-- sample -- the number of runs that completed before, so a finished run's seedless jobs are
-- not replayed while an interrupted run's are. `ahead` (optional, caller-kept fingerprint ->
-- count) accounts for equal bodies planned but not yet sent; peek only looks.
local function make_key(self, endpoint, body, seeded, ahead, count)
  local h = core.hash64(endpoint .. "\n" .. body)
  local extra = 0
  if ahead then
    extra = ahead[h] or 0
    ahead[h] = extra + 1
  end
  local n = (self.seen:get(h) or 0) + extra + 1
  if count then self.seen:set(h, n) end
  local key = string.format("%016x-%d", h, n)
  if not seeded and self.epoch > 0 then key = key .. "-r" .. self.epoch end
  return key
end

function Journal:key(endpoint, body, seeded) return make_key(self, endpoint, body, seeded, nil, true) end
function Journal:peek_key(endpoint, body, seeded, ahead)
  return make_key(self, endpoint, body, seeded, ahead, false)
end

-- The journal's record of a key. After this process completed a run, its own records are
-- needed in full again (a seedless job of the next run may reuse or follow one): they are
-- read back from the file once.
function Journal:get(key)
  if self.reread then
    self.reread = false
    -- only what is durable: records still waiting for their sync are folded when it ends
    local fresh = M.open(self.dir, { lock = false, upto = self.log and self.log.durable_end })
    -- ids claimed here whose records are not durable yet stay claimed
    for h, v in pairs(self.ids) do if fresh.ids[h] == nil then fresh.ids[h] = v end end
    self.jobs, self.ids = fresh.jobs, fresh.ids
  end
  return self.jobs[key]
end

-- Records written and not yet durable are folded in, in the order written, once they are.
local function fold(self, rec)
  if rec.t == "complete" then
    self.epoch = self.epoch + 1
    self.reread = true
  elseif rec.t == "upload" then
    self.uploads[rec.sha256] = rec
  else
    apply_live(self, rec)
  end
end

local function open_log(self)
  local log, err = durable.log(self.path)
  if not log then return nil, err end
  self.log, self.pending, self.folded = log, {}, log.group.synced
  -- This journal's records only (another journal of this process may share the file).
  self.listener = {
    on_durable = function(upto)
      for t = self.folded + 1, upto do
        local rec = self.pending[t]
        if rec then self.pending[t] = nil fold(self, rec) end
      end
      self.folded = upto
    end,
    on_cut = function(upto)  -- a failed sync: these records are gone from the file
      for t = self.folded + 1, upto do self.pending[t] = nil end
      self.folded = upto
    end,
  }
  log:listen(self.listener)
  return log
end

-- Appends one record durably; waits (inside a task, letting other jobs run) until it is on
-- disk. -> true, or nil, message (the file still ends on a record).
function Journal:append(rec)
  local line = json.encode(rec) .. "\n"
  if #line > M.MAX_RECORD then
    return nil, string.format("journal record of %d bytes is over the limit of %d", #line, M.MAX_RECORD)
  end
  local log, err = self.log
  if not log then log, err = open_log(self) end
  local ticket
  if log then ticket, err = log:write(line) end
  if not ticket then return nil, "cannot write the journal " .. self.path .. ": " .. tostring(err) end
  self.pending[ticket] = rec
  local ok, serr = log:wait(ticket)
  if not ok then return nil, "cannot write the journal " .. self.path .. ": " .. tostring(serr) end
  return true
end

-- Where this journal keeps images that came inline (data: URIs), so records stay small.
function Journal:blob_dir() return join(self.dir, M.BLOBS) end

-- Releases the folder's lock (for every journal of this process on the folder).
function Journal:close()
  if self.log then self.log:close(self.listener) self.log = nil end
  if self.lock then
    self.lock:close()
    for k, l in pairs(locks) do if l == self.lock then locks[k] = nil end end
    self.lock = nil
  end
end

return M
