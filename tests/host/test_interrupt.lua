-- test_interrupt.lua: what Ctrl-C does to a run, on a pseudo-terminal as a user meets it
-- (tests/host/pty_run.py types Ctrl-C into the terminal, which sends SIGINT), and what the
-- user is told: --on-interrupt cancel | finish | detach, a re-run after an interrupted run,
-- the queue unreachable for a while. Asserts what the sandbox saw (jobs cancelled or left
-- running, submits), the files saved, the exit status and the lines printed. One worker in the
-- sandbox, so one job runs and the others wait in its queue; no stream (jobs are polled), so
-- an outage of the status routes hides from a run what the queue does.
local T = require "testlib"
local core = require "editflow.core"
local json = require "editflow.json"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local PTY = T.source_dir .. "/tests/host/pty_run.py"
local KEY = "test-key-interrupt-41c2"
local IMG = "https://cdn.example/a.png"

local sb = T.sandbox { "--key", KEY, "--workers", "1", "--no-stream", "--job-time", "0.05" }

local function env_prefix()
  local parts = { "env" }
  for k, v in pairs { FAL_KEY = KEY, EDITFLOW_BASE_URL = sb.url, EDITFLOW_AUTH = "key" } do
    parts[#parts + 1] = k .. "=" .. T.quote(v)
  end
  return table.concat(parts, " ")
end

-- Runs editflow on a pseudo-terminal; `spec` as pty_run.py takes it (url is added). ->
-- exit status (number, or "timeout"), what the terminal showed (\r and ESC[K kept).
local function on_terminal(spec, ...)
  spec.url = sb.url
  spec.limit = spec.limit or 90
  local cmd = { env_prefix(), "timeout 150 python3", T.quote(PTY), T.quote(json.encode(spec)), T.quote(BIN) }
  for _, a in ipairs { ... } do cmd[#cmd + 1] = T.quote(a) end
  local _, out = T.sh(table.concat(cmd, " "))
  local status = out:match("PTY_EXIT=(%S+)")
  T.eq(out:match("PTY_TRIGGERED=(%S+)"), "yes", "the sandbox reached the state the keys wait for")
  return tonumber(status) or status, out
end

-- Runs editflow on pipes. -> status, stdout, stderr.
local function on_pipes(...)
  local cmd = { env_prefix(), "timeout 150", T.quote(BIN) }
  for _, a in ipairs { ... } do cmd[#cmd + 1] = T.quote(a) end
  return T.sh(table.concat(cmd, " "))
end

local count = T.count

local function journal_records(dir)
  local n = {}
  for t in (T.read(dir .. "/.editflow-journal.jsonl") or ""):gmatch('"t":"(%a+)"') do n[t] = (n[t] or 0) + 1 end
  return n
end

local function pngs(dir)
  local n = 0
  for _, name in ipairs(T.list_dir(dir)) do
    if name:find("%.png$") then n = n + 1 end
  end
  return n
end

-- 6 jobs, 4 at a time: with one worker, 1 runs, 3 wait in the queue, 2 are not sent yet.
-- The running job lasts seconds past the Ctrl-C typed 0.2-0.3 s after that state is seen, so a
-- loaded machine that reacts late still finds it running.
local function grid(prompt, dir, ...)
  return "grid", "-p", prompt .. " ${v}", "--var", "v=1,2,3,4,5,6", "-i", IMG, "--concurrency", "4", "-o", dir, ...
end

local CTRL_C = "\3"
local WHEN = { running = 1, queued = 3 }

T.case("--on-interrupt finish: Ctrl-C cancels the queued jobs, finishes and saves the running one, sends nothing new", function()
  sb.reset()
  local d = T.tmpdir()
  local st, out = on_terminal({ when = WHEN, keys = { { 0.2, CTRL_C } } },
    grid("[slow:4] finish", d, "--on-interrupt", "finish"))
  T.eq(st, 130, "exit 128 + SIGINT: " .. out)
  T.contains(out, "interrupted: sending nothing new, cancelling 3 queued jobs at the queue, waiting for 1 running one",
    "said what it does at the signal")
  T.contains(out, "interrupted: 1 of 1 running job finished (1 saved), 3 queued jobs cancelled at the queue, 2 jobs not sent",
    "and what it did at the end")
  T.ok(not out:find("HTTP 499", 1, true), "a job it cancelled is not reported failed")
  local jobs = sb.jobs()
  T.eq(#jobs, 4, "nothing sent after the signal")
  local cancelled, completed = 0, 0
  for _, j in ipairs(jobs) do
    if j.cancelled then cancelled = cancelled + 1 elseif j.status == "COMPLETED" then completed = completed + 1 end
  end
  T.eq(cancelled, 3, "the three queued jobs were cancelled at the queue")
  T.eq(completed, 1, "the running one ran to its end")
  T.eq(pngs(d), 1, "and its image was saved")
  local rec = journal_records(d)
  T.eq(rec.intent, 4, "the journal has an intent for each job sent, none for the two not sent")
  T.eq(rec.refused, nil, "and no other record for them")
  local skipped = 0
  for line in (T.read(d .. "/manifest.jsonl") or ""):gmatch("[^\n]+") do
    local r = json.decode(line)
    if r.status == "skipped" and r.error.code == "NOT_SENT" then skipped = skipped + 1 end
  end
  T.eq(skipped, 2, "the manifest says which were not sent")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("--on-interrupt finish: a second Ctrl-C more than a second later cancels the running job too", function()
  sb.reset()
  local d = T.tmpdir()
  local st, out = on_terminal({ when = WHEN, keys = { { 0.2, CTRL_C }, { 1.8, CTRL_C } } },
    grid("[slow:10] twice", d, "--on-interrupt", "finish"))
  T.eq(st, 130, "exit 128 + SIGINT: " .. out)
  T.contains(out, "1 job in flight, cancel requested for 1", "the second signal cancelled the rest")
  local jobs = sb.jobs()
  T.eq(#jobs, 4, "nothing sent after the first signal")
  for _, j in ipairs(jobs) do T.ok(j.cancelled, "every job cancelled at the queue: " .. j.request_id) end
  T.eq(pngs(d), 0, "nothing saved")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("--on-interrupt detach: Ctrl-C leaves the jobs running at the queue; the same command again follows them by id", function()
  sb.reset()
  local d = T.tmpdir()
  local args = { grid("[slow:2] detach", d, "--on-interrupt", "detach") }
  local st, out = on_terminal({ when = WHEN, keys = { { 0.2, CTRL_C } } }, table.unpack(args))
  T.eq(st, 130, "exit 128 + SIGINT: " .. out)
  T.contains(out, "interrupted: detached: 4 jobs left running at the queue, journaled in " .. d, "how many, and where")
  T.contains(out, "run the same command again with the same -o (it follows them by id) or 'editflow wait ID", "how to pick them up")
  local jobs = sb.jobs()
  T.eq(#jobs, 4, "four jobs at the queue")
  for _, j in ipairs(jobs) do
    T.ok(not j.cancelled, "not cancelled: " .. j.request_id)
    T.contains(out, "editflow:   " .. j.request_id, "its id is listed")
  end
  T.eq(journal_records(d).accepted, 4, "each one journaled as accepted")
  local out2, err2
  st, out2, err2 = on_pipes(table.unpack(args))
  T.eq(st, 0, "the re-run finished everything: " .. err2)
  T.eq(count(err2, "resumed (accepted in an earlier run)"), 4, "the four followed by their id")
  T.eq(#sb.jobs(), 6, "only the two never sent were sent")
  T.eq(pngs(d), 6, "six images saved")
  T.ok(out2:find("index.html", 1, true), "the gallery")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("cancel (the default), then the same command again: the cancelled jobs are said to be sent again, never 'HTTP 499'", function()
  sb.reset()
  local d = T.tmpdir()
  local args = { grid("[slow:2] resend", d) }
  -- the status routes go dark once the jobs are in place: the run cannot learn that its
  -- cancels took, so its journal holds them as accepted and cancelled
  local st, out = on_terminal({ when = WHEN, control = { { 0, { outage = { seconds = 60, routes = { "status", "stream", "result" } } } } },
    keys = { { 0.3, CTRL_C } } }, table.unpack(args))
  sb.control { outage = json.null }
  T.eq(st, 130, "exit 128 + SIGINT: " .. out)
  T.contains(out, "interrupted: 4 jobs in flight, cancel requested for 4", "every job in flight cancelled")
  local first = sb.jobs()
  T.eq(#first, 4, "four sent")
  for _, j in ipairs(first) do T.ok(j.cancelled, "cancelled at the queue: " .. j.request_id) end
  T.eq(journal_records(d).cancel, 4, "the journal has the cancels")
  args[#args + 1] = "--json"
  st, out = on_terminal({}, table.unpack(args))
  T.eq(st, 0, "the re-run finished everything: " .. out)
  T.contains(out, "4 jobs were cancelled at the queue by an earlier run: sending them again", "said once, for the four")
  T.contains(out, "4 sent again (cancelled by an earlier run)", "and in the live line")
  T.ok(not out:find("HTTP 499", 1, true) and not out:find(" failed: ", 1, true), "never 'failed: HTTP 499'")
  local resent = {}
  for line in out:gmatch("{[^\r\n]*}") do
    local ev = json.decode(line)
    if type(ev) == "table" and ev.event == "resent" then resent[#resent + 1] = ev end
  end
  T.eq(#resent, 4, "a JSON event for each")
  T.contains(resent[1].reason, "cancelled at the queue by an earlier run", "with why")
  T.eq(#sb.jobs(), 10, "the four sent anew, the two never sent")
  T.eq(pngs(d), 6, "six images saved")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("the queue unreachable for more than 15 s: the live line and plain lines say so, then that it is back", function()
  sb.reset()
  local d = T.tmpdir()
  sb.control { outage = { seconds = 22, routes = { "status", "stream", "result" } } }
  -- the live line (a terminal) and plain lines with --json (pipes), through the same outage
  local cmd = { env_prefix(), "timeout 150 python3", T.quote(PTY), T.quote(json.encode { url = sb.url, limit = 120 }),
    T.quote(BIN), "edit -p 'outage live' -i", IMG, "--timeout 900 -o", T.quote(d .. "/live"), ">", T.quote(d .. "/live.txt"), "&" }
  local t0 = os.time()
  local st, out, err = T.sh(table.concat(cmd, " ") .. " " .. env_prefix() .. " timeout 150 " .. T.quote(BIN)
    .. " edit -p 'outage plain' -i " .. IMG .. " --timeout 900 --json -o " .. T.quote(d .. "/plain") .. "; s=$?; wait; exit $s")
  T.eq(st, 0, "the job was saved after the outage: " .. err)
  local untils = {}
  for k = -1, 2 do untils[#untils + 1] = os.date("%H:%M", t0 + 900 + 60 * k) end
  local function plausible(hhmm)
    for _, u in ipairs(untils) do if u == hhmm then return true end end
    return false
  end
  local secs, hhmm = err:match("editflow: queue unreachable for (%d+) s, retrying until (%d%d:%d%d)\n")
  T.ok(secs and tonumber(secs) >= 15, "plain: said once the outage passed 15 s: " .. err)
  T.ok(plausible(hhmm), "until the job's deadline, on the wall clock: " .. tostring(hhmm))
  T.eq(count(err, "queue unreachable"), 1, "said once (nothing changed after)")
  local back = tonumber(err:match("editflow: queue reachable again after (%d+) s\n"))
  T.ok(back and back >= 20, "and when it was back, after how long: " .. tostring(back))
  local outage, reachable
  for line in out:gmatch("[^\n]+") do
    local ev = json.decode(line)
    if ev.event == "outage" then outage = ev elseif ev.event == "reachable" then reachable = ev end
  end
  T.ok(outage and outage.seconds >= 15 and plausible(outage["until"]), "--json: an outage event: " .. out)
  T.ok(reachable and reachable.seconds >= 20, "--json: and its end")
  local live = T.read(d .. "/live.txt") or ""
  T.contains(live, "PTY_EXIT=0", "the terminal's run saved its job too")
  local shown = {}
  for n in live:gmatch("\r\27%[Keditflow: [^\r]-queue unreachable for (%d+) s, retrying until %d%d:%d%d") do shown[n] = true end
  local distinct = 0
  for _ in pairs(shown) do distinct = distinct + 1 end
  T.ok(distinct >= 2, "the live line shows the outage, and its figure moves: " .. distinct)
  T.ok(live:find("\r\27%[Keditflow: queue reachable again after %d+ s\r?\n") ~= nil, "then one line when it is back")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
