-- test_contract.lua: fal's contract as fal's own clients and docs have it (SPEC §8), served
-- strictly by the sandbox: a signed upload PUT that takes exactly one Content-Type, results
-- under `image`, workflows/ endpoints, submits answered 5xx after the job was made, string
-- prices and a pricing API that refuses the key or stays silent, the runner hint, the
-- uploads' lifetime, and logs=0 when nobody reads log lines.
local T = require "testlib"
local editflow = require "editflow"
local core = require "editflow.core"
local json = require "editflow.json"
local price = require "editflow.price"
local events = require "editflow.events"
local client_mod = require "editflow.client"
local lifecycle = require "editflow.lifecycle"

local sb = T.sandbox { "--job-time", "0.01", "--workers", "8" }
local work = T.tmpdir()

local function photo() return T.new_photo(work, "contract") end

local function client(extra, url)
  url = url or sb.url
  local o = { base_url = url, storage_url = url, api_url = url, key = "test-key", poll_interval = 0.02,
    timeout = 5 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function job_of(id, server)
  for _, j in ipairs((server or sb).jobs()) do if j.request_id == id then return j end end
end

T.case("a local file goes up with exactly the file's Content-Type and none of the client's headers", function()
  local before = sb.stats()
  local c = client { headers = { ["X-Team"] = "studio" }, input_lifetime = 3600 }
  local res, job = assert(c:edit { prompt = "up", image_urls = { photo() } })
  T.ok(res.images[1], "the job ran on the uploaded file")
  local s = sb.stats()
  T.eq(s.uploads - before.uploads, 1, "the upload was taken")
  T.eq(s.upload_signature_mismatches, before.upload_signature_mismatches, "no second or other Content-Type")
  T.eq(s.upload_extra_headers, before.upload_extra_headers, "no Accept, no client header on the signed PUT")
  T.eq(s.upload_lifecycles[#s.upload_lifecycles], '{"expiration_duration_seconds":3600}', "the inputs' lifetime")
  T.eq(job_of(job.request_id).headers["x-team"], "studio", "the client's header still goes to the queue")
  -- in parts: no Content-Type on a part, JSON on complete
  local big = client { multipart_bytes = 64, part_bytes = 64 }
  assert(big:edit { prompt = "parts", image_urls = { photo() } })
  local s2 = sb.stats()
  T.ok(s2.multipart_parts > s.multipart_parts, "sent in parts")
  T.eq(s2.upload_signature_mismatches, before.upload_signature_mismatches, "parts and complete as signed")
  T.eq(s2.upload_extra_headers, before.upload_extra_headers, "nothing extra on parts")
end)

T.case("an upload URL remembered in the journal or the cache is checked like a fresh one", function()
  local storage = require "editflow.storage"
  T.eq(storage.usable_url("file:///etc/passwd"), false, "file: refused")
  T.eq(storage.usable_url("https://cdn.example/a b.png"), false, "spaces refused")
  T.eq(storage.usable_url("https://cdn.example/a.png"), true, "https taken")
  T.eq(storage.usable_url("http://127.0.0.1:8/m/x"), true, "http taken")
end)

T.case("a result under `image` (one File) is a result: saved like `images`", function()
  local c = client()
  local res, job = assert(c:edit { prompt = "one [shape:image]", image_urls = { "https://example.com/a.png" } })
  T.eq(#res.images, 1, "one image")
  T.ok(res.image and res.image.url == res.images[1].url, "image stays, images names it")
  local paths = assert(job:save(T.tmpdir()))
  T.eq(#paths, 1, "saved")
  T.eq(core.sniff(T.read(paths[1])), "png", "a real image")
end)

T.case("workflows/ and comfy/ endpoints keep their third part for status, result and cancel", function()
  T.eq(select(2, client_mod.parse_endpoint("workflows/me/flow/sub")), "workflows/me/flow", "workflows app")
  T.eq(select(2, client_mod.parse_endpoint("comfy/me/flow")), "comfy/me/flow", "comfy app")
  T.eq(select(2, client_mod.parse_endpoint("fal-ai/flux/dev")), "fal-ai/flux", "owner/alias")
  T.eq(client_mod.parse_endpoint("123-app"), "123/app", "a legacy numeric id")
  T.eq(client_mod.parse_endpoint("workflows/me"), nil, "a workflow needs its app")
  local c = client { endpoint = "workflows/me/flow/sub" }
  local res, job = assert(c:edit { prompt = "wf", image_urls = { "https://example.com/a.png" } })
  T.ok(res.images[1], "done")
  -- found again by its id only (another run, `editflow result ID -m workflows/me/flow`)
  local again = client({ endpoint = "workflows/me/flow" }):job(job.request_id)
  T.match(again.status_url, "/workflows/me/flow/requests/", "status under the three-part app")
  local out = assert(again:result())
  T.eq(out.images[1].url, res.images[1].url, "the same result")
end)

T.case("what a submit's answer means (lifecycle.submit_answer)", function()
  local function means(st, h, body) return lifecycle.submit_answer { status = st, headers = h or {}, body = body or "" } end
  T.eq(means(200), "accepted", "2xx")
  T.eq(means(500, { ["x-fal-request-id"] = "abc" }), "exists", "a 5xx naming the job")
  T.eq(means(503, { ["x-fal-request-id"] = "abc" }), "exists", "fal's own 503 names the job")
  T.eq(means(503), "retry", "a 503 without an id")
  T.eq(means(429, { ["x-fal-request-id"] = "abc" }), "retry", "a 429 is never a job")
  T.eq(means(502, {}, "<html>nginx</html>"), "retry", "an ingress 502")
  T.eq(means(502, {}, "<html>Bad Gateway</html>"), "unknown", "a 502 that is not the ingress's page")
  T.eq(means(504, {}, "<html>nginx</html>"), "unknown", "a gateway timeout may come after the job was made")
  T.eq(means(502, {}, '{"detail":"x"}'), "unknown", "a 502 with fal's JSON and no id")
  T.eq(means(500, {}, '{"detail":"x"}'), "unknown", "a 500 without an id")
  T.eq(means(504, { ["x-fal-request-timeout-type"] = "user" }), "refused", "the user's start timeout")
  T.eq(means(422, { ["x-fal-request-id"] = "abc" }), "refused", "a 4xx")
  T.eq(means(500, { ["x-fal-request-id"] = "../x" }), "unknown", "an id that is not one")
end)

T.case("a submit answered 500 after the job was made, with its id: followed, never sent again", function()
  local f = T.sandbox { "--job-time", "0.01", "--fault-rate", "1", "--faults", "made500" }
  local c = client({}, f.url)
  local res, job = assert(c:edit { prompt = "made", image_urls = { "https://example.com/a.png" } })
  T.ok(res.images[1], "its result came")
  local s = f.stats()
  T.eq(s.submits_by_endpoint["fal-ai/qwen-image-edit-plus"], 1, "sent once")
  T.eq(s.faults.made500, 1, "the 500 was served")
  T.ok(job_of(job.request_id, f), "followed under the id the 500 carried")
  T.ok(not job.found, "by that id, not by a search of fal's listing")
  T.eq(s.listing_calls, 0, "the listing was not needed")
  f.stop()
end)

T.case("a submit answered 500 after the job was made, without its id: found in fal's request listing", function()
  local f = T.sandbox { "--job-time", "0.01", "--fault-rate", "1", "--faults", "made500bare" }
  local c = client({}, f.url)
  local res, job = assert(c:edit { prompt = "bare", seed = 5, image_urls = { "https://example.com/a.png" } })
  T.ok(res.images[1], "its result came")
  T.eq(job.found, true, "adopted from the listing")
  local s = f.stats()
  T.eq(s.submits_by_endpoint["fal-ai/qwen-image-edit-plus"], 1, "sent once")
  T.ok(s.listing_calls >= 1, "the listing was read")
  T.ok(job_of(job.request_id, f), "the job the 500 made")
  f.stop()
end)

-- A grid of `count` jobs through the experiment layer with a journal; -> summary, sandbox stats.
local function storm(faults, rate, count, api)
  local f = T.sandbox { "--job-time", "0.01", "--workers", "8", "--fault-rate", tostring(rate),
    "--fault-seed", "11", "--faults", faults }
  local vals = {}
  for i = 1, count do vals[i] = tostring(i) end
  local d = T.tmpdir()
  local c = client({ journal = d, retry = { base = 0.01, cap = 0.05, attempts = 6 }, settle_timeout = 30,
    max_in_flight = 16, api_url = api or f.url }, f.url)
  local s = editflow.experiment { name = "storm", out = d, client = c, prompt = "p ${n}", vars = { n = vals },
    seeds = { 1 }, images = { "https://example.com/a.png" }, concurrency = 16 }
  local st = f.stats()
  f.stop()
  return s, st, d
end

T.case("answers lost after the work on 15 % of calls: every job saved once, none held", function()
  local s, st = storm("lost", 0.15, 60)
  T.ok(st.faults.lost >= 3, "answers were lost (" .. tostring(st.faults.lost) .. ")")
  T.eq(s.done, 60, "every job saved")
  T.eq((s.held or 0) + (s.failed or 0), 0, "none held or failed")
  T.eq(st.submits_by_endpoint["fal-ai/qwen-image-edit-plus"], 60, "submits seen by the server = jobs")
  T.eq(st.duplicate_submits, 0, "none paid twice")
  print(string.format("# lost 15%%: %d faults, %d submits, %d listing calls", st.faults.lost,
    st.submits_by_endpoint["fal-ai/qwen-image-edit-plus"], st.listing_calls))
end)

T.case("500 after the job was made on 20 % of submits, with and without its id: 0 duplicates, all saved", function()
  local s, st = storm("made500,made500bare", 0.2, 60)
  T.ok(st.faults.made500 + st.faults.made500bare >= 4, "500s were served")
  T.eq(s.done, 60, "every job saved")
  T.eq(st.submits_by_endpoint["fal-ai/qwen-image-edit-plus"], 60, "one submit a job")
  T.eq(st.duplicate_submits, 0, "no duplicates")
  print(string.format("# made500 %d, made500bare %d: %d submits", st.faults.made500, st.faults.made500bare,
    st.submits_by_endpoint["fal-ai/qwen-image-edit-plus"]))
end)

T.case("a submit held for want of the listing is settled by a re-run that can read it", function()
  local f = T.sandbox { "--job-time", "0.01", "--fault-rate", "1", "--faults", "made500bare" }
  local d = T.tmpdir()
  local input = { prompt = "held", seed = 9, image_urls = { "https://example.com/a.png" } }
  local c1 = client({ journal = d, api_url = "http://127.0.0.1:9" }, f.url)  -- no listing here
  local job, err = c1:submit(input)
  T.eq(job, nil, "no job this run")
  T.eq(err.maybe_submitted, true, "in doubt")
  c1.journal:close()
  local c2 = client({ journal = d, api_url = f.url }, f.url)
  local res, job2 = assert(c2:edit(input))
  T.ok(res.images[1], "the re-run has the result")
  T.eq(job2.found, true, "found in the listing")
  T.eq(f.stats().submits_by_endpoint["fal-ai/qwen-image-edit-plus"], 1, "never sent again")
  c2.journal:close()
  local c3 = client({ journal = d, api_url = f.url }, f.url)
  local _, job3 = assert(c3:edit(input))
  T.eq(job3.from_journal, true, "a third run reuses it from the journal")
  f.stop()
end)

T.case("an ingress's 502 (nginx, no id) is retried as fal_client does; nothing is paid twice", function()
  local f = T.sandbox { "--job-time", "0.01", "--fault-rate", "0.5", "--fault-seed", "3", "--faults", "ingress502" }
  -- (a 502 taken as unknown would be looked for in the listing: 2 s, not 600, before it is held)
  local c = client({ retry = { base = 0.01, cap = 0.05, attempts = 8 }, settle_timeout = 2 }, f.url)
  local ok = 0
  for i = 1, 6 do
    if c:edit { prompt = "ing " .. i, image_urls = { "https://example.com/a.png" } } then ok = ok + 1 end
  end
  local s = f.stats()
  T.ok(s.faults.ingress502 >= 1, "502s were served (" .. tostring(s.faults.ingress502) .. ")")
  T.eq(ok, 6, "every job done")
  T.eq(s.duplicate_submits, 0, "none paid twice")
  f.stop()
end)

T.case("prices: a numeric string is a price; 401/403 is explained once, naming --price", function()
  local ep = "fal-ai/qwen-image-edit-plus"
  sb.control { price = { endpoint_id = ep, unit_price = "0.0125", unit = "images" } }
  price.forget()
  local cache = T.tmpdir()
  require("editflow.env").set("XDG_CACHE_HOME", cache)
  local p = assert(client():price())
  T.eq(p.unit_price, 0.0125, "the string read as a number")
  T.eq(p.source, "pricing API", "from the API")
  T.eq(price.kind(p.unit), "image", "plural unit")
  price.forget()
  require("editflow.env").set("XDG_CACHE_HOME", T.tmpdir())
  sb.control { fail_next = { route = "pricing", status = 403, count = 5 } }
  local warned = {}
  local off = events.subscribe(function(name, _, d) if name == "warning" then warned[#warned + 1] = d end end)
  local before = sb.stats().pricing_calls
  local q = assert(client():price())
  off()
  T.eq(q.source, "shipped", "the shipped price is used")
  T.eq(sb.stats().pricing_calls - before, 1, "one try, not four")
  T.eq(#warned, 1, "told once")
  T.contains(warned[1], "refused this key", "says the key was refused, not unreachable")
  T.contains(warned[1], "--price", "names --price")
  sb.control { fail_next = json.null }
  sb.control { price = { endpoint_id = ep, unit_price = json.null } }
  require("editflow.env").set("XDG_CACHE_HOME", nil)
  price.forget()
end)

T.case("a silent pricing API costs one try of the lookup timeout, not four of 60 s", function()
  -- a server that takes each connection and never answers, counting them in a file
  local tries = os.tmpname()
  local srv = assert(io.popen("echo $$; exec python3 -c " .. T.quote(
    "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(50); "
    .. "print(s.getsockname()[1], flush=True); s.settimeout(120); held=[]\n"
    .. "while True:\n c=s.accept()[0]; held.append(c); open(sys.argv[1],'w').write(str(len(held)))")
    .. " " .. T.quote(tries), "r"))
  local pid, port = tonumber(srv:read("l")), tonumber(srv:read("l"))
  local silent = "http://127.0.0.1:" .. port
  price.forget()
  require("editflow.env").set("XDG_CACHE_HOME", T.tmpdir())
  local c = editflow.client { base_url = sb.url, api_url = silent, key = "test-key", timeout = 1 }
  local t0 = core.monotime()
  local p = assert(c:price())
  local took = core.monotime() - t0
  os.execute("kill " .. pid)
  srv:close()
  T.eq(p.source, "shipped", "fell back to the shipped price")
  for _ = 1, 100 do if T.read(tries) then break end os.execute("sleep 0.1") end  -- the server's note
  T.eq(T.read(tries), "1", "one try: no retry of a lookup")
  os.remove(tries)
  -- a guard against a lookup held by the 60 s default instead of its 1 s (load cannot reach it)
  T.ok(took < 30, string.format("bounded by the 1 s lookup timeout (%.1f s)", took))
  T.eq(c.lookup_timeout, 1, "--timeout bounds the lookup")
  T.eq(client_mod.new({ base_url = sb.url, key = "k" }).lookup_timeout, 15, "15 s by default")
end)

T.case("the runner hint goes as X-Fal-Runner-Hint; log lines are asked for only when read", function()
  sb.reset()
  local c = client { hint = "lora-a" }
  local _, job = assert(c:edit { prompt = "hint", image_urls = { "https://example.com/a.png" } })
  T.eq(job_of(job.request_id).headers["x-fal-runner-hint"], "lora-a", "client hint")
  local _, job2 = assert(c:edit({ prompt = "hint2", image_urls = { "https://example.com/a.png" } }, { hint = "lora-b" }))
  T.eq(job_of(job2.request_id).headers["x-fal-runner-hint"], "lora-b", "a submit's own hint")
  local asked = sb.stats().logs_asked
  T.eq(asked["1"], 0, "nobody reads logs: logs=0 (" .. json.encode(asked) .. ")")
  T.ok(asked["0"] >= 2, "status asked with logs=0")
  local lines = 0
  local c2 = client { on_log = function() lines = lines + 1 end }
  assert(c2:edit { prompt = "logs", image_urls = { "https://example.com/a.png" } })
  T.ok(sb.stats().logs_asked["1"] >= 1, "an on_log asks for them")
  T.ok(lines >= 1, "and gets them")
end)

-- A server of tests/lua/servers/echo_key.py in `mode`: -> base URL, stop().
local function echo_server(mode)
  local p = io.popen("echo $$; exec python3 " .. T.quote(T.source_dir .. "/tests/lua/servers/echo_key.py")
    .. " " .. mode)
  local pid, port = tonumber(p:read("l")), tonumber(p:read("l"))
  return "http://127.0.0.1:" .. port, function() os.execute("kill " .. pid) p:close() end
end

T.case("a server string that holds the credential is never used, kept or shown", function()
  local KEY = "sk-contract-credential-0123456789"
  local u, stop = echo_server("id")
  local d = T.tmpdir()
  local ok, err = pcall(function()
    local c = editflow.client { base_url = u, key = KEY, journal = d, retry = false, poll_interval = 0.02,
      api_url = "http://127.0.0.1:9", schema_url = false }
    local job, e = c:submit { prompt = "echo", image_urls = { "https://example.com/a.png" } }
    T.eq(job, nil, "a request id equal to the credential is no request id")
    T.eq(e.maybe_submitted, true, "the job may exist: in doubt, never followed by that id")
    T.ok(not tostring(e.message):find(KEY, 1, true), "the message does not show it")
    c.journal:close()
    T.ok(not T.read(d .. "/.editflow-journal.jsonl"):find(KEY, 1, true), "the journal does not hold it")
  end)
  stop()
  if not ok then error(err, 0) end
  local u2, stop2 = echo_server("logs")
  ok, err = pcall(function()
    local lines = {}
    local c = editflow.client { base_url = u2, key = KEY, poll_interval = 0.02, follow = "poll",
      api_url = "http://127.0.0.1:9", schema_url = false, on_log = function(_, e) lines[#lines + 1] = e.message end }
    assert(c:edit { prompt = "echo", image_urls = { "https://example.com/a.png" } })
    T.eq(#lines, 2, "both log lines told")
    T.ok(not lines[1]:find(KEY, 1, true), "the one that held the credential is withheld: " .. lines[1])
    T.eq(lines[2], "done", "the other as sent")
  end)
  stop2()
  if not ok then error(err, 0) end
  local u3, stop3 = echo_server("detail")
  ok, err = pcall(function()
    local d = T.tmpdir()
    local c = editflow.client { base_url = u3, key = KEY, journal = d, retry = false,
      api_url = "http://127.0.0.1:9", schema_url = false }
    local job, e = c:submit { prompt = "echo", image_urls = { "https://example.com/a.png" } }
    T.eq(job, nil, "refused")
    T.ok(not tostring(e.message):find(KEY, 1, true), "a detail quoting the key is not shown: " .. e.message)
    T.contains(e.message, "credential withheld", "says what was withheld")
    c.journal:close()
    T.ok(not T.read(d .. "/.editflow-journal.jsonl"):find(KEY, 1, true), "nor journaled")
  end)
  stop3()
  if not ok then error(err, 0) end
  -- a short test token is a credential only where a string equals it, never inside an id
  local short = editflow.client { base_url = sb.url, key = "ab", auth = "bearer" }
  T.eq(short:leaks("ab"), true, "equal")
  T.eq(short:leaks("1ab2-cd"), false, "inside an id: not a leak")
  T.eq(short:usable_id("1ab2-cd"), true, "the id is usable")
end)

T.case("two equal bodies lost at once each find their own request; slots come back", function()
  local f = T.sandbox { "--job-time", "0.3" }
  f.control { spoil_submits = { kind = "made500bare", count = 2 } }
  local c = client({ max_in_flight = 1, settle_timeout = 20 }, f.url)
  local input = { prompt = "same twice", image_urls = { "https://example.com/a.png" } }  -- seedless
  local got, errs = editflow.map({ 1, 2 }, function() local _, job = assert(c:edit(input)) return job end,
    { concurrency = 2 })
  T.eq(next(errs), nil, "no error: " .. tostring(errs[1] or errs[2]))
  T.ok(got[1].found and got[2].found, "both found in the listing")
  T.ok(got[1].request_id ~= got[2].request_id, "each its own request")
  T.eq(f.stats().submits_by_endpoint["fal-ai/qwen-image-edit-plus"], 2, "two submits, two jobs")
  T.eq(c.slots.held, 0, "every slot came back")
  f.stop()
end)

T.case("an equal body another client sent earlier is not this job's", function()
  local f = T.sandbox { "--job-time", "0.05" }
  local input = { prompt = "same body", seed = 3, image_urls = { "https://example.com/a.png" } }
  local _, other = assert(client({}, f.url):edit(input))  -- another run's request, the same body
  local listing = require "editflow.listing"
  local skew = listing.SKEW
  listing.SKEW = 0.5  -- (5 s by default: clocks differ)
  editflow.sleep(1.6)
  f.control { spoil_submits = { kind = "made500bare", count = 1 } }
  local _, job = assert(client({ settle_timeout = 20 }, f.url):edit(input))
  T.eq(job.found, true, "found in the listing")
  T.ok(job.request_id ~= other.request_id, "not the other client's request")
  local jobs = f.jobs()
  T.eq(job.request_id, jobs[#jobs].request_id, "its own: the request it made")
  listing.SKEW = skew
  T.eq(listing.seconds("2026-12-06T03:11:08.154Z"), 1796526668, "ISO time read as UTC")
  T.eq(listing.seconds("2026-12-06T04:11:08+01:00"), 1796526668, "an offset")
  f.stop()
end)

T.case("core.sha256_file: a saved image's digest, read in pieces", function()
  local d = T.tmpdir()
  local bytes = string.rep("editflow", 20000) .. "\0tail"  -- 160 KB: several 64 KB pieces
  assert(core.write_file(d .. "/x.bin", bytes))
  local sum, size = core.sha256_file(d .. "/x.bin")
  local want = core.sha256(bytes):gsub(".", function(ch) return string.format("%02x", ch:byte()) end)
  T.eq(sum, want, "the same digest as of the bytes")
  T.eq(size, #bytes, "and the size")
  assert(core.write_file(d .. "/empty", ""))
  T.eq(select(2, core.sha256_file(d .. "/empty")), 0, "an empty file")
  local none, why = core.sha256_file(d .. "/missing")
  T.eq(none, nil, "a missing file")
  T.ok(type(why) == "string" and #why > 0, "says why")
  T.raises(function() core.sha256_file(d .. "/x.bin\0.png") end, "NUL")
end)

T.case("jobs in flight and submits in doubt belong to their client", function()
  local Job = require "editflow.job"
  local c1, c2 = client(), client()
  local j1 = assert(c1:submit { prompt = "[slow:1] one", image_urls = { "https://example.com/a.png" } })
  local j2 = assert(c2:submit { prompt = "[slow:1] two", image_urls = { "https://example.com/a.png" } })
  T.eq(#Job.live(c1), 1, "c1 has its one job")
  T.eq(Job.live(c1)[1], j1, "its own")
  T.eq(Job.live(c2)[1], j2, "c2 its own")
  local all = Job.live()
  T.ok(#all >= 2, "the host sees every client's")
  editflow.wait { j1, j2 }
  T.eq(#Job.live(c1) + #Job.live(c2), 0, "none left once they ended")
  T.eq(#c1.in_doubt, 0, "nothing in doubt")
end)

T.case("a client's own subscribers hear its jobs only", function()
  local c1, c2 = client(), client()
  local heard1, heard2, shared = {}, {}, 0
  local off1 = c1:subscribe(function(name, job) if name == "finished" then heard1[#heard1 + 1] = job end end)
  local off2 = c2:subscribe(function(name, job) if name == "finished" then heard2[#heard2 + 1] = job end end)
  local off = editflow.subscribe(function(name) if name == "finished" then shared = shared + 1 end end)
  local _, j1 = assert(c1:edit { prompt = "mine", image_urls = { "https://example.com/a.png" } })
  local _, j2 = assert(c2:edit { prompt = "theirs", image_urls = { "https://example.com/a.png" } })
  off1() off2() off()
  T.eq(#heard1, 1, "c1 heard one") T.eq(heard1[1], j1, "its own")
  T.eq(#heard2, 1, "c2 heard one") T.eq(heard2[1], j2, "its own")
  T.eq(shared, 2, "the shared hub heard both")
  T.raises(function() c1:subscribe(42) end, "expects a function")
end)

T.case("a subscriber that fails is told as a warning to the others (the host shows warnings)", function()
  local warned = {}
  local off1 = editflow.subscribe(function(name) if name == "finished" then error("subscriber bug") end end)
  local off2 = editflow.subscribe(function(name, _, d) if name == "warning" then warned[#warned + 1] = d end end)
  assert(client():edit { prompt = "warned", image_urls = { "https://example.com/a.png" } })
  off1() off2()
  T.ok(#warned >= 1, "a warning came")
  T.contains(warned[1], "subscriber bug", "naming what failed")
end)

T.case("a grid's spent sum counts only jobs the queue may have taken", function()
  local f = T.sandbox { "--job-time", "0.01" }
  f.control { outage = { seconds = 60, routes = { "submit" }, status = 503 } }
  local d = T.tmpdir()
  local c = client({ journal = d, retry = { attempts = 2, base = 0.01, cap = 0.02 } }, f.url)
  local s = editflow.experiment { name = "refused", out = d, client = c, prompt = "p ${n}", vars = { n = { "1", "2" } },
    seeds = { 1 }, images = { "https://example.com/a.png" }, price = 0.02 }
  T.eq(s.failed, 2, "both refused")
  T.eq(s.spent, 0, "nothing counted as spent")
  f.stop()
end)

T.run()
