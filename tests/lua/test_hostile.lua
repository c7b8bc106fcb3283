-- test_hostile.lua: a broken or hostile server gives a clear error, leaves no partial file
-- and never hangs: an answer that never comes, a body over the limit, an "image" that is not
-- one, a job that never ends; and local inputs over the size limit fail before any submit.
-- Where a deadline of a second or less must stop a wait, what is waited for takes 120 s or for
-- ever, and the bound is 30 s: a guard against that hang that no machine's load can reach.
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

-- Runs fn in an editflow task and turns the loop until it returns, for at most `limit` s: a
-- wait that never ends fails the case there instead of running into the suite's timeout.
local function within(limit, fn)
  local out
  editflow.spawn(function() out = table.pack(pcall(fn)) end)
  local t0 = core.monotime()
  while not out and core.monotime() - t0 < limit do editflow.step(50) end
  T.ok(out, string.format("still waiting after %d s: a hang", limit))
  if not out[1] then error(out[2], 0) end
  return table.unpack(out, 2, out.n)
end

T.case("a server that accepts the connection and never answers: a timeout, not a hang", function()
  local p = io.popen("echo $$; exec python3 -c \"import socket,time; s=socket.socket(); "
    .. "s.bind(('127.0.0.1',0)); s.listen(16); print(s.getsockname()[1], flush=True); time.sleep(120)\"")
  local pid, port = tonumber(p:read("l")), tonumber(p:read("l"))
  local c = editflow.client { base_url = "http://127.0.0.1:" .. port, key = "k", timeout = 0.5,
    retry = { attempts = 1 } }
  -- the 0.5 s request timeout ends it, not the server's exit 120 s later
  local ok, job, err = pcall(within, 30, function() return c:submit { prompt = "p", image_urls = { URL } } end)
  os.execute("kill " .. pid)
  p:close()
  if not ok then error(job, 0) end
  T.eq(job, nil, "no job")
  T.eq(err.code, "OPERATION_TIMEDOUT", "code")
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
  -- the 0.5 s deadline ends it (and its cancel), not the job's own end 120 s later
  local result, err = within(30, function() return c:edit { prompt = "[slow:120] forever", image_urls = { URL } } end)
  T.eq(result, nil, "no result")
  T.eq(err.code, "TIMEOUT", "code")
  T.contains(err.message, "job_timeout", "says which deadline")
  T.eq(sb.stats().by_route.cancel - before, 1, "the queue was asked to cancel it")
end)

T.case("a job that ended but whose result never comes: bounded by the job's deadline", function()
  local c = client { poll_interval = 0.01, max_poll_interval = 0.05, job_timeout = 1 }
  -- the result answers 202 for ever: only the 1 s deadline (and the cancel's 5 s grace) ends it
  local result, err = within(30, function()
    return c:edit { prompt = "[fail:noresult]", image_urls = { URL } }
  end)
  T.eq(result, nil, "no result")
  T.eq(err.code, "TIMEOUT", "code")
  T.contains(err.message, "job_timeout", "message")
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
