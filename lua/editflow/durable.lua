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
-- group's owner: g.on_synced(target) after a sync covered tickets up to target, and
-- g.on_failed(target) -> the last ticket to fail (the owner may have to undo more than the
-- sync covered, like a journal cut back to its durable end).
function M.group(start, in_place)
  return setmetatable({ start = start, in_place = in_place, made = 0, synced = 0, syncs = 0,
    busy = false, fails = {}, turn = runtime.signal() }, Group)
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
    self.fails[#self.fails + 1] = { lo = self.synced + 1, hi = hi, err = err }  -- kept: rare
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

-- g:wait(ticket) -> true once what the ticket stands for is durable | nil, message.
function Group:wait(ticket)
  while self.synced < ticket do
    if not runtime.can_wait() then
      local target = self.made
      self.syncs = self.syncs + 1
      local ok, err = self.in_place()
      settle(self, target, ok, err)
    elseif self.busy then
      self.turn:wait()
    else
      self.busy = true
      self.syncs = self.syncs + 1  -- how many syncs it took (a test and the benchmark read it)
      local target, turn = self.made, self.turn
      local ok, okr, err = pcall(function() return finish(self.start()) end)
      self.busy = false
      self.turn = runtime.signal()
      -- Settled only on the op's own answer. An error raised while waiting (a signal's
      -- "interrupted", a closed loop) says nothing about the sync, which may well have worked:
      -- nothing is failed or cut then, and the next waiter starts another sync.
      local sok, serr = true, nil
      if ok then sok, serr = pcall(settle, self, target, okr, err) end
      turn:fire()  -- whatever happened, nobody stays parked on this turn
      if not ok then error(okr, 0) end
      if not sok then error(serr, 0) end
    end
  end
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

-- durable.write(path, bytes) -> true | nil, message, "FILE_WRITE": bytes into a new file
-- at path (replacing it), fsynced (the folder is the caller's, as for commit).
function M.write(path, bytes)
  if not runtime.can_wait() then return core.write_file(path, bytes) end
  return finish(runtime.loop():write(path, bytes))
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

-- log:close([listener]): this user is done with it; the file closes with the last one.
function Log:close(l)
  if l then self.listeners[l] = nil end
  self.users = self.users - 1
  if self.users <= 0 and self.file then
    self.file:close()
    self.file = nil
    if logs[self.path] == self then logs[self.path] = nil end
  end
end

return M
