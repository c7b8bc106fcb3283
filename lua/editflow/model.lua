-- editflow.model: an endpoint's input checked against its JSON Schema, the one fal publishes in
-- the endpoint's OpenAPI document (editflow.schema finds it: fetched, cached or shipped).
-- model.compile(doc, endpoint) turns the document into a model; model:validate(input) checks
-- every field before anything is sent -- types, enums, ranges, lengths, required fields,
-- anyOf shapes such as image_size, nested objects -- and returns a normalised copy (fal's
-- spellings, integers as integers); a bad field raises a message naming the field and what it
-- accepts. File inputs, at any depth (loras[].path as well as image_urls), are found by the
-- schema (file_slots: *_url, *_urls, *path, format uri, x-fal-file-input): an http(s) or
-- data: URL, a local path or editflow.file(path); editflow.storage resolves them.
-- An endpoint without a schema (model.unchecked) passes through apart from its images.
local json = require "editflow.json"

local M = {}

M.SIZES = {
  square_hd = { 1024, 1024 }, square = { 512, 512 },
  portrait_4_3 = { 768, 1024 }, portrait_16_9 = { 576, 1024 },
  landscape_4_3 = { 1024, 768 }, landscape_16_9 = { 1024, 576 },
}
-- The seed proxy's names for fal's two portrait sizes (SPEC §3): accepted wherever fal's
-- schema has fal's name, and fal's name is what is sent.
M.SIZE_ALIASES = { portrait_3_4 = "portrait_4_3", portrait_9_16 = "portrait_16_9" }

M.MAX_TEXT = 50000   -- bytes of a prompt: far beyond any model's context, short of abuse
local MAX_DEPTH = 32 -- $ref hops and nesting followed before a schema is judged broken
-- The most schema nodes one walk of a schema may visit (see cost below). fal's schemas take a
-- few hundred; a 3 KB document whose anyOf alternatives each name the next definition twice
-- doubles at every level and would take 2^40 steps to describe or to refuse a value.
M.MAX_COST = 20000

local Model = {}
Model.__index = Model

-- ---- reading a schema ----

-- Text from a schema (a server's: names, enum values, descriptions, titles) made safe to show
-- on a terminal: C0 controls and DEL as \xNN, C1 controls (U+0080..U+009F, which some
-- terminals obey as ESC sequences) as \uNNNN, bytes that are not UTF-8 as \xNN. Idempotent
-- (its output has no such character), so a message built from printable parts may go through
-- it again.
function M.printable(text)
  text = tostring(text)
  local i = text:find("[%c\127-\255]")
  if not i then return text end
  local out, from = {}, 1
  while i do
    out[#out + 1] = text:sub(from, i - 1)
    local b = text:byte(i)
    local cp = b >= 0x80 and utf8.len(text, i, i) and utf8.codepoint(text, i)
    if not cp then
      out[#out + 1], from = string.format("\\x%02X", b), i + 1
    else
      from = i + (cp < 0x800 and 2 or cp < 0x10000 and 3 or 4)  -- (not utf8.offset: stray 0x80s)
      out[#out + 1] = cp <= 0x9F and string.format("\\u%04X", cp) or text:sub(i, from - 1)
    end
    i = text:find("[%c\127-\255]", from)
  end
  out[#out + 1] = text:sub(from)
  return table.concat(out)
end

local function show(v)
  if v == json.null then return "null" end
  if type(v) == "string" then
    if #v <= 60 then return "'" .. v .. "'" end
    local cut = 57  -- on a character's boundary: half a character would show as \xNN
    while cut > 0 and v:byte(cut + 1) & 0xC0 == 0x80 do cut = cut - 1 end
    return "'" .. v:sub(1, cut) .. "...'"
  end
  if type(v) == "table" then
    if v.__editflow_file then return "editflow.file(" .. tostring(v.path) .. ")" end
    if #v > 0 then return string.format("a list of %d", #v) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    return #keys > 0 and ("a table with " .. table.concat(keys, ", ")) or "an empty table"
  end
  return tostring(v)
end

local function bad(name, what, v)
  error(string.format("%s must be %s, got %s", name, what, show(v)), 0)
end

-- "#/components/schemas/Name" inside doc -> the schema it names.
local function lookup(doc, ref)
  if type(ref) ~= "string" or ref:sub(1, 2) ~= "#/" then return nil end
  local node = doc
  for part in ref:sub(3):gmatch("[^/]+") do
    part = part:gsub("~1", "/"):gsub("~0", "~")
    if type(node) ~= "table" then return nil end
    node = node[part]
  end
  return type(node) == "table" and node or nil
end

-- Resolved once per schema node and remembered (self.derefs, weak): every validation walks
-- the same nodes, and a $ref path is parsed with patterns on each resolution. The same $ref
-- text met at another node is looked up once too (self.refs).
function Model:deref(s)
  local memo = self.derefs
  local known = memo and memo[s]
  if known then return known end
  local from = s
  local hops = 0
  while type(s) == "table" and s["$ref"] ~= nil do
    hops = hops + 1
    local ref = s["$ref"]
    local target = self.refs and self.refs[ref]
    if target == nil then
      target = lookup(self.doc, ref)
      if self.refs and type(ref) == "string" then self.refs[ref] = target or false end
    end
    if not target or hops > MAX_DEPTH then
      error(string.format("the schema of %s is broken: %s does not resolve", self.endpoint, tostring(ref)), 0)
    end
    s = target
  end
  if type(s) ~= "table" then return {} end
  if memo and type(from) == "table" then memo[from] = s end
  return s
end

local function is_list(v)
  return type(v) == "table" and not v.__editflow_file and (#v > 0 or next(v) == nil) and next(v, #v > 0 and #v or nil) == nil
end

local function types_of(s)
  local t = s.type
  if type(t) == "string" then return { [t] = true } end
  if type(t) == "table" then
    local set = {}
    for _, x in ipairs(t) do set[x] = true end
    return set
  end
  return nil
end

local function num_text(x)
  return tostring(math.tointeger(x) or x)
end

local function num(x) return type(x) == "number" and x == x and x or nil end  -- odd values: absent

-- The effective bounds of a number schema: lo, lo exclusive, hi, hi exclusive. OpenAPI 3.0
-- says exclusiveMinimum = true (about minimum), 3.1 gives it a number of its own; both may be
-- present, and the tighter bound wins.
local function bounds(s)
  local lo, hi = num(s.minimum), num(s.maximum)
  local xlo = s.exclusiveMinimum == true and lo ~= nil
  local xhi = s.exclusiveMaximum == true and hi ~= nil
  local elo, ehi = num(s.exclusiveMinimum), num(s.exclusiveMaximum)
  if elo and (not lo or elo >= lo) then lo, xlo = elo, true end
  if ehi and (not hi or ehi <= hi) then hi, xhi = ehi, true end
  return lo, xlo, hi, xhi
end

-- The bounds of a number schema as text ("2..100", ">= 0", "> 0 and <= 1").
local function range_text(s)
  local lo, xlo, hi, xhi = bounds(s)
  if lo and hi and not xlo and not xhi then return num_text(lo) .. ".." .. num_text(hi) end
  local parts = {}
  if lo then parts[#parts + 1] = (xlo and "> " or ">= ") .. num_text(lo) end
  if hi then parts[#parts + 1] = (xhi and "< " or "<= ") .. num_text(hi) end
  return #parts > 0 and table.concat(parts, " and ") or nil
end

local function in_range(s, x)
  local lo, xlo, hi, xhi = bounds(s)
  if lo and (x < lo or (xlo and x == lo)) then return false end
  if hi and (x > hi or (xhi and x == hi)) then return false end
  return true
end

-- The most nodes one walk from s may visit, capped at M.MAX_COST + 1: check, describe and
-- kinds go through $ref, anyOf/oneOf/allOf alternatives, fields, additionalProperties and
-- items, and no deeper than MAX_DEPTH, so this counts exactly those edges to that depth.
-- Counted once per (node, depth) (memo), it costs the size of the document times MAX_DEPTH
-- however often the tree doubles. model.compile refuses a schema over the budget, so every
-- later walk of a compiled model is bounded (a validation by this times the value's size)
-- and editflow.schema can fall back to another copy with the reason, which it could not do
-- from a budget running out in the middle of a job's validation.
local function cost(self, s, depth, memo)
  if depth > MAX_DEPTH or type(s) ~= "table" then return 0 end
  s = self:deref(s)
  local at = memo[s]
  if not at then at = {} memo[s] = at end
  if at[depth] then return at[depth] end
  local n = 1
  local function add(sub)
    if n <= M.MAX_COST then n = n + cost(self, sub, depth + 1, memo) end
  end
  for _, key in ipairs { "anyOf", "oneOf", "allOf" } do
    if type(s[key]) == "table" then
      for _, a in ipairs(s[key]) do add(a) end
    end
  end
  if type(s.properties) == "table" then
    for _, sub in pairs(s.properties) do add(sub) end
  end
  add(s.additionalProperties)
  add(s.items)
  n = math.min(n, M.MAX_COST + 1)
  at[depth] = n
  return n
end

-- What a schema accepts, in words, for error messages and `editflow schema`. Schema text in
-- it (enum values, field names) is M.printable.
function Model:describe(s, depth)
  depth = (depth or 0) + 1
  s = self:deref(s)
  if depth > 4 then return "a value" end
  local alts = s.anyOf or s.oneOf
  if type(alts) == "table" then
    local parts = {}
    for _, a in ipairs(alts) do
      local d = self:describe(a, depth)
      if d ~= "null" then parts[#parts + 1] = d end
    end
    return table.concat(parts, " or ")
  end
  if type(s.allOf) == "table" and #s.allOf == 1 then return self:describe(s.allOf[1], depth) end
  if type(s.enum) == "table" then
    local vals = {}
    for i, v in ipairs(s.enum) do vals[i] = M.printable(v) end
    return "one of " .. table.concat(vals, ", ")
  end
  if s.const ~= nil then return "exactly " .. M.printable(s.const) end
  local t = types_of(s) or {}
  if t.integer then
    local r = range_text(s)
    return "an integer" .. (r and (" " .. r) or "")
  elseif t.number then
    local r = range_text(s)
    return "a number" .. (r and (" " .. r) or "")
  elseif t.boolean then
    return "true or false"
  elseif t.string then
    local lo, hi = num(s.minLength) or 0, num(s.maxLength)
    if hi and lo > 1 then return "a string of " .. num_text(lo) .. " to " .. num_text(hi) .. " characters" end
    local n = hi and (" of at most " .. num_text(hi) .. " characters") or ""
    if lo > 1 then n = " of at least " .. num_text(lo) .. " characters" end
    return (lo == 1 and "a non-empty string" or "a string") .. n
  elseif t.array then
    local lo, hi = num(s.minItems) or 0, num(s.maxItems)
    local count = hi and (lo == hi and tostring(lo) or (lo .. " to " .. hi)) or (lo > 0 and ("at least " .. lo) or "")
    local item = s.items and self:describe(s.items, depth) or "values"
    return "a list of " .. (count ~= "" and (count .. " ") or "") .. "(" .. item .. ")"
  elseif t.object or s.properties then
    local names = {}
    for k in pairs(s.properties or {}) do names[#names + 1] = M.printable(k) .. "=" end
    table.sort(names)
    return #names > 0 and ("a table {" .. table.concat(names, ", ") .. "}") or "a table"
  elseif t.null then
    return "null"
  end
  return "a value"
end

-- ---- checking a value ----

local FILE_TEXT = "an image URL, a local path or editflow.file(path)"

-- i: the item's index in a list named `name` (the message's "name[i]" is built only on failure).
local function file_ref(name, v, i)
  if type(v) == "string" and v ~= "" then return v end
  if type(v) == "table" and v.__editflow_file then return v end
  bad(i and string.format("%s[%d]", name, i) or name, FILE_TEXT, v)
end

local check
local file_slots

-- Trying the alternatives of an anyOf in turn, the first that fits wins and the others' errors
-- are dropped: image_size = "square" fails the {width, height} object first on every job. Such
-- a trial runs `quiet`: a mismatch raises this constant instead of describing the schema and
-- the value in words (the bulk of a validation's cost), since nobody reads that message.
local QUIET = setmetatable({}, { __tostring = function() return "value does not fit" end })

-- A count outside [lo, hi] (either may be nil): raises "NAME must have at most 3 items, got
-- 5", or QUIET. The count is what the limit counts: characters of a string (code points, as
-- JSON Schema's minLength/maxLength count them, never bytes), items of a list.
local function outside(name, n, lo, hi, unit, quiet)
  if not ((lo and n < lo) or (hi and n > hi)) then return end
  if quiet then error(QUIET, 0) end
  local limit = (lo and n < lo) and ("at least " .. num_text(lo)) or ("at most " .. num_text(hi))
  error(string.format("%s must have %s %s%s, got %d", name, limit, unit,
    (lo and n < lo and lo or hi) == 1 and "" or "s", n), 0)
end

-- A string value checked as text: -> v, or nil when it is no string or an empty prompt.
local function text(name, v, s, quiet)
  if type(v) ~= "string" then return nil end
  if #v > M.MAX_TEXT then
    error(string.format("%s must be at most %d bytes, got %d", name, M.MAX_TEXT, #v), 0)
  end
  local n = utf8.len(v)
  if not n then error(name .. " must be valid UTF-8 text", 0) end
  outside(name, n, num(s.minLength), num(s.maxLength), "character", quiet)
  if name == "prompt" and not v:find("%S") then return nil end  -- an empty prompt edits nothing
  return v
end

-- A mismatch of v against s: raises the message naming what s accepts, or QUIET.
local function mismatch(self, s, name, v, quiet)
  if quiet then error(QUIET, 0) end
  bad(name, self:describe(s), v)
end

-- One alternative of anyOf: the normalised value, or nil and the message it raised.
local function try(self, s, name, v, depth, quiet)
  local ok, out = pcall(check, self, s, name, v, depth, quiet)
  if ok then return out end
  return nil, out
end

local function check_object(self, s, name, v, depth, quiet)
  if type(v) ~= "table" or v.__editflow_file or (#v > 0) then mismatch(self, s, name, v, quiet) end
  local props = s.properties or {}
  local out = {}
  for _, k in ipairs(type(s.required) == "table" and s.required or {}) do
    if v[k] == nil then error(string.format("%s.%s is required", name, k), 0) end
  end
  for k, x in pairs(v) do
    local sub = props[k]
    local at = name .. "." .. tostring(k)
    if sub == nil then
      if s.additionalProperties == true then
        out[k] = x
      elseif type(s.additionalProperties) == "table" then
        out[k] = check(self, s.additionalProperties, at, x, depth, quiet)
      else
        local names = {}
        for n in pairs(props) do names[#names + 1] = n end
        table.sort(names)
        error(string.format("%s is not a field of %s (accepted: %s)", at, name, table.concat(names, ", ")), 0)
      end
    else
      out[k] = check(self, sub, at, x, depth, quiet)
    end
  end
  return out
end

-- quiet: the caller drops any error (a trial of one anyOf alternative): see QUIET.
function check(self, s, name, v, depth, quiet)
  depth = (depth or 0) + 1
  if depth > MAX_DEPTH then error("the schema of " .. self.endpoint .. " nests too deep", 0) end
  -- editflow.file(path) stands for a string where the schema has a file slot (file_slots)
  if type(v) == "table" and v.__editflow_file and self.file_nodes and self.file_nodes[s] then return v end
  s = self:deref(s)
  local alts = s.anyOf or s.oneOf
  if type(alts) == "table" and #alts > 0 then
    for _, a in ipairs(alts) do
      local out = try(self, a, name, v, depth, true)
      if out ~= nil then return out end
    end
    if quiet then error(QUIET, 0) end
    -- One alternative of a shape the value has (a table for an object, a string for a
    -- string without an enum: its length, say) explains best.
    for _, a in ipairs(alts) do
      local t = types_of(self:deref(a)) or {}
      if (type(v) == "table" and (t.object or t.array))
          or (type(v) == "string" and t.string and self:deref(a).enum == nil) then
        local _, err = try(self, a, name, v, depth)
        error(err, 0)
      end
    end
    bad(name, self:describe(s), v)
  end
  if type(s.allOf) == "table" then
    for _, a in ipairs(s.allOf) do v = check(self, a, name, v, depth, quiet) end
  end
  if type(s.enum) == "table" then
    for _, e in ipairs(s.enum) do
      if e == v then return v end
    end
    local alias = M.SIZE_ALIASES[v]
    if alias then
      for _, e in ipairs(s.enum) do
        if e == alias then return alias end
      end
    end
    mismatch(self, s, name, v, quiet)
  end
  if s.const ~= nil then
    if v ~= s.const then mismatch(self, s, name, v, quiet) end
    return v
  end
  local t = types_of(s)
  if not t then
    if s.properties then return check_object(self, s, name, v, depth, quiet) end
    return v  -- any value
  end
  if t.integer and math.type(v) ~= nil and math.tointeger(v) then
    local i = math.tointeger(v)
    if in_range(s, i) then return i end
  end
  if t.number and type(v) == "number" and v == v and v > -math.huge and v < math.huge then
    if in_range(s, v) then return math.tointeger(v) or v end
  end
  if t.boolean and type(v) == "boolean" then return v end
  if t.string then
    local out = text(name, v, s, quiet)
    if out then return out end
    if name == "prompt" then
      if quiet then error(QUIET, 0) end
      bad(name, "a non-empty string", v)
    end
  end
  if t.null and v == json.null then return v end
  if t.array and is_list(v) then
    outside(name, #v, num(s.minItems), num(s.maxItems), "item", quiet)
    local out = {}
    for i = 1, #v do
      out[i] = s.items and check(self, s.items, string.format("%s[%d]", name, i), v[i], depth, quiet) or v[i]
    end
    return out
  end
  if t.object and type(v) == "table" and not v.__editflow_file then
    return check_object(self, s, name, v, depth, quiet)
  end
  mismatch(self, s, name, v, quiet)
end

-- ---- the model of an endpoint ----

-- The input schema of `endpoint` in an OpenAPI document: the JSON body of the POST to
-- /<endpoint>, or of the only POST with a JSON body. -> schema, or nil, why.
local function input_schema(doc, endpoint)
  if type(doc) ~= "table" or type(doc.paths) ~= "table" then return nil, "not an OpenAPI document" end
  local function body_of(item)
    local post = type(item) == "table" and item.post
    local rb = type(post) == "table" and post.requestBody
    local content = type(rb) == "table" and rb.content
    local media = type(content) == "table" and content["application/json"]
    return type(media) == "table" and type(media.schema) == "table" and media.schema or nil
  end
  local s = body_of(doc.paths["/" .. endpoint])
  if s then return s end
  local found, n = nil, 0
  for _, item in pairs(doc.paths) do
    local b = body_of(item)
    if b then found, n = b, n + 1 end
  end
  if n == 1 then return found end
  return nil, "no input schema for " .. endpoint .. " in the document"
end

-- The types a field's value may have: its own, or those of its anyOf/oneOf alternatives
-- (an optional field is [X, null]), or the kinds of its enum's values.
function Model:kinds(s, depth)
  depth = (depth or 0) + 1
  s = self:deref(s)
  local set = types_of(s)
  if set then return set end
  set = {}
  local alts = s.anyOf or s.oneOf
  if type(alts) == "table" then
    if depth > MAX_DEPTH then return set end
    for _, a in ipairs(alts) do
      for k in pairs(self:kinds(a, depth)) do set[k] = true end
    end
    return set
  end
  if type(s.enum) == "table" then
    for _, e in ipairs(s.enum) do
      set[math.type(e) == "integer" and "integer" or type(e) == "number" and "number"
        or type(e) == "boolean" and "boolean" or "string"] = true
    end
  end
  if s.properties then set.object = true end
  return set
end

-- ---- where the files are ----

-- A file slot is a string in the input that may name a local file (a path or
-- editflow.file(path)), which editflow.storage uploads or inlines; every other string is sent
-- as written, whatever it reads like (a prompt "photo.png" stays a prompt). The rule, by the
-- schema alone and at any depth -- through $ref, anyOf/oneOf/allOf, array items, object
-- properties and additionalProperties -- is: a string (not an enum or a const) is a slot when
--   * the property holding it (or holding its list) is named *_url, url, *_urls or urls: a
--     URL field, where a string that is no http(s)/data: URL can only be a local path, so a
--     missing file is an error ("strict");
--   * it is named *_path, path, *_paths or paths (a LoRA's loras[].path): a path field, which
--     the schema may let take other text too ("URL or path to a LoRA safetensors file, or a HF
--     model name"), so a string there is a local file only if such a file exists, else it is
--     sent as written (editflow.file(path) is always a file);
--   * or its schema marks it a file whatever its name: format "uri", "uri-reference" or
--     "binary", or "x-fal-file-input": true (the marker fal-js's type generator puts on the
--     fields its client uploads Blobs for): strict.
-- A slot is an image slot when the name holding it says image or mask (image_url, image_urls,
-- mask_url, reference_image_urls): a file there must be a PNG, JPEG, GIF or WebP by its
-- bytes. Elsewhere (loras[].path, audio_url, ...) any file goes, sent as what its bytes are
-- when they are an image, else as application/octet-stream.
--
-- file_slots(self, raw, name, depth) -> a slot tree, or nil when no slot lies below raw:
--   { file = { image = bool, strict = bool }, items = tree, props = { name = tree }, extra = tree }
-- (extra: additionalProperties). Each string slot's schema node (raw, before $ref) goes into
-- self.file_nodes, where validation lets an editflow.file(path) stand for the string. The
-- walk is bounded as cost() is (MAX_DEPTH; compile has checked the budget before).
local URL_NAMES = { "_url$", "^url$", "_urls$", "^urls$" }
local PATH_NAMES = { "_path$", "^path$", "_paths$", "^paths$" }
local FILE_FORMATS = { uri = true, ["uri-reference"] = true, binary = true }

local function named(name, patterns)
  if type(name) ~= "string" then return false end
  local low = name:lower()
  for _, p in ipairs(patterns) do
    if low:find(p) then return true end
  end
  return false
end

local function merge_slots(a, b)
  if not a then return b end
  if not b then return a end
  if b.file then
    a.file = a.file or { image = false, strict = false }
    a.file = { image = a.file.image or b.file.image, strict = a.file.strict or b.file.strict }
  end
  a.items = merge_slots(a.items, b.items)
  a.extra = merge_slots(a.extra, b.extra)
  for k, sub in pairs(b.props or {}) do
    a.props = a.props or {}
    a.props[k] = merge_slots(a.props[k], sub)
  end
  return a
end

function file_slots(self, raw, name, depth)
  if depth > MAX_DEPTH or type(raw) ~= "table" then return nil end
  local s = self:deref(raw)
  local out
  for _, key in ipairs { "anyOf", "oneOf", "allOf" } do
    if type(s[key]) == "table" then
      for _, a in ipairs(s[key]) do out = merge_slots(out, file_slots(self, a, name, depth + 1)) end
    end
  end
  local t = types_of(s)
  local hinted = FILE_FORMATS[s.format] or s["x-fal-file-input"] == true
  if (t == nil and s.properties == nil and s.items == nil and s.anyOf == nil and s.oneOf == nil
      or t and t.string) and s.enum == nil and s.const == nil then
    local url_named, path_named = named(name, URL_NAMES), named(name, PATH_NAMES)
    if url_named or path_named or hinted then
      self.file_nodes[raw] = true
      out = merge_slots(out, { file = {
        image = type(name) == "string" and (name:lower():find("image") or name:lower():find("mask")) ~= nil,
        strict = url_named or hinted or false } })
    end
  end
  if type(s.items) == "table" then  -- a list's items are named by the list: image_urls[i]
    local items = file_slots(self, s.items, name, depth + 1)
    if items then out = merge_slots(out, { items = items }) end
  end
  if type(s.properties) == "table" then
    for k, sub in pairs(s.properties) do
      local slot = file_slots(self, sub, k, depth + 1)
      if slot then out = merge_slots(out, { props = { [k] = slot } }) end
    end
  end
  if type(s.additionalProperties) == "table" then  -- values named by their object
    local extra = file_slots(self, s.additionalProperties, name, depth + 1)
    if extra then out = merge_slots(out, { extra = extra }) end
  end
  return out
end

-- model.compile(doc, endpoint [, source]) -> model, or nil, why. A broken document (a $ref
-- that leads nowhere, say) is nil and the reason, never an error.
-- The reason is M.printable: it may quote the document, and it ends up in warnings.
function M.compile(doc, endpoint, source)
  local ok, m, why = pcall(M._compile, doc, endpoint, source)
  if not ok then return nil, M.printable(m) end
  return m, why and M.printable(why)
end

function M._compile(doc, endpoint, source)
  local raw, why = input_schema(doc, endpoint)
  if not raw then return nil, why end
  local self = setmetatable({ doc = doc, endpoint = endpoint, source = source,
    derefs = setmetatable({}, { __mode = "k" }), refs = {} }, Model)
  local ok, s = pcall(Model.deref, self, raw)
  if not ok then return nil, s end
  if type(s.properties) ~= "table" then return nil, "the input schema of " .. endpoint .. " has no fields" end
  if cost(self, s, 1, {}) > M.MAX_COST then
    return nil, string.format("the input schema of %s is too costly to check: its $ref and anyOf "
      .. "tree takes more than %d steps to walk", endpoint, M.MAX_COST)
  end
  self.input = s
  self.required = {}
  for _, k in ipairs(type(s.required) == "table" and s.required or {}) do self.required[k] = true end
  -- Fields in fal's order (x-fal-order-properties), then any others by name.
  local order, seen = {}, {}
  for _, k in ipairs(type(s["x-fal-order-properties"]) == "table" and s["x-fal-order-properties"] or {}) do
    if s.properties[k] ~= nil and not seen[k] then order[#order + 1], seen[k] = k, true end
  end
  local rest = {}
  for k in pairs(s.properties) do
    if not seen[k] then rest[#rest + 1] = k end
  end
  table.sort(rest)
  for _, k in ipairs(rest) do order[#order + 1] = k end
  self.order = order
  -- File inputs at any depth (see file_slots): self.slots describes where they are in the
  -- input, self.files the top-level ones, field -> "one" (a string) or "list" (a list of
  -- strings), as -i, experiments and help texts take them (only names in plain words: a
  -- name that is not becomes no -i help text, which would print it).
  self.file_nodes = {}
  self.slots = { props = {} }
  self.files = {}
  for _, k in ipairs(order) do
    self:describe(s.properties[k])  -- every $ref resolves, now rather than on first use
    local slot = file_slots(self, s.properties[k], k, 1)
    self.slots.props[k] = slot
    if slot and slot.file and k:match("^[%w_]+$") then
      self.files[k] = "one"
    elseif slot and slot.items and slot.items.file and k:match("^[%w_]+$") and self:kinds(s.properties[k]).array then
      self.files[k] = "list"
    end
  end
  return self
end

-- The field taking the job's images: "image_urls" (a list) or "image_url" (one), else the
-- first top-level image field (mask_url, reference_image_urls, ...), else the first file
-- field, else nil.
function Model:image_field()
  if self.files.image_urls then return "image_urls", "list" end
  if self.files.image_url then return "image_url", "one" end
  local first
  for _, k in ipairs(self.order) do
    local kind = self.files[k]
    if kind then
      local slot = self.slots.props[k]
      if (kind == "one" and slot.file.image) or (kind == "list" and slot.items.file.image) then
        return k, kind
      end
      first = first or k
    end
  end
  if first then return first, self.files[first] end
  return nil
end

-- A field's schema (dereferenced) and its facts for help texts: type word, default, accepts.
function Model:field(name)
  local raw = self.input.properties[name]
  if raw == nil then return nil end
  local s = self:deref(raw)
  local t = self:kinds(s)
  -- a value with a shape of its own (an image_size name or {width, height}) reads as text
  -- and JSON; otherwise the one scalar type it has
  local kind = ((t.string and t.object) and "string") or (t.integer and "integer") or (t.number and "number")
    or (t.boolean and "boolean") or (t.string and "string") or (t.array and "array")
    or (t.object and "object") or "any"
  local default = s.default
  if default == nil and type(raw) == "table" then default = raw.default end
  local about = s.description or (type(raw) == "table" and raw.description) or s.title
  return {
    name = name, schema = s, type = kind, default = default, required = self.required[name] == true,
    file = self.files[name], accepts = self.files[name] and (self.files[name] == "list"
      and ("a list of (" .. FILE_TEXT .. ")") or FILE_TEXT) or self:describe(s),
    -- the schema's words, printable (name and default stay as the schema has them: data)
    description = about ~= nil and M.printable(about) or nil,
    items = t.array and type(s.items) == "table" and self:deref(s.items) or nil,
  }
end

function Model:fields()
  local out = {}
  for i, k in ipairs(self.order) do out[i] = self:field(k) end
  return out
end

-- model:validate(input) -> normalised copy; raises naming the first bad field, in a message
-- that may quote the schema (field names, enum values): M.printable.
function Model:validate(input)
  local ok, out = pcall(self._validate, self, input)
  if not ok then error(type(out) == "string" and M.printable(out) or out, 0) end
  return out
end

function Model:_validate(input)
  if type(input) ~= "table" then bad("input", "a table", input) end
  for _, k in ipairs(self.order) do
    if self.required[k] and input[k] == nil then
      error(string.format("%s is required by %s", k, self.endpoint), 0)
    end
  end
  local out = {}
  for k, v in pairs(input) do
    if type(k) ~= "string" or self.input.properties[k] == nil then
      error(string.format("unknown field %s for %s (accepted: %s)", show(k), self.endpoint,
        table.concat(self.order, ", ")), 0)
    end
    local kind = self.files[k]
    if kind == "one" then
      out[k] = file_ref(k, v)
    elseif kind == "list" then
      if type(v) == "string" or (type(v) == "table" and v.__editflow_file) then v = { v } end
      local s = self:deref(self.input.properties[k])
      local lo, hi = math.max(num(s.minItems) or 1, 1), num(s.maxItems)
      if not is_list(v) or #v < lo or (hi and #v > hi) then
        bad(k, hi and string.format("a list of %d to %d images", lo, hi)
          or string.format("a list of at least %d image%s", lo, lo == 1 and "" or "s"), v)
      end
      local list = {}
      for i = 1, #v do list[i] = file_ref(k, v[i], i) end
      out[k] = list
    else
      out[k] = check(self, self.input.properties[k], k, v)
    end
  end
  return out
end

-- ---- an endpoint without a schema ----

local Unchecked = setmetatable({}, { __index = Model })
Unchecked.__index = Unchecked

-- model.unchecked(endpoint) -> a model that checks only the images (image_url, image_urls).
function M.unchecked(endpoint)
  local image = { file = { image = true, strict = true } }
  return setmetatable({ endpoint = endpoint, files = { image_urls = "list", image_url = "one" },
    slots = { props = { image_urls = { items = image }, image_url = image } },
    order = {}, required = {}, input = { properties = {} }, unchecked = true }, Unchecked)
end

function Unchecked:validate(input)
  if type(input) ~= "table" then bad("input", "a table", input) end
  local out = {}
  for k, v in pairs(input) do out[k] = v end
  if out.image_urls ~= nil then
    local v = out.image_urls
    if type(v) == "string" or (type(v) == "table" and v.__editflow_file) then v = { v } end
    if not is_list(v) or #v == 0 then bad("image_urls", "a list of images", v) end
    local list = {}
    for i = 1, #v do list[i] = file_ref("image_urls", v[i], i) end
    out.image_urls = list
  end
  if out.image_url ~= nil then out.image_url = file_ref("image_url", out.image_url) end
  return out
end

function Unchecked:fields() return {} end
function Unchecked:field() return nil end

return M
