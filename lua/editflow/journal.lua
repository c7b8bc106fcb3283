-- editflow.journal: what was paid for, written down before it can be lost.
--
-- One append-only file per output folder, `.editflow-journal.jsonl`, one JSON record a line,
-- each on disk (fdatasync) before the call that follows it:
--   {"t":"intent","key":K}                        before a submit is sent
--   {"t":"accepted","key":K,"request_id":..,"status_url":..,"response_url":..,"cancel_url":..}
--   {"t":"refused","key":K}                       the server answered the submit with a refusal
--   {"t":"done","key":K,"request_id":..,"output":{...}}
--   {"t":"failed","key":K,"request_id":..,"error":{code,message,type}}
--   {"t":"saved","key":K,"paths":[...]}
--   {"t":"cancel","key":K,"request_id":..}        Ctrl-C asked the queue to cancel it
-- A job's key is a fingerprint of its endpoint and the exact body sent, plus how many equal
-- bodies came before it in this run, so the same script run again finds the same keys.
-- Reading tolerates a torn last line (a crash in the middle of a write).
-- What cannot be known: an "intent" with nothing after it. The submit may never have left,
-- or the server may have accepted it just before the crash. editflow submits such a job again
-- and says so on stderr: a job is never silently lost, and the one way to pay twice is named.
local core = require "editflow.core"
local json = require "editflow.json"

local M = {}

M.FILE = ".editflow-journal.jsonl"

local Journal = {}
Journal.__index = Journal

-- journal.open(dir) -> journal (folder created if missing); raises if it cannot be read.
function M.open(dir)
  assert(core.mkdir(dir))
  local path = (dir:sub(-1) == "/" and dir or dir .. "/") .. M.FILE
  local self = setmetatable({ path = path, jobs = {}, seen = {}, torn = 0 }, Journal)
  local f = io.open(path, "rb")
  if f then
    local size = f:seek("end")
    if size and size > 0 then
      f:seek("set", size - 1)
      -- a torn last line: the next record must start on a line of its own
      self.pending_newline = f:read(1) ~= "\n"
    end
    f:seek("set", 0)
    for line in f:lines() do
      local rec = json.decode(line)
      if type(rec) == "table" and type(rec.key) == "string" and type(rec.t) == "string" then
        self:_apply(rec)
      elseif line ~= "" then
        self.torn = self.torn + 1  -- a line cut short by a crash: what it said never happened
      end
    end
    f:close()
  end
  return self
end

function Journal:_apply(rec)
  local j = self.jobs[rec.key] or {}
  self.jobs[rec.key] = j
  local t = rec.t
  if t == "intent" then
    j.state = "intent"
  elseif t == "accepted" then
    j.state, j.request_id = "accepted", rec.request_id
    j.status_url, j.response_url, j.cancel_url = rec.status_url, rec.response_url, rec.cancel_url
  elseif t == "refused" or t == "failed" then
    j.state, j.error = "failed", rec.error
  elseif t == "done" then
    j.state, j.output, j.request_id = "done", rec.output, rec.request_id or j.request_id
  elseif t == "saved" then
    j.paths = rec.paths
  elseif t == "cancel" then
    j.cancel_requested = true
  end
end

-- The key of a body about to be sent (the n-th equal body of this run gets suffix n).
function Journal:key(endpoint, body)
  local fp = core.hash(endpoint .. "\n" .. body)
  local n = (self.seen[fp] or 0) + 1
  self.seen[fp] = n
  return fp .. "-" .. n
end

function Journal:get(key) return self.jobs[key] end

-- The key the next equal body would get, without counting it; `ahead` (a table the caller
-- keeps, fingerprint -> count) accounts for equal bodies planned but not yet sent.
function Journal:peek_key(endpoint, body, ahead)
  local fp = core.hash(endpoint .. "\n" .. body)
  local extra = 0
  if ahead then
    extra = ahead[fp] or 0
    ahead[fp] = extra + 1
  end
  return fp .. "-" .. ((self.seen[fp] or 0) + extra + 1)
end

-- Appends one record durably; raises if the journal cannot be written (nothing may be sent
-- that is not written down first).
function Journal:append(rec)
  local line = json.encode(rec) .. "\n"
  if self.pending_newline then line = "\n" .. line end
  local ok, err = core.append_file(self.path, line)
  self.pending_newline = self.pending_newline and not ok
  if not ok then error("editflow: cannot write the journal: " .. tostring(err), 0) end
  self:_apply(rec)
end

return M
