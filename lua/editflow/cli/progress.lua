-- editflow.cli.progress: what the host shows while many jobs run. Host only.
-- It subscribes to the library's events (editflow.events); nothing is shown until the host
-- configures a display:
--   "live"  one status line on a terminal, redrawn at most 10 times a second:
--           done / running / queued (best position) / waiting / failed, elapsed, time left
--   "plain" a line on stderr per submitted and per finished job (for pipes and logs)
--   "none"  nothing
-- and, independently, json = true writes one JSON object per finished job on stdout.
-- Warnings (a journal that cannot be written, a job held back) are always shown, on a line
-- of their own, with the server's control characters escaped.
-- Notices say what the run does besides the jobs' own progress: jobs an earlier run cancelled
-- at the queue, sent again ("resent"), and the queue unreachable for more than 15 s (an
-- outage: consecutive retries of queue calls with no answer in between) and reachable again.
-- They are lines on stderr (plain display, or `say`), part of the live line, and JSON events
-- (json, or json_notices for commands that write their own job events).
local core = require "editflow.core"
local json = require "editflow.json"
local events = require "editflow.events"
local errors = require "editflow.errors"
local runtime = require "editflow.runtime"
local lifecycle = require "editflow.lifecycle"

local M = {}

local display, as_json = "none", false
local out, err = io.stdout, io.stderr
local counts = { waiting = 0, queued = 0, running = 0, done = 0, failed = 0, cancelled = 0 }
local positions = {}   -- job -> queue position while queued
local phase = setmetatable({}, { __mode = "k" })  -- job -> "queued" | "running"
local started, last_draw, drawn = nil, 0, false
local planned = 0      -- jobs a plan announced (an experiment's "planned" event): time left covers them all

-- configure{ display = "auto"|"live"|"plain"|"none", json = bool, tty = bool, words = function }
-- "auto" is live on a terminal and plain otherwise (tty says which; the host knows).
local subscribed = false

local quiet_warnings = false
-- The library's warnings name its Lua options (resubmit_unknown); a command line's `words`
-- (editflow.cli.args.cli_words) shows them in its own; `editflow run` keeps the Lua words.
local words = nil
local notice_text, notice_json = false, false  -- notices on stderr / as JSON events

-- Jobs an earlier run cancelled at the queue and this one sends again: told together.
local resent = { n = 0, said = 0, timer = nil }

-- The queue unreachable: `since` is when the first retry of a queue call came with no answer
-- after it; `said` the seconds last told (nil: not told yet), `said_until` the time told.
M.OUTAGE_AFTER = 15
local outage = { since = nil, last = 0, said = nil, said_until = nil, monitor = nil }
local QUEUE_CALLS = { submit = true, status = true, stream = true, result = true, cancel = true }

function M.configure(opts)
  if not subscribed then
    -- the host shows no server log lines, so jobs need not ask for them (logs=0)
    events.subscribe(function(name, job, detail) M.note(name, job, detail) end, { except = { "log" } })
    subscribed = true
  end
  local d = opts.display or "none"
  if d == "auto" then d = opts.tty and "live" or "plain" end
  if d ~= "live" and d ~= "plain" and d ~= "none" then
    error("progress display must be auto, live, plain or none, got '" .. tostring(d) .. "'", 2)
  end
  display, as_json = d, opts.json and true or false
  quiet_warnings = opts.warnings == false  -- a command that reports the same thing itself
  words = opts.words
  notice_text = d ~= "none" or opts.say == true
  notice_json = as_json or opts.json_notices == true
end

local function clock(s)
  s = math.floor(s + 0.5)
  return string.format("%d:%02d", s // 60, s % 60)
end

local function draw(force)
  if display ~= "live" then return end
  local now = core.monotime()
  if not force and now - last_draw < 0.1 then return end
  last_draw = now
  local best
  for _, p in pairs(positions) do
    if not best or p < best then best = p end
  end
  local finished = counts.done + counts.failed + counts.cancelled
  local left = math.max(counts.waiting + counts.queued + counts.running, planned - finished)
  local elapsed = now - (started or now)
  -- only what is there: "3/20 done, 4 running, 2 queued (next at 5), 11 to start, 1 failed"
  local parts = { planned > 0 and string.format("%d/%d done", counts.done, planned) or (counts.done .. " done") }
  if counts.running > 0 then parts[#parts + 1] = counts.running .. " running" end
  if counts.queued > 0 then
    parts[#parts + 1] = counts.queued .. " queued" .. ((best and best > 0) and (" (next at " .. best .. ")") or "")
  end
  local to_start = planned > 0 and (planned - finished - counts.running - counts.queued) or counts.waiting
  if to_start > 0 then parts[#parts + 1] = to_start .. (runtime.stopping() and " not sent" or " to start") end
  if counts.failed > 0 then parts[#parts + 1] = counts.failed .. " failed" end
  if counts.cancelled > 0 then parts[#parts + 1] = counts.cancelled .. " cancelled" end
  if resent.n > 0 then
    parts[#parts + 1] = string.format("%d sent again (cancelled by an earlier run)", resent.n)
  end
  if outage.said then parts[#parts + 1] = M.outage_text(now) end
  local line = "editflow: " .. table.concat(parts, ", ") .. "  " .. clock(elapsed)
    .. ((finished > 0 and left > 0) and ("  ~" .. clock(elapsed / finished * left) .. " left") or "")
  -- never wider than the terminal: a wrapped line cannot be cleared by \r and would pile up
  local width = core.term_width and core.term_width(2) or tonumber(os.getenv("COLUMNS") or "")
  if width and #line > width - 1 then line = line:sub(1, math.max(width - 1, 10)) end
  err:write("\r\27[K", line)
  err:flush()
  drawn = true
end

-- Ends the live line so later output starts on a fresh line.
function M.finish()
  M.say_resent()
  if drawn then
    draw(true)
    err:write("\n")
    drawn = false
  end
end

-- Clears the live line (it is redrawn on the next event), so a message gets a line of its own.
local function clear()
  if drawn then
    err:write("\r\27[K")
    drawn = false
  end
end

-- Clears the live line before someone else writes to the terminal (a script's print).
function M.clear() clear() end

-- A message of the host's own on stderr, on a line of its own (the live line is redrawn after).
function M.line(text)
  clear()
  err:write(text, "\n")
  err:flush()
end

local function say(fmt, ...)
  if display == "plain" then err:write("editflow: ", string.format(fmt, ...), "\n") end
end

-- A notice on stderr: a line of its own above the live line, or a plain line. `live_too`:
-- also when the live line shows it (a one-off such as the end of an outage).
local function notice(text, live_too)
  if not notice_text or (display == "live" and not live_too) then return end
  M.line("editflow: " .. text)
end

-- "3 jobs were cancelled at the queue by an earlier run: sending them again", once for the
-- jobs told so far.
function M.say_resent()
  local k = resent.n - resent.said
  if k <= 0 then return end
  resent.said = resent.n
  notice(string.format("%d %s%s %s cancelled at the queue by an earlier run: sending %s again", k,
    resent.said > k and "more " or "", k == 1 and "job" or "jobs", k == 1 and "was" or "were",
    k == 1 and "it" or "them"), true)
end

-- A resent job: told with the others that come within a moment (a re-run finds them together).
local function note_resent(job, detail)
  resent.n = resent.n + 1
  if notice_json then
    M.emit_json { event = "resent", request_id = job and job.request_id, reason = detail }
  end
  if notice_text and not resent.timer then
    resent.timer = runtime.spawn(function()
      runtime.sleep(0.3)
      resent.timer = nil
      M.say_resent()
      draw(true)
    end)
  end
end

-- The earliest deadline of the jobs in flight as a wall-clock "HH:MM", or nil without any.
-- The wall clock minus the monotonic one, taken once: a deadline shown as HH:MM never flips
-- between two minutes from one look to the next (os.time's whole seconds jitter by one).
local wall_offset
local function retry_until()
  local first
  for _, job in ipairs(require("editflow.job").live()) do
    if job.deadline and (not first or job.deadline < first) then first = job.deadline end
  end
  if not first then return nil end
  wall_offset = wall_offset or (core.walltime() - core.monotime())
  return os.date("%H:%M", math.floor(first + wall_offset))
end

function M.outage_text(now)
  local u = outage.said_until
  return string.format("queue unreachable for %d s, %s", math.floor((now or core.monotime()) - outage.since),
    u and ("retrying until " .. u) or "retrying")
end

local function outage_over(at)
  local was = outage.since
  outage.since = nil
  if not outage.said or not was then
    outage.said = nil
    return
  end
  outage.said, outage.said_until = nil, nil
  local secs = math.max(0, math.floor(at - was + 0.5))
  notice(string.format("queue reachable again after %d s", secs), true)
  if notice_json then M.emit_json { event = "reachable", seconds = secs } end
  draw(true)
end

-- Looks at the outage now: over once the queue answered after the last failed try; told
-- after OUTAGE_AFTER seconds, then again when the time it retries until changes or each
-- further minute.
local function check_outage()
  if not outage.since then return end
  if runtime.answered > outage.last then return outage_over(runtime.answered) end
  local now = core.monotime()
  local secs = now - outage.since
  if secs <= M.OUTAGE_AFTER then return end
  local u = retry_until()
  if not outage.said or u ~= outage.said_until or secs >= outage.said + 60 then
    outage.said, outage.said_until = math.floor(secs), u
    notice(M.outage_text(now))
    if notice_json then M.emit_json { event = "outage", seconds = math.floor(secs), ["until"] = u } end
  end
  draw(true)
end

-- A failed queue call, tried again: an outage starts (or goes on) unless the queue answered
-- since the last one. A task looks every second while it lasts, so the figure moves and its
-- end is seen even when no event comes; it stops once nothing is left in flight.
local function note_retry(detail)
  if type(detail) ~= "table" or not QUEUE_CALLS[detail.what] then return end
  local now = core.monotime()
  if outage.since and runtime.answered > outage.last then outage_over(runtime.answered) end
  outage.since = outage.since or now
  outage.last = now
  if not outage.monitor and (notice_text or notice_json or display == "live") then
    outage.monitor = runtime.spawn(function()
      while outage.since do
        runtime.sleep(1)
        check_outage()
        if outage.since and #require("editflow.job").live() == 0 and core.monotime() - outage.last > 5 then break end
      end
      outage.monitor = nil
    end)
  end
  check_outage()
end

local function move(job, to)
  local from = phase[job]
  if from == to then return end
  if from then counts[from] = counts[from] - 1 end
  if to then counts[to] = counts[to] + 1 end
  phase[job] = to
end

-- The one JSON schema of `--json` (edit, grid, run): an object a line on stdout, each with
-- "event":
--   {"event":"job","request_id","ok","state","images":[url...],"paths":[...],"error":{code,message,type}}
--       a job ended (paths once its images are saved: edit, grid)
--   {"event":"invalid","ok":false,"error":{"code":"INVALID_INPUT","message"}}   nothing was sent
--   {"event":"plan","jobs","reused","images","megapixels","cost","approx","price","over_budget"}
--       a grid's dry run
--   {"event":"summary","ok","done","failed","reused","held","skipped","spent","manifest","gallery"}
--       the end of a grid
function M.job_event(job, paths, e)
  local ok = job.output ~= nil and e == nil
  local images = {}
  for i, img in ipairs(job.output and type(job.output.images) == "table" and job.output.images or {}) do
    local u = type(img) == "table" and img.url or nil
    if type(u) == "string" and u:find("^data:") then u = string.format("(data: URI, %d bytes)", #u) end
    images[i] = u
  end
  e = e or job.error
  return {
    event = "job", request_id = job.request_id, ok = ok, state = job.state,
    images = job.output and json.array(images) or nil, paths = paths and json.array(paths) or nil,
    error = e and { code = e.code, message = e.message, type = e.type } or nil,
  }
end

function M.emit_json(obj)
  out:write(json.encode(obj), "\n")
  out:flush()
end

-- note(event, job [, detail]) — called by the client and the jobs.
--   "waiting"/"unwaiting": a submit waits for / got an in-flight slot (job is nil)
--   "submitted", "status" (after job.state changed), "finished"
function M.note(event, job, detail)
  if event == "warning" then
    if quiet_warnings then return end
    clear()
    local text = words and words(detail) or tostring(detail)
    err:write("editflow: warning: ", errors.clean(text), "\n")
    err:flush()
    return
  end
  if event == "resent" then note_resent(job, detail)
  elseif event == "retry" then note_retry(detail)
  elseif outage.since and (event == "status" or event == "saved"
      or (event == "submitted" and detail ~= "resumed") or (event == "finished" and job and
        (job.output ~= nil or (type(job.error) == "table" and job.error.status ~= nil)))) then
    outage_over(core.monotime())  -- a sign of life: the queue answered
  end
  if display == "none" and not as_json then return end
  started = started or core.monotime()
  if event == "planned" then
    planned = planned + (tonumber(detail) or 0)
  elseif event == "waiting" then
    counts.waiting = counts.waiting + 1
  elseif event == "unwaiting" then
    counts.waiting = counts.waiting - 1
  elseif event == "submitted" then
    move(job, "queued")
    positions[job] = job.queue_position
    say("%s %s", job.request_id, detail == "resumed" and "resumed (accepted in an earlier run)"
      or detail == "found" and "found in fal's request listing (its submit's answer was lost): not sent again"
      or "submitted")
  elseif event == "status" then
    if job.state == "IN_QUEUE" then
      move(job, "queued")
      positions[job] = job.queue_position
    elseif job.state == "IN_PROGRESS" then
      move(job, "running")
      positions[job] = nil
    end
  elseif event == "held" then
    counts.failed = counts.failed + 1
    say("%s", errors.clean(tostring(detail)))
  elseif event == "finished" then
    move(job, nil)
    positions[job] = nil
    local ok = job.output ~= nil
    -- a queued job this run's stop cancelled (--on-interrupt finish): not a failure of its own
    local stopped = not ok and runtime.stopping() and lifecycle.cancelled(job.error)
    local which = ok and "done" or stopped and "cancelled" or "failed"
    counts[which] = counts[which] + 1
    if ok then say("%s %s", job.request_id, job.from_journal and "reused (finished in an earlier run)" or "done")
    elseif stopped then
      if display == "live" then M.line(string.format("editflow: %s cancelled at the queue (the run was stopped)", tostring(job.request_id)))
      else say("%s cancelled at the queue (the run was stopped)", job.request_id) end
    elseif display == "live" then  -- a failure gets a line of its own above the live line
      M.line(string.format("editflow: %s failed: %s", tostring(job.request_id), errors.clean(tostring(job.error))))
    else say("%s failed: %s", job.request_id, errors.clean(tostring(job.error))) end
    if as_json then M.emit_json(M.job_event(job)) end
  end
  if event ~= "saved" and event ~= "reused" then
    draw(event == "finished")  -- logs and retries too: the clock moves while jobs run
  end
end

return M
