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
