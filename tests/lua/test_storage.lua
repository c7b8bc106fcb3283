-- test_storage.lua: local images go to fal storage once per content (the sandbox's upload
-- flow), the credential never goes to an upload URL, proxies and --inline send data: URIs,
-- and the journal's identity of a job is the file's hash, not its upload URL.
local T = require "testlib"
local editflow = require "editflow"
local json = require "editflow.json"
local core = require "editflow.core"
local storage = require "editflow.storage"

local sb = T.sandbox { "--job-time", "0.01", "--workers", "8" }
local A = T.source_dir .. "/tests/fixtures/a.png"
local work = T.tmpdir()
local n = 0

-- A copy of a.png with a tail of its own: a new content, so no earlier upload is remembered.
local function photo()
  n = n + 1
  local path = string.format("%s/photo-%d-%d.png", work, n, os.time())
  assert(core.write_file(path, T.read(A) .. "\0editflow-test-" .. n .. "-" .. tostring(os.clock())))
  return path
end

-- The bytes at a URL, fetched by Python's standard library (a test's own look at the sandbox).
local function get(u)
  local _, body = T.sh("python3 -c 'import sys, urllib.request; "
    .. "sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' " .. T.quote(u))
  return body
end

local function client(extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function inputs_of(ids)
  local want, out = {}, {}
  for _, id in ipairs(ids) do want[id] = true end
  for _, j in ipairs(sb.jobs()) do
    if want[j.request_id] then out[#out + 1] = j.input end
  end
  return out
end

T.case("a 20-job grid over one photo uploads it once; every job sends its file_url", function()
  local before = sb.stats()
  local p = photo()
  local d = T.tmpdir()
  local s = editflow.experiment { name = "one-photo", out = d, client = client(), prompt = "a ${n}",
    vars = { n = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10" } }, seeds = { 1, 2 },
    images = { p }, params = { image_size = "square" }, concurrency = 20 }
  T.eq(s.done, 20, "20 jobs done")
  local after = sb.stats()
  T.eq(after.uploads - before.uploads, 1, "one upload")
  T.eq(after.upload_initiates - before.upload_initiates, 1, "one initiate")
  T.eq(after.upload_credential_leaks, 0, "the credential never went with the bytes")
  local ids = {}
  for line in io.lines(d .. "/one-photo/manifest.jsonl") do ids[#ids + 1] = json.decode(line).request_id end
  local urls = {}
  for _, input in ipairs(inputs_of(ids)) do urls[input.image_urls[1]] = true end
  local list = {}
  for u in pairs(urls) do list[#list + 1] = u end
  T.eq(#list, 1, "one URL in every job")
  T.match(list[1], "^http://127%.0%.0%.1:%d+/media/", "the storage file_url")
  T.eq(get(list[1]), T.read(p), "the uploaded bytes are the photo's")
end)

T.case("a re-run finds its jobs by the file's hash and its upload in the journal", function()
  local p = photo()
  local d = T.tmpdir()
  local spec = { name = "rerun", out = d, prompt = "x ${v}", vars = { v = { "a", "b" } }, seeds = { 3 },
    images = { p }, params = { image_size = "square" } }
  spec.client = client()
  T.eq(editflow.experiment(spec).done, 2, "first run")
  local before = sb.stats()
  storage.forget()  -- a new process: nothing in memory
  os.execute("rm -rf " .. T.quote(os.getenv("XDG_CACHE_HOME") .. "/editflow/uploads"))  -- nor in the cache
  spec.client = client()
  local again = editflow.experiment(spec)
  T.eq(again.reused, 2, "both jobs reused")
  local after = sb.stats()
  T.eq(after.by_route.submit, before.by_route.submit, "nothing submitted")
  T.eq(after.upload_initiates, before.upload_initiates, "nothing uploaded")
  -- a new job over the same photo in that folder: its upload comes from the journal
  spec.vars = { v = { "a", "b", "c" } }
  spec.client = client()
  storage.forget()
  local third = editflow.experiment(spec)
  T.eq(third.done, 3, "three done")
  T.eq(sb.stats().upload_initiates, before.upload_initiates, "the journal's upload was reused")
end)

T.case("a proxy token, or inline = true, sends data: URIs and never uses fal storage", function()
  local before = sb.stats()
  local p = photo()
  for _, c in ipairs { client { auth = "bearer", key = "test-token" }, client { inline = true } } do
    local job = assert(c:submit { prompt = "p", image_urls = { p } })
    assert(job:wait())
    local input = inputs_of { job.request_id }[1]
    T.match(input.image_urls[1], "^data:image/png;base64,", "inline")
  end
  T.eq(sb.stats().upload_initiates, before.upload_initiates, "no upload")
end)

T.case("large files go up in parts, as fal's client does", function()
  local before = sb.stats()
  local p = photo()
  local size = #T.read(p)
  local c = client { multipart_bytes = 100, part_bytes = 128 }
  local job = assert(c:submit { prompt = "p", image_urls = { p } })
  assert(job:wait())
  local after = sb.stats()
  T.eq(after.multipart_parts - before.multipart_parts, (size + 127) // 128, "one PUT a part")
  T.eq(after.uploads - before.uploads, 1, "one upload completed")
  T.eq(after.upload_credential_leaks, 0, "no credential on parts or completion")
  local u = inputs_of { job.request_id }[1].image_urls[1]
  T.eq(get(u), T.read(p), "the parts make the file")
end)

T.case("a failing upload is retried; one that keeps failing sends nothing", function()
  sb.control { fail_next = { route = "initiate", status = 503, count = 1 } }
  local c = client { retry = { base = 0.01 } }
  local job = assert(c:submit { prompt = "p", image_urls = { photo() } })
  assert(job:wait())
  local before = sb.stats()
  sb.control { fail_next = { route = "upload", status = 500, count = 50 } }
  local j, err = client { retry = { base = 0.01, attempts = 2 } }:submit { prompt = "p", image_urls = { photo() } }
  T.eq(j, nil, "no job")
  T.eq(err.code, "UPLOAD_FAILED", "the upload failed")
  T.contains(err.message, "HTTP 500", "saying why")
  T.eq(sb.stats().by_route.submit, before.by_route.submit, "nothing submitted")
  sb.control { reset_faults = true }
end)

T.case("only file fields are resolved: a prompt that reads like a file name is sent as written", function()
  local p = photo()
  local c = client { inline = true }
  local body = c:prepare { prompt = "x", image_urls = { p } }
  local name = json.decode(body).image_urls[1]
  local job = assert(c:submit { prompt = name, image_urls = { p } })
  assert(job:wait())
  local input = inputs_of { job.request_id }[1]
  T.eq(input.prompt, name, "the prompt untouched")
  T.match(input.image_urls[1], "^data:image/png;base64,", "the image resolved")
end)

T.case("a file changed after it was planned is not sent", function()
  local p = photo()
  local c = client { inline = true }
  local body = c:prepare { prompt = "p", image_urls = { p } }
  assert(core.write_file(p, T.read(A) .. "changed"))
  local before = sb.stats().by_route.submit
  local j, err = c:send(body)
  T.eq(j, nil, "not sent")
  T.contains(err.message, "changed since the job was planned", "says why")
  T.eq(sb.stats().by_route.submit, before, "nothing submitted")
end)

T.case("the key goes to fal storage only when it is a fal key for it", function()
  local before = sb.stats()
  -- a queue that is not fal's, no storage or API URL given (a process without the test's
  -- EDITFLOW_*_URL): fal's default origins never get this key; the file goes inline
  local script = work .. "/keyed.lua"
  assert(core.write_file(script, string.format([[
local editflow = require "editflow"
local c = editflow.client { base_url = %q, key = "test-key", poll_interval = 0.02 }
local job = assert(c:submit { prompt = "p", image_urls = { %q } })
assert(job:wait())
print(c:platform_ok("storage"), c:platform_ok("api"), job.request_id, (c:price()) and "priced" or "unpriced")
]], sb.url, photo())))
  -- (LD_PRELOAD: the ASan runtime, in the sanitizer build only; T.sh would drop it)
  local st, out, err = T.sh("env -u EDITFLOW_STORAGE_URL -u EDITFLOW_API_URL LD_PRELOAD="
    .. T.quote(os.getenv("LD_PRELOAD") or "") .. " ASAN_OPTIONS=" .. T.quote(os.getenv("ASAN_OPTIONS") or "")
    .. " lua5.4 " .. T.quote(script))
  T.eq(st, 0, "ran: " .. tostring(err))
  local storage_ok, api_ok, id, priced = out:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
  T.eq(storage_ok, "false", "not keyed for fal storage")
  T.eq(api_ok, "false", "nor for fal's pricing API")
  T.match(inputs_of { id }[1].image_urls[1], "^data:", "sent inline")
  T.eq(priced, "priced", "priced from the shipped table")
  local after = sb.stats()
  T.eq(after.upload_initiates, before.upload_initiates, "no upload")
  T.eq(after.pricing_calls, before.pricing_calls, "no pricing call")
end)

T.case("--verbose never shows a signed upload URL's query", function()
  local lines = {}
  local c = client { verbose = function(line) lines[#lines + 1] = line end }
  local job = assert(c:submit { prompt = "p", image_urls = { photo() } })
  assert(job:wait())
  local text = table.concat(lines, "\n")
  T.contains(text, "PUT ", "the upload was traced")
  T.ok(not text:find("signature=", 1, true) and not text:find("sig=", 1, true), "no signature: " .. text)
end)

T.case("a file replaced in the same process is read and uploaded anew", function()
  local p = photo()
  local c = client()
  local j1 = assert(c:submit { prompt = "p", image_urls = { p } })
  assert(j1:wait())
  assert(core.write_file(p, T.read(A) .. "\0another content"))
  local j2 = assert(c:submit { prompt = "p", image_urls = { p } })
  assert(j2:wait())
  local u1 = inputs_of { j1.request_id }[1].image_urls[1]
  local u2 = inputs_of { j2.request_id }[1].image_urls[1]
  T.ok(u1 ~= u2, "another URL for another content")
  T.eq(get(u2), T.read(p), "the new bytes")
end)

T.case("a body prepared by another client is refused, not sent with a file name in it", function()
  local p = photo()
  local body = client():prepare { prompt = "p", image_urls = { p } }
  local before = sb.stats().by_route.submit
  local j, err = client():send(body)
  T.eq(j, nil, "not sent")
  T.eq(err.code, "NOT_SENT", "refused")
  T.eq(sb.stats().by_route.submit, before, "nothing submitted")
end)

T.case("jobs waiting for a failing upload share its failure", function()
  sb.control { fail_next = { route = "initiate", status = 500, count = 1000 } }
  local before = sb.stats().upload_initiates
  local c = client { retry = { base = 0.01, attempts = 2 } }
  local p = photo()
  local results = editflow.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, function()
    local j, err = c:submit { prompt = "p", image_urls = { p } }
    return j and "sent" or err.code
  end)
  for i = 1, 8 do T.eq(results[i], "UPLOAD_FAILED", "job " .. i .. " failed") end
  T.eq(sb.stats().upload_initiates - before, 2, "one upload's tries, not eight")
  sb.control { reset_faults = true }
end)

T.run()
