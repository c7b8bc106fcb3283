-- test_install.lua: `cmake --install` into a temporary prefix, then a stock lua5.4 that knows
-- only that prefix (LUA_PATH / LUA_CPATH as the README says) runs client:edit{} and saves.
local T = require "testlib"

local sb = T.sandbox { "--job-time", "0.05" }

T.case("installed layout works from a stock lua5.4", function()
  local prefix = T.tmpdir()
  local st, out, err = T.sh("cmake --install " .. T.quote(T.build_dir) .. " --prefix " .. T.quote(prefix))
  T.eq(st, 0, "cmake --install: " .. tostring(err) .. tostring(out))
  T.ok(T.exists(prefix .. "/bin/editflow"), "host in bin/")
  T.ok(T.exists(prefix .. "/lib/lua/5.4/editflow/core.so"), "C module in lib/lua/5.4/editflow/")
  T.ok(T.exists(prefix .. "/share/lua/5.4/editflow/init.lua"), "Lua files in share/lua/5.4/editflow/")
  local script = prefix .. "/try.lua"
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
local editflow = require "editflow"
assert(package.searchpath("editflow", package.path):find(%q, 1, true), "loaded from the prefix")
local c = editflow.client{ base_url = %q, storage_url = %q, key = "test-key", schema_url = false }
assert(c:model().source == "shipped", "the shipped schemas are installed")
local result, job = assert(c:edit{ prompt = "installed", image_urls = { %q } })
for _, p in ipairs(assert(job:save(%q))) do print(p) end
]], prefix, sb.url, sb.url, T.source_dir .. "/tests/fixtures/a.png", prefix .. "/out"))
  f:close()
  -- (LD_PRELOAD and ASAN_OPTIONS: the ASan runtime, only in the sanitizer build)
  local cmd = string.format("env -u FAL_KEY LD_PRELOAD=%s ASAN_OPTIONS=%s LUA_PATH=%s LUA_CPATH=%s lua5.4 %s",
    T.quote(os.getenv("LD_PRELOAD") or ""), T.quote(os.getenv("ASAN_OPTIONS") or ""),
    T.quote(prefix .. "/share/lua/5.4/?.lua;" .. prefix .. "/share/lua/5.4/?/init.lua;;"),
    T.quote(prefix .. "/lib/lua/5.4/?.so;;"), T.quote(script))
  st, out, err = T.sh(cmd)
  T.eq(st, 0, "stock lua5.4 ran the edit: " .. tostring(err))
  T.match(out, "^" .. prefix:gsub("%p", "%%%0") .. "/out/[%w-]+%-1%.png\n$", "one saved path")
  st, out = T.sh(T.quote(prefix .. "/bin/editflow") .. " --version")
  T.eq(st, 0, "installed host runs")
  os.execute("rm -rf " .. T.quote(prefix))
end)

T.run()
