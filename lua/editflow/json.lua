-- editflow.json: JSON in and out.
-- Decoding uses lua-cjson (a private instance, so other users' settings cannot leak in) and
-- then tidies what cjson 2.1 gives Lua 5.4: integral numbers become integers, nulls in
-- objects become absent keys. Encoding is done here because cjson 2.1 prints numbers with at
-- most 14 significant digits (a 15-digit seed would change) and cannot tell [] from {}.
local cjson = require "cjson"

local M = {}

local codec = cjson.new()
codec.decode_max_depth(64)
codec.decode_invalid_numbers(false)

M.null = cjson.null

local ARRAY = {}  -- metatable marking a table as a JSON array (even when empty)

function M.array(t)
  return setmetatable(t or {}, ARRAY)
end

local function tidy(v)
  local ty = type(v)
  if ty == "number" then
    return math.tointeger(v) or v
  elseif ty ~= "table" then
    return v
  end
  local n = #v
  if n > 0 and next(v, n) == nil then
    for i = 1, n do v[i] = tidy(v[i]) end
    return setmetatable(v, ARRAY)
  end
  for k, x in pairs(v) do
    if x == cjson.null then v[k] = nil else v[k] = tidy(x) end
  end
  return v
end

-- json.decode(text) -> value, or nil, message
function M.decode(text)
  local ok, v = pcall(codec.decode, text)
  if not ok then
    return nil, "invalid JSON: " .. tostring(v):gsub("^.-: ", "")
  end
  return tidy(v)
end

local ESC = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f",
              ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function quote(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return ESC[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
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
  elseif v == nil or v == cjson.null then
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
  local out = {}
  encode_into(v, out, 0)
  return table.concat(out)
end
M.encode = encode

return M
