-- test_promises.lua: what the README promises and no other test touched, each against the
-- sandbox and each made to fail when the promise is broken (tests/mutants has a mutant for
-- every case): max_downloads, max_image_bytes, the 8 KB limit on URLs from the server, the
-- 1 MB limit on journal records, editflow.limits{max_connections}, stream_idle, the cut-off of
-- slow downloads (low_speed_time), on_finish, the held event, reuse_finished, the headers
-- behind start_timeout / priority / max_queue_length, and a 429's slot given back.
-- Concurrency is observed at the sandbox (high-water marks), never by the clock; the few
-- waits are bounds against a hang or gaps far wider than the scheduling they separate.
local T = require "testlib"
local editflow = require "editflow"
local core = require "editflow.core"
local json = require "editflow.json"
local journal = require "editflow.journal"

local URL = "https://cdn.example/a.png"
local TINY = { width = 64, height = 64 }   -- a PNG of a few hundred bytes

local sb = T.sandbox { "--job-time", "0.02", "--workers", "8" }

local function client(extra, server)
  server = server or sb
  local o = { base_url = server.url, storage_url = server.url, api_url = server.url, key = "test-key",
    poll_interval = 0.02, max_poll_interval = 0.2 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function input(prompt, extra)
  local t = { prompt = prompt, image_urls = { URL }, image_size = TINY }
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

local function submits(server)
  return (server or sb).stats().submits_by_endpoint["fal-ai/qwen-image-edit-plus"] or 0
end

local function job_of(id)
  for _, j in ipairs(sb.jobs()) do if j.request_id == id then return j end end
end

T.case("max_downloads: at most that many downloads at once at the CDN, 8 by default", function()
  local d = T.tmpdir()
  -- every download of these images is answered 1 s late, so the ones a client starts
  -- together are all in flight at the CDN together
  local _, job = assert(client { max_downloads = 2 }:edit(input("[filewait:1] four", { num_images = 4 })))
  sb.reset()
  T.eq(sb.stats().max_files_in_flight, 0, "the high-water mark starts at 0")
  local paths = assert(job:save(d .. "/two"))
  T.eq(#paths, 4, "four images saved")
  local s = sb.stats()
  T.eq(s.by_route.files, 4, "each downloaded once")
  T.eq(s.max_files_in_flight, 2, "two at once (max_downloads = 2), never more")
  local _, many = assert(client():edit(input("[filewait:1][images:10] ten")))
  sb.reset()
  T.eq(#assert(many:save(d .. "/ten")), 10, "ten images saved")
  T.eq(sb.stats().max_files_in_flight, 8, "eight at once by default, of ten")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("max_image_bytes: an image over the cap is refused with a clear error and not saved", function()
  local _, job = assert(client():edit(input("cap")))
  local size = job.output.images[1].file_size
  local d = T.tmpdir()
  local before = sb.stats().by_route.files
  local paths, err = client { max_image_bytes = size - 1 }:job(job.request_id):save(d)
  T.eq(paths, nil, "refused")
  T.eq(err.code, "BODY_TOO_LARGE", "code")
  T.contains(err.message, "larger than " .. (size - 1) .. " bytes", "the message names the cap")
  T.eq(#T.list_dir(d), 0, "nothing saved, no temporary file left")
  T.eq(sb.stats().by_route.files - before, 1, "not retried: a retry cannot mend it")
  local ok = assert(client { max_image_bytes = size }:job(job.request_id):save(d))
  T.eq(#T.read(ok[1]), size, "an image of exactly the cap is saved")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("URLs from the server are at most 8 KB: longer status, result and image URLs are not used", function()
  local c = client()
  local d = T.tmpdir()
  -- [longurls:N]: every URL the sandbox hands out for the job is N bytes (a pad= query)
  local before = sb.stats()
  local res, job = assert(c:edit(input("[longurls:8192] at the limit")))
  T.eq(#job.status_url, 8192, "an 8192-byte status URL is kept")
  T.eq(#job.response_url, 8192, "and the result's")
  T.eq(#res.images[1].url, 8192, "the image URL too")
  assert(job:save(d .. "/at"))
  local s = sb.stats()
  T.ok(s.padded_requests - before.padded_requests >= 3, "followed, fetched and downloaded through them ("
    .. (s.padded_requests - before.padded_requests) .. ")")
  local res2, job2 = assert(c:edit(input("[longurls:8193] over the limit")))
  T.eq(#res2.images[1].url, 8193, "the server did send an 8193-byte image URL")
  T.ok(not job2.status_url:find("pad=", 1, true) and #job2.status_url < 200, "the status URL is built from the base")
  T.ok(not job2.response_url:find("pad=", 1, true), "and the result's")
  local paths, err = job2:save(d .. "/over")
  T.eq(paths, nil, "the image is refused")
  T.eq(err.code, "BAD_RESPONSE", "code")
  T.contains(err.message, "URL over 8192 bytes", "says why")
  local s2 = sb.stats()
  T.eq(s2.padded_requests, s.padded_requests, "no request went to a URL over the limit")
  T.eq(s2.by_route.files, s.by_route.files, "nothing downloaded")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("journal records are at most 1 MB: a larger one is refused, said, and the job goes on", function()
  local d = T.tmpdir()
  local jr = journal.open(d)
  local function rec(n) return { t = "saved", key = "00000000000000aa-1", paths = { ("p"):rep(n) } } end
  local fixed = #json.encode(rec(0)) + 1  -- the record's line without the path, newline included
  T.eq(jr:append(rec(journal.MAX_RECORD - fixed)), true, "a line of exactly 1 MB is written")
  local ok, err = jr:append(rec(journal.MAX_RECORD - fixed + 1))
  T.eq(ok, nil, "one byte more is refused")
  T.contains(err, "over the limit of 1048576", "says why")
  jr:close()
  local lines = {}
  for line in io.lines(d .. "/" .. journal.FILE, "L") do lines[#lines + 1] = #line end
  T.eq(#lines, 1, "one record on file")
  T.eq(lines[1], journal.MAX_RECORD, "the one at the limit")
  -- a result whose done record would pass 1 MB (8000 image entries): the result is still the
  -- caller's, the journal keeps the job as accepted, and a re-run follows it by its id
  local warned = {}
  local unsub = editflow.subscribe(function(name, _, detail)
    if name == "warning" then warned[#warned + 1] = tostring(detail) end
  end)
  local big = input("[images:8000] a big record", { seed = 5 })
  local c = client { journal = d .. "/big", max_images = 8000 }
  local n0 = submits()
  local res, job = assert(c:edit(big))
  unsub()
  c.journal:close()
  T.eq(#res.images, 8000, "the result is returned whole")
  T.eq(#warned, 1, "one warning")
  T.contains(warned[1], "over the limit of 1048576", "names the limit")
  T.contains(warned[1], job.request_id, "and the job")
  local kinds = {}
  for line in io.lines(d .. "/big/" .. journal.FILE, "L") do
    T.ok(#line <= journal.MAX_RECORD, "a journal line of " .. #line .. " bytes")
    kinds[#kinds + 1] = json.decode(line).t
  end
  T.eq(table.concat(kinds, ","), "intent,accepted", "no done record was written")
  local again = client { journal = d .. "/big", max_images = 8000 }
  local res2, job2 = assert(again:edit(big))
  again.journal:close()
  T.eq(#res2.images, 8000, "the re-run has the result")
  T.eq(job2.request_id, job.request_id, "followed by its id")
  T.eq(submits() - n0, 1, "never sent again")
  os.execute("rm -rf " .. T.quote(d))
end)

-- editflow.limits is the loop's, once per Lua state: each setting runs in a lua5.4 of its own.
-- The child prints "follow=... ok=N".
local CHILD = [[
local editflow = require "editflow"
local n, jobs = tonumber(arg[2]), tonumber(arg[3])
if n > 0 then editflow.limits { max_connections = n } end
local c = editflow.client { base_url = arg[1], key = "test-key", max_in_flight = 6, poll_interval = 0.02 }
local list = {}
for i = 1, jobs do list[i] = { prompt = "connection " .. i, image_urls = { "https://cdn.example/a.png" } } end
local ok = 0
editflow.map(list, function(x) assert(c:edit(x)) ok = ok + 1 end, { concurrency = jobs })
print("follow=" .. c.follow .. " ok=" .. ok)
]]

local function child(server, max_connections, jobs)
  local d = T.tmpdir()
  assert(core.write_file(d .. "/child.lua", CHILD))
  -- (LD_PRELOAD: the ASan runtime, in the sanitizer build only; T.sh would drop it)
  local st, out, err = T.sh("cd " .. T.quote(d) .. " && LD_PRELOAD=" .. T.quote(os.getenv("LD_PRELOAD") or "")
    .. " ASAN_OPTIONS=" .. T.quote(os.getenv("ASAN_OPTIONS") or "") .. " timeout 120 lua5.4 child.lua "
    .. T.quote(server.url) .. " " .. max_connections .. " " .. jobs)
  os.execute("rm -rf " .. T.quote(d))
  T.eq(st, 0, "the child ran: " .. tostring(err))
  return out:match("follow=(%S+)"), tonumber(out:match("ok=(%d+)"))
end

T.case("editflow.limits{max_connections}: never more at once; below max_in_flight + 2, polling", function()
  local capped = T.sandbox { "--job-time", "0.05", "--workers", "8" }
  local follow, ok = child(capped, 2, 12)
  T.eq(follow, "poll", "2 connections < max_in_flight 6 + 2: jobs are followed by polling")
  T.eq(ok, 12, "every job done")
  local s = capped.stats()
  T.ok(s.max_connections <= 2, "at most 2 connections at once, saw " .. s.max_connections)
  T.eq(s.by_route.stream, 0, "no status stream")
  T.ok(s.by_route.status > 0, "polled")
  capped.stop()
  -- the same load without the cap does open more (else the case above proves nothing)
  local free = T.sandbox { "--job-time", "0.05", "--workers", "8" }
  follow, ok = child(free, 0, 12)
  T.eq(follow, "stream", "streams without a cap")
  T.eq(ok, 12, "every job done")
  T.ok(free.stats().max_connections > 2, "more than 2 connections at once without the cap")
  -- the boundary: max_in_flight + 2 connections are enough to stream, one fewer is not
  T.eq(child(free, 8, 1), "stream", "8 connections for 6 in flight: streams")
  T.eq(child(free, 7, 1), "poll", "7: polling")
  free.stop()
end)

T.case("stream_idle: a silent stream is given up for polling, and the job still finishes", function()
  for _, bad in ipairs { 0, -1, 0 / 0 } do
    T.raises(function() client { stream_idle = bad } end, "stream_idle must be a positive number")
  end
  local quiet = T.sandbox { "--job-time", "0.02", "--keepalive", "3600" }  -- no pings: silence
  -- 1.5 s (rounded up to whole seconds for libcurl, whose speed window adds ~5 s)
  local c = client({ stream_idle = 1.5, poll_interval = 0.05 }, quiet)
  local job = assert(c:submit(input("[endless] silent until released")))
  local t0, s = core.monotime(), nil
  repeat
    editflow.sleep(0.2)
    s = quiet.stats()
  until s.by_route.status > 0 or core.monotime() - t0 > 60
  T.ok(s.by_route.status > 0, "polling began once the stream was silent")
  T.eq(s.by_route.stream, 1, "the one stream was given up")
  T.eq(job.state, "IN_PROGRESS", "the job is still running")
  quiet.control { release_endless = true }
  local res = assert(job:wait())
  T.eq(#res.images, 1, "and finishes")
  quiet.stop()
end)

T.case("a download slower than 512 B/s for low_speed_time seconds is cut off and retried", function()
  T.raises(function() client { low_speed_time = 0.5 } end, "low_speed_time must be an integer >= 1")
  local c = client { low_speed_time = 1, retry = { base = 0.05, jitter = 0 } }
  -- [slowfile:8]: the first download of the image spreads its body over 8 s; later ones are fast
  local _, job = assert(c:edit(input("[slowfile:8] slow cdn")))
  local size = job.output.images[1].file_size
  T.ok(size / 8 < 256, "the first download runs well under 512 B/s (" .. size .. " bytes in 8 s)")
  local retries = {}
  local unsub = c:subscribe(function(name, _, detail)
    if name == "retry" then retries[#retries + 1] = detail.what .. ":" .. tostring(detail.why) end
  end)
  local before = sb.stats().by_route.files
  local d = T.tmpdir()
  local paths = assert(job:save(d))
  unsub()
  T.eq(sb.stats().by_route.files - before, 2, "cut off within 8 s, then fetched again")
  T.eq(table.concat(retries, ","), "download:OPERATION_TIMEDOUT", "one retry, of the download, for its slowness")
  T.eq(#T.read(paths[1]), size, "saved whole")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("on_finish(job) is called once per job, after it ended, with its outcome", function()
  local calls = {}
  local c = client { on_finish = function(job)
    local r = calls[job] or { n = 0 }
    calls[job] = r
    r.n, r.set, r.state = r.n + 1, job.finished.set, job.state
    r.output, r.code = job.output, job.error and job.error.code
  end }
  local good = assert(c:submit(input("fine")))
  local bad = assert(c:submit(input("[fail:500] broken")))
  local stuck = assert(c:submit(input("[endless] cancelled")))
  assert(good:wait())
  T.eq(bad:wait(), nil, "the failing job fails")
  assert(stuck:cancel())
  T.eq(stuck:wait(), nil, "the cancelled job ends")
  good:wait()
  bad:wait()
  local d = T.tmpdir()
  assert(good:save(d))
  os.execute("rm -rf " .. T.quote(d))
  for name, j in pairs { good = good, bad = bad, stuck = stuck } do
    local r = calls[j]
    T.ok(r, name .. ": on_finish was called")
    T.eq(r.n, 1, name .. ": once, however often it was waited for or saved")
    T.eq(r.set, true, name .. ": after the job ended")
    T.eq(r.state, "COMPLETED", name .. ": in its final state")
  end
  T.ok(calls[good].output and calls[good].output == good.output, "the success's output")
  T.eq(calls[good].code, nil, "and no error")
  T.eq(calls[bad].output, nil, "the failure has no output")
  T.eq(calls[bad].code, "HTTP_500", "but its error")
  T.eq(calls[stuck].code, "HTTP_499", "the cancelled job's error")
  -- a job a journal already holds the result of is reused, and finishes for on_finish too
  local jd = T.tmpdir()
  local first = client { journal = jd }
  assert(assert(first:submit(input("kept", { seed = 5 }))):wait())
  local n0, reused = submits(), {}
  local again = client { journal = jd, on_finish = function(job) reused[#reused + 1] = job end }
  local job = assert(again:submit(input("kept", { seed = 5 })))
  assert(job:wait())
  T.eq(submits() - n0, 0, "the re-run sent nothing")
  T.eq(#reused, 1, "on_finish was called once for the reused job")
  T.ok(reused[1] == job and job.from_journal, "with the job rebuilt from the journal")
  os.execute("rm -rf " .. T.quote(jd))
end)

T.case("held: a job whose lost submit cannot be settled is held back by the next run, and said", function()
  local d = T.tmpdir()
  local body = input("lost, then held", { seed = 11 })
  local nolisting = "http://127.0.0.1:9"  -- fal's request listing cannot be reached
  local n0 = submits()
  local c1 = client { journal = d, api_url = nolisting, settle_timeout = 1 }
  sb.control { spoil_submits = { kind = "lost", count = 1 } }
  local job, err = c1:submit(body)
  c1.journal:close()
  T.eq(job, nil, "no answer")
  T.eq(err.maybe_submitted, true, "the job may exist")
  T.eq(submits() - n0, 1, "it does: the queue made it and the answer was lost")
  local held = {}
  local unsub = editflow.subscribe(function(name, j, detail)
    if name == "held" then held[#held + 1] = { job = j, detail = detail } end
  end)
  local c2 = client { journal = d, api_url = nolisting, settle_timeout = 1 }
  local own, other = {}, {}
  c2:subscribe(function(name, _, detail) if name == "held" then own[#own + 1] = detail end end)
  client():subscribe(function(name) if name == "held" then other[#other + 1] = name end end)
  local job2, err2 = c2:submit(body)
  unsub()
  c2.journal:close()
  T.eq(job2, nil, "held back")
  T.eq(err2.code, "UNKNOWN", "code")
  T.eq(#held, 1, "one held event")
  T.eq(held[1].detail, err2, "carrying the error the submit returned")
  T.eq(#own, 1, "the client's own subscriber hears it (client:subscribe)")
  T.eq(own[1], err2, "with the same error")
  T.eq(#other, 0, "another client's does not")
  T.contains(err2.message, "--resubmit-unknown", "which says what the user can do")
  T.eq(submits() - n0, 1, "not sent again")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("reuse_finished: after a completed run a seedless job is a new sample unless reuse_finished", function()
  local d = T.tmpdir()
  local body = input("a seedless sample")
  local function run(opts, complete)
    opts = opts or {}
    opts.journal = d
    local c = client(opts)
    local _, job = assert(c:edit(body))
    if complete then c:complete() end
    c.journal:close()
    return job
  end
  local n0 = submits()
  local first = run(nil, true)
  T.eq(submits() - n0, 1, "sent")
  local reused = run { reuse_finished = true }
  T.eq(reused.from_journal, true, "reuse_finished: reused from the completed run")
  T.eq(reused.request_id, first.request_id, "its result")
  T.eq(submits() - n0, 1, "nothing sent")
  local fresh = run()
  T.ok(not fresh.from_journal, "without it: a new sample")
  T.ok(fresh.request_id ~= first.request_id, "a new request")
  T.eq(submits() - n0, 2, "sent")
  local finished = run()  -- the run before did not complete: its result finishes this one
  T.eq(finished.from_journal, true, "an interrupted run's seedless job is reused without reuse_finished")
  T.eq(finished.request_id, fresh.request_id, "that run's result")
  T.eq(submits() - n0, 2, "nothing sent")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("start_timeout, priority and max_queue_length are sent on submit as fal reads them", function()
  local c = client()
  local job = assert(c:submit(input("preferences"), { start_timeout = 2.5, priority = "low", max_queue_length = 7 }))
  local rec = job_of(job.request_id)
  T.eq(rec.headers["x-fal-request-timeout"], "3", "X-Fal-Request-Timeout: whole seconds, rounded up")
  T.eq(rec.headers["x-fal-queue-priority"], "low", "X-Fal-Queue-Priority")
  T.eq(rec.query.fal_max_queue_length, "7", "fal_max_queue_length")
  local job2 = assert(c:submit(input("other preferences"), { start_timeout = 30, priority = "normal", max_queue_length = 1000 }))
  rec = job_of(job2.request_id)
  T.eq(rec.headers["x-fal-request-timeout"], "30", "30 s")
  T.eq(rec.headers["x-fal-queue-priority"], "normal", "normal priority")
  T.eq(rec.query.fal_max_queue_length, "1000", "a queue length of 1000")
  local plain = assert(c:submit(input("no preferences")))
  rec = job_of(plain.request_id)
  T.eq(rec.headers["x-fal-request-timeout"], nil, "none asked, none sent")
  T.eq(rec.headers["x-fal-queue-priority"], nil, "no priority")
  T.eq(rec.query.fal_max_queue_length, nil, "no queue length")
  for _, j in ipairs { job, job2, plain } do assert(j:wait()) end
end)

T.case("a 429 storm halves the jobs allowed in flight; each accepted submit gives one back", function()
  local c = client { max_in_flight = 8, retry = { base = 0.01, cap = 0.02, jitter = 0, attempts = 6 } }
  local limits = {}
  local unsub = editflow.subscribe(function(name, _, detail)
    if name == "retry" and detail.what == "submit" then limits[#limits + 1] = c.slots.limit end
  end)
  sb.control { refuse_submits = { count = 3, status = 429 } }
  local jobs = { assert(c:submit(input("through the storm"))) }
  unsub()
  T.eq(table.concat(limits, ","), "4,2,1", "each 429 halved the limit")
  local seen = { c.slots.limit }
  for i = 2, 8 do
    jobs[i] = assert(c:submit(input("after the storm " .. i)))
    seen[#seen + 1] = c.slots.limit
  end
  T.eq(table.concat(seen, ","), "2,3,4,5,6,7,8,8", "one back per accepted submit, up to max_in_flight")
  for _, j in ipairs(jobs) do assert(j:wait()) end
end)

T.run()
