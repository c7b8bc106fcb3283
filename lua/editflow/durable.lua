-- editflow.durable: the one owner of "it is on disk". Every fsync and fdatasync of a run goes
-- through here and runs off the loop's thread (the engine's disk workers, ef_disk.c), so the
-- loop never stops for the disk; a task that needs its data durable waits for it like for a
-- transfer, and every other job goes on meanwhile.
--
-- Group commit, as databases do it: whatever many writers made since the last sync (journal
-- records, names in a folder) is made durable by one fdatasync or one folder fsync. A
-- writer takes a ticket after its write; if no sync is running, it starts one covering
-- everything written so far; if one is running, it waits for it and then for the next, which
-- covers its write. A sync that fails fails every ticket it covered.
--
-- Where a caller may not wait (a host's event loop owns editflow's loop and the call comes
-- from outside a task), the same work is done in place, on the caller's thread: correct,
-- only not concurrent.
local core = require "editflow.core"
local runtime = require "editflow.runtime"

local M = {}

-- Waits for a disk op started on the runtime's loop. -> true | nil, message, code
local function finish(op, err, code)
  if not op then return nil, err, code end
  runtime.await(op)
  local ok, rerr, rcode = op:result()
  op:close()
  return ok, rerr, rcode
end

-- ---- group commit ----

local Group = {}
Group.__index = Group

-- durable.group(start [, in_place]) -> group. start() -> op | nil, message starts one sync
-- on the loop; in_place() -> true | nil, message does it on this thread. The hooks of the
-- group's owner: g.on_synced(target) after a sync covered tickets up to target,
-- g.on_failed(target) -> the last ticket to fail (the owner may have to undo more than the
-- sync covered, like a journal cut back to its durable end), g.on_idle() once nothing is
-- running and every ticket is settled.
--
-- At most one sync of a group runs at a time, and every sync is settled by its own answer,
-- exactly once: two syncs of one file at once could each see only part of a write-back
-- error (the kernel reports it once), so one could say "durable" for what the other lost.
function M.group(start, in_place)
  return setmetatable({ start = start, in_place = in_place, made = 0, synced = 0, syncs = 0,
    fails = {}, turn = runtime.signal() }, Group)
end

-- A ticket for what was just written.
function Group:mark()
  self.made = self.made + 1
  return self.made
end

local function settle(self, target, ok, err)
  if ok then
    if target > self.synced then
      if self.on_synced then self.on_synced(target) end
      self.synced = target
    end
    return
  end
  local hi = self.on_failed and self.on_failed(target) or target
  if hi > self.synced then
    local last = self.fails[#self.fails]
    if last and last.hi == self.synced and last.err == err then
      last.hi = hi  -- one range for a run of failures (a folder whose fsync always fails)
    else
      self.fails[#self.fails + 1] = { lo = self.synced + 1, hi = hi, err = err }
    end
    self.synced = hi
  end
end

local function outcome(self, ticket)
  for i = #self.fails, 1, -1 do
    local f = self.fails[i]
    if ticket >= f.lo and ticket <= f.hi then return nil, f.err end
  end
  return true
end

-- Settles the running op with its answer and wakes whoever waits for the next turn.
local function settle_op(self, ok, err)
  local op, target, turn = self.op, self.op_target, self.turn
  self.op, self.op_target = nil, nil
  self.turn = runtime.signal()
  -- Closed once the loop reported it; one settled by a blocking wait stays in the loop's set
  -- until reported (a task may be waiting for it there) and is collected after.
  if op:done() then op:close() end
  local sok, serr = pcall(settle, self, target, ok, err)
  turn:fire()  -- whatever happened, nobody stays parked on this turn
  if not sok then error(serr, 0) end
end

local function idle(self)
  if self.on_idle and not self.op and self.synced >= self.made then self.on_idle() end
end

-- Starts a sync covering every ticket so far; one that cannot be started on the loop runs in
-- place (the records are in the file; only the worker was not to be had).
local function begin(self)
  self.syncs = self.syncs + 1  -- how many syncs it took (a test and the benchmark read it)
  local target = self.made
  local op = self.start()
  if op then
    self.op, self.op_target = op, target
    return
  end
  local ok, err = self.in_place()
  local turn = self.turn
  self.turn = runtime.signal()
  local sok, serr = pcall(settle, self, target, ok, err)
  turn:fire()
  if not sok then error(serr, 0) end
end

-- g:wait(ticket) -> true once what the ticket stands for is durable | nil, message.
function Group:wait(ticket)
  while self.synced < ticket do
    local op = self.op
    if op and not runtime.can_wait() then
      settle_op(self, op:wait())  -- its answer first, blocking this thread: never two at once
    elseif op and self.awaiting then
      self.turn:wait()
    elseif op then
      -- Nobody is waiting for the running op (none yet, or its waiter was interrupted): this
      -- caller does. An error raised meanwhile (a signal) leaves it running, to be settled by
      -- the next waiter with its own answer.
      self.awaiting = true
      local ok, err = pcall(runtime.await, op)
      self.awaiting = false
      if not ok then
        -- those parked on this turn come back round: one of them waits for the op instead
        local turn = self.turn
        self.turn = runtime.signal()
        turn:fire()
        error(err, 0)
      end
      if self.op == op then settle_op(self, op:result()) end
    elseif not runtime.can_wait() then
      self.syncs = self.syncs + 1
      local target = self.made
      settle(self, target, self.in_place())
    else
      begin(self)
    end
  end
  idle(self)
  return outcome(self, ticket)
end

-- ---- folders: the names made in them ----

local folders = {}  -- path -> group

-- durable.folder(dir) -> true | nil, message: every name made in dir so far is on disk (one
-- fsync of the folder for all who ask at about the same time).
function M.folder(dir)
  local g = folders[dir]
  if not g then
    g = M.group(function() return runtime.loop():sync_dir(dir) end,
      function() return core.fsync_dir(dir) end)
    folders[dir] = g
  end
  return g:wait(g:mark())
end

-- How many folder fsyncs this process made (the benchmark reports it per job).
function M.folder_syncs()
  local n = 0
  for _, g in pairs(folders) do n = n + g.syncs end
  return n
end

-- ---- files: data on disk, then the name ----

-- durable.commit(transfer, path [, "new"]) -> true | nil, message, "EXISTS" | "FILE_WRITE":
-- a finished download's file, fsynced and named path (the folder is the caller's: see
-- durable.folder). "new" never replaces path: EXISTS keeps the file for another name.
function M.commit(tr, path, mode)
  if not runtime.can_wait() then return tr:commit(path, mode) end
  local op, err, code = runtime.loop():commit(tr, path, mode)
  return finish(op, err, code)
end

-- durable.write(path, bytes [, "new"]) -> true | nil, message, "EXISTS" | "FILE_WRITE": bytes
-- into a new file at path (replacing it), fsynced (the folder is the caller's, as for commit).
-- "new" never replaces path: EXISTS, as for commit.
function M.write(path, bytes, mode)
  if not runtime.can_wait() then
    if mode ~= "new" then return core.write_file(path, bytes) end
    -- the same op, waited for on this thread; it stays in the loop's set until the loop
    -- reports it, and is collected after (as a group's op settled by a blocking wait)
    local op, err, code = runtime.loop():write(path, bytes, mode)
    if not op then return nil, err, code end
    return op:wait()
  end
  return finish(runtime.loop():write(path, bytes, mode))
end

-- durable.digest(path) -> the hex SHA-256 of the file's bytes, its size | nil, message: read
-- on a disk worker (a large download read and hashed here would hold the loop meanwhile).
function M.digest(path)
  if not runtime.can_wait() then return core.sha256_file(path) end
  local op, err = runtime.loop():digest(path)
  if not op then return nil, err end
  runtime.await(op)
  local sum, size_or_err = op:digest()
  op:close()
  return sum, size_or_err
end

-- durable.tempfile(dir) -> what loop:request{file=} takes: a finished loop:tempfile op (the
-- download's temporary file made on a disk worker: creating a file in a folder of thousands
-- waits on the filesystem's journal, which the loop's thread must not) | nil, message (as
-- request{file = dir} words it: "dir: reason"). Where the caller may not wait, or no host owns
-- the loop, dir itself: the request makes the file in place. The request takes the file; the caller closes the op
-- (one no request took removes its file then).
function M.tempfile(dir)
  -- Only a host's thread is worth the worker's round trip (a turn and a wake-up per download):
  -- editflow driving its own loop makes the file in place, as it always did.
  if not runtime.hosted() or not runtime.can_wait() then return dir end
  local op, err = runtime.loop():tempfile(dir)
  if not op then return nil, err end
  runtime.await(op)
  local ok, terr = op:result()
  if not ok then
    op:close()
    return nil, terr
  end
  return op
end

-- ---- append-only logs (the journal) ----

local Log = {}
Log.__index = Log

local logs = {}  -- path -> log: one per file in a Lua state (one durable end, one group)

-- Whether the file's byte before `size` is not a newline (a torn last line: the next record
-- must start on a line of its own).
local function torn_at(path, size)
  if size <= 0 then return false end
  local f = io.open(path, "rb")
  if not f then return false end
  f:seek("set", size - 1)
  local c = f:read(1)
  f:close()
  return c ~= "\n"
end

-- durable.log(path) -> log | nil, message: a file records are appended to, each durable
-- before log:wait(ticket) returns, many records to one fdatasync. Every caller on the same
-- path in this Lua state shares one log (two journals on one folder must agree on where the
-- file's durable end is); each closes it once.
function M.log(path)
  local self = logs[path]
  if self then
    self.users = self.users + 1
    return self
  end
  local file, err = core.open_log(path)
  if not file then return nil, err end
  local size = file:size() or 0
  self = setmetatable({ path = path, file = file, ends = {}, durable_end = size, users = 1,
    listeners = {}, pending_newline = torn_at(path, size) }, Log)
  self.group = M.group(function() return runtime.loop():sync(file, "data") end,
    function() return file:sync() end)
  -- The last user closed it while syncs were due: the file closes once they are settled.
  self.group.on_idle = function()
    if self.users <= 0 and self.file then
      self.file:close()
      self.file = nil
      if logs[path] == self then logs[path] = nil end
    end
  end
  self.group.on_synced = function(target)
    self.durable_end = self.ends[target] or self.durable_end
    for t in pairs(self.ends) do if t <= target then self.ends[t] = nil end end
    for l in pairs(self.listeners) do l.on_durable(target) end
  end
  -- A failed fdatasync leaves every record since the last good one in doubt (the kernel may
  -- have dropped them): cut the file back to its durable end, failing all of them.
  self.group.on_failed = function(_)
    local upto = self.group.made
    self.ends = {}
    for l in pairs(self.listeners) do l.on_cut(upto) end
    -- If even the cut fails the file may end in a partial record: the next one starts on a
    -- line of its own, and a reader skips the torn line. The records stay failed either way.
    self.pending_newline = not file:cut(self.durable_end) or torn_at(path, self.durable_end)
    return upto
  end
  logs[path] = self
  return self
end

-- log:listen(l): l.on_durable(upto) once the tickets up to upto are durable, l.on_cut(upto)
-- when those not yet durable up to upto were cut away.
function Log:listen(l) self.listeners[l] = true end

-- log:write(line) -> ticket | nil, message, code: the line is in the file (not yet durable:
-- log:wait(ticket)), on a line of its own. On failure the file still ends where it did.
function Log:write(line)
  if self.pending_newline then line = "\n" .. line end
  local size, err, code = self.file:append(line)
  if not size then return nil, err, code end
  self.pending_newline = false
  local t = self.group:mark()
  self.ends[t] = size
  return t
end

function Log:wait(ticket) return self.group:wait(ticket) end

-- log:close([listener]): this user is done with it. The file closes with the last user,
-- once every sync due is settled (a task may still wait for its record).
function Log:close(l)
  if l then self.listeners[l] = nil end
  self.users = self.users - 1
  if self.users <= 0 then
    local g = self.group
    if not g.op and g.synced >= g.made then g.on_idle() end
  end
end

return M
