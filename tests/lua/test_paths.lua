-- test_paths.lua: a path with a NUL byte in it ("a.png\0.txt") is refused by every binding
-- function that takes one, naming the argument, and nothing is read or made at the path the
-- NUL would have cut it to. C stops a string at its first NUL, so without the check the
-- binding would quietly use "a.png".
local T = require "testlib"
local core = require "editflow.core"
local editflow = require "editflow"

local A = T.source_dir .. "/tests/fixtures/a.png"

local function refused(what, fn, arg)
  local msg = T.raises(fn, "must not contain a NUL byte")
  T.contains(msg, arg, what .. " names the argument")
end

T.case("every core function taking a path refuses a NUL byte in it", function()
  local d = T.tmpdir()
  local cut = d .. "/a.png"           -- where the NUL would cut each path below
  local p = cut .. "\0.txt"
  refused("mkdir", function() core.mkdir(p) end, "bad argument #1 to 'mkdir'")
  refused("write_file", function() core.write_file(p, "bytes") end, "bad argument #1 to 'write_file'")
  refused("open_log", function() core.open_log(p) end, "bad argument #1 to 'open_log'")
  T.eq(T.exists(cut), false, "nothing was made at the cut path")
  T.eq(#core.listdir(d), 0, "the folder is still empty")
  assert(core.write_file(cut, "real"))
  refused("read_file", function() core.read_file(p, 100) end, "bad argument #1 to 'read_file'")
  refused("file_stamp", function() core.file_stamp(p) end, "bad argument #1 to 'file_stamp'")
  refused("listdir", function() core.listdir(d .. "\0/x") end, "bad argument #1 to 'listdir'")
  refused("fsync_dir", function() core.fsync_dir(d .. "\0/x") end, "bad argument #1 to 'fsync_dir'")
  refused("glob", function() core.glob(d .. "/*\0.txt") end, "bad argument #1 to 'glob'")
  local loop = core.loop()
  refused("loop:request{file=}", function()
    loop:request { url = "http://127.0.0.1:9/x.png", file = d .. "\0/sub" }
  end, "field 'file'")
  T.eq(loop:running(), 0, "no transfer was started")
  loop:close()
  -- the same calls without the NUL still work
  T.eq(core.read_file(cut, 100), "real", "read_file without a NUL")
  T.ok(core.file_stamp(cut), "file_stamp without a NUL")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a local image path with a NUL is an error, not the file before the NUL", function()
  local c = editflow.client { key = "k", base_url = "http://127.0.0.1:9" }
  T.ok(c:prepare { prompt = "p", image_urls = { A } }, "the image itself is fine")
  T.raises(function() c:prepare { prompt = "p", image_urls = { A .. "\0.txt" } } end,
    "must not contain a NUL byte")
end)

T.run()
