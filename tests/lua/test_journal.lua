-- test_journal.lua: a run killed with SIGKILL at several points and run again finishes every
-- job exactly once: nothing finished is redone, nothing accepted is sent again, only what was
-- never sent is sent. A torn last journal line is tolerated.
local T = require "testlib"
local json = require "editflow.json"
local journal = require "editflow.journal"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local N = 6

local sb = T.sandbox { "--workers", "8" }

local function count(path, what)
  local n = 0
  for line in (T.read(path) or ""):gmatch("[^\n]+") do
    local rec = json.decode(line)
    if type(rec) == "table" and rec.t == what then n = n + 1 end
  end
  return n
end

T.case("SIGKILL before sending, while following, while saving; then a clean finish", function()
  local d = T.tmpdir()
  local out = d .. "/out"
  local jpath = out .. "/" .. journal.FILE
  local script = d .. "/batch.lua"
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
local editflow = require "editflow"
local out, delay = arg[1], tonumber(arg[2])
local c = editflow.client{ journal = out }
io.open(out .. "/started", "w"):close()
editflow.sleep(delay)
editflow.map({ 1, 2, 3, 4, 5, 6 }, function(i)
  local _, job = assert(c:edit{ prompt = string.format("[slow:%%.1f] batch %%d", 0.4 * i, i),
    image_urls = { "https://cdn.example/a.png" }, seed = i })
  assert(job:save(out, { name = "job" .. i }))
end, { concurrency = %d })
]], N))
  f:close()
  os.execute("mkdir -p " .. T.quote(out))
  local envs = string.format("FAL_KEY=test-key EDITFLOW_BASE_URL=%s", T.quote(sb.url))
  -- Starts the script, waits (bounded) until `ready` holds in the shell, then SIGKILLs it.
  local function run_and_kill(delay, ready)
    local cmd = string.format("env %s %s run -q %s %s %s & pid=$!; i=0; "
      .. "while [ $i -lt 200 ] && ! (%s); do sleep 0.05; i=$((i+1)); done; kill -9 $pid; wait $pid; echo exit=$?",
      envs, T.quote(BIN), T.quote(script), T.quote(out), delay, ready)
    local _, o = T.sh(cmd)
    T.contains(o, "exit=137", "killed by SIGKILL")
  end
  local q = T.quote(jpath)
  local function lines(what) return string.format("[ $(grep -c '\"t\":\"%s\"' %s 2>/dev/null || echo 0) -ge ", what, q) end

  -- 1. killed before anything is sent
  run_and_kill(30, "[ -e " .. T.quote(out .. "/started") .. " ]")
  T.eq(sb.stats().by_route.submit, 0, "nothing was sent")
  -- 2. killed once every job is accepted, while they run
  run_and_kill(0, lines("accepted") .. N .. " ]")
  T.eq(sb.stats().submits_by_endpoint["fal-ai/qwen-image-edit-plus"], N, "all sent once")
  -- 3. killed when some are saved and others still run
  run_and_kill(0, lines("saved") .. "2 ]")
  T.ok(count(jpath, "saved") < N, "killed before the end")
  -- a crash in the middle of a journal write leaves a torn last line
  local jf = assert(io.open(jpath, "ab"))
  jf:write('{"t":"done","key":"torn')
  jf:close()
  -- 4. run to the end
  local st, o, e = T.sh(string.format("env %s %s run -q %s %s 0", envs, T.quote(BIN), T.quote(script), T.quote(out)))
  T.eq(st, 0, "the final run succeeds: " .. tostring(o) .. tostring(e))
  local s = sb.stats()
  T.eq(s.submits_by_endpoint["fal-ai/qwen-image-edit-plus"], N, "every job submitted exactly once over four runs")
  T.eq(s.duplicate_submits, 0, "no duplicate submit")
  for i = 1, N do T.ok(T.exists(out .. "/job" .. i .. "-1.png"), "job " .. i .. " saved") end
  -- 5. a run after the end does nothing at all
  local before = s.requests
  st = T.sh(string.format("env %s %s run -q %s %s 0", envs, T.quote(BIN), T.quote(script), T.quote(out)))
  T.eq(st, 0, "the repeat run succeeds")
  T.eq(sb.stats().requests, before, "finished jobs are not redone: no request at all")
  local files = 0
  for _, name in ipairs(T.list_dir(out)) do
    if name:find("%.part$") then error("temporary file left: " .. name) end
    if name:find("%.png$") then files = files + 1 end
  end
  T.eq(files, N, "one image per job, no partial files")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("group commit: many tasks' records share fdatasyncs, count once durable, and a completed run's own read back", function()
  local editflow = require "editflow"
  local d = T.tmpdir()
  local jr = journal.open(d)
  local list = {}
  for i = 1, 60 do list[i] = i end
  local _, errs = editflow.map(list, function(i)
    assert(jr:append { t = "intent", key = "k" .. i })
    assert(jr:append { t = "accepted", key = "k" .. i, request_id = "r" .. i })
    assert(jr.jobs["k" .. i].state == "accepted", "in flight: its state is in memory once durable")
    assert(jr:append { t = "done", key = "k" .. i, request_id = "r" .. i,
      output = { images = { { url = "https://cdn.example/" .. i .. ".png" } } } })
  end, { concurrency = 60 })
  T.eq(next(errs), nil, "every append worked")
  T.eq(count(d .. "/" .. journal.FILE, "done"), 60, "every record on disk")
  local syncs = jr.log.group.syncs
  print(string.format("# 180 records of 60 tasks took %d fdatasyncs", syncs))
  T.ok(syncs < 180 / 2, "records written together share an fdatasync")
  T.eq(jr.jobs.k1, nil, "a job finished here leaves no record in memory")
  T.eq(jr:owner(journal.id_key("r1")), 0, "only its id's fingerprint")
  T.eq(jr.ids[journal.id_key("r1")], nil, "kept in the compact map, not the table")
  T.eq(jr:owner(journal.id_key("r-never")), nil, "an id never given is nobody's")
  assert(jr:append { t = "complete" })
  local rec = jr:get("k7")
  T.eq(rec and rec.state, "done", "after a completed run its own jobs read back from the file")
  T.eq(rec.output.images[1].url, "https://cdn.example/7.png", "with their output")
  local fresh = journal.open(d, { lock = false })
  T.eq(fresh:get("k60").state, "done", "a new open sees them all")
  jr:close()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("core.fpmap: what a long run remembers of every job, by 64-bit fingerprint", function()
  local core = require "editflow.core"
  local m = core.fpmap()
  T.eq(m:get(42), nil, "an empty map knows nothing")
  local keys = { 0, 1, -1, math.mininteger, math.maxinteger, core.hash64("r1"), core.hash64("r2") }
  for i, h in ipairs(keys) do m:set(h, i) end
  for i, h in ipairs(keys) do T.eq(m:get(h), i, "fingerprint " .. h .. " keeps its count") end
  m:set(core.hash64("r1"), 0)
  T.eq(m:get(core.hash64("r1")), 0, "0 is a count like any other (a finished id)")
  T.eq(m:count(), #keys, "setting a key again adds no entry")
  for i = 1, 5000 do m:set(i << 40, i) end
  T.eq(m:get(4321 << 40), 4321, "found after growing")
  T.eq(m:get(4321 << 41), nil, "a key never set is not found")
  T.eq(m:count(), #keys + 5000, "every key counted once")
  T.raises(function() m:set(1, -1) end, "count from 0 to 2^32-1")
  T.raises(function() m:set(1, 1 << 32) end, "count from 0 to 2^32-1")
  T.raises(function() m:get("x") end, "number expected")
  local gc = getmetatable(m).__gc
  gc(m)
  T.raises(function() m:get(1) end, "already freed")
end)

T.case("review: an id repeated while its accepted record waits for its sync is still caught", function()
  local runtime = require "editflow.runtime"
  local lifecycle = require "editflow.lifecycle"
  local d = T.tmpdir()
  local jr = journal.open(d)
  local client = { journal = jr, endpoint = "fal-ai/x" }
  local results, tasks, lives, order = {}, {}, {}, {}
  -- Both answers arrive in the same turn, forced (not left to timing): each task waits, after
  -- its intent, for a signal fired once both intents are durable, so both wake together; the
  -- first one's accepted record then waits for its fdatasync while the second one's answer
  -- comes. Which path was taken is checked: the first one's record was not durable yet.
  local both, intents, pending = runtime.signal(), 0, nil
  for i = 1, 2 do
    tasks[i] = runtime.spawn(function()
      local life = lifecycle.begin(client, '{"prompt":"p' .. i .. '","seed":' .. i .. '}')
      lives[i] = life
      life:intent()
      intents = intents + 1
      if intents == 2 then both:fire() end
      both:wait()
      order[#order + 1] = i
      if #order == 2 then  -- the first one took its answer; its record is not durable yet
        local first = lives[order[1]]
        local rec = jr.jobs[first.key]
        pending = first.phase == "accepted" and not (rec and rec.state == "accepted")
      end
      local ok, err = life:accepted { request_id = "same-id-123" }
      results[i] = ok and "accepted" or err.code
    end)
  end
  for i = 1, 2 do runtime.join(tasks[i]) end
  T.eq(pending, true, "the second answer came while the first one's accepted record waited for its sync")
  table.sort(results)
  T.eq(results[1] .. "," .. results[2], "REPEATED_ID,accepted", "one keeps the id, the other is refused")
  T.eq(count(d .. "/" .. journal.FILE, "accepted"), 1, "one accepted record for the id")
  jr:close()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("review: two journals on one folder share one log; a failed sync never cuts the other's durable record", function()
  local d = T.tmpdir()
  local A, B = journal.open(d), journal.open(d)  -- two clients on one folder (they share the lock)
  assert(A:append { t = "intent", key = "a-1" })
  assert(B:append { t = "intent", key = "b-1" })  -- durable: B was told so
  T.ok(A.log == B.log, "one log for the file")
  local start, in_place = A.log.group.start, A.log.group.in_place
  -- the sync fails (a worker that cannot be had falls back to an fdatasync in place: fail both)
  A.log.group.start = function() return nil, "Input/output error (simulated)" end
  A.log.group.in_place = function() return nil, "Input/output error (simulated)" end
  local ok, err = A:append { t = "intent", key = "a-2" }
  T.eq(ok, nil, "the record whose sync failed fails")
  T.contains(err, "simulated", "with the sync's error")
  local text = T.read(d .. "/" .. journal.FILE)
  T.contains(text, '"b-1"', "B's durable record is still there")
  T.ok(not text:find('"a-2"', 1, true), "the failed record is cut away")
  A.log.group.start, A.log.group.in_place = start, in_place
  assert(B:append { t = "intent", key = "b-2" })
  T.eq(count(d .. "/" .. journal.FILE, "intent"), 3, "a-1, b-1, b-2: the file goes on from its durable end")
  A:close()
  assert(B:append { t = "intent", key = "b-3" })  -- the log stays open for B
  B:close()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("review: an error raised while waiting for a sync (a signal) fails nothing and cuts nothing", function()
  local d = T.tmpdir()
  local jr = journal.open(d)
  assert(jr:append { t = "intent", key = "k-1" })
  local start = jr.log.group.start
  jr.log.group.start = function() error("interrupted!", 0) end
  local ok, err = pcall(jr.append, jr, { t = "intent", key = "k-2" })
  T.eq(ok, false, "the error reaches the caller")
  T.contains(tostring(err), "interrupted!", "as it was")
  T.contains(T.read(d .. "/" .. journal.FILE), '"k-2"', "the record is not cut")
  jr.log.group.start = start
  assert(jr:append { t = "intent", key = "k-3" })  -- the next sync covers k-2 too
  T.eq(count(d .. "/" .. journal.FILE, "intent"), 3, "all three on disk")
  jr:close()
  os.execute("rm -rf " .. T.quote(d))
end)

-- A journal in a new folder with one durable record, whose next syncs fail for real (a
-- worker's fsync of a folder that is not there). -> dir, journal, group, the real start
local function failing_journal()
  local d = T.tmpdir()
  local jr = journal.open(d)
  assert(jr:append { t = "intent", key = "k-0" })
  local g = jr.log.group
  local start = g.start
  g.start = function() return require("editflow.runtime").loop():sync_dir(d .. "/no-such-folder") end
  return d, jr, g, start
end

T.case("review 2: a sync's failure is never hidden by a caller that syncs in place meanwhile", function()
  local runtime = require "editflow.runtime"
  local d, jr, g, start = failing_journal()  -- a real op that fails
  local res = {}
  local t1 = runtime.spawn(function() res[1] = table.pack(jr:append { t = "intent", key = "k-1" }) end)
  local t2 = runtime.spawn(function()
    local cw = runtime.can_wait
    runtime.can_wait = function() return false end  -- a hosted caller outside a task
    res[2] = table.pack(pcall(jr.append, jr, { t = "intent", key = "k-2" }))
    runtime.can_wait = cw
  end)
  runtime.join(t1) runtime.join(t2)
  g.start = start
  T.eq(res[1][1], nil, "the record whose sync failed is told so")
  T.eq(res[2][1], true, "the in-place caller returns")
  T.eq(res[2][2], nil, "and its record, cut with the others after the durable end, failed too")
  T.eq(count(d .. "/" .. journal.FILE, "intent"), 1, "only k-0 is in the file")
  assert(jr:append { t = "intent", key = "k-3" })
  jr:close()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("review 2: a sync whose waiter was interrupted is settled by its own answer, not a later one", function()
  local runtime = require "editflow.runtime"
  local d, jr, g, start = failing_journal()
  local await = runtime.await
  runtime.await = function() runtime.await = await error("interrupted!", 0) end
  local ok, err = pcall(jr.append, jr, { t = "intent", key = "k-1" })
  T.eq(ok, false, "the signal reaches the caller")
  T.contains(tostring(err), "interrupted!", "as it was")
  g.start = start
  local ok2 = jr:append { t = "intent", key = "k-2" }
  T.eq(ok2, nil, "the failed sync's answer is read: what it covered and what came after is cut")
  T.eq(#g.fails >= 1, true, "the failure is recorded")
  assert(jr:append { t = "intent", key = "k-3" })
  local text = T.read(d .. "/" .. journal.FILE)
  T.ok(not text:find('"k-1"', 1, true) and text:find('"k-3"', 1, true), "k-1 cut, k-3 durable")
  jr:close()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("review 2: when the task waiting for a sync is interrupted, another waiter takes over", function()
  local runtime = require "editflow.runtime"
  local d = T.tmpdir()
  local jr = journal.open(d)
  assert(jr:append { t = "intent", key = "k-0" })
  local await, res = runtime.await, {}
  local t1 = runtime.spawn(function()
    runtime.await = function(op) runtime.await = await runtime.sleep(0.05) error("interrupted!", 0) end
    res[1] = table.pack(pcall(jr.append, jr, { t = "intent", key = "k-1" }))
  end)
  local t2 = runtime.spawn(function() res[2] = table.pack(pcall(jr.append, jr, { t = "intent", key = "k-2" })) end)
  local deadline = runtime.now() + 10
  while not (t1.done and t2.done) and runtime.now() < deadline do runtime.step(50) end
  T.ok(t2.done, "the parked waiter did not hang")
  T.eq(res[1][1], false, "the interrupted one got its error")
  T.eq(res[2][1] and res[2][2], true, "the other one's record is durable")
  jr:close()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("review 2: closing a journal while tasks wait for their records lets them finish", function()
  local runtime = require "editflow.runtime"
  local d = T.tmpdir()
  local jr = journal.open(d)
  local log = (assert(jr:append { t = "intent", key = "k-0" }) and jr.log)
  local res = {}
  local t1 = runtime.spawn(function() res[1] = table.pack(pcall(jr.append, jr, { t = "intent", key = "k-1" })) end)
  local t2 = runtime.spawn(function() res[2] = table.pack(pcall(jr.append, jr, { t = "intent", key = "k-2" })) end)
  local t3 = runtime.spawn(function() jr:close() end)
  runtime.join(t1) runtime.join(t2) runtime.join(t3)
  T.eq(res[1][1] and res[1][2], true, "the first waiter's record is durable")
  T.eq(res[2][1] and res[2][2], true, "and the second's")
  T.eq(count(d .. "/" .. journal.FILE, "intent"), 3, "all three in the file")
  T.eq(log.file, nil, "the file closed once nothing was due")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("review 2: a nested {\"t\":\"complete\"} in a torn line never completes a run", function()
  local d = T.tmpdir()
  local f = assert(io.open(d .. "/" .. journal.FILE, "w"))
  f:write('{"key":"00000000000000aa-1","t":"intent"}\n')
  f:write('{"key":"00000000000000aa-1","output":{"x":{"t":"complete"}\n')  -- torn, then ended
  f:write('{"key":"00000000000000bb-1","t":"intent"}\n')
  f:close()
  local jr = journal.open(d, { lock = false })
  T.eq(jr.epoch, 0, "no run completed")
  T.eq(jr.torn, 1, "the torn line is counted")
  T.eq(jr:get("00000000000000bb-1").state, "intent", "the records after it read")
  local half = #'{"key":"00000000000000aa-1","t":"intent"}\n' + 10
  local part = journal.open(d, { lock = false, upto = half })
  T.eq(part.torn, 0, "reading up to the middle of a line leaves that line out")
  T.eq(part:get("00000000000000aa-1").state, "intent", "and keeps the whole ones")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a saved record keeps each image's size and sha256; one from an older editflow reads without", function()
  local d = T.tmpdir()
  local f = assert(io.open(d .. "/" .. journal.FILE, "w"))
  f:write('{"key":"00000000000000cc-1","output":{"images":[]},"request_id":"r1","t":"done"}\n')
  f:write('{"files":[{"sha256":"ab","size":3}],"key":"00000000000000cc-1","paths":["o/r1-1.png"],"t":"saved"}\n')
  f:write('{"key":"00000000000000dd-1","output":{"images":[]},"request_id":"r2","t":"done"}\n')
  f:write('{"key":"00000000000000dd-1","paths":["o/r2-1.png"],"t":"saved"}\n')
  f:close()
  local jr = journal.open(d, { lock = false })
  local new, old = jr:get("00000000000000cc-1"), jr:get("00000000000000dd-1")
  T.eq(new.paths[1], "o/r1-1.png", "paths")
  T.eq(new.files[1].size, 3, "size")
  T.eq(new.files[1].sha256, "ab", "sha256")
  T.eq(old.state, "done", "an older saved record reads")
  T.eq(old.paths[1], "o/r2-1.png", "with its paths")
  T.eq(old.files, nil, "and no files")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
