-- test_hostile.lua: a broken or hostile server gives a clear error, leaves no partial file
-- and never hangs: an answer that never comes, a body over the limit, an "image" that is not
-- one, a job that never ends; and local inputs over the size limit fail before any submit.
local T = require "testlib"
local editflow = require "editflow"
local core = require "editflow.core"

local A = T.source_dir .. "/tests/fixtures/a.png"
local URL = "https://cdn.example/a.png"
local sb = T.sandbox { "--job-time", "0.05" }

local function client(extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", retry = { base = 0.01, attempts = 2 },
    settle_timeout = 1 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

T.case("a server that accepts the connection and never answers: a timeout, not a hang", function()
  local p = io.popen("echo $$; exec python3 -c \"import socket,time; s=socket.socket(); "
    .. "s.bind(('127.0.0.1',0)); s.listen(16); print(s.getsockname()[1], flush=True); time.sleep(60)\"")
  local pid, port = tonumber(p:read("l")), tonumber(p:read("l"))
  local c = editflow.client { base_url = "http://127.0.0.1:" .. port, key = "k", timeout = 0.5,
    retry = { attempts = 1 } }
  local t0 = core.monotime()
  local job, err = c:submit { prompt = "p", image_urls = { URL } }
  os.execute("kill " .. pid)
  p:close()
  T.eq(job, nil, "no job")
  T.eq(err.code, "OPERATION_TIMEDOUT", "code")
  T.ok(core.monotime() - t0 < 5, "bounded by the request timeout")
end)

T.case("an answer over the size limit is refused, not buffered", function()
  local c = client { max_result_bytes = 64 }
  local result, err = c:edit { prompt = "p", image_urls = { URL } }
  T.eq(result, nil, "no result")
  T.eq(err.code, "BODY_TOO_LARGE", "code")
end)

T.case("an image URL that serves something else: clear error, no file left", function()
  local c = client()
  local result, job = c:edit { prompt = "[fail:notimage]", image_urls = { URL } }
  T.ok(result, "the job itself succeeded")
  local d = T.tmpdir()
  local paths, err = job:save(d)
  T.eq(paths, nil, "nothing saved")
  T.eq(err.code, "BAD_IMAGE", "code")
  T.contains(err.message, "not an image", "message")
  T.eq(#T.list_dir(d), 0, "no partial or temporary file")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a job that never ends: job_timeout cancels it and reports TIMEOUT", function()
  local c = client { job_timeout = 0.5 }
  local before = sb.stats().by_route.cancel
  local t0 = core.monotime()
  local result, err = c:edit { prompt = "[slow:60] forever", image_urls = { URL } }
  T.eq(result, nil, "no result")
  T.eq(err.code, "TIMEOUT", "code")
  T.contains(err.message, "job_timeout", "says which deadline")
  T.ok(core.monotime() - t0 < 5, "at the deadline")
  T.eq(sb.stats().by_route.cancel - before, 1, "the queue was asked to cancel it")
end)

T.case("a job that ended but whose result never comes: bounded by the job's deadline", function()
  local c = client { poll_interval = 0.01, max_poll_interval = 0.05, job_timeout = 1 }
  local t0 = core.monotime()
  local result, err = c:edit { prompt = "[fail:noresult]", image_urls = { URL } }
  T.eq(result, nil, "no result")
  T.eq(err.code, "TIMEOUT", "code")
  T.contains(err.message, "job_timeout", "message")
  T.ok(core.monotime() - t0 < 8, "gave up at the deadline (plus the cancel's grace)")
  for _ = 1, 3 do editflow.step(10) end  -- the job's tasks see its end on the next turns
  T.eq(editflow.pending(), 0, "nothing left running")
end)

T.case("local inputs over the size limit fail before any submit", function()
  local c = client { max_file_bytes = 100 }
  local before = sb.stats().requests
  T.raises(function() c:submit { prompt = "p", image_urls = { A } } end, "over the limit of 100")
  T.eq(sb.stats().requests, before, "nothing was sent")
end)

T.run()
