-- editflow.experiment.ratings: the people's verdicts on an experiment's images, kept in
-- DIR/ratings.json beside the manifest: {"<request_id>": {"stars": 1..5, "best": true|false,
-- "note": "text"}}, each field optional. The gallery exports such a file from the browser and
-- shows what the folder's file holds; `editflow rate DIR --import FILE` merges one in (merge
-- below); editflow.experiment.report averages the stars.
--
-- A merge never loses what the file held: an imported entry's fields overwrite the same
-- fields, the others stay; a field given as null removes that field, an entry given as null
-- removes the whole entry (the only ways to take a rating back). Nothing is written unless
-- every entry is valid, and the file is replaced atomically and durably (core.write_file:
-- a new file fsynced, renamed over the old, the folder fsynced).
local core = require "editflow.core"
local json = require "editflow.json"

local M = {}

M.FILE = "ratings.json"
M.NOTE_MAX = 2000  -- bytes of a note
M.FIELDS = { "best", "note", "stars" }
local FIELD = { stars = true, best = true, note = true }
local ACCEPTED = "stars (an integer 1..5), best (true or false), note (text up to 2000 bytes), each may be null to remove it"

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

local function is_object(v) return type(v) == "table" and getmetatable(v) == nil end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  return keys
end

-- Reads path: -> the object | nil, message, code ("MISSING", "INVALID").
M.MAX_BYTES = 64 * 1024 * 1024  -- bytes of a ratings file read at most

local function read_strict(path)
  if not core.file_stamp(path) then return nil, path .. " does not exist", "MISSING" end
  -- a regular file only, read without blocking and bounded (a FIFO or a device is refused)
  local text, rerr = core.read_file(path, M.MAX_BYTES)
  if not text then return nil, "cannot read " .. path .. ": " .. tostring(rerr), "INVALID" end
  local doc, err = json.decode(text)
  if not is_object(doc) then
    return nil, path .. " is not a JSON object keyed by request id (" .. (err or ("a JSON " .. (doc == nil
      and "null" or type(doc) == "table" and "array" or type(doc)))) .. ")", "INVALID"
  end
  return doc
end

-- ratings.read(dir) -> the folder's ratings ({} when it has none) [, warning]: a file that is
-- not a JSON object reads as no ratings, with a warning naming it (a report still works).
function M.read(dir)
  local doc, err, code = read_strict(join(dir, M.FILE))
  if doc then return doc end
  if code == "MISSING" then return {} end
  return {}, err
end

-- ---- nulls ----
-- editflow.json drops null members of objects (as absent), but here null means "remove". So
-- the text (already valid JSON: json.decode accepted it) is walked once more for the nulls of
-- the two levels that matter, the entries and their fields. The last member of a name wins,
-- as in the decoder.

local function null_members(text)
  local i, n = 1, #text
  local entries = {}  -- id -> { null = bool, fields = { name -> bool } }
  local function ws() i = text:find("[^ \t\r\n]", i) or n + 1 end
  local function str()  -- at the opening quote: -> the decoded string
    local j = i + 1
    while true do
      local q = text:find('["\\]', j)
      if text:byte(q) == 92 then j = q + 2 else
        local s = json.decode(text:sub(i, q))
        i = q + 1
        return s
      end
    end
  end
  local value
  local function members(depth, id)  -- at '{'
    i = i + 1
    ws()
    if text:byte(i) == 125 then i = i + 1 return end
    while true do
      local key = str()
      ws()
      i = i + 1  -- ':'
      ws()
      local is_null = text:sub(i, i + 3) == "null"
      if depth == 1 then
        entries[key] = entries[key] or { fields = {} }
        entries[key].null = is_null
      elseif depth == 2 and entries[id] then
        entries[id].fields[key] = is_null
      end
      value(depth + 1, key)
      ws()
      local c = text:byte(i)
      i = i + 1
      if c == 125 then return end  -- '}'
      ws()
    end
  end
  function value(depth, key)
    ws()
    local c = text:byte(i)
    if c == 123 then return members(depth, key) end
    if c == 34 then return str() end
    if c == 91 then  -- '[': its elements, none at a level that matters
      i = i + 1
      ws()
      if text:byte(i) == 93 then i = i + 1 return end
      while true do
        value(depth + 1)
        ws()
        local e = text:byte(i)
        i = i + 1
        if e == 93 then return end
      end
    end
    i = (text:find("[%s,%]}]", i) or n + 1)  -- a number, true, false, null
  end
  value(1)  -- the file's object is level 1: its members are the entries, theirs the fields
  return entries
end

-- ratings.parse(text) -> doc | nil, message: a ratings file's text, its nulls kept as
-- json.null (a removal); the entries are not checked here (ratings.check).
function M.parse(text)
  local doc, err = json.decode(text)
  if doc == nil then return nil, err end
  if not is_object(doc) then
    return nil, "expected a JSON object keyed by request id ({\"<request_id>\": {\"stars\": 1..5, "
      .. "\"best\": true, \"note\": \"...\"}}), got " .. (type(doc) == "table" and "an array" or ("a " .. type(doc)))
  end
  if not text:find("null", 1, true) then return doc end
  for id, e in pairs(null_members(text)) do
    if e.null then
      doc[id] = json.null
    elseif is_object(doc[id]) then
      for field, is_null in pairs(e.fields) do
        if is_null then doc[id][field] = json.null end
      end
    end
  end
  return doc
end

-- One entry's problem, or nil.
local function entry_problem(id, e)
  if e == json.null then return nil end
  if not is_object(e) then
    return string.format("%q must be an object with %s, got %s", id, ACCEPTED,
      type(e) == "table" and "an array" or json.encode(e) or type(e))
  end
  for _, k in ipairs(sorted_keys(e)) do
    if not FIELD[k] then
      return string.format("%q.%s is not a field of a rating (accepted: %s)", id, tostring(k), ACCEPTED)
    end
  end
  local s, b, note = e.stars, e.best, e.note
  if s ~= nil and s ~= json.null and not (math.type(s) == "integer" and s >= 1 and s <= 5) then
    return string.format("%q.stars must be an integer 1..5 (or null to remove it), got %s", id,
      json.encode(s) or tostring(s))
  end
  if b ~= nil and b ~= json.null and type(b) ~= "boolean" then
    return string.format("%q.best must be true or false (or null to remove it), got %s", id,
      json.encode(b) or tostring(b))
  end
  if note ~= nil and note ~= json.null then
    if type(note) ~= "string" then
      return string.format("%q.note must be text (or null to remove it), got %s", id, json.encode(note) or tostring(note))
    end
    if #note > M.NOTE_MAX then
      return string.format("%q.note must be at most %d bytes, got %d", id, M.NOTE_MAX, #note)
    end
  end
  return nil
end

-- ratings.check(doc [, known]) -> true | nil, message, messages: every entry valid (see the
-- top of this file), and with known (a set: request id -> true) every request id in it.
-- message names the first problem's request id and field and the values accepted; messages
-- lists them all, in request id order.
function M.check(doc, known)
  if not is_object(doc) then
    local msg = "ratings must be a JSON object keyed by request id, got " .. (type(doc) == "table" and "an array" or type(doc))
    return nil, msg, { msg }
  end
  local problems = {}
  for _, id in ipairs(sorted_keys(doc)) do
    local p
    if type(id) ~= "string" or id == "" then
      p = "a rating's key must be a request id (text), got " .. tostring(id)
    elseif known and not known[id] then
      p = string.format("%q is not a request id of this folder's manifest (any run)", id)
    else
      p = entry_problem(id, doc[id])
    end
    problems[#problems + 1] = p
  end
  if #problems > 0 then return nil, problems[1], problems end
  return true
end

local function same(a, b)
  if not (is_object(a) and is_object(b)) then return a == b end
  for _, k in ipairs(M.FIELDS) do if a[k] ~= b[k] then return false end end
  for k in pairs(a) do if not FIELD[k] then return false end end
  return true
end

-- The file's text: one entry a line, in request id order (a diff shows what changed).
local function encode(doc)
  local lines = {}
  for _, id in ipairs(sorted_keys(doc)) do
    lines[#lines + 1] = "  " .. json.encode(id) .. ": " .. json.encode(doc[id])
  end
  if #lines == 0 then return "{}\n" end
  return "{\n" .. table.concat(lines, ",\n") .. "\n}\n"
end

-- ratings.merge(dir, doc [, {known = set}]) -> merged = {path, new, updated, unchanged,
-- removed, entries (the file's entries after)} | nil, message, code. Checked first
-- (ratings.check: code "INVALID"); an existing file that is not a ratings object is never
-- replaced (code "EXISTING"); a write that fails leaves the old file whole (code "WRITE").
function M.merge(dir, doc, opts)
  opts = opts or {}
  local ok, err = M.check(doc, opts.known)
  if not ok then return nil, err, "INVALID" end
  local path = join(dir, M.FILE)
  local old, rerr, rcode = read_strict(path)
  if not old then
    if rcode ~= "MISSING" then return nil, rerr .. ": not merged (mend or move it first)", "EXISTING" end
    old = {}
  end
  local out = { path = path, new = 0, updated = 0, unchanged = 0, removed = 0 }
  for _, id in ipairs(sorted_keys(doc)) do
    local e, had = doc[id], old[id]
    local after
    if e ~= json.null then
      after = {}
      if is_object(had) then for k, v in pairs(had) do after[k] = v end end
      for _, k in ipairs(M.FIELDS) do
        if e[k] == json.null then after[k] = nil elseif e[k] ~= nil then after[k] = e[k] end
      end
      if next(after) == nil then after = nil end  -- every field taken back: no entry
    end
    if after == nil then
      if had ~= nil then out.removed = out.removed + 1 end
    elseif had == nil then
      out.new = out.new + 1
    elseif same(had, after) then
      out.unchanged = out.unchanged + 1
    else
      out.updated = out.updated + 1
    end
    old[id] = after
  end
  local wok, werr = core.write_file(path, encode(old))
  if not wok then return nil, "cannot write " .. path .. ": " .. tostring(werr), "WRITE" end
  local n = 0
  for _ in pairs(old) do n = n + 1 end
  out.entries = n
  return out
end

return M
