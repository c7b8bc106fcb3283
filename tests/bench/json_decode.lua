-- json_decode.lua: editflow.json.decode (core.json_decode, src/engine/ef_json.c) against what it
-- replaced, lua-cjson 2.1 plus the old Lua `tidy` pass, on three bodies: (a) a fal status
-- object (~150 bytes), (b) a result with 4 images, one of them a 200 KB data: URI, (c) a 1 MB
-- array of small objects. Prints a Markdown table of median milliseconds per decode. Run by
-- hand (not part of the suite), with the paths of a build:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lib/?.so;;" lua5.4 tests/bench/json_decode.lua [SAMPLES]
-- lua-cjson is optional: without it only the new decoder's column is filled.
local core = require "editflow.core"
local json = require "editflow.json"
local has_cjson, cjson = pcall(require, "cjson")

local samples = tonumber(arg and arg[1]) or 21

-- The decode path editflow used before: a private cjson instance, then tidy.
local old_decode
if has_cjson then
  local codec = cjson.new()
  codec.decode_max_depth(64)
  codec.decode_invalid_numbers(false)
  local ARRAY = getmetatable(json.array())
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
  function old_decode(text)
    local ok, v = pcall(codec.decode, text)
    if not ok then return nil, v end
    return tidy(v)
  end
end

local status = '{"status":"IN_PROGRESS","request_id":"764cabcf-b745-4b3e-ae38-1200304cf45b",'
  .. '"queue_position":0,"logs":null,"metrics":{}}'
-- pad to ~150 bytes with a realistic response_url
status = status:sub(1, -2) .. ',"response_url":"https://queue.fal.run/fal-ai/x/requests/1"}'

local function image(url)
  return string.format('{"url":"%s","width":1024,"height":1024,"content_type":"image/png"}', url)
end
local result = '{"images":[' .. image("https://v3.fal.media/files/a/1.png") .. ","
  .. image("https://v3.fal.media/files/a/2.png") .. "," .. image("https://v3.fal.media/files/a/3.png")
  .. "," .. image("data:image/png;base64," .. core.b64encode(string.rep("\137PNG-bytes", 15000)))
  .. '],"seed":196619188014358660,"has_nsfw_concepts":[false,false,false,false],'
  .. '"prompt":"make the sky \\"stormy\\"\\nand the sea calm","timings":{"inference":2.3125}}'

local parts, size, i = {}, 2, 0
while size < 1048576 do
  i = i + 1
  parts[i] = string.format('{"id":%d,"name":"job-%d","ok":true,"score":%d.25,"tags":["a","b"],"err":null}', i, i, i)
  size = size + #parts[i] + 1
end
local array = "[" .. table.concat(parts, ",") .. "]"

-- Median of `samples` timings, each the mean over enough repetitions to take ~20 ms.
local function median_ms(fn, text)
  assert(fn(text))
  local reps, t0 = 0, core.monotime()
  repeat
    fn(text)
    reps = reps + 1
  until core.monotime() - t0 > 0.02
  local times = {}
  for s = 1, samples do
    collectgarbage()
    local t = core.monotime()
    for _ = 1, reps do fn(text) end
    times[s] = (core.monotime() - t) / reps * 1000
  end
  table.sort(times)
  return times[(samples + 1) // 2]
end

print("| body | bytes | editflow.json.decode ms | lua-cjson + tidy ms | ratio |")
print("|---|---|---|---|---|")
for _, case in ipairs {
  { "(a) status object", status }, { "(b) result, 4 images, 200 KB data: URI", result },
  { "(c) array of small objects", array },
} do
  local name, text = case[1], case[2]
  local new = median_ms(json.decode, text)
  local old = has_cjson and median_ms(old_decode, text)
  print(string.format("| %s | %d | %.4f | %s | %s |", name, #text, new,
    old and string.format("%.4f", old) or "n/a", old and string.format("%.2fx", old / new) or "n/a"))
end
