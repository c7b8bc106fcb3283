-- test_exactly_once.lua: money spent on a job is never wasted, against faults the real world
-- produces (tests/sandbox: lost answers on reused connections, garbled bodies with intact
-- headers, bare vs typed 5xx, status outages, repeated ids, hostile field types, endless and
-- trickling bodies, huge results). Every case asserts what the user keeps and what the server
-- counted: a job the queue accepted is never sent again, and nothing is silently lost.
local T = require "testlib"
local editflow = require "editflow"
local core = require "editflow.core"
local json = require "editflow.json"
local journal = require "editflow.journal"

-- Writes a record into a journal by hand, as a crashed run left it.
local function append_record(path, line)
  local f = assert(io.open(path, "ab"))
  assert(f:write(line))
  f:close()
  return true
end

local URL = "https://cdn.example/a.png"
local ENDPOINT = "fal-ai/qwen-image-edit-plus"

local function client(sb, extra)
  -- attempts = 10: a download or a refused submit meets a fault 4 times in a row often enough
  -- under a 25 % storm to make the counts below a matter of luck; following needs no count
  -- (it is retried until the deadline).
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02, max_poll_interval = 0.2,
    retry = { base = 0.02, cap = 0.3, attempts = 10, job_budget = 40 } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

-- Runs n jobs (distinct seeded prompts) through edit + save; -> counts by outcome.
local function batch(c, n, dir, prompt)
  local counts = { saved = 0, unknown = 0, failed = 0, codes = {} }
  local inputs = {}
  for i = 1, n do inputs[i] = { prompt = (prompt or "job %d"):format(i), image_urls = { URL }, seed = i } end
  editflow.map(inputs, function(input, i)
    local result, job = c:edit(input)
    local err = not result and job
    if result then
      local paths, serr = job:save(dir, { name = "j" .. i })
      if paths then counts.saved = counts.saved + 1 return end
      err = serr
    end
    counts.codes[err.code] = (counts.codes[err.code] or 0) + 1
    if err.maybe_submitted then counts.unknown = counts.unknown + 1 else counts.failed = counts.failed + 1 end
  end, { concurrency = 16 })
  return counts
end

local function totals(sb)
  local s = sb.stats()
  return s, s.submits_by_endpoint[ENDPOINT] or 0
end

T.case("answers lost after the work, on reused keep-alive connections: never sent twice", function()
  local sb = T.sandbox { "--workers", "16", "--job-time", "0.01", "--fault-rate", "0.15",
    "--fault-seed", "11", "--faults", "lostreused" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d })
  local n = 120
  local got = batch(c, n, d)
  local s, submits = totals(sb)
  print(string.format("  lost answers: %d jobs, %d saved, %d unknown (answer lost), %d failed; "
    .. "server: %d submits, %d duplicate, %d faults injected", n, got.saved, got.unknown, got.failed,
    submits, s.duplicate_submits, s.faults.lostreused or 0))
  T.ok((s.faults.lostreused or 0) >= 10, "faults were injected")
  T.eq(s.duplicate_submits, 0, "no body was ever accepted twice (libcurl re-sends nothing)")
  T.eq(submits, n, "every job reached the queue exactly once")
  T.eq(got.saved + got.unknown, n, "each job saved, or reported unknown (never silently lost)")
  T.ok(got.saved >= n * 0.7, "most were saved: status and result losses are retried")
  -- A new run holds the unknown ones back, and sends nothing at all
  local again = client(sb, { journal = d })
  local got2 = batch(again, n, d)
  local _, submits2 = totals(sb)
  T.eq(submits2, n, "the re-run sent nothing")
  T.eq(got2.saved, got.saved, "the saved ones are reused")
  T.eq(got2.codes.UNKNOWN or 0, got.unknown, "the unknown ones are held back and said so")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a submit answer garbled with its x-fal-request-id intact is settled, not lost", function()
  local sb = T.sandbox { "--workers", "16", "--job-time", "0.01", "--fault-rate", "0.25",
    "--fault-seed", "5", "--faults", "garbled,bare500" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d })
  local n = 100
  local got = batch(c, n, d)
  local s, submits = totals(sb)
  print(string.format("  garbled/bare500: %d jobs, %d saved; server: %d submits, %d duplicate, faults %s",
    n, got.saved, submits, s.duplicate_submits, json.encode(s.faults)), json.encode(got.codes))
  T.ok((s.faults.garbled or 0) >= 5 and (s.faults.bare500 or 0) >= 5, "both faults were injected")
  T.eq(got.saved, n, "every job saved: the id in the header settles the submit, bare 5xx are retried")
  T.eq(submits, n, "each sent once")
  T.eq(s.duplicate_submits, 0, "no duplicate")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a bare 500 on the result is retried; a typed one is the job's outcome", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local c = client(sb)
  local before = sb.stats().by_route.result
  local ok = c:edit { prompt = "[fail:bare500] passes", image_urls = { URL } }
  T.ok(ok and ok.images, "a bare 500 is a passing fault")
  T.eq(sb.stats().by_route.result - before, 3, "two bare 500s, then the result")
  before = sb.stats().by_route.result
  local res, err = c:edit { prompt = "[fail:typed500] final", image_urls = { URL } }
  T.eq(res, nil, "no result")
  T.eq(err.type, "runner_server_error", "the server's error type")
  T.eq(sb.stats().by_route.result - before, 1, "asked once: the outcome is final")
  sb.stop()
end)

T.case("a status outage of 4 s does not fail an accepted job", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d, retry = { base = 0.2, cap = 1 } })
  local jobs = {}
  for i = 1, 3 do jobs[i] = assert(c:submit { prompt = "[slow:1] outage " .. i, image_urls = { URL }, seed = i }) end
  sb.control { outage = { seconds = 4, routes = { "status", "stream", "result" }, status = 503 } }
  local t0 = core.monotime()
  for i, job in ipairs(jobs) do
    local res, err = job:wait()
    T.ok(res, "job " .. i .. " ended with its result: " .. tostring(err))
  end
  T.ok(core.monotime() - t0 >= 3.5, "it was followed through the outage")
  local s, submits = totals(sb)
  T.eq(submits, 3, "nothing sent again")
  T.ok(s.status_codes["503"] >= 3, "the outage answered")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a server that answers one request id for two jobs: the second is refused, the first kept", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d })
  local first = assert(c:submit { prompt = "first", image_urls = { URL }, seed = 1 })
  sb.control { repeat_id = 1 }
  local second, err = c:submit { prompt = "second", image_urls = { URL }, seed = 2 }
  T.eq(second, nil, "no second job under the same id")
  T.eq(err.code, "REPEATED_ID", "code")
  T.ok(err.maybe_submitted, "its existence is unknown")
  T.contains(err.message, first.request_id, "names the id")
  local res = assert(first:wait())
  T.eq(res.prompt, "first", "the first job's result is the first's")
  local jr = journal.open(d, { lock = false })
  local states = {}
  for _, rec in pairs(jr.jobs) do states[rec.state] = (states[rec.state] or 0) + 1 end
  T.eq(states.done, 1, "one done")
  T.eq(states.unknown, 1, "one unknown")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a request id repeated after its first job finished is still refused: with a journal, a new run's, none", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  -- Each variant: a first job sent and finished, then the server answers a second, different
  -- job with the first's id (repeat_id: the last job it made). -> the second submit's error.
  local function repeated(first_client, second_client, seed)
    local first = assert(first_client:submit { prompt = "first", image_urls = { URL }, seed = seed })
    assert(first:wait())
    if first_client.journal then first_client.journal:close() end
    local before = sb.stats().repeated_ids
    sb.control { repeat_id = 1 }
    local second, err = second_client():submit { prompt = "second", image_urls = { URL }, seed = seed }
    sb.control { repeat_id = 0 }
    T.eq(sb.stats().repeated_ids, before + 1, "the server repeated the id")
    T.eq(second, nil, "no second job under the finished job's id")
    T.eq(err.code, "REPEATED_ID", "code")
    T.contains(err.message, first.request_id, "names the id")
    return err
  end
  -- the same client and journal, in the process that saw the first job finish
  local c = client(sb, { journal = d })
  repeated(c, function() return c end, 1)
  c.journal:close()
  -- a new run on that journal (the ids are read from the file)
  local d2 = T.tmpdir()
  repeated(client(sb, { journal = d2 }), function() return client(sb, { journal = d2 }) end, 2)
  -- no journal at all: the client's own set of ids
  local bare = client(sb)
  repeated(bare, function() return bare end, 3)
  os.execute("rm -rf " .. T.quote(d) .. " " .. T.quote(d2))
  sb.stop()
end)

T.case("resubmit_unknown re-sends only submits in doubt: an accepted job is followed, a done one reused", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local accepted = { prompt = "[slow:1] accepted before", image_urls = { URL }, seed = 21 }
  local done = { prompt = "done before", image_urls = { URL }, seed = 22 }
  local doubt = { prompt = "in doubt before", image_urls = { URL }, seed = 23 }
  -- run 1: one job finished; one accepted, its end not seen; one whose answer was lost. The
  -- last two are written by hand, as a killed process leaves them (the accepted one is a real
  -- request, sent by a client without a journal, so nothing in this process finishes it there).
  local c = client(sb, { journal = d })
  assert(c:edit(done))
  local a = assert(client(sb):submit(accepted))
  local akey = c.journal:peek_key(c.endpoint, c:prepare(accepted), true)
  local key = c.journal:peek_key(c.endpoint, c:prepare(doubt), true)
  c.journal:close()
  local path = d .. "/" .. journal.FILE
  assert(append_record(path, json.encode { t = "intent", key = akey } .. "\n"))
  assert(append_record(path, json.encode { t = "accepted", key = akey, request_id = a.request_id } .. "\n"))
  assert(append_record(path, json.encode { t = "intent", key = key } .. "\n"))
  T.eq(select(2, totals(sb)), 2, "run 1 sent two")
  -- run 2, told to re-send what is in doubt
  local brave = client(sb, { journal = d, resubmit_unknown = true })
  local res, job = brave:edit(accepted)
  T.ok(res, "the accepted job's result: " .. tostring(job))
  T.eq(job.request_id, a.request_id, "the request run 1 had")
  T.ok(job.resumed, "followed by its id, not sent again")
  local _, job2 = assert(brave:edit(done))
  T.ok(job2.from_journal, "the done job is reused")
  T.eq(select(2, totals(sb)), 2, "neither was sent again")
  assert(brave:edit(doubt))
  T.eq(select(2, totals(sb)), 3, "only the job in doubt was sent again, once")
  T.eq(sb.stats().duplicate_submits, 0, "no body accepted twice")
  brave.journal:close()
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("hostile field types: a queue_position object, logs that are not a list", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  sb.control { hostile = true }
  for _, follow in ipairs { "stream", "poll" } do
    -- on_status sees each status answer as the server sent it, and the job as editflow kept it
    local seen, raw, real = {}, {}, 0
    local c = client(sb, { follow = follow,
      on_status = function(job, st)
        seen[#seen + 1] = job.queue_position == nil and "absent" or math.type(job.queue_position) or type(job.queue_position)
        raw[type(st.queue_position)] = true
        raw["logs " .. type(st.logs)] = true
      end,
      on_log = function(_, e)
        T.eq(type(e), "table", "log entries are tables")
        if e.message == "real" then real = real + 1 end
      end })
    -- The job runs until it is let go: by then a poll has seen both hostile variants (polls
    -- alternate them), a stream at least its first event (its next, the end, is the other one).
    local job = assert(c:submit { prompt = "[endless] hostile " .. follow, image_urls = { URL } })
    local t0 = core.monotime()
    while not (follow == "stream" and #seen >= 1 or raw.table and raw.boolean) do
      assert(core.monotime() - t0 < 60, follow .. ": no status answer within 60 s")
      editflow.step(50)
    end
    sb.control { release_endless = true }
    local res, err = job:wait()
    T.ok(res, follow .. ": the job still ends with its result: " .. tostring(err))
    T.ok(#seen > 0, follow .. ": status answers were seen")
    T.ok(raw.table and raw.boolean, follow .. ": both hostile queue_positions came ({\"n\":1} and true)")
    T.ok(raw["logs string"] and raw["logs table"], follow .. ": both hostile log fields came")
    for _, kind in ipairs(seen) do
      T.ok(kind == "absent" or kind == "integer", follow .. ": queue_position is an integer or absent, got " .. kind)
    end
    T.ok(real >= 1, follow .. ": the one real entry of a hostile log list is shown")
  end
  sb.stop()
end)

T.case("deadlines bound endless streams, trickling downloads and long Retry-After waits", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  sb.control { keepalive = 0.1 }
  local c = client(sb, { job_timeout = 1.5 })
  local before = sb.stats().by_route.cancel
  local t0 = core.monotime()
  local res, err = c:edit { prompt = "[endless] pings forever", image_urls = { URL } }
  local dt = core.monotime() - t0
  T.eq(res, nil, "no result")
  T.eq(err.code, "TIMEOUT", "code")
  -- a hang guard: [endless] never ends by itself (expected: the 1.5 s deadline and a cancel)
  T.ok(dt < 30, "bounded by the deadline and the cancel's grace (" .. dt .. ")")
  T.eq(sb.stats().by_route.cancel - before, 1, "cancelled at the queue")

  local trickle = client(sb, { job_timeout = 3 })
  local d = T.tmpdir()
  local _, job = assert(trickle:edit { prompt = "[trickle] slow image", image_urls = { URL } })
  t0 = core.monotime()
  local paths, serr = job:save(d)
  dt = core.monotime() - t0
  T.eq(paths, nil, "not saved")
  T.ok(serr, "an error")
  -- a hang guard: 2 bytes/s would be cut only by the 30 s low-speed limit, then retried
  -- (expected: the job's 3 s deadline)
  T.ok(dt < 20, "the download stopped at the job's deadline (" .. dt .. ")")
  T.eq(#T.list_dir(d), 0, "no partial file")

  local sb429 = T.sandbox { "--fault-rate", "1", "--faults", "429" }
  local c429 = client(sb429, { job_timeout = 2, retry = { attempts = 10, base = 0.5 } })
  t0 = core.monotime()
  local j, e = c429:submit { prompt = "p", image_urls = { URL } }
  dt = core.monotime() - t0
  T.eq(j, nil, "refused")
  T.ok(e.code == "HTTP_429" or e.code == "TIMEOUT", "the last answer or the deadline: " .. tostring(e.code))
  -- a hang guard: nine more tries after waits of 1, 1, 2, 4, 8, 16, 30... s would take minutes
  -- (expected: the job's 2 s deadline)
  T.ok(dt < 15, "the submit's retries stop at the job's deadline (" .. dt .. ")")
  os.execute("rm -rf " .. T.quote(d))
  sb429.stop()
  sb.stop()
end)

T.case("bounded results: 10,000 images are refused, a 5 MB data: image goes to a file, not the journal", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d })
  local files = sb.stats().by_route.files
  local res, err = c:edit { prompt = "[images:10000] many", image_urls = { URL }, seed = 1 }
  T.eq(res, nil, "refused")
  T.eq(err.code, "TOO_MANY_IMAGES", "code")
  T.contains(err.message, "10000 images", "says how many")
  T.eq(sb.stats().by_route.files, files, "no download started")

  local out, job = assert(c:edit { prompt = "[bigdata:5] inline", image_urls = { URL }, seed = 2 })
  T.ok(#out.images[1].url > 5e6, "the result is a big data: URI")
  local size = #(T.read(d .. "/" .. journal.FILE) or "")
  T.ok(size < 64 * 1024, "the journal stays small (" .. size .. " bytes)")
  -- a new run reuses the job from the journal and saves the image from the kept file
  local again = client(sb, { journal = d })
  local before = sb.stats().requests
  local _, job2 = assert(again:edit { prompt = "[bigdata:5] inline", image_urls = { URL }, seed = 2 })
  T.ok(job2.from_journal, "reused")
  local paths = assert(job2:save(d, { name = "big" }))
  T.eq(sb.stats().requests, before, "nothing asked of the server")
  local f = assert(io.open(paths[1], "rb"))
  T.eq(core.sniff(f:read(16)), "png", "a real PNG")
  f:close()
  T.ok(not job.from_journal, "the first run sent it")
  T.eq(job2.request_id, job.request_id, "the re-run's job is the first run's request")
  T.eq(select(2, totals(sb)), 2, "two submits in all: [images:10000] and [bigdata:5], each once")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("an interrupted submit (intent, no answer) is held back on the next run unless asked", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d })
  local body = c:prepare { prompt = "crashed", image_urls = { URL }, seed = 9 }
  local key = c.journal:peek_key(c.endpoint, body, true)
  assert(append_record(d .. "/" .. journal.FILE, json.encode { t = "intent", key = key } .. "\n"))
  c.journal:close()
  local fresh = client(sb, { journal = d })
  local job, err = fresh:send(body)
  T.eq(job, nil, "held back")
  T.eq(err.code, "UNKNOWN", "code")
  T.contains(err.message, "--resubmit-unknown", "says what the user can do")
  T.eq(totals(sb) and select(2, totals(sb)), 0, "nothing sent")
  fresh.journal:close()
  local brave = client(sb, { journal = d, resubmit_unknown = true })
  job = assert(brave:send(body))
  assert(job:wait())
  T.eq(select(2, totals(sb)), 1, "sent when asked")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a journal line torn and glued to the next record loses only the torn one", function()
  local d = T.tmpdir()
  local f = assert(io.open(d .. "/" .. journal.FILE, "wb"))
  f:write('{"t":"intent","key":"a-1"}\n{"t":"done","key":"a-1","requ{"t":"accepted","key":"b-1","request_id":"rid-b"}\n')
  f:write('{"t":"done","key":"c-1","request_id":"rid-c","output":{"images":[]}}\n')
  f:close()
  local jr = journal.open(d, { lock = false })
  T.eq(jr:get("b-1").state, "accepted", "the glued record is read")
  T.eq(jr:get("b-1").request_id, "rid-b", "with its id")
  T.eq(jr:get("c-1").state, "done", "later records are kept")
  T.eq(jr:get("a-1").state, "intent", "the torn one is lost, and only it")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a seedless job accepted in an interrupted run is followed, even after another run completed", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d })
  -- run 1: job A accepted, then the process "dies" (the journal is all that is left). Its
  -- records are written by hand for a real request sent by a client without a journal: a
  -- watcher of this process would record A done once it ended, and run 3 would reuse it
  -- instead of following it whenever the machine is slow.
  local input = { prompt = "[slow:1] A", image_urls = { URL } }
  local a = assert(client(sb):submit(input))
  local akey = c.journal:peek_key(c.endpoint, c:prepare(input), false)
  c.journal:close()
  local path = d .. "/" .. journal.FILE
  assert(append_record(path, json.encode { t = "intent", key = akey } .. "\n"))
  assert(append_record(path, json.encode { t = "accepted", key = akey, request_id = a.request_id } .. "\n"))
  -- run 2: another job, B, completes in the same folder
  local c2 = client(sb, { journal = d })
  assert(c2:edit { prompt = "B", image_urls = { URL } })
  c2:complete()
  c2.journal:close()
  -- run 3: A again: followed by its id, not sent again
  local c3 = client(sb, { journal = d })
  local res, job = c3:edit { prompt = "[slow:1] A", image_urls = { URL } }
  T.ok(res, "A's result: " .. tostring(job))
  T.eq(job.request_id, a.request_id, "the same request")
  T.ok(job.resumed, "resumed, not submitted")
  local _, submits = totals(sb)
  T.eq(submits, 2, "A and B, each once")
  T.eq(sb.stats().duplicate_submits, 0, "no duplicate")
  -- run 4 after run 3 completed: a seedless job is a new sample now
  c3:complete()
  c3.journal:close()
  local c4 = client(sb, { journal = d })
  local _, job4 = assert(c4:edit { prompt = "B", image_urls = { URL } })
  T.ok(not job4.from_journal and not job4.resumed, "B is sent anew after its run completed")
  T.eq(select(2, totals(sb)), 3, "one more submit, as a new sample")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a result the server no longer knows (404) keeps the job accepted: never paid again", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb, { journal = d, job_timeout = 2 })
  local body = c:prepare { prompt = "gone", image_urls = { URL }, seed = 3 }
  local key = c.journal:peek_key(c.endpoint, body, true)
  local path = d .. "/" .. journal.FILE
  assert(append_record(path, json.encode { t = "intent", key = key } .. "\n"))
  assert(append_record(path, json.encode { t = "accepted", key = key, request_id = "no-such-request" } .. "\n"))
  c.journal:close()
  local again = client(sb, { journal = d, job_timeout = 2 })
  local job = assert(again:send(body))
  T.ok(job.resumed, "followed by its id")
  local res, err = job:wait()
  T.eq(res, nil, "no result")
  T.ok(err.message:find("stays in the journal", 1, true), "says it stays: " .. err.message)
  T.eq(again.journal:get(key).state, "accepted", "still accepted, not failed")
  T.eq(select(2, totals(sb)), 0, "never sent")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a budget prices an accepted job at nothing and never skips it", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local c = client(sb)
  local spec = { name = "b", out = d, prompt = "p ${x}", vars = { x = { "1", "2" } }, images = { URL },
    seeds = { 1 }, client = c, params = { image_size = "square" } }
  local plan = editflow.experiment(setmetatable({ dry_run = true }, { __index = spec }))
  -- an interrupted run left job 1 accepted (sent, its end never seen by that run)
  local nj = client(sb)
  local body = nj:prepare { prompt = "p 1", image_urls = { URL }, seed = 1, image_size = "square" }
  local jr = journal.open(d .. "/b")
  local key = jr:peek_key(nj.endpoint, body, true)
  local first = assert(nj:send(body))
  assert(jr:append { t = "intent", key = key })
  assert(jr:append { t = "accepted", key = key, request_id = first.request_id })
  jr:close()
  local replan = editflow.experiment(setmetatable({ client = client(sb), dry_run = true }, { __index = spec }))
  T.ok(math.abs(replan.cost - plan.cost / 2) < 1e-9, "the accepted job is priced at nothing")
  local s = editflow.experiment(setmetatable({ client = client(sb), max_cost = plan.cost / 2 + 1e-6,
    partial = true }, { __index = spec }))
  T.eq(s.skipped, 0, "nothing skipped: the job already paid for costs nothing")
  T.eq(s.done, 2, "both jobs done")
  T.eq(select(2, totals(sb)), 2, "each sent once")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("the result decides: a look-alike's final SUCCEEDED (or an empty error) with an output is a success", function()
  for _, final in ipairs { "SUCCEEDED", "EMPTY_ERROR" } do
    local p = io.popen("echo $$; exec python3 " .. T.quote(T.source_dir .. "/tests/lua/servers/odd_status.py") .. " " .. final)
    local pid, port = tonumber(p:read("l")), tonumber(p:read("l"))
    local d = T.tmpdir()
    local ok, err = pcall(function()
      local c = editflow.client { base_url = "http://127.0.0.1:" .. port, key = "k", journal = d,
        poll_interval = 0.02, retry = { base = 0.02 } }
      local res, e = c:edit { prompt = "odd", image_urls = { URL }, seed = 1 }
      T.ok(res and res.images, final .. ": a success: " .. tostring(e))
      c.journal:close()
      local again = client({ url = "http://127.0.0.1:" .. port }, { journal = d })
      local _, job = assert(again:edit { prompt = "odd", image_urls = { URL }, seed = 1 })
      T.ok(job.from_journal, final .. ": reused on a re-run, not sent again")
    end)
    os.execute("kill " .. pid)
    p:close()
    os.execute("rm -rf " .. T.quote(d))
    if not ok then error(err, 0) end
  end
end)

T.case("a job an interrupted run cancelled is followed first, then sent anew once if the cancel took", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local input = { prompt = "[slow:2] cancelled", image_urls = { URL }, seed = 4 }
  local c = client(sb, { journal = d })
  local job = assert(c:submit(input))
  -- the cancel is asked while the job runs (a queued job's cancel is confirmed at once: another
  -- case); bounded, whatever the machine's speed
  for _ = 1, 400 do
    if (sb.jobs()[1] or {}).status == "IN_PROGRESS" then break end
    editflow.step(10)
  end
  T.eq((sb.jobs()[1] or {}).status, "IN_PROGRESS", "the job runs when its cancel is asked")
  assert(job:cancel())
  c.journal:close()
  local again = client(sb, { journal = d })
  local lifecycle = require "editflow.lifecycle"
  T.eq(lifecycle.paid(again, again:prepare(input)), false, "a job whose cancel was asked may be sent anew: "
    .. "its price counts in a plan and a budget")
  local told = {}
  local off = require("editflow.events").subscribe(function(name, j, detail)
    -- (the first run's own job, still followed in this process, reports its cancel: not counted)
    if j ~= job and (name == "resent" or (name == "finished" and j and j.error)) then
      told[#told + 1] = { name, detail }
    end
  end)
  local res, job2 = again:edit(input)
  off()
  T.ok(res, "the job was done in the end: " .. tostring(job2))
  T.ok(job2.request_id ~= job.request_id, "by a new request")
  T.eq(#told, 1, "one event, and no job reported failed (HTTP 499)")
  T.eq(told[1][1], "resent", "told it is sent anew")
  T.contains(told[1][2], "cancelled at the queue", "and why")
  local jobs = sb.jobs()
  T.eq(#jobs, 2, "two requests at the queue")
  T.ok(jobs[1].cancelled and not jobs[2].cancelled, "the first cancelled, the second ran")
  -- and a third run reuses the second's result
  again.journal:close()
  local third = client(sb, { journal = d })
  local _, job3 = assert(third:edit(input))
  T.ok(job3.from_journal, "reused")
  T.eq(#sb.jobs(), 2, "nothing more sent")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a job whose earlier run saw its cancel take is sent anew, and that is said", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  local input = { prompt = "[slow:2] seen cancelled", image_urls = { URL }, seed = 6 }
  local c = client(sb, { journal = d })
  local job = assert(c:submit(input))
  assert(job:cancel())
  local _, err = job:wait()  -- this run sees the cancel take: the journal says failed (client_cancelled)
  T.ok(err and require("editflow.lifecycle").cancelled(err), "ended cancelled")
  c.journal:close()
  local told, about = 0, nil
  local off = require("editflow.events").subscribe(function(name, j)
    if name == "resent" then told, about = told + 1, j and j.request_id end
  end)
  local again = client(sb, { journal = d })
  local res = again:edit(input)
  off()
  T.ok(res, "done by a new request")
  T.eq(told, 1, "the re-run says it sends it anew")
  T.eq(about, job.request_id, "naming the request the earlier run had")
  T.eq(#sb.jobs(), 2, "one new request")
  again.journal:close()
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("an ingress's typed 503 on the result is a passing fault, not the job's outcome", function()
  local sb = T.sandbox { "--workers", "16", "--job-time", "0.01", "--fault-rate", "0.3",
    "--fault-seed", "23", "--faults", "5xx" }
  local d = T.tmpdir()
  local n = 40
  local got = batch(client(sb, { journal = d }), n, d)
  local s, submits = totals(sb)
  T.ok((s.faults["5xx"] or 0) >= 10, "faults were injected")
  T.eq(got.failed, 0, "no job recorded as failed: " .. json.encode(got.codes))
  T.eq(got.saved + got.unknown, n, "saved, or in doubt after a refused submit's retries")
  T.eq(s.duplicate_submits, 0, "no duplicate")
  local again = batch(client(sb, { journal = d }), n, d)
  T.eq(select(2, totals(sb)), submits + got.unknown - (again.codes.UNKNOWN or 0), "a re-run pays for nothing done")
  T.eq(sb.stats().duplicate_submits, 0, "still no duplicate")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("every refused try of a submit is journaled: a process killed between tries leaves it refused", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  sb.control { outage = { seconds = 30, routes = { "submit" }, status = 503 } }
  local c = client(sb, { journal = d, retry = { attempts = 3, base = 0.05, cap = 0.1 } })
  local input = { prompt = "refused tries", image_urls = { URL }, seed = 2 }
  local job, err = c:submit(input)
  T.eq(job, nil, "not taken")
  T.ok(not err.maybe_submitted, "certainly not taken")
  c.journal:close()
  local kinds = {}
  for line in io.lines(d .. "/.editflow-journal.jsonl") do
    local rec = json.decode(line)
    if rec.t == "intent" or rec.t == "refused" then kinds[#kinds + 1] = rec.t end
  end
  T.eq(table.concat(kinds, ","), "intent,refused,intent,refused,intent,refused", "each try: its intent, then refused")
  -- what a kill between tries leaves: the journal up to a refused record: sent by the next run
  sb.control { outage = json.null }
  local again = client(sb, { journal = d })
  T.eq(require("editflow.lifecycle").paid(again, again:prepare(input)), false, "not counted as paid")
  assert(again:edit(input))
  again.journal:close()
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.case("a submit refused until the deadline is journaled refused, and the next run sends it", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local d = T.tmpdir()
  sb.control { outage = { seconds = 30, routes = { "submit" }, status = 503 } }
  local c = client(sb, { journal = d, job_timeout = 1, retry = { attempts = 20, base = 0.2 } })
  local input = { prompt = "outage", image_urls = { URL }, seed = 1 }
  local job, err = c:submit(input)
  T.eq(job, nil, "not accepted")
  T.ok(not err.maybe_submitted, "certainly not taken: " .. err.message)
  c.journal:close()
  sb.control { outage = json.null }
  local again = client(sb, { journal = d })
  assert(again:edit(input))
  T.eq(select(2, totals(sb)), 1, "sent once, by the next run")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.run()
