-- test_durability.lua: what a user keeps, and what the queue counts, when an `editflow` run
-- is stopped by a signal, meets a second run on its folder, fills the disk, is killed with
-- SIGKILL again and again, or is handed a device or a FIFO as its image. Every process this
-- file starts runs in the background with its PID recorded, is waited for with a bounded loop,
-- and is killed by that PID in cleanup; mounts are undone whatever happens.
local T = require "testlib"
local core = require "editflow.core"
local json = require "editflow.json"
local journal = require "editflow.journal"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local A = T.source_dir .. "/tests/fixtures/a.png"
local KEY = "test-key-durability-4c1e"
local EP = "fal-ai/qwen-image-edit-plus"
local UNPRELOAD = "env -u LD_PRELOAD -u ASAN_OPTIONS "
local q = T.quote

local sb = T.sandbox { "--key", KEY, "--workers", "8", "--job-time", "0.05" }

---------------------------------------------------------------------------------------------
-- processes: started in the background, PID recorded, waited for with bounds, killed by PID

local procs, mounts = {}, {}

local function sleep(s) os.execute(UNPRELOAD .. "sleep " .. string.format("%.3f", s)) end

local function signal(pid, sig) os.execute(UNPRELOAD .. "kill -" .. sig .. " " .. pid .. " 2>/dev/null") end

-- "env NAME=VALUE ... BIN ARGS..." for a sandbox (extra: names -> values; prefix: words before env).
local function command(url, args, extra, prefix)
  local parts = { prefix or "", "env" }
  local e = { FAL_KEY = KEY, EDITFLOW_BASE_URL = url, EDITFLOW_STORAGE_URL = url, EDITFLOW_API_URL = url, EDITFLOW_AUTH = "key" }
  for k, v in pairs(extra or {}) do e[k] = v end
  for k, v in pairs(e) do parts[#parts + 1] = k .. "=" .. q(v) end
  parts[#parts + 1] = q(BIN)
  for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
  return table.concat(parts, " ")
end

-- Starts `cmd` (a shell command whose last step execs editflow, so $! is editflow's PID) in the
-- background. -> handle {pid, wrapper, out, err, rc, t0}
local function spawn(cmd)
  local d = T.tmpdir()
  local h = { dir = d, out = d .. "/out", err = d .. "/err", rc = d .. "/rc", pidf = d .. "/pid" }
  local inner = string.format("%s >%s 2>%s </dev/null & echo $! >%s.tmp && mv %s.tmp %s; wait $!; "
    .. "echo $? >%s.tmp; mv %s.tmp %s", cmd, q(h.out), q(h.err), q(h.pidf), q(h.pidf), q(h.pidf),
    q(h.rc), q(h.rc), q(h.rc))
  local _, o = T.sh("sh -c " .. q(inner) .. " </dev/null >/dev/null 2>&1 & echo $!")
  h.wrapper = tonumber(o:match("%d+"))
  procs[#procs + 1] = h
  for _ = 1, 200 do  -- up to 10 s for the PID file
    local p = T.read(h.pidf)
    if p and p:find("\n") then h.pid = tonumber(p:match("%d+")) break end
    sleep(0.05)
  end
  h.t0 = core.monotime()
  if not h.pid then error("the background process did not start: " .. cmd) end
  return h
end

-- -> exit status, or nil once `secs` passed with the process still running.
local function proc_wait(h, secs)
  local n = math.max(1, math.floor(secs / 0.05))
  for _ = 1, n do
    local rc = T.read(h.rc)
    if rc and rc:find("\n") then
      h.status = tonumber(rc:match("%d+"))
      h.t1 = core.monotime()
      return h.status
    end
    sleep(0.05)
  end
  return nil
end

-- Kills what is still running of one handle, by PID: editflow first, then its wrapper shell.
local function proc_stop(h)
  if h.status == nil and not (T.read(h.rc) or ""):find("\n") then
    if h.pid then signal(h.pid, "KILL") end
    proc_wait(h, 5)
  end
  if h.wrapper and h.status == nil then signal(h.wrapper, "KILL") end
end

-- Runs a command to its end within `secs` (killed by PID past that). -> status, out, err, seconds
local function run_bounded(cmd, secs)
  local h = spawn(cmd)
  local st = proc_wait(h, secs)
  if not st then
    proc_stop(h)
    error(string.format("still running after %d s, killed: %s\nstderr: %s", secs, cmd, tostring(T.read(h.err))))
  end
  return st, T.read(h.out) or "", T.read(h.err) or "", h.t1 - h.t0
end

local function umount(m)
  if m.mounted then
    os.execute(UNPRELOAD .. "umount " .. q(m.path) .. " 2>/dev/null || " .. UNPRELOAD .. "umount -l " .. q(m.path) .. " 2>/dev/null")
    m.mounted = false
    os.execute(UNPRELOAD .. "rmdir " .. q(m.path) .. " 2>/dev/null")
  end
end

local function cleanup()
  for _, h in ipairs(procs) do
    proc_stop(h)
    os.execute(UNPRELOAD .. "rm -rf " .. q(h.dir))
  end
  procs = {}
  for _, m in ipairs(mounts) do umount(m) end
end

-- Runs fn, then cleans up whatever happened; an error keeps its traceback.
local function guarded(fn)
  return function()
    local ok, err = xpcall(fn, debug.traceback)
    cleanup()
    if not ok then error(err, 0) end
  end
end

T._durability_guard = setmetatable({}, { __gc = cleanup })

-- EDITFLOW_TEST_ONLY=TEXT runs only the cases whose name contains TEXT (for exploring).
local only = os.getenv("EDITFLOW_TEST_ONLY")
local function case(name, fn)
  if only and only ~= "" and not name:find(only, 1, true) then return end
  T.case(name, fn)
end

---------------------------------------------------------------------------------------------
-- the sandbox's control route, the journal, the folder

local ctl_loop = core.loop()
local function post(url, body)
  local t = assert(ctl_loop:request { url = url, method = "POST", body = body,
    headers = { "Content-Type: application/json" } })
  local deadline = core.monotime() + 10
  while not t:done() and core.monotime() < deadline do ctl_loop:step(50) end
  assert(t:done(), "POST " .. url .. " did not finish")
  local r = assert(t:response())
  t:close()
  return r
end
local function control(s, obj) T.eq(post(s.url .. "/_sandbox/control", json.encode(obj)).status, 200, "control") end

-- -> records, number of lines that are not JSON objects, whether the file ends with "\n", raw text
local function read_journal(dir)
  local text = T.read(dir .. "/" .. journal.FILE) or ""
  local recs, bad = {}, 0
  for line in text:gmatch("[^\n]+") do
    local r = json.decode(line)
    if type(r) == "table" and type(r.t) == "string" then recs[#recs + 1] = r else bad = bad + 1 end
  end
  return recs, bad, text == "" or text:sub(-1) == "\n", text
end

local function records(dir, what)
  local out = {}
  for _, r in ipairs((read_journal(dir))) do if r.t == what then out[#out + 1] = r end end
  return out
end

local function files(dir, pattern)
  local out = {}
  for _, name in ipairs(T.list_dir(dir)) do if name:find(pattern) then out[#out + 1] = name end end
  return out
end

local function submits(s) return s.stats().submits_by_endpoint[EP] or 0 end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

---------------------------------------------------------------------------------------------
-- 1. SIGTERM, SIGHUP, and a second SIGTERM

local SLOW_SCRIPT = [[
local editflow = require "editflow"
local out, tag = arg[1], arg[2]
local c = editflow.client{ journal = out }
local _, errs = editflow.map({ 1, 2, 3 }, function(i)
  local _, job = assert(c:edit{ prompt = "[slow:120] " .. tag .. " " .. i,
    image_urls = { "https://cdn.example/a.png" }, seed = i })
  assert(job:save(out))
end, { concurrency = 3 })
if next(errs) then os.exit(1) end
]]

-- Starts the slow script and waits (bounded) until the journal holds 3 accepted records.
local function start_slow(d, tag, sigprefix)
  local script = d .. "/slow.lua"
  write(script, SLOW_SCRIPT)
  local out = d .. "/out"
  local h = spawn(command(sb.url, { "run", "-q", script, out, tag }, nil, sigprefix))
  for _ = 1, 200 do
    if #records(out, "accepted") >= 3 then break end
    sleep(0.05)
  end
  T.eq(#records(out, "accepted"), 3, tag .. ": three jobs accepted before the signal")
  return h, out
end

case("SIGTERM and SIGHUP cancel every job in flight at the queue, journal it, exit 143 / 129", guarded(function()
  for _, c in ipairs { { "TERM", 143 }, { "HUP", 129 } } do
    local sig, want = c[1], c[2]
    local d = T.tmpdir()
    local before = sb.stats()
    -- SIGHUP ignored at start stays ignored (nohup); make sure the test itself does not inherit that.
    local h, out = start_slow(d, "sig" .. sig, "env --default-signal=HUP")
    local ids = {}
    for _, r in ipairs(records(out, "accepted")) do ids[#ids + 1] = r.request_id end
    -- the cancels take a moment (at most their 5 s bound); a run that let its jobs end would
    -- take their 120 s: 40 s is a guard against that, not a measure
    local t0 = core.monotime()
    signal(h.pid, sig)
    local st = proc_wait(h, 40)
    T.eq(st, want, "SIG" .. sig .. ": exit status (nil: still running 40 s after the signal); stderr: "
      .. tostring(T.read(h.err)))
    T.ok(core.monotime() - t0 < 40, "SIG" .. sig .. ": ended long before its jobs would have")
    local err = T.read(h.err)
    T.contains(err, "stopped by SIG" .. sig, "SIG" .. sig .. ": says which signal stopped it")
    T.contains(err, "3 jobs in flight, cancel requested for 3", "SIG" .. sig .. ": summary")
    for _, id in ipairs(ids) do T.contains(err, id, "SIG" .. sig .. ": lists request id") end
    T.ok(not err:find("traceback", 1, true), "SIG" .. sig .. ": no traceback: " .. err)
    local after = sb.stats()
    T.eq(after.submits_by_endpoint[EP] - (before.submits_by_endpoint[EP] or 0), 3, "SIG" .. sig .. ": 3 submits")
    T.eq(after.duplicate_submits - before.duplicate_submits, 0, "SIG" .. sig .. ": no duplicate submit")
    T.eq(after.by_route.cancel - before.by_route.cancel, 3, "SIG" .. sig .. ": 3 cancels reached the queue")
    T.eq(after.cancelled - before.cancelled, 3, "SIG" .. sig .. ": the queue cancelled 3 jobs")
    local cancelled = {}
    for _, j in ipairs(sb.jobs()) do cancelled[j.request_id] = j.cancelled end
    for _, id in ipairs(ids) do T.eq(cancelled[id], true, "SIG" .. sig .. ": /_sandbox/jobs cancelled flag of " .. id) end
    local crecs = records(out, "cancel")
    T.eq(#crecs, 3, "SIG" .. sig .. ": 3 cancel records in the journal")
    local seen = {}
    for _, r in ipairs(crecs) do seen[r.request_id] = true end
    for _, id in ipairs(ids) do T.ok(seen[id], "SIG" .. sig .. ": journal cancel record for " .. id) end
    local _, bad, ends = read_journal(out)
    T.eq(bad, 0, "SIG" .. sig .. ": every journal line is JSON")
    T.ok(ends, "SIG" .. sig .. ": the journal ends on a record boundary")
    os.execute("rm -rf " .. q(d))
  end

  -- A second SIGTERM while the first one's cancels are still trying (the cancel route is down,
  -- so they would take their whole 5 s) ends the process at once -- when it comes more than a
  -- second after the first (within a second it is the same stop, sent twice: timeout(1)
  -- signals the process and then its group). Told apart without a clock: a run that ignored
  -- it would end after its cancels, with their summary on stderr; the killed one never writes it.
  local d = T.tmpdir()
  control(sb, { outage = { seconds = 30, routes = { "cancel" } } })
  local ok, err = pcall(function()
    local h = start_slow(d, "twice", "env --default-signal=HUP")
    signal(h.pid, "TERM")
    -- well past the same-stop second, however late the first signal's handler ran; the
    -- cancels (cancel route down for 30 s, bounded at 5 s) are still trying
    sleep(2.5)
    T.eq(T.read(h.rc), nil, "still cancelling (the cancel route is down) when the second SIGTERM comes")
    T.ok(not (T.read(h.err) or ""):find("cancel requested for", 1, true), "the cancels had not ended yet: "
      .. tostring(T.read(h.err)))
    local t0 = core.monotime()
    signal(h.pid, "TERM")
    local st = proc_wait(h, 30)
    local dt = core.monotime() - t0
    T.ok(st ~= nil, "the second SIGTERM ended the process (it was still running 30 s later)")
    T.eq(st, 143, "killed by the second SIGTERM")
    local err = T.read(h.err) or ""
    T.ok(not err:find("cancel requested for", 1, true), "ended before its cancels were done: no summary; stderr: " .. err)
    print(string.format("# second SIGTERM: exit %d, %.2f s after it", st, dt))
  end)
  control(sb, { reset_faults = true })
  sb.reset()  -- the three [slow:30] jobs left running are cancelled
  os.execute("rm -rf " .. q(d))
  if not ok then error(err, 0) end
end))

case("under nohup (SIGHUP ignored at start) a closed terminal does not stop the run; SIGTERM still does", guarded(function()
  local d = T.tmpdir()
  local h, out = start_slow(d, "nohup", "env --ignore-signal=HUP")
  signal(h.pid, "HUP")
  sleep(0.5)
  -- SIGHUP (1) is delivered before SIGTERM (15) were both pending: had the hang-up counted,
  -- the run would have stopped by it (129), not by the SIGTERM that follows
  signal(h.pid, "TERM")
  local st = proc_wait(h, 40)
  local err = T.read(h.err) or ""
  T.eq(st, 143, "stopped by the SIGTERM, not the ignored SIGHUP; stderr: " .. err)
  T.contains(err, "stopped by SIGTERM", "says SIGTERM")
  T.ok(not err:find("SIGHUP", 1, true), "the hang-up is never mentioned")
  T.eq(#records(out, "cancel"), 3, "the SIGTERM cancelled the 3 jobs, journaled")
  os.execute("rm -rf " .. T.quote(d))
end))

---------------------------------------------------------------------------------------------
-- 2. two processes, one folder

case("a second run on a folder in use exits at once, naming it, and submits nothing", guarded(function()
  local d = T.tmpdir()
  local out = d .. "/out"
  local before = sb.stats()
  -- the first run holds the folder for 30 s: a second run that waited for the lock would wait
  -- that long, one that does not is done in well under a second (bound: 12 s, for ASan on a
  -- loaded machine)
  local h = spawn(command(sb.url, { "edit", "-p", "[slow:30] two processes", "--seed", "21", "-i", A, "-o", out }))
  local lock = out .. "/" .. journal.LOCK
  for _ = 1, 200 do
    if T.read(lock) == h.pid .. "\n" then break end
    sleep(0.05)
  end
  T.eq(T.read(lock), h.pid .. "\n", "the lock file names the first run's pid")
  for _ = 1, 200 do  -- the first run's submit is on the journal
    if #records(out, "accepted") >= 1 then break end
    sleep(0.05)
  end
  local jbefore = T.read(out .. "/" .. journal.FILE)
  os.execute("ln -s " .. q(out) .. " " .. q(d .. "/alias"))
  for _, dir in ipairs { out, d .. "/alias" } do
    local st, o, err, dt = run_bounded(command(sb.url, { "edit", "-p", "[slow:30] two processes", "--seed", "21",
      "-i", A, "-o", dir }), 12)
    T.ok(st ~= 0, dir .. ": the second run fails, got " .. st)
    T.eq(T.read(h.rc), nil, dir .. ": refused while the first run still holds the folder")
    print(string.format("# %s: refused in %.2f s", dir, dt))
    T.eq(o, "", dir .. ": nothing on stdout")
    T.contains(err, dir, "the message names the folder")
    T.contains(err, "in use", "the message says it is in use")
    T.contains(err, tostring(h.pid), "the message names the holder")
    T.ok(not err:find("traceback", 1, true), "no traceback")
  end
  T.eq(T.read(out .. "/" .. journal.FILE), jbefore, "the refused runs did not touch the journal")
  T.eq(proc_wait(h, 60), 0, "the first run finishes; stderr: " .. tostring(T.read(h.err)))
  local path = (T.read(h.out) or ""):match("[^\n]+")
  T.eq(core.sniff(T.read(path or "") or ""), "png", "the first run saved its image")
  local after = sb.stats()
  T.eq(after.submits_by_endpoint[EP] - (before.submits_by_endpoint[EP] or 0), 1, "one submit, from the first run")
  T.eq(after.duplicate_submits - before.duplicate_submits, 0, "no duplicate")
  T.eq(T.read(lock), "", "the lock file no longer names a pid")
  local st, o, err = run_bounded(command(sb.url, { "edit", "-p", "[slow:0.1] third run", "-i", A, "-o", out }), 20)
  T.eq(st, 0, "a third run on the folder works; stderr: " .. err)
  T.eq(core.sniff(T.read(o:match("[^\n]+") or "") or ""), "png", "and saves its image")
  T.eq(submits(sb) - (before.submits_by_endpoint[EP] or 0), 2, "it submitted its own job")
  os.execute("rm -rf " .. q(d))
end))

---------------------------------------------------------------------------------------------
-- 3. a full disk

-- A small filesystem for `dir`: tmpfs of `size`; or, when mounting is impossible, nil and the
-- caller runs editflow under `prlimit --fsize` instead.
local function small_disk(dir, size)
  local m = { path = dir }
  local st, _, err = T.sh("mount -t tmpfs -o size=" .. size .. " tmpfs " .. q(dir))
  if st ~= 0 then
    print("# mount -t tmpfs failed (" .. (err or ""):gsub("\n", " ") .. "); falling back to prlimit --fsize")
    return nil
  end
  m.mounted = true
  mounts[#mounts + 1] = m
  return m
end

local function grow(m)
  local st, _, err = T.sh("mount -o remount,size=8m " .. q(m.path))
  T.eq(st, 0, "remount bigger: " .. tostring(err))
end

-- The prlimit fallback: SIGXFSZ ignored (inherited over exec), so a write past N fails with EFBIG.
local function fsize_prefix(n) return "trap '' XFSZ; exec prlimit --fsize=" .. n end

local function check_journal(dir, what)
  local _, bad, ends, text = read_journal(dir)
  T.eq(bad, 0, what .. ": every journal line is valid JSON:\n" .. text)
  T.ok(ends, what .. ": the journal ends on a record boundary (last byte \\n)")
end

local force_prlimit = os.getenv("EDITFLOW_TEST_FORCE_PRLIMIT") == "1"

case("a full disk while saving: a clear error, an intact journal, and a re-run sends nothing again", guarded(function()
  local big = T.sandbox { "--key", KEY, "--workers", "4", "--job-time", "0.05", "--png-bytes", "90000" }
  local root = T.tmpdir()
  local m = not force_prlimit and small_disk(root, "256k") or nil
  local prefix = not m and fsize_prefix(60000) or nil
  local out = root .. "/d"
  local args = { "edit", "-p", "[slow:0.2] fill the disk", "-n", "4", "--seed", "7", "-i", A, "-o", out }
  local st, o, err = run_bounded(command(big.url, args, nil, prefix), 30)
  T.eq(st, 1, "exit status 1; stderr: " .. err)
  T.match(err, m and "No space left on device" or "File too large", "the system's reason")
  T.ok(not err:find("traceback", 1, true) and not err:find("%.lua:%d+:"), "no Lua traceback: " .. err)
  check_journal(out, "after the full disk")
  local acc = records(out, "accepted")
  T.eq(#acc, 1, "the job was accepted")
  T.contains(err, acc[1].request_id, "its request id is told on stderr")
  T.eq(#files(out, "%.part$"), 0, "no temporary file left")
  local first = {}
  for p in o:gmatch("[^\n]+") do first[#first + 1] = p end
  print(string.format("# full disk: %d of 4 images saved before the disk was full", #first))
  T.eq(submits(big), 1, "one submit")

  if m then grow(m) end
  st, o, err = run_bounded(command(big.url, args), 30)
  T.eq(st, 0, "the re-run with room finishes; stderr: " .. err)
  check_journal(out, "after the re-run")
  T.eq(submits(big), 1, "the re-run did not submit the accepted job again")
  T.eq(big.stats().duplicate_submits, 0, "no duplicate submit")
  local paths = {}
  for p in o:gmatch("[^\n]+") do paths[#paths + 1] = p end
  T.eq(#paths, 4, "the re-run reports 4 images")
  for _, p in ipairs(paths) do T.eq(core.sniff(T.read(p) or ""), "png", "a PNG at " .. p) end
  -- every image of the job is kept exactly once: the ones saved before the disk filled are
  -- this job's own and are not saved again under another name
  local pngs = files(out, "%.png$")
  T.eq(#pngs, 4, "4 image files for the job's 4 images (found: " .. table.concat(pngs, ", ") .. ")")
  big.stop()
  os.execute("rm -rf " .. q(m and out or root))  -- a mount point is removed after umount
end))

case("a full disk under the journal: the failed append is cut back, the re-run follows the job by id", guarded(function()
  local root = T.tmpdir()
  local m = not force_prlimit and small_disk(root, "256k") or nil
  -- prlimit fallback: the intent and accepted records (~700 bytes) fit, the done record does not
  local prefix = not m and fsize_prefix(1500) or nil
  local out = root .. "/d"
  local before = sb.stats()
  -- [images:40]: the result lists 40 images, so its done record (~7 kB) needs a new page
  local args = { "edit", "-p", "[slow:1.5] [images:40] journal on a full disk", "--seed", "8", "-i", A, "-o", out }
  local h = spawn(command(sb.url, args, nil, prefix))
  for _ = 1, 200 do
    if #records(out, "accepted") >= 1 then break end
    sleep(0.05)
  end
  T.eq(#records(out, "accepted"), 1, "accepted before the disk fills")
  local id = records(out, "accepted")[1].request_id
  if m then T.sh("dd if=/dev/zero of=" .. q(root .. "/filler") .. " bs=4096 2>/dev/null") end
  local st = proc_wait(h, 30)
  local err = T.read(h.err) or ""
  T.eq(st, 1, "exit status 1; stderr: " .. err)
  T.contains(err, id, "the job's request id is on stderr")
  -- checked last, so the rest of the case runs first: the failed append must be told
  local first_err = err
  T.ok(not err:find("traceback", 1, true) and not err:find("%.lua:%d+:"), "no Lua traceback: " .. err)
  check_journal(out, "after the failed append")
  T.eq(#records(out, "done"), 0, "the done record did not fit and is not half there")
  T.eq(#files(out, "%.part$"), 0, "no temporary file left")
  T.eq(submits(sb) - (before.submits_by_endpoint[EP] or 0), 1, "one submit")

  if m then
    os.remove(root .. "/filler")
    grow(m)
  end
  local o
  st, o, err = run_bounded(command(sb.url, args), 30)
  T.eq(st, 0, "the re-run with room finishes; stderr: " .. err)
  T.contains(err, "resumed " .. id, "the re-run follows the accepted job by its id")
  check_journal(out, "after the re-run")
  T.eq(submits(sb) - (before.submits_by_endpoint[EP] or 0), 1, "the re-run did not submit it again")
  T.eq(sb.stats().duplicate_submits - before.duplicate_submits, 0, "no duplicate submit")
  local n = 0
  for _ in o:gmatch("[^\n]+") do n = n + 1 end
  T.eq(n, 40, "40 images saved")
  T.eq(#files(out, "%.png$"), 40, "40 image files")
  -- lifecycle.lua: "A transition that cannot be written (a full disk) is never silent: ...
  -- the request id is told as a warning and the job followed"
  T.contains(first_err, "cannot write the journal", "the failed append of the done record is told on stderr")
  os.execute("rm -rf " .. q(m and out or root))  -- a mount point is removed after umount
end))

---------------------------------------------------------------------------------------------
-- 4. SIGKILL at random moments, again and again

local KILL_SLOW = { 0.5, 4, 6, 0, 5, 8, 0.2, 7 }  -- seconds per job; about 11 s for the batch

-- settle_timeout 30: an earlier run's submit in doubt is looked for in fal's request listing for
-- up to 30 s after it was sent (600 by default), so a final run meets the end of that window.
local KILL_SCRIPT = [[
local editflow = require "editflow"
local out = arg[1]
local c = editflow.client{ journal = out, settle_timeout = 30,
  resubmit_unknown = os.getenv("TEST_RESUBMIT") == "1" or nil }
local slow = { ]] .. table.concat(KILL_SLOW, ", ") .. [[ }
local list = {}
for i, s in ipairs(slow) do list[i] = { i = i, prompt = (s > 0 and string.format("[slow:%g] ", s) or "") .. "kill loop " .. i } end
local _, errs = editflow.map(list, function(it)
  local _, job = assert(c:edit{ prompt = it.prompt, image_urls = { "https://cdn.example/a.png" }, seed = 100 + it.i })
  assert(job:save(out, { name = "job" .. it.i }))
end, { concurrency = 4 })
if next(errs) then os.exit(1) end
]]

-- The journal's keys with an intent, and how many of them are still in doubt (an intent or an
-- "unknown" as their last word: the answer to their submit never kept).
local function doubt(out)
  local last, keys = {}, 0
  for _, r in ipairs((read_journal(out))) do
    if r.key and (r.t == "intent" or r.t == "unknown" or r.t == "accepted" or r.t == "refused") then
      if last[r.key] == nil then keys = keys + 1 end
      last[r.key] = r.t
    end
  end
  local n = 0
  for _, t in pairs(last) do if t == "intent" or t == "unknown" then n = n + 1 end end
  return n, keys
end

-- Round 1 is forced: the queue makes the first four jobs but their answers are lost (two of
-- them run 4 and 6 s, so they cannot be found in fal's listing yet), and the run is killed
-- while they are in doubt. Rounds 2-12 kill at random moments. Every round is checked: killed
-- (137), finished (0), or held (1: a submit in doubt not found in the listing) -- held only
-- when the queue never saw that submit, and nothing is ever paid twice. The final run (with
-- every job at the queue ended) must finish every job: the lost answers found in the listing,
-- not sent again.
case("SIGKILL with submits in doubt, then at random moments, 12 times, then a run to the end: every job sent once, saved once", guarded(function()
  local NJOBS, ROUNDS = #KILL_SLOW, 12
  local ks = T.sandbox { "--key", KEY, "--workers", "8", "--job-time", "0.2", "--png-bytes", "60000" }
  local d = T.tmpdir()
  local script, out = d .. "/batch.lua", d .. "/out"
  write(script, KILL_SCRIPT)
  local cmd = command(ks.url, { "run", "-q", script, out })
  local seed = tonumber(os.getenv("EDITFLOW_TEST_KILL_SEED") or "") or 20240611
  math.randomseed(seed)
  local tally, log = { killed = 0, finished = 0, held = 0 }, {}
  -- nothing paid twice, and a held run holds only submits the queue never saw
  local function sound(what, held)
    local s = ks.stats()
    T.eq(s.duplicate_submits, 0, what .. ": no duplicate submit")
    T.ok((s.submits_by_endpoint[EP] or 0) <= NJOBS, what .. ": no job submitted twice")
    if held then
      local _, keys = doubt(out)
      T.ok(keys > (s.submits_by_endpoint[EP] or 0), string.format("%s: held, so some submit never reached "
        .. "the queue (journal: %d jobs with an intent; queue: %d jobs)", what, keys, s.submits_by_endpoint[EP] or 0))
    end
  end

  -- round 1: four answers lost, killed while two of them are surely in doubt
  control(ks, { spoil_submits = { kind = "lost", count = 4 } })
  local h = spawn(cmd)
  for _ = 1, 400 do  -- up to 20 s
    if #records(out, "unknown") >= 4 then break end
    sleep(0.05)
  end
  signal(h.pid, "KILL")
  T.eq(proc_wait(h, 10), 137, "round 1: killed; stderr: " .. tostring(T.read(h.err)))
  control(ks, { spoil_submits = { kind = "lost", count = 0 } })
  local in_doubt = doubt(out)
  T.eq(#records(out, "unknown"), 4, "round 1: the four lost answers are journaled unknown")
  T.ok(in_doubt >= 2, "round 1: killed with submits in doubt (" .. in_doubt .. ")")
  T.eq(ks.stats().submits_by_endpoint[EP], 4, "round 1: the queue made the four jobs")
  sound("round 1")
  tally.killed = tally.killed + 1
  log[1] = string.format("forced:137(%d in doubt)", in_doubt)

  for round = 2, ROUNDS do
    local delay = 0.05 + math.random() * 1.45
    h = spawn(cmd)
    sleep(delay)
    signal(h.pid, "KILL")
    local st = proc_wait(h, 10)
    T.ok(st ~= nil, "round " .. round .. ": the process ended")
    local err = T.read(h.err) or ""
    local held = st == 1 and err:find("may have reached the queue", 1, true) ~= nil
    T.ok(st == 137 or st == 0 or held, "round " .. round .. ": killed, finished or held, got " .. st
      .. "; stderr: " .. err)
    sound("round " .. round, held)
    local outcome = st == 137 and "killed" or st == 0 and "finished" or "held"
    tally[outcome] = tally[outcome] + 1
    log[#log + 1] = string.format("%.2fs:%d", delay, st)
  end
  print("# kill rounds, seed " .. seed .. " (delay:exit): " .. table.concat(log, " "))
  print(string.format("# kill rounds: %d killed, %d finished, %d held", tally.killed, tally.finished, tally.held))
  T.eq(tally.killed + tally.finished + tally.held, ROUNDS, "every round counted")

  -- every job the queue made has ended (the slowest runs 8 s), so fal's listing shows them all
  local open
  for _ = 1, 600 do  -- up to 30 s
    open = 0
    for _, j in ipairs(ks.jobs()) do
      if j.status ~= "COMPLETED" then open = open + 1 end
    end
    if open == 0 then break end
    sleep(0.05)
  end
  T.eq(open, 0, "every job at the queue ended")
  local st, _, err = run_bounded(cmd, 90)
  if st == 1 and err:find("may have reached the queue", 1, true) then
    -- a kill landed between a submit's intent and the wire: held, since fal's listing cannot
    -- show it; the queue never saw it (checked), so sending it now pays once
    sound("the final run", true)
    print("# kill loop: a kill landed inside a submit that never reached the queue: sending it now")
    st, _, err = run_bounded(command(ks.url, { "run", "-q", script, out }, { TEST_RESUBMIT = "1" }), 60)
  end
  local s = ks.stats()
  local pngs, parts = files(out, "%.png$"), files(out, "%.part$")
  local _, bad = read_journal(out)
  print(string.format("# kill loop: jobs=%d submits=%d duplicates=%d image files=%d part files=%d bad journal lines=%d",
    NJOBS, s.submits_by_endpoint[EP] or 0, s.duplicate_submits, #pngs, #parts, bad))
  T.eq(st, 0, "the final run finishes; stderr: " .. err)
  T.eq(s.submits_by_endpoint[EP], NJOBS, "every job submitted exactly once over all the runs (the lost answers found, not sent again)")
  T.eq(s.duplicate_submits, 0, "no duplicate submit")
  T.eq(#parts, 0, "no temporary .part file left")
  T.eq(bad, 0, "every journal line parses")
  for i = 1, NJOBS do T.ok(T.exists(out .. "/job" .. i .. "-1.png"), "job " .. i .. " saved") end
  T.eq(#pngs, NJOBS, "one image file per job (found: " .. table.concat(pngs, ", ") .. ")")
  ks.stop()
  os.execute("rm -rf " .. q(d))
end))

case("a run killed mid-download leaves its temporary file; the next run in the folder removes it", guarded(function()
  local d = T.tmpdir()
  local out = d .. "/out"
  -- [trickle]: the image arrives at 2 bytes/s, so the download is surely running at the kill
  local h = spawn(command(sb.url, { "edit", "-p", "[trickle] killed mid-download", "-i", A, "-o", out }))
  local temps = {}
  for _ = 1, 400 do  -- up to 20 s for the download's temporary file
    temps = files(out, "^%.editflow%-%w+%.part$")
    if #temps > 0 then break end
    sleep(0.05)
  end
  T.eq(#temps, 1, "the download's temporary file, while it runs")
  signal(h.pid, "KILL")
  T.eq(proc_wait(h, 10), 137, "killed")
  T.eq(#files(out, "^%.editflow%-%w+%.part$"), 1, "the killed run left its temporary file")
  -- what a killed atomic write (ef_fs.c) leaves, and a user's own files, which stay
  write(out .. "/.grid.json.Ab12Cd.part", "half a manifest")
  write(out .. "/holiday.part", "mine")
  write(out .. "/.notes.part", "mine too")
  local st, o, err = run_bounded(command(sb.url, { "edit", "-p", "[slow:0.1] the next run", "-i", A, "-o", out }), 60)
  T.eq(st, 0, "the next run finishes; stderr: " .. err)
  T.eq(core.sniff(T.read(o:match("[^\n]+") or "") or ""), "png", "and saves its image")
  T.eq(#files(out, "^%.editflow%-%w+%.part$"), 0, "the download's temporary file is removed")
  T.eq(T.exists(out .. "/.grid.json.Ab12Cd.part"), false, "the atomic write's temporary file is removed")
  T.eq(T.read(out .. "/holiday.part"), "mine", "a user's file ending in .part stays")
  T.eq(T.read(out .. "/.notes.part"), "mine too", "a user's hidden file ending in .part stays")
  os.execute("rm -rf " .. q(d))
end))

---------------------------------------------------------------------------------------------
-- 5. devices and FIFOs as images

case("-i /dev/zero and -i FIFO exit 2 at once, saying it is not a regular file, sending nothing", guarded(function()
  local d = T.tmpdir()
  local fifo = d .. "/pipe.png"
  T.eq((T.sh("mkfifo " .. q(fifo))), 0, "mkfifo")
  os.execute("ln -s " .. q(fifo) .. " " .. q(d .. "/link.png"))
  local before = sb.stats().requests
  for _, img in ipairs { "/dev/zero", fifo, d .. "/link.png" } do
    -- a read of /dev/zero or a FIFO would never end: run_bounded kills a run still going at
    -- 30 s and fails the case (a guard against that hang; the refusal takes a moment)
    local st, o, err = run_bounded(command(sb.url, { "edit", "-p", "x", "-i", img, "-o", d .. "/out" }), 30)
    T.eq(st, 2, img .. ": exit status; stderr: " .. err)
    T.eq(o, "", img .. ": nothing on stdout")
    T.contains(err, "not a regular file", img .. ": the message")
    T.contains(err, "-i", img .. ": names the option")
  end
  T.eq(sb.stats().requests, before, "the sandbox counted no request")
  os.execute("rm -rf " .. q(d))
end))

case("Ctrl-C between submit retries: journaled refused (nothing on the wire), sent by the next run", guarded(function()
  local s = T.sandbox { "--key", KEY, "--job-time", "0.01" }
  local d = T.tmpdir() .. "/out"
  -- Retry-After: 20 makes the wait between tries long, so the signal surely lands in it (not on
  -- a retry already on the wire, however loaded the machine)
  control(s, { outage = { seconds = 30, routes = { "submit" }, status = 503, retry_after = 20 } })
  local h = spawn(command(s.url, { "edit", "-p", "interrupted in backoff", "-i", A, "-o", d, "--seed", "3", "-v" }))
  for _ = 1, 600 do  -- until the first 503 was answered and a retry is waiting (up to 30 s)
    if (T.read(h.err) or ""):find("retrying in", 1, true) then break end
    sleep(0.05)
  end
  T.contains(T.read(h.err), "retrying in", "a retry is waiting when the Ctrl-C comes")
  signal(h.pid, "INT")
  T.eq(proc_wait(h, 10), 130, "exit 130")
  T.eq(#records(d, "unknown"), 0, "not unknown: no submit was on its way")
  T.eq(#records(d, "refused"), 1, "refused")
  control(s, { outage = json.null })
  local st, _, err = run_bounded(command(s.url, { "edit", "-p", "interrupted in backoff", "-i", A, "-o", d, "--seed", "3" }), 30)
  T.eq(st, 0, "the next run sends it: " .. err)
  T.eq(submits(s), 1, "once")
  s.stop()
end))

T.run()
