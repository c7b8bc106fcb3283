-- test_loop.lua: the binding's Loop and Transfer types: lifecycles, limits, misuse, GC.
local T = require "testlib"
local core = require "editflow.core"

local sb = T.sandbox()
local STATS = sb.url .. "/_sandbox/stats"

local function wait(loop, t)
  for _ = 1, 400 do
    if t:done() then return end
    loop:step(50)
  end
  error("transfer did not finish in 20 s")
end

T.case("request, step and response", function()
  local loop = core.loop()
  local t = assert(loop:request { url = STATS, headers = { "X-Test: 1", Accept = "application/json" } })
  T.eq(t:state(), "running", "state after start")
  T.eq(loop:running(), 1, "running count")
  local seen = {}
  for _ = 1, 400 do
    for _, done in ipairs(loop:step(50)) do seen[#seen + 1] = done end
    if #seen > 0 then break end
  end
  T.eq(#seen, 1, "step reports the finished transfer once")
  T.eq(seen[1], t, "the same userdata comes back")
  local r = assert(t:response())
  T.eq(r.status, 200, "status")
  T.eq(r.headers, nil, "headers only on request")
  T.match(t:headers()["content-type"], "application/json", "headers lower-cased")
  T.match(r.body, '"requests"', "body")
  T.eq(#loop:step(0), 0, "reported only once")
  t:close()
  t:close()  -- idempotent
  T.raises(function() t:response() end, "closed transfer")
end)

T.case("many transfers at once, each reported exactly once", function()
  local loop = core.loop()
  local ts, seen = {}, {}
  for i = 1, 50 do ts[i] = assert(loop:request { url = STATS }) end
  for _ = 1, 400 do
    for _, done in ipairs(loop:step(50)) do
      T.eq(seen[done], nil, "reported twice")
      seen[done] = true
    end
    if loop:running() == 0 then break end
  end
  for i = 1, 50 do
    T.ok(seen[ts[i]], "transfer " .. i .. " reported")
    T.eq(ts[i]:response().status, 200, "status")
  end
end)

T.case("transport failures are values with stable codes", function()
  local loop = core.loop()
  local t = assert(loop:request { url = "http://127.0.0.1:9/", connect_timeout = 2000 })
  wait(loop, t)
  local r, msg, code = t:response()
  T.eq(r, nil, "no response")
  T.eq(code, "COULDNT_CONNECT", "code")
  T.ok(#msg > 0, "message")
  t = assert(loop:request { url = STATS, max_body = 8 })
  wait(loop, t)
  T.eq(select(3, t:response()), "BODY_TOO_LARGE", "body limit")
end)

T.case("misuse raises with the field named", function()
  local loop = core.loop()
  T.raises(function() loop:request {} end, "request field 'url' is required")
  T.raises(function() loop:request { url = STATS, method = "BREW" } end, "'method' must be one of GET, POST")
  T.raises(function() loop:request { url = STATS, timeout = -1 } end, "'timeout' must be an integer")
  T.raises(function() loop:request { url = STATS, headers = { "A: b\r\nC: d" } } end, "CR or LF are not allowed")
  local err = T.raises(function() loop:request { url = STATS, headers = { Authorization = "Key secret\r\nX: y" } } end,
    "bad request header 'Authorization'")
  T.ok(not err:find("secret", 1, true), "the error does not print the header's value")
  -- A value with metamethods is refused, never converted: no Lua may run mid-request.
  local sneaky = setmetatable({}, { __concat = function() error("metamethod ran") end,
    __tostring = function() error("metamethod ran") end })
  T.raises(function() loop:request { url = STATS, file = "/tmp", headers = { X = sneaky } } end,
    "request header X must be a string")
  T.raises(function() loop:request { url = STATS, body = {} } end, "'body' must be a string")
  T.raises(function() core.loop().request(nil, {}) end, "editflow.Loop expected")
  loop:close()
  T.raises(function() loop:step() end, "closed loop")
end)

T.case("file downloads commit atomically or leave nothing", function()
  local loop, d = core.loop(), T.tmpdir()
  local t = assert(loop:request { url = STATS, file = d })
  wait(loop, t)
  local r = assert(t:response())
  T.ok(r.file and r.file:find("/.editflow-", 1, true), "temporary file named")
  assert(t:commit(d .. "/stats.json"))
  T.match(T.read(d .. "/stats.json"), '"requests"', "committed content")
  t:close()
  local t2 = assert(loop:request { url = STATS, file = d })
  wait(loop, t2)
  t2:close()  -- not committed: the temporary file goes
  T.eq(table.concat(T.list_dir(d), ","), "stats.json", "only the committed file remains")
  local t3, msg, code = loop:request { url = STATS, file = d .. "/missing" }
  T.eq(t3, nil, "cannot create the file")
  T.eq(code, "FILE_OPEN", "code")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("loop:digest: a file's SHA-256 and size, read on a disk worker", function()
  local loop, d = core.loop(), T.tmpdir()
  local path = d .. "/bytes.bin"
  local f = assert(io.open(path, "wb"))
  f:write(string.rep("editflow", 40000))  -- 320,000 bytes: more than one read
  f:close()
  local op = assert(loop:digest(path))
  T.raises(function() op:digest() end, "still running")
  wait(loop, op)
  local sum, size = op:digest()
  local want, want_size = core.sha256_file(path)
  T.eq(sum, want, "the same digest as core.sha256_file")
  T.eq(size, 320000, "and size")
  T.eq(want_size, 320000, "(core.sha256_file's size)")
  T.eq(op:result(), true, "the op worked")
  op:close()
  local missing = assert(loop:digest(d .. "/missing.bin"))
  wait(loop, missing)
  local none, msg, code = missing:digest()
  T.eq(none, nil, "a file that is not there has no digest")
  T.contains(msg, "missing.bin", "the message names the file")
  T.eq(code, "FILE_WRITE", "code")
  missing:close()
  local sync = assert(loop:sync_dir(d))
  wait(loop, sync)
  T.raises(function() sync:digest() end, "not a digest operation")
  sync:close()
  T.raises(function() loop:digest(d .. "/a\0b") end, "must not contain a NUL byte")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("loop:tempfile: a download's temporary file made on a disk worker, taken by a request", function()
  local loop, d = core.loop(), T.tmpdir()
  local op = assert(loop:tempfile(d))
  T.raises(function() loop:request { url = STATS, file = op } end, "holds no temporary file")
  wait(loop, op)
  T.eq(op:result(), true, "made")
  local names = T.list_dir(d)
  T.eq(#names, 1, "one file in the folder")
  T.match(names[1], "^%.editflow%-%w+%.part$", "named as request{file = dir} names it")
  local t = assert(loop:request { url = STATS, file = op })
  T.raises(function() loop:request { url = STATS, file = op } end, "holds no temporary file")
  op:close()  -- the request took the file: closing the op leaves it be
  wait(loop, t)
  local r = assert(t:response())
  T.eq(r.file, d .. "/" .. names[1], "the transfer wrote into the op's file")
  assert(t:commit(d .. "/stats.json"))
  t:close()
  T.match(T.read(d .. "/stats.json"), '"requests"', "committed content")
  T.eq(table.concat(T.list_dir(d), ","), "stats.json", "only the committed file remains")
  -- one no request took goes with its op; so does one whose request could not start
  local unused = assert(loop:tempfile(d))
  wait(loop, unused)
  T.eq(#T.list_dir(d), 2, "made")
  unused:close()
  T.eq(table.concat(T.list_dir(d), ","), "stats.json", "an op closed untaken removes its file")
  local dropped = assert(loop:tempfile(d))
  wait(loop, dropped)
  dropped = nil
  collectgarbage()
  collectgarbage()
  T.eq(table.concat(T.list_dir(d), ","), "stats.json", "so does one collected")
  local bad = assert(loop:tempfile(d))
  wait(loop, bad)
  local t2 = assert(loop:request { url = "http://127.0.0.1:9/refused", file = bad })
  bad:close()
  wait(loop, t2)
  T.eq(t2:response(), nil, "a download that failed")
  t2:close()
  T.eq(table.concat(T.list_dir(d), ","), "stats.json", "leaves no file either")
  -- a folder it cannot make a file in: the same words request{file = dir} has
  local missing = assert(loop:tempfile(d .. "/missing"))
  wait(loop, missing)
  local ok, msg = missing:result()
  local _, want = loop:request { url = STATS, file = d .. "/missing" }
  T.eq(ok, nil, "not made")
  T.eq(msg, want, "the message request{file = dir} gives")
  T.contains(msg, d .. "/missing: No such file or directory", "naming the folder and why")
  T.raises(function() loop:request { url = STATS, file = missing } end, "holds no temporary file")
  missing:close()
  local sse = assert(loop:tempfile(d))
  wait(loop, sse)
  T.raises(function() loop:request { url = STATS, file = sse, sse = true } end, "exclude each other")
  sse:close()
  local sync = assert(loop:sync_dir(d))
  wait(loop, sync)
  T.raises(function() loop:request { url = STATS, file = sync } end, "holds no temporary file")
  sync:close()
  T.raises(function() loop:request { url = STATS, file = io.stdout } end, "must be a folder or a loop:tempfile")
  T.raises(function() loop:tempfile(d .. "/a\0b") end, "must not contain a NUL byte")
  T.eq(table.concat(T.list_dir(d), ","), "stats.json", "nothing else left behind")
  os.execute("rm -rf " .. T.quote(d))
end)

-- save's temporary file: asked of a disk worker when a host owns the loop (its thread must not
-- wait on the filesystem), made in place when editflow drives its own loop (no host waits, and
-- the worker's round trip costs a turn per download); a failure has the same code and words.
local SAVE_CHILD = [=[
local editflow = require "editflow"
local runtime = require "editflow.runtime"
local save = require "editflow.save"
local hosted, url, gone = arg[1] == "hosted", arg[2], arg[3]
if hosted then editflow.embed() end
local made_ops, real = 0, runtime.loop().tempfile
local lmt = getmetatable(runtime.loop()).__index
lmt.tempfile = function(...) made_ops = made_ops + 1 return real(...) end
local res
editflow.spawn(function()
  res = table.pack(save.save(runtime.loop(), { images = { { url = url } } }, gone,
    { made = { [gone] = true }, request_id = "req-1", name = "out" }))
end)
if hosted then
  local guard = 0
  while editflow.pending() > 0 and guard < 10000 do editflow.step(10) guard = guard + 1 end
else
  editflow.run()
end
print("ops=" .. made_ops)
print("saved=" .. tostring(res[1]))
print("code=" .. tostring(res[2] and res[2].code))
print("message=" .. tostring(res[2] and res[2].message))
]=]

for _, mode in ipairs { "hosted", "own" } do
  T.case("save (" .. mode .. " loop): the download's temporary file "
      .. (mode == "hosted" and "comes from a disk worker" or "is made in place")
      .. "; one it cannot make fails as before", function()
    local d = T.tmpdir()
    local gone = d .. "/gone"  -- taken for made (opts.made), then not there: no file can be made
    local st, v, _, err = T.lua_child(SAVE_CHILD, nil, { mode, STATS, gone })
    T.eq(st, 0, "the child ran: " .. err)
    T.eq(v.ops, mode == "hosted" and "1" or "0", "disk-worker tempfile ops")
    T.eq(v.saved, "nil", "not saved")
    T.eq(v.code, "FILE_OPEN", "the code a request{file = dir} that failed has")
    T.eq(v.message, "download out-1 failed: " .. gone .. ": No such file or directory", "the words it has")
    T.eq(#T.list_dir(d), 0, "nothing left behind")
    os.execute("rm -rf " .. T.quote(d))
  end)
end

T.case("abort, and a loop collected with transfers in flight", function()
  local loop = core.loop()
  local t = assert(loop:request { url = STATS })
  t:abort()
  T.eq(t:state(), "done", "aborted transfer is done")
  T.eq(select(3, t:response()), "ABORTED", "code")
  T.eq(loop:running(), 0, "loop forgot it")
  -- Drop a loop with 20 transfers running: finalisers must cope in any order.
  do
    local l2 = core.loop()
    for _ = 1, 20 do l2:request { url = STATS } end
  end
  collectgarbage()
  collectgarbage()
  local l3 = core.loop()
  local kept = {}
  for i = 1, 5 do kept[i] = l3:request { url = STATS } end
  l3:close()  -- closing aborts what runs
  for i = 1, 5 do T.eq(kept[i]:state(), "done", "aborted by close") end
end)

T.case("loop:hold(): the descriptor's timer waits for the next loop:arm (one arming a turn)", function()
  if core.poller == "poll" then return end  -- the poll(2) engine has no descriptor to arm
  local uv = require "luv"
  local function readable(fd)  -- whether the descriptor is readable now (one poll, no wait)
    local p, seen = uv.new_poll(fd), false
    p:start("r", function() seen = true end)
    uv.run("nowait")
    p:stop()
    p:close()
    uv.run("nowait")
    return seen
  end
  local loop = core.loop()
  local fd = assert(loop:pollfd())
  T.ok(not readable(fd), "idle: not readable")
  loop:hold()
  local t = assert(loop:request { url = STATS })  -- libcurl asks to be called at once
  local t0 = core.monotime()
  while core.monotime() - t0 < 0.05 do end
  T.ok(not readable(fd), "held: libcurl's timer did not arm the descriptor")
  loop:arm(nil)
  T.ok(readable(fd), "the next arm did: the transfer is due")
  wait(loop, t)
  assert(t:response())
  t:close()
  -- unheld, each move arms at once
  local t2 = assert(loop:request { url = STATS })
  T.ok(readable(fd), "without a hold, a new transfer arms the descriptor by itself")
  wait(loop, t2)
  t2:close()
  loop:close()
end)

-- A wakeup armed 120 s ahead is what a step that ignores its timeout would wait for: a bound
-- of 30 s is a guard against that hang, never a measure of speed. A hundred step(0) calls
-- take microseconds; each waiting even 0.3 s would pass the bound. A step asked to wait 30 ms
-- waits at least that (a load can only make it longer).
T.case("step(0) does not wait, and step waits as long as asked", function()
  local loop = core.loop()
  loop:arm(120000)
  local t0 = core.monotime()
  for _ = 1, 100 do
    loop:step(0)
    if core.monotime() - t0 > 30 then break end  -- one step(0) that waits for the wakeup is enough
  end
  local dt = core.monotime() - t0
  T.ok(dt < 30, "100 x step(0) did not wait for the wakeup 120 s ahead (took " .. dt .. " s)")
  t0 = core.monotime()
  loop:step(30)
  dt = core.monotime() - t0
  T.ok(dt >= 0.025, "step(30) waited its 30 ms (took " .. dt .. " s)")
  T.ok(dt < 30, "step(30) returned long before the wakeup 120 s ahead (took " .. dt .. " s)")
  loop:arm(nil)
  loop:close()
end)

T.run()
