-- test_lifecycle.lua: editflow.lifecycle decides a job's life. Every phase x event against the
-- table written here (the intended life, not read from the module), the predicates other
-- modules call instead of deciding, and a scan that fails when a module outside lifecycle reads
-- a job's phase or when the library switches on an error's message text.
local T = require "testlib"
local editflow = require "editflow"
local lifecycle = require "editflow.lifecycle"
local errors = require "editflow.errors"

-- What each phase may become, by event (a missing entry: the event is refused there).
local LIFE = {
  new      = { intent = "sending" },
  sending  = { accepted = "accepted", refused = "refused", unknown = "unknown" },
  unknown  = { accepted = "accepted" },
  accepted = { finished = "done", failed = "failed", cancel = "accepted", resend = "new" },
  done     = { saved = "saved", cancel = "done" },
  saved    = { saved = "saved", cancel = "saved" },
  failed   = { cancel = "failed" },
  refused  = { intent = "sending" },
}
local EVENTS = { "intent", "accepted", "refused", "unknown", "finished", "failed", "cancel", "saved", "resend" }

local client = editflow.client { base_url = "http://127.0.0.1:9", key = "k", schema_url = false }
local n = 0

-- Fires `event` on a life in `phase`. -> ok, the phase after (or the error).
local function fire(phase, event)
  n = n + 1
  local life = lifecycle.begin(client, '{"prompt":"p' .. n .. '"}')
  life.phase = phase
  local job = { request_id = "req-" .. n }
  local calls = {
    intent = function() life:intent("00") end,
    accepted = function() life:accepted(job) end,
    refused = function() life:refused(errors.new("HTTP_400", "no")) end,
    unknown = function() life:unknown(errors.new("UNKNOWN", "?")) end,
    finished = function() life:finished(job, { images = {} }) end,
    failed = function() life:failed(job, errors.new("JOB_FAILED", "x")) end,
    cancel = function() life:cancel_requested(job) end,
    saved = function() life:saved(job, {}) end,
    resend = function() life:resend() end,
  }
  local ok, err = pcall(calls[event])
  if ok then return true, life.phase end
  return false, err
end

T.case("every phase x event: the legal ones lead where the life says, the others raise", function()
  local checked = 0
  for phase, moves in pairs(LIFE) do
    for _, event in ipairs(EVENTS) do
      local ok, got = fire(phase, event)
      local want = moves[event]
      if want then
        T.ok(ok, string.format("%s --%s--> %s: raised %s", phase, event, want, tostring(got)))
        T.eq(got, want, string.format("%s --%s-->", phase, event))
      else
        T.ok(not ok, string.format("%s --%s--> is refused (got phase %s)", phase, event, tostring(got)))
        T.contains(got, "cannot take '" .. event .. "'", "the refusal names the event")
      end
      checked = checked + 1
    end
  end
  T.eq(checked, 8 * 9, "8 phases x 9 events")
  -- the module's table is the same life (nothing more, nothing less)
  for phase, moves in pairs(lifecycle.TRANSITIONS) do
    T.ok(LIFE[phase], "a phase the life knows: " .. phase)
    for event, to in pairs(moves) do T.eq(LIFE[phase][event], to, phase .. " --" .. event .. "-->") end
  end
end)

T.case("what a submit's failure leaves, and a raised submit", function()
  T.eq(lifecycle.failed_submit(errors.new("HTTP_400", "x")), "refused", "a 4xx")
  T.eq(lifecycle.failed_submit(errors.new("GOT_NOTHING", "x", { maybe_submitted = true })), "unknown", "maybe sent")
  T.eq(lifecycle.failed_submit(errors.new("REPEATED_ID", "x")), "unknown", "a repeated id")
  T.eq(lifecycle.raised_submit({ phase = "new" }), nil, "nothing was sent")
  T.eq(lifecycle.raised_submit({ phase = "sending", on_wire = true }), "unknown", "on the wire")
  T.eq(lifecycle.raised_submit({ phase = "sending", answered = true }), "unknown", "answered")
  T.eq(lifecycle.raised_submit({ phase = "sending" }), "refused", "between tries")
  T.eq(lifecycle.cancelled(errors.new("HTTP_499", "x", { status = 499 })), true, "a 499")
  T.eq(lifecycle.cancelled(errors.new("JOB_FAILED", "x", { type = "client_cancelled" })), true, "client_cancelled")
  T.eq(lifecycle.cancelled(errors.new("HTTP_500", "x", { status = 500 })), false, "a 500 is no cancel")
  local E = errors.new
  T.eq(lifecycle.report(false, E("NOT_SENT", "x"), true), "skipped", "not sent by a stopping run")
  T.eq(lifecycle.report(false, E("NOT_SENT", "x"), false), "failed", "not sent otherwise: a failure")
  T.eq(lifecycle.report(true, E("HTTP_499", "x", { status = 499 }), true), "interrupted", "the stop's cancel")
  T.eq(lifecycle.report(true, E("HTTP_499", "x", { status = 499 }), false), "failed", "a cancel from elsewhere")
  T.eq(lifecycle.report(false, E("UNKNOWN", "x"), false), "held", "in doubt")
  T.eq(lifecycle.report(false, E("GOT_NOTHING", "x", { maybe_submitted = true }), true), "held", "maybe sent")
  T.eq(lifecycle.report(true, E("JOB_FAILED", "x"), false), "failed", "the job's own failure")
  local function r(st, h, body) return { status = st, headers = h or {}, body = body } end
  local id = { ["x-fal-request-id"] = "req-1" }
  for _, c in ipairs {
    { r(200), "accepted" }, { r(202), "accepted" },
    { r(500, id), "exists" }, { r(502, id), "exists" }, { r(504, id), "exists" },
    { r(408), "retry" }, { r(429), "retry" }, { r(503), "retry" },
    { r(502, nil, "<html><center>nginx</center></html>"), "retry" },
    { r(502, nil, '{"detail":"nginx upstream"}'), "unknown" }, { r(502), "unknown" },
    { r(500), "unknown" }, { r(504), "unknown" },
    { r(504, { ["x-fal-request-timeout-type"] = "user" }), "refused" },
    { r(400), "refused" }, { r(401), "refused" }, { r(404), "refused" }, { r(422), "refused" },
  } do
    T.eq(lifecycle.submit_answer(c[1]), c[2], "a submit's " .. c[1].status
      .. (c[1].headers["x-fal-request-id"] and " with an id" or "") .. (c[1].body and (" " .. c[1].body) or ""))
  end
  T.eq(lifecycle.result_answer(r(202), nil), "running", "202")
  T.eq(lifecycle.result_answer(r(200), { status = "IN_PROGRESS" }), "running", "a running status")
  T.eq(lifecycle.result_answer(r(400), { detail = "Request is still in progress" }), "running", "fal's 400")
  T.eq(lifecycle.result_answer(r(200), { images = {} }), "output", "2xx")
  T.eq(lifecycle.result_answer(r(404), { detail = "gone" }), "error", "an error")
  T.eq(lifecycle.result_outcome(r(422), nil), true, "a validation refusal is the job's")
  T.eq(lifecycle.result_outcome(r(500, { ["x-fal-request-id"] = "r" }), "runner_server_error"), true, "typed, from the queue")
  T.eq(lifecycle.result_outcome(r(503), "runner_scheduling_failure"), false, "typed, from an ingress")
  T.eq(lifecycle.result_outcome(r(404), nil), false, "404 after retention: not the job's")
  T.eq(lifecycle.result_outcome(r(401), "x"), false, "the credential's")
  T.eq(lifecycle.result_outcome(r(400), "content_policy_violation"), true, "a typed 4xx")
  T.eq(lifecycle.ended_in_error({ status = "COMPLETED" }, { images = {} }), false, "images: a success")
  T.eq(lifecycle.ended_in_error({ status = "FAILED" }, { images = {} }), false, "images win over the status")
  T.eq(lifecycle.ended_in_error({ status = "COMPLETED", error = "boom" }, {}), true, "an error, no images")
  T.eq(lifecycle.ended_in_error({ status = "COMPLETED", error = "" }, {}), false, "an empty error is none")
  T.eq(lifecycle.ended_in_error({ status = "FAILED" }, {}), true, "a look-alike's FAILED")
  T.eq(errors.code("x.lua:3: " .. errors.INTERRUPT_TEXT), "INTERRUPTED", "the host's interrupt")
  T.eq(errors.code(errors.new("LOCKED", "m")), "LOCKED", "a code")
end)

-- The Lua files under lua/editflow (recursively), with their text.
local function sources()
  local out = {}
  for _, m in ipairs(T.modules()) do out[#out + 1] = { rel = m.rel, text = T.read(m.path) } end
  return out
end

T.case("only lifecycle reads a job's phase; nothing switches on an error's text", function()
  local files = sources()
  T.ok(#files > 30, "read the modules")
  for _, f in ipairs(files) do
    if f.rel ~= "lifecycle.lua" and not f.rel:find("^cli/") then
      for line in f.text:gmatch("[^\n]+") do
        local code = line:gsub("%-%-.*$", "")
        if code:find("life[%w_]*%.phase%f[^%w_]") or code:find("self%.life%.phase") then
          error(f.rel .. " reads a job's phase: " .. line)
        end
      end
    end
    if f.rel ~= "errors.lua" then
      for line in f.text:gmatch("[^\n]+") do
        local code = line:gsub("%-%-.*$", "")
        if code:find("tostring%([%w_.]+%):find%(") or code:find("message:find%(") or code:find("msg:find%(")
            or code:find("err:find%(") then
          error(f.rel .. " matches an error's text: " .. line)
        end
      end
    end
  end
end)

T.run()
