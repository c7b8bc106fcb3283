-- editflow.json: JSON in and out, both exact.
-- Decoding is editflow.core's (src/engine/ef_json.c, a strict RFC 8259 reader; src/binding/
-- ljson.c builds the values): integer literals stay exact integers (fal's seeds go past 2^53),
-- other integral numbers that fit become integers too, nulls in objects become absent keys,
-- arrays are marked with json.array's metatable (so [] stays distinct from {}). Encoding
-- prints integers exactly and sorts keys; its rules are written here, in Lua, and ljson.c does
-- the same in one pass for the plain values every job encodes, declining (to the Lua encoder
-- below) whatever is not plain: other metatables, odd keys or numbers, deep nesting.
local core = require "editflow.core"

local M = {}

local core_decode, core_encode = core.json_decode, core.json_encode

-- The JSON null, where a nil cannot stand (in arrays, at the top level). The same
-- lightuserdata NULL as lua-cjson's cjson.null, so values from either compare equal.
M.null = core.json_null

local ARRAY = {}  -- metatable marking a table as a JSON array (even when empty)

function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

-- json.decode(text) -> value, or nil, message. Never raises: what comes from outside is not
-- misuse. Nesting is limited to 64 levels.
function M.decode(text)
  if type(text) ~= "string" then
    return nil, "invalid JSON: expected a string, got " .. type(text)
  end
  local v, err = core_decode(text, ARRAY, M.null)
  if v == nil then
    return nil, "invalid JSON: " .. err
  end
  return v
end

-- json.decode_some(text, keep) -> value, or nil, message: json.decode, but of a top-level
-- object only the members named in `keep` become Lua values (keep[name] = true); keep[name] = n
-- keeps an array member with its first n elements as false (seen before: its length stays).
-- The text is still checked whole: what json.decode refuses, this refuses too.
function M.decode_some(text, keep)
  if type(text) ~= "string" then
    return nil, "invalid JSON: expected a string, got " .. type(text)
  end
  local v, err = core_decode(text, ARRAY, M.null, nil, keep)
  if v == nil then
    return nil, "invalid JSON: " .. err
  end
  return v
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

-- Bytes at and above 0x80, one run of them: the output is always valid UTF-8. A byte that
-- starts no UTF-8 sequence becomes \u00XX, its Latin-1 reading (a file name in Latin-1 still
-- makes JSON that python and jq read, and nothing a file system allows is refused: that would
-- lose the manifest of a paid run); a surrogate's three bytes (editflow's decoder makes them
-- from an unpaired \uD800) its \uD8XX escape, which decodes back to them; C1 controls
-- (U+0080..U+009F) \u00XX too, so JSON on a terminal cannot drive it. ljson.c's put_string
-- does the same.
local function high(run)
  if utf8.len(run) and not run:find("\194[\128-\159]") then return run end  -- the usual case
  local out, i = {}, 1
  while i <= #run do
    local cp, len = nil, 1
    if utf8.len(run, i, i) then
      cp = utf8.codepoint(run, i)
      len = cp < 0x800 and 2 or cp < 0x10000 and 3 or 4  -- (utf8.offset would skip stray 0x80s too)
    elseif run:find("^\237[\160-\191][\128-\191]", i) then
      cp, len = utf8.codepoint(run, i, i, true), 3
    end
    if cp and cp > 0x9F and (cp < 0xD800 or cp > 0xDFFF) then
      out[#out + 1] = run:sub(i, i + len - 1)
    else
      out[#out + 1] = string.format("\\u%04x", cp or run:byte(i))
    end
    i = i + len
  end
  return table.concat(out)
end

local function quote(s)
  s = s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end)
  return '"' .. s:gsub("[\128-\255]+", high) .. '"'
end

-- An array is a table whose keys are exactly 1..n (n > 0), or one marked by json.array().
local function isarray(t)
  if getmetatable(t) == ARRAY then return true end
  local n, count = #t, 0
  if n == 0 then return false end
  for _ in pairs(t) do count = count + 1 end
  return count == n
end

local encode

local function encode_into(v, out, depth)
  local ty = type(v)
  if ty == "string" then
    out[#out + 1] = quote(v)
  elseif ty == "number" then
    if math.type(v) == "integer" then
      out[#out + 1] = string.format("%d", v)
    elseif v ~= v or v == math.huge or v == -math.huge then
      error("cannot encode " .. tostring(v) .. " as JSON", 0)
    elseif v == math.floor(v) and math.abs(v) < 2^53 then
      out[#out + 1] = string.format("%d", math.tointeger(v))
    else
      local short = string.format("%.14g", v)  -- the shortest that reads back the same
      out[#out + 1] = tonumber(short) == v and short or string.format("%.17g", v)
    end
  elseif ty == "boolean" then
    out[#out + 1] = v and "true" or "false"
  elseif v == nil or v == M.null then
    out[#out + 1] = "null"
  elseif ty == "table" then
    if depth > 64 then error("cannot encode: nesting deeper than 64", 0) end
    if isarray(v) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_into(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then
          error("cannot encode a table with a " .. type(k) .. " key as a JSON object", 0)
        end
        keys[#keys + 1] = k
      end
      table.sort(keys)  -- stable output: same input, same bytes
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = quote(k)
        out[#out + 1] = ":"
        encode_into(v[k], out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  else
    error("cannot encode a " .. ty .. " as JSON", 0)
  end
end

-- json.encode(value) -> text. Raises on values JSON cannot hold (misuse).
function encode(v)
  local text = core_encode(v, ARRAY, M.null)
  if text then return text end
  local out = {}
  encode_into(v, out, 0)
  return table.concat(out)
end
M.encode = encode

return M
