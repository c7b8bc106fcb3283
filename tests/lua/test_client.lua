-- test_client.lua: the Lua API end to end against the sandbox: submit, follow, result, save,
-- cancel, failures, auth schemes, and where the credential may and may not go.
local T = require "testlib"
local editflow = require "editflow"
local core = require "editflow.core"

local A = T.source_dir .. "/tests/fixtures/a.png"
local B = T.source_dir .. "/tests/fixtures/b.png"

local sb = T.sandbox { "--job-time", "0.05" }

local function client(extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function job_input(request_id, where)
  for _, j in ipairs((where or sb).jobs()) do
    if j.request_id == request_id then return j.input, j end
  end
end

T.case("edit two local images, save the result into files of their real format", function()
  local before = sb.stats()
  local c = client()
  local result, job = c:edit { prompt = "put them together", image_urls = { A, B }, seed = 7 }
  T.ok(result, "edit succeeded: " .. tostring(job))
  T.eq(result.seed, 7, "seed echoed")
  T.eq(#result.images, 1, "one image")
  T.eq(job.state, "COMPLETED", "job state")
  local d = T.tmpdir() .. "/nested/out"
  local paths = assert(job:save(d))
  T.eq(#paths, 1, "one path")
  T.eq(paths[1], d .. "/" .. job.request_id .. "-1.png", "named after the request, extension from the bytes")
  T.eq(core.sniff(T.read(paths[1])), "png", "a real PNG")
  T.eq(#T.list_dir(d), 1, "no temporary files left")
  local input = job_input(job.request_id)
  -- with a fal key, local files go to fal storage once each and the job sends their URLs
  T.match(input.image_urls[1], "^" .. sb.url:gsub("%p", "%%%0") .. "/media/", "local file sent as its storage URL")
  T.ok(input.image_urls[1] ~= input.image_urls[2], "two files, two URLs")
  local s = sb.stats()
  T.eq(s.uploads - before.uploads, 2, "two uploads")
  T.eq(s.upload_credential_leaks, 0, "the credential never went to an upload URL")
  T.eq(s.by_route.submit - before.by_route.submit, 1, "one submit")
  T.eq(s.by_route.files - before.by_route.files, 1, "one download")
  T.eq(s.files_with_auth, 0, "the credential never went to the image URL")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("bearer tokens for proxies; a wrong credential is a 401 error, not a raise", function()
  local c = client { auth = "bearer", key = "test-token" }
  local result = assert(c:edit { prompt = "p", image_urls = { A } })
  T.eq(#result.images, 1, "bearer edit")
  local bad = client { key = "wrong" }
  local job, err = bad:submit { prompt = "p", image_urls = { A } }
  T.eq(job, nil, "no job")
  T.eq(err.code, "HTTP_401", "code")
  T.eq(err.status, 401, "status")
  T.match(tostring(err), "submit failed: HTTP 401", "message")
  T.ok(editflow.is_error(err), "an editflow error value")
end)

T.case("the proxy's portrait names are sent as fal's (the sandbox accepts only fal's)", function()
  local c = client()
  local result, job = c:edit { prompt = "p", image_urls = { A }, image_size = "portrait_9_16", output_format = "jpeg" }
  T.ok(result, "accepted: " .. tostring(job))
  T.eq(job_input(job.request_id).image_size, "portrait_16_9", "sent as fal's name")
  T.eq(result.images[1].width, 576, "width")
  T.eq(result.images[1].height, 1024, "height")
  local d = T.tmpdir()
  local paths = assert(job:save(d, { name = "../../escape attempt" }))
  T.eq(paths[1], d .. "/_.._escape_attempt-1.jpg", "cleaned name, real extension")
  T.eq(core.sniff(T.read(paths[1])), "jpg", "a real JPEG")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("several images, and sync_mode data: URIs decoded to files", function()
  local c = client()
  local result, job = c:edit { prompt = "p", image_urls = { A }, num_images = 3, sync_mode = true,
    image_size = { width = 320, height = 200 } }
  T.ok(result, tostring(job))
  T.eq(#result.images, 3, "three images")
  T.match(result.images[1].url, "^data:image/png;base64,", "inline image")
  local d = T.tmpdir()
  local paths = assert(job:save(d))
  T.eq(#paths, 3, "three files")
  T.eq(paths[3], d .. "/" .. job.request_id .. "-3.png", "numbered")
  for _, p in ipairs(paths) do T.eq(core.sniff(T.read(p)), "png", p) end
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("failed jobs carry the server's message, type and request id", function()
  local c = client()
  local result, err, job = c:edit { prompt = "[fail:nsfw] something", image_urls = { A } }
  T.eq(result, nil, "no result")
  T.eq(err.code, "HTTP_422", "code")
  T.eq(err.type, "content_policy_violation", "type")
  T.eq(err.request_id, job.request_id, "request id")
  T.match(err.message, "flagged by a content checker", "server's message")
  T.contains(err.message, job.request_id, "message names the request")
  result, err, job = c:edit { prompt = "[fail:500]", image_urls = { A } }
  T.eq(err.code, "HTTP_500", "code")
  T.eq(err.type, "runner_server_error", "type from X-Fal-Error-Type / body")
  T.eq(err.request_id, job.request_id, "request id")
end)

local third_id
T.case("a look-alike's FAILED ending is a failure even when its result call answers 200", function()
  local c = client()
  local result, err, job = c:edit { prompt = "[fail:proxy]", image_urls = { A } }
  T.eq(result, nil, "no result")
  T.eq(err.code, "JOB_FAILED", "code")
  T.eq(err.state, "FAILED", "the final status")
  T.contains(err.message, "upstream failed", "the server's detail")
  T.eq(err.request_id, job.request_id, "request id")
end)

T.case("status tracks queue position and shows only new log lines", function()
  local busy = T.sandbox { "--workers", "1", "--job-time", "0.3" }
  local positions, logs = {}, {}
  local c = editflow.client { base_url = busy.url, storage_url = busy.url, api_url = busy.url, key = "test-key", poll_interval = 0.02, max_poll_interval = 0.05,
    on_status = function(job, st)
      if job.request_id == (third_id or "") and st.queue_position then positions[#positions + 1] = st.queue_position end
    end,
    on_log = function(job, entry) logs[#logs + 1] = job.request_id .. " " .. entry.message end }
  local first = assert(c:submit { prompt = "first", image_urls = { "https://cdn.example/a.png" } })
  local second = assert(c:submit { prompt = "second", image_urls = { "https://cdn.example/a.png" } })
  local third = assert(c:submit { prompt = "third", image_urls = { "https://cdn.example/a.png" } })
  third_id = third.request_id
  T.eq(third.queue_position, 1, "third waits behind the second")
  assert(third:wait())
  T.ok(#positions > 0 and positions[#positions] == 0, "position moved down to 0: " .. table.concat(positions, ","))
  local seen = {}
  for _, m in ipairs(logs) do
    T.eq(seen[m], nil, "log line shown twice: " .. m)
    seen[m] = true
  end
  T.ok(#logs >= 2, "log lines were shown")
  assert(first:wait())
  assert(second:wait())
  busy.stop()
end)

T.case("cancel a queued job; cancelling again says it already completed", function()
  local c = client()
  local job = assert(c:submit { prompt = "[slow:30]", image_urls = { A } })
  T.eq(job:cancel(), "CANCELLATION_REQUESTED", "cancel accepted")
  local result, err = job:wait()
  T.eq(result, nil, "no result for a cancelled job")
  T.eq(err.request_id, job.request_id, "error names the job")
  local again, aerr = job:cancel()
  T.eq(again, nil, "second cancel")
  T.eq(aerr.code, "ALREADY_COMPLETED", "code")
  local _, nerr = c:job("no-such-request"):cancel()
  T.eq(nerr.code, "NOT_FOUND", "unknown id")
end)

T.case("a client deadline cancels the job and says so", function()
  local c = client()
  local before = sb.stats().by_route.cancel
  local job = assert(c:submit { prompt = "[slow:30]", image_urls = { A } })
  local result, err = job:wait { timeout = 0.3 }
  T.eq(result, nil, "no result")
  T.eq(err.code, "TIMEOUT", "code")
  T.eq(sb.stats().by_route.cancel - before, 1, "the sandbox saw the cancel")
end)

T.case("a job found again by its request id", function()
  local c = client()
  local job = assert(c:submit { prompt = "p", image_urls = { A } })
  assert(job:wait())
  local again = c:job(job.request_id)
  local st = assert(again:status())
  T.eq(st.status, "COMPLETED", "status by id")
  local res = assert(again:result())
  T.eq(#res.images, 1, "result by id")
end)

T.case("status URLs on another origin are re-based, never followed with the credential", function()
  local other = T.sandbox()  -- plays queue.fal.run: it must see nothing
  local proxy = T.sandbox { "--prefix", "/fal", "--public-base", other.url }
  local c = editflow.client { base_url = proxy.url .. "/fal", key = "test-token", auth = "bearer", poll_interval = 0.02 }
  local result, job = c:edit { prompt = "p", image_urls = { A } }
  T.ok(result, tostring(job))
  T.eq(job.status_url, proxy.url .. "/fal/fal-ai/qwen-image-edit-plus/requests/" .. job.request_id .. "/status",
    "re-based onto the proxy")
  T.eq(other.stats().requests, 0, "the other origin saw no request")
  -- Trusting the other origin explicitly: its URLs are followed as given, with the credential.
  local t = editflow.client { base_url = proxy.url .. "/fal", key = "test-token", auth = "bearer", trust = { other.url } }
  local j2 = assert(t:submit { prompt = "p", image_urls = { A } })
  T.eq(j2.status_url:sub(1, #other.url), other.url, "kept on the trusted origin")
  j2:status()
  local os_ = other.stats()
  T.ok(os_.auth.bearer >= 1 and os_.auth.bad == 0, "the trusted origin got the credential")
  other.stop()
  proxy.stop()
end)

T.case("nobody listening: a transport error, and no doubt that nothing was submitted", function()
  local c = editflow.client { base_url = "http://127.0.0.1:9", key = "k", connect_timeout = 2 }
  local job, err = c:submit { prompt = "p", image_urls = { "https://cdn.example/a.png" } }
  T.eq(job, nil, "no job")
  T.eq(err.code, "COULDNT_CONNECT", "code")
  T.eq(err.maybe_submitted, false, "known not to have reached a server")
end)

T.case("the credential never shows in the client's text or fields", function()
  local c = client { key = "sekrit-value-123" }
  T.ok(not tostring(c):find("sekrit", 1, true), "tostring")
  -- every string reachable from the client's fields, however deep (tables, their keys and
  -- metatables), as a dump of the client or a serialiser would see it
  local seen, strings = {}, 0
  local function walk(v, path, depth)
    if type(v) == "string" then
      strings = strings + 1
      T.ok(not v:find("sekrit", 1, true), "the credential at " .. path)
    elseif type(v) == "table" and not seen[v] and depth < 12 then
      seen[v] = true
      for k, x in pairs(v) do
        walk(k, path .. "[key]", depth + 1)
        walk(x, path .. "." .. tostring(k), depth + 1)
      end
      walk(getmetatable(v), path .. "<metatable>", depth + 1)
    end
  end
  walk(c, "client", 0)
  T.ok(strings > 20, "the walk saw the client's strings (" .. strings .. ")")
  T.eq(c:has_key(), true, "and the client has the credential")
end)

T.run()
