-- testlib.lua: the small harness every Lua test file uses.
-- Cases run in order under xpcall with a traceback; after each, the collector runs twice (GC
-- stress: a finaliser that frees too early or too late shows up here). Sandboxes started
-- through T.sandbox() are stopped by PID when the run ends, whatever happened. The closing
-- line is "N passed, N failed", and the exit status is non-zero on any failure.
local core = require "editflow.core"
local json = require "editflow.json"

local T = {}

local cases, sandboxes = {}, {}

-- In the sanitizer build the ASan runtime is preloaded into lua5.4 (tests/CMakeLists.txt);
-- the tools the tests start (python, sh, ps) must not inherit it.
local UNPRELOAD = "env -u LD_PRELOAD -u ASAN_OPTIONS "

T.source_dir = assert(os.getenv("EDITFLOW_SOURCE_DIR"), "EDITFLOW_SOURCE_DIR is not set")
T.build_dir = assert(os.getenv("EDITFLOW_BUILD_DIR"), "EDITFLOW_BUILD_DIR is not set")

function T.case(name, fn) cases[#cases + 1] = { name = name, fn = fn } end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

function T.eq(got, want, what)
  if got ~= want then
    error(string.format("%s: expected %s, got %s", what or "value", show(want), show(got)), 2)
  end
end

function T.ok(v, what)
  if not v then error((what or "assertion") .. " failed", 2) end
  return v
end

function T.match(s, pattern, what)
  if type(s) ~= "string" or not s:find(pattern) then
    error(string.format("%s: %s does not match %q", what or "text", show(s), pattern), 2)
  end
end

function T.contains(s, plain, what)
  if type(s) ~= "string" or not s:find(plain, 1, true) then
    error(string.format("%s: %s does not contain %s", what or "text", show(s), show(plain)), 2)
  end
end

-- Calls fn, which must raise; the message must contain `plain` (a plain substring).
function T.raises(fn, plain)
  local ok, err = pcall(fn)
  if ok then error("expected an error containing " .. show(plain) .. ", but none was raised", 2) end
  if not tostring(err):find(plain, 1, true) then
    error(string.format("error %s does not contain %s", show(tostring(err)), show(plain)), 2)
  end
  return tostring(err)
end

function T.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(core.mkdir(p))
  return p
end

function T.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- How many times the plain text `plain` occurs in s (not overlapping).
function T.count(s, plain)
  local n, at = 0, 1
  while true do
    local i = s:find(plain, at, true)
    if not i then return n end
    n, at = n + 1, i + #plain
  end
end

function T.exists(path) return T.read(path) ~= nil end

function T.list_dir(dir)
  local out = {}
  local p = io.popen(UNPRELOAD .. "ls -A '" .. dir .. "'")
  for line in p:lines() do out[#out + 1] = line end
  p:close()
  table.sort(out)
  return out
end

-- T.new_photo(dir, tag) -> a copy of tests/fixtures/a.png in dir with a tail of its own: new
-- content each call, so no earlier upload of it is remembered anywhere.
local photos = 0
function T.new_photo(dir, tag)
  photos = photos + 1
  local path = string.format("%s/photo-%d-%d.png", dir, photos, os.time())
  local bytes = T.read(T.source_dir .. "/tests/fixtures/a.png")
  assert(require("editflow.core").write_file(path, bytes .. "\0" .. tag .. "-" .. photos .. "-" .. tostring(os.clock())))
  return path
end

-- T.modules() -> every Lua module under lua/editflow: { mod = "editflow.x.y", path = file,
-- rel = "x/y.lua" }, walking folders (init.lua is its folder's module).
function T.modules()
  local core = require "editflow.core"
  local list = {}
  local function walk(dir, prefix, rel)
    for _, name in ipairs(core.listdir(dir) or {}) do
      local path = dir .. "/" .. name
      if name:find("%.lua$") then
        local stem = name:gsub("%.lua$", "")
        local mod = stem == "init" and prefix or (prefix .. "." .. stem)
        list[#list + 1] = { mod = mod, path = path, rel = rel .. name }
      elseif core.listdir(path) then
        walk(path, prefix .. "." .. name, rel .. name .. "/")
      end
    end
  end
  walk(T.source_dir .. "/lua/editflow", "editflow", "")
  return list
end

-- Blocking GET/POST to the sandbox's introspection routes (no credential needed there).
local loop = core.loop()
local function fetch(method, u, body)
  local t = assert(loop:request { url = u, method = method, body = body,
    headers = body and { "Content-Type: application/json" } or nil })
  while not t:done() do loop:step(50) end
  local r = assert(t:response())
  t:close()
  return r
end

-- T.sandbox{ "--prefix", "/fal", ... } -> sandbox { url, pid, stats(), jobs(), reset(), stop() }
function T.sandbox(extra)
  local script = T.source_dir .. "/tests/sandbox/sandbox.py"
  local argv = { "python3", "-u", script, "--port", "0", "--quiet", "--exit-with-parent" }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  for i, a in ipairs(argv) do argv[i] = "'" .. a:gsub("'", "'\\''") .. "'" end
  local p = io.popen("echo $$; exec " .. UNPRELOAD .. table.concat(argv, " ") .. " 2>/dev/null", "r")
  local pid = tonumber(p:read("l"))
  local line = p:read("l")  -- the sandbox prints exactly one line once it listens
  local url = line and line:match("^SANDBOX_URL=(%S+)$")
  local sb = { pid = pid, url = url, pipe = p }
  sandboxes[#sandboxes + 1] = sb
  if not url then error("sandbox did not start: " .. tostring(line)) end
  function sb.stats() return json.decode(fetch("GET", url .. "/_sandbox/stats").body) end
  function sb.jobs() return json.decode(fetch("GET", url .. "/_sandbox/jobs").body) end
  function sb.reset() fetch("POST", url .. "/_sandbox/reset") end
  -- sb.control{ outage = {...}, repeat_id = n, hostile = true, keepalive = s, reset_faults = true }
  function sb.control(t)
    local r = fetch("POST", url .. "/_sandbox/control", json.encode(t))
    assert(r.status == 200, "control refused: " .. tostring(r.body))
  end
  function sb.stop()
    if sb.pipe then
      -- TERM, then up to 5 s for a clean exit, then KILL: never an unbounded wait.
      -- (an exited sandbox stays a zombie until pclose reaps it, so "gone" includes state Z).
      local script = string.format("kill %d 2>/dev/null; i=0; while [ $i -lt 50 ]; do "
        .. "case \"$(ps -o stat= -p %d)\" in Z*|'') break;; esac; sleep 0.1; i=$((i+1)); done; "
        .. "kill -9 %d 2>/dev/null", sb.pid, sb.pid, sb.pid)
      os.execute(UNPRELOAD .. "sh -c " .. T.quote(script))
      sb.pipe:close()
      sb.pipe = nil
    end
  end
  return sb
end

-- Runs a shell command; returns exit status, stdout, stderr.
function T.sh(cmd)
  local out, err = os.tmpname(), os.tmpname()
  local ok, how, code = os.execute(UNPRELOAD .. "sh -c " .. T.quote(cmd) .. " >" .. out .. " 2>" .. err)
  local status = how == "exit" and code or 128 + code
  local o, e = T.read(out), T.read(err)
  os.remove(out)
  os.remove(err)
  return status, o, e
end

-- Runs Lua source in a stock lua5.4 of its own (a host that takes editflow's loop for good, or
-- needs a fresh Lua state), in a fresh folder, bounded by timeout(1): -> exit status, the
-- KEY=VALUE lines it printed as a table, stdout, stderr. `prefix` goes before the command
-- (environment assignments); `args` after it, quoted. Not through T.sh: in the sanitizer
-- build the child needs this process's preloaded ASan runtime to load editflow.core.
function T.lua_child(src, prefix, args)
  local d = T.tmpdir()
  local f = assert(io.open(d .. "/child.lua", "w"))
  f:write(src)
  f:close()
  local quoted = {}
  for i, a in ipairs(args or {}) do quoted[i] = T.quote(a) end
  local _, how, code = os.execute(string.format("cd %s && %s timeout 60 lua5.4 child.lua %s >out.txt 2>err.txt",
    T.quote(d), prefix or "", table.concat(quoted, " ")))
  local out, err = T.read(d .. "/out.txt") or "", T.read(d .. "/err.txt") or ""
  os.execute("rm -rf " .. T.quote(d))
  local vals = {}
  for k, v in out:gmatch("(%w+)=([^\n]*)") do vals[k] = v end
  return how == "exit" and code or 128 + code, vals, out, err
end

function T.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Whatever ends the run (a top-level error included), lua_close finalises this guard, and the
-- guard stops every sandbox still running.
T._guard = setmetatable({}, { __gc = function()
  for _, sb in ipairs(sandboxes) do sb.stop() end
end })

function T.run()
  local passed, failed = 0, 0
  for _, c in ipairs(cases) do
    local t0 = core.monotime()
    local ok, err = xpcall(c.fn, debug.traceback)
    local dt = core.monotime() - t0
    collectgarbage()
    collectgarbage()
    if ok then
      passed = passed + 1
      print(string.format("ok - %s (%.2f s)", c.name, dt))
    else
      failed = failed + 1
      print("FAIL - " .. c.name .. "\n" .. tostring(err))
    end
  end
  for _, sb in ipairs(sandboxes) do sb.stop() end
  print(string.format("%d passed, %d failed", passed, failed))
  os.exit(failed == 0 and 0 or 1, true)
end

return T
