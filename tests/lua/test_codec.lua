-- test_codec.lua: editflow.core's byte helpers, editflow.json and editflow.url, from Lua.
local T = require "testlib"
local core = require "editflow.core"
local json = require "editflow.json"
local url = require "editflow.url"

T.case("base64 round-trips every byte value", function()
  local all = {}
  for i = 0, 255 do all[#all + 1] = string.char(i) end
  local s = table.concat(all)
  for n = 0, 7 do
    local part = s:sub(1, #s - n)
    T.eq(core.b64decode(core.b64encode(part)), part, "round trip of " .. #part .. " bytes")
  end
  T.eq(core.b64encode("foobar"), "Zm9vYmFy", "RFC 4648 vector")
  local v, err = core.b64decode("Zm9v!!")
  T.eq(v, nil, "invalid input")
  T.match(err, "offset 4", "error names the offset")
end)

T.case("sniff recognises images by their bytes, not their names", function()
  local png = T.read(T.source_dir .. "/tests/fixtures/a.png")
  local ext, mime = core.sniff(png)
  T.eq(ext, "png", "ext")
  T.eq(mime, "image/png", "mime")
  T.eq(core.sniff(T.read(T.source_dir .. "/tests/fixtures/not-an-image.png")), nil, "text named .png")
  T.eq(select(2, core.sniff("\255\216\255\224")), "image/jpeg", "jpeg")
  T.eq(core.sniff(""), nil, "empty")
end)

T.case("safe_name never yields a path", function()
  for _, s in ipairs { "../x", "/etc/passwd", "a/b", "..", ".", "", "\0\0", "..\\..\\win", "CON" } do
    local n = core.safe_name(s)
    T.ok(not n:find("/", 1, true) and not n:find("\\", 1, true), "no separators in " .. n)
    T.ok(n ~= "." and n ~= ".." and n ~= "" and n:sub(1, 1) ~= ".", "not special: " .. n)
  end
  T.eq(core.safe_name("CON"), "_CON", "Windows device name")
end)

T.case("mkdir and write_file are atomic and report errors", function()
  local d = T.tmpdir()
  assert(core.mkdir(d .. "/x/y"))
  assert(core.write_file(d .. "/x/y/f.txt", "data"))
  T.eq(T.read(d .. "/x/y/f.txt"), "data", "content")
  T.eq(#T.list_dir(d .. "/x/y"), 1, "no temporary file left")
  local ok, err = core.write_file(d .. "/nope/f.txt", "data")
  T.eq(ok, nil, "write into a missing folder")
  T.match(err, "No such file", "error text")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("json: integers stay integers, nulls vanish from objects, big seeds survive", function()
  local v = json.decode('{"seed": 123456789012345, "w": 1024, "g": 4.5, "logs": null, "a": [1, null]}')
  T.eq(math.type(v.w), "integer", "integral numbers become integers")
  T.eq(v.g, 4.5, "floats stay floats")
  T.eq(v.logs, nil, "null in an object")
  T.eq(v.a[2], json.null, "null in an array is kept")
  T.eq(json.encode { seed = 123456789012345 }, '{"seed":123456789012345}', "15-digit integer")
  T.eq(json.encode { b = json.array {}, a = {} }, '{"a":{},"b":[]}', "sorted keys, marked array")
  T.eq(json.encode { s = "q\"\\\n\1" }, '{"s":"q\\"\\\\\\n\\u0001"}', "escapes")
  local bad, err = json.decode("{nope")
  T.eq(bad, nil, "invalid JSON")
  T.match(err, "invalid JSON", "message")
  T.raises(function() json.encode { f = print } end, "cannot encode")
  local mixed = { "a", k = "x" }
  T.raises(function() json.encode(mixed) end, "cannot encode a table with a number key")
end)

T.case("json: big seeds are exact, both ways", function()
  local text = '{"seed":196619188014358660}'
  local v = json.decode(text)
  T.eq(math.type(v.seed), "integer", "an integer literal stays an integer")
  T.eq(v.seed, 196619188014358660, "above 2^53, exact")
  T.eq(json.encode(v), text, "decode then encode gives the same bytes")
  T.eq(json.decode("9223372036854775807"), math.maxinteger, "int64 max")
  T.eq(json.decode("-9223372036854775808"), math.mininteger, "int64 min")
  T.eq(math.type(json.decode("9223372036854775808")), "float", "past int64: a float")
  T.eq(json.decode("9223372036854775808"), 2.0^63, "  with the nearest value")
  -- an integer literal past int64 stays a float: as an integer it would be another number
  T.eq(math.type(json.decode("-9223372036854775809")), "float", "past int64 below: a float")
  T.eq(math.type(json.decode("1.0")), "integer", "integral values become integers")
  T.eq(json.decode("1e3"), 1000, "1e3")
  T.eq(math.type(json.decode("1e3")), "integer", "  as an integer")
  T.eq(math.type(json.decode("-0.0")), "integer", "-0.0 is 0, as math.tointeger has it")
  T.eq(math.type(json.decode("1e300")), "float", "beyond int64: a float")
  T.eq(json.decode("0.1"), 0.1, "0.1")
  T.eq(json.decode("1e-400"), 0, "underflow")
  local bad, err = json.decode("1e400")
  T.eq(bad, nil, "a number JSON could not write back")
  T.eq(err, "invalid JSON: number out of range at byte 0", "  names its offset")
end)

T.case("json: nulls, empty containers, strings, duplicates", function()
  local v = json.decode('{"a":[],"b":{},"c":null,"d":[null,2,null],"e":"x","e":"y","f":1,"f":null}')
  T.eq(getmetatable(v.a), getmetatable(json.array()), "an empty array is marked as one")
  T.eq(getmetatable(v.b), nil, "an empty object is a plain table")
  T.eq(json.encode(v.a) .. json.encode(v.b), "[]{}", "so they encode back as they came")
  T.eq(v.c, nil, "a null member is absent")
  T.eq(#v.d, 3, "nulls keep their places in arrays")
  T.ok(v.d[1] == json.null and v.d[3] == json.null and v.d[2] == 2, "  as json.null")
  T.eq(v.e, "y", "duplicate keys: the last wins")
  T.eq(v.f, nil, "  also when the last is null")
  T.eq(json.decode("null"), json.null, "a top-level null is json.null")
  T.eq(json.encode { json.null, 1 }, "[null,1]", "json.null encodes as null")
  T.eq(type(json.null), "userdata", "json.null is the lightuserdata NULL (as cjson.null was)")
  T.eq(json.null, core.json_null, "  the core's")
  T.eq(json.decode('"a\\u0000b\\u00e9\\ud83d\\ude00\\ud800"'), "a\0b\u{e9}\u{1f600}\xed\xa0\x80",
    "escapes: NUL, BMP, a pair, a lone surrogate as its 3 bytes")
  T.eq(json.decode('"' .. ("x"):rep(100000) .. '\\n"'), ("x"):rep(100000) .. "\n", "a long escaped string")
  T.eq(json.decode("\239\187\191[1]")[1], 1, "a leading BOM is skipped")
  local deep = ("["):rep(64) .. ("]"):rep(64)
  T.ok(json.decode(deep), "64 levels")
  local nope, msg = json.decode("[" .. deep .. "]")
  T.eq(nope, nil, "65 levels")
  T.eq(msg, "invalid JSON: nesting deeper than 64 at byte 64", "  refused where they open")
  for text, want in pairs {
    [""] = "unexpected end of input at byte 0", ['{"a" 1}'] = "expected ':' at byte 5",
    ["[1,]"] = "expected a value at byte 3", ["{} x"] = "unexpected data after the value at byte 3",
    ['"a'] = "unterminated string starting at byte 0", ["[01]"] = "leading zero in a number at byte 1",
  } do
    local r, e = json.decode(text)
    T.eq(r, nil, text)
    T.eq(e, "invalid JSON: " .. want, "message for " .. text)
  end
  T.eq(select(2, json.decode(nil)), "invalid JSON: expected a string, got nil", "not a string")
end)

T.case("core.json_decode: its own arguments", function()
  local MT = {}
  local v = core.json_decode("[[],{},null]", MT, false)
  T.eq(getmetatable(v), MT, "arrays get the given metatable")
  T.eq(getmetatable(v[1]), MT, "  empty ones too")
  T.eq(v[3], false, "null in an array is the given value")
  local plain = core.json_decode("[1,null,3]", nil, nil)
  T.eq(getmetatable(plain), nil, "no metatable when none is given")
  T.eq(plain[3], 3, "a nil null keeps the later elements in their places")
  T.eq(core.json_decode("[[1]]", MT, nil, 1), nil, "max_depth")
  T.raises(function() core.json_decode("[]", MT, nil, 0) end, "must be 1..1024")
  T.raises(function() core.json_decode("[]", "x") end, "table expected")
  T.raises(function() core.json_decode({}) end, "string expected")
  -- a large document in one go, twice, then the collector (GC stress is the harness's)
  local parts = {}
  for i = 1, 20000 do parts[i] = string.format('{"i":%d,"s":"v\\t%d","f":%d.5}', i, i, i) end
  local big = "[" .. table.concat(parts, ",") .. "]"
  for _ = 1, 2 do
    local arr = core.json_decode(big, MT, false)
    T.eq(#arr, 20000, "20000 objects")
    T.eq(arr[20000].s, "v\t20000", "the last one's string")
    T.eq(arr[7].f, 7.5, "a float")
  end
end)

T.case("image_size reads dimensions from headers", function()
  local w, h = core.image_size(T.read(T.source_dir .. "/tests/fixtures/a.png"))
  T.eq(w, 64, "a.png width")
  T.eq(h, 48, "a.png height")
  w, h = core.image_size(T.read(T.source_dir .. "/tests/fixtures/b.jpg"))  -- progressive (SOF2)
  T.eq(w, 48, "b.jpg width")
  T.eq(h, 64, "b.jpg height")
  T.eq(select(2, core.image_size("GIF89a\64\1\240\0")), 240, "gif")
  local vp8l = "RIFF\26\0\0\0WEBPVP8L\13\0\0\0\47" .. string.pack("<I4", (400 - 1) | (300 - 1) << 14)
  T.eq(table.concat({ core.image_size(vp8l) }, "x"), "400x300", "webp lossless")
  local png = T.read(T.source_dir .. "/tests/fixtures/a.png")
  local none, err = core.image_size(png:sub(1, 23))
  T.eq(none, nil, "a PNG cut inside its header")
  T.eq(err, "no image size in the png header (cut short or malformed)", "  says so")
  none, err = core.image_size(T.read(T.source_dir .. "/tests/fixtures/not-an-image.png"))
  T.eq(none, nil, "text named .png")
  T.eq(err, "not a PNG, JPEG, GIF or WebP image", "  says so")
  T.raises(function() core.image_size(nil) end, "string expected")
end)

T.case("url: origins, re-basing and refusing userinfo", function()
  T.eq(url.origin("HTTPS://Queue.Fal.Run/x"), "https://queue.fal.run:443", "origin normalised")
  T.eq(url.origin("http://127.0.0.1:8080/fal"), "http://127.0.0.1:8080", "explicit port")
  local base = url.parse("http://127.0.0.1:8080/fal/")
  T.eq(url.rebase("https://queue.fal.run/fal-ai/x/requests/1/status", base),
    "http://127.0.0.1:8080/fal/fal-ai/x/requests/1/status", "SPEC §2 example")
  T.eq(url.rebase("https://other/fal/fal-ai/x/requests/1?logs=1", base),
    "http://127.0.0.1:8080/fal/fal-ai/x/requests/1?logs=1", "prefix not doubled, query kept")
  T.eq(url.parse("ftp://x/"), nil, "only http(s)")
  T.eq(url.parse("https://user:pw@host/"), nil, "no userinfo")
  T.eq(url.with_query("http://h/p", { fal_webhook = "http://w/a b" }),
    "http://h/p?fal_webhook=http%3A%2F%2Fw%2Fa%20b", "escaped query")
end)

T.run()
