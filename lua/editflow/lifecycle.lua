-- editflow.lifecycle: the one owner of a job's life -- its states, what each journal record
-- means, and whether a job is sent, followed again, reused or held back. Client, watcher,
-- saver, experiment and host call one function per transition and never write journal
-- records or decide "resume or resend" themselves.
--
--   new --intent--> sending --accepted--> accepted --finished--> done --saved--> saved
--                           \--refused--> refused        \--failed--> failed
--                           \--unknown--> unknown         (cancel: a flag on accepted)
--
-- On a run with the same journal, each job starts from what the journal says:
--   nothing, refused, failed   send it (refused never reached the queue; a failed job's
--                              outcome was an error, and running it again is what a re-run is for)
--   accepted                   follow it by its request id: never sent again
--   done                       reuse its result: nothing is sent (a seedless job only until
--                              its run completes: a new run of it is a new sample)
--   intent, unknown            the submit may have created a job whose answer was lost: look
--                              for it in fal's request listing (editflow.listing; a fal key):
--                              the request sent this body is adopted, its result kept; not
--                              found (or no listing): hold it back and say so, unless the
--                              client has resubmit_unknown. A submit that ends unknown in this
--                              run is looked for the same way, for up to settle_timeout.
-- A transition that cannot be written (a full disk) is never silent: after the submit was
-- sent it does not stop the job (the request id is told as a warning and the job followed);
-- before the submit it stops it (nothing is sent that is not written down first).
local core = require "editflow.core"
local durable = require "editflow.durable"
local json = require "editflow.json"
local errors = require "editflow.errors"
local events = require "editflow.events"
local inputs = require "editflow.inputs"
local journal = require "editflow.journal"

local M = {}

-- The clients of this Lua state that have sent or followed a job (weakly): each owns its jobs
-- in flight (client.live, job.lua) and its submits in doubt (client.in_doubt).
M.clients = setmetatable({}, { __mode = "k" })

-- lifecycle.track(client) -> client, known here from now on, with its own sets.
function M.track(client)
  if not M.clients[client] then
    M.clients[client] = true
    client.live, client.in_doubt = client.live or {}, client.in_doubt or {}
  end
  return client
end

-- lifecycle.in_doubt() -> every client's submits in doubt ({ key, message } each).
function M.in_doubt()
  local list = {}
  for c in pairs(M.clients) do
    for _, d in ipairs(c.in_doubt) do list[#list + 1] = d end
  end
  return list
end

local Life = {}
Life.__index = Life

-- The legal transitions: phase -> event -> the phase it leads to. Every Life method below
-- moves through here, and an event its phase does not list raises: a bug, never a
-- quiet wrong record. "unknown" may still become "accepted" (found in fal's request listing);
-- "refused" takes a new "intent" when the same submit is tried again;
-- "accepted" goes back to "new" only when an earlier run's cancel took (resend); a cancel may
-- be asked of a job that has just ended; saving again (another folder) stays "saved".
M.TRANSITIONS = {
  new = { intent = "sending" },
  sending = { accepted = "accepted", refused = "refused", unknown = "unknown" },
  unknown = { accepted = "accepted" },
  accepted = { finished = "done", failed = "failed", cancel = "accepted", resend = "new" },
  done = { saved = "saved", cancel = "done" },
  saved = { saved = "saved", cancel = "saved" },
  failed = { cancel = "failed" },
  refused = { intent = "sending" },  -- a try not taken; the next try of the same submit
}
M.EVENTS = { "intent", "accepted", "refused", "unknown", "finished", "failed", "cancel", "saved", "resend" }

-- Moves a life to the phase `event` leads to from where it is, or raises.
local function move(self, event)
  local to = (M.TRANSITIONS[self.phase] or {})[event]
  if not to then
    error(string.format("editflow: a job in phase '%s' cannot take '%s' (a bug in editflow: "
      .. "please report it)", tostring(self.phase), event), 2)
  end
  self.phase = to
end

-- life:phase_is(p) -> whether the job is in phase p (the one way other modules ask).
function Life:phase_is(p) return self.phase == p end

local function journal_warning(self, what, err)
  events.warning(string.format("%s; the job %s goes on, but if this process ends before it "
    .. "is finished a new run cannot find it", tostring(err), what), self.job)
end

-- The journal's record for a key: the key's own, or -- for a seedless job -- the same job in
-- a run before the last completed one when it is still in flight or in doubt there (then it
-- must be followed or held here too, never sent again), or done and the client asked to
-- reuse finished runs (otherwise a finished run's seedless job is a new sample).
-- -> key, record (or the key and nil).
local function lookup(client, jr, key, seeded)
  local rec = jr:get(key)
  if rec or seeded or jr.epoch == 0 then return key, rec end
  local base = key:gsub("%-r%d+$", "")
  for epoch = jr.epoch - 1, 0, -1 do
    local k = epoch > 0 and (base .. "-r" .. epoch) or base
    local old = jr:get(k)
    local st = old and old.state
    if st == "accepted" or st == "intent" or st == "unknown" or (st == "done" and client.reuse_finished) then
      return k, old
    end
  end
  return key, nil
end

-- lifecycle.paid(client, body [, ahead]) -> true when sending this body would cost nothing
-- new: the job is done, accepted or in doubt in the journal (for pricing a plan; `ahead` as
-- in journal:peek_key). Looks only: counts nothing.
function M.paid(client, body, ahead)
  return (M.paid_record(client, body, ahead))
end

-- lifecycle.paid_record(client, body [, ahead]) -> paid (as M.paid), the journal's record of the
-- job (its state; a done job's output when the journal keeps it), or false.
function M.paid_record(client, body, ahead)
  local jr = client.journal
  if not jr then return false end
  local seeded = M.is_seeded(body)
  local _, rec = lookup(client, jr, jr:peek_key(client.endpoint, body, seeded, ahead), seeded)
  local st = rec and rec.state
  -- (an accepted job an interrupted run asked to cancel may be sent anew: not paid for yet)
  return st == "done" or (st == "accepted" and not rec.cancel_requested) or st == "intent" or st == "unknown", rec
end

-- lifecycle.begin(client, body) -> life, with life.decision one of
-- "send", "follow", "reuse", "settle" (look for it in fal's request listing, then hold), "hold"
-- and, for "settle" and "hold", life.error saying why it is held.
function M.begin(client, body)
  local jr = client.journal
  local life = setmetatable({ client = client, journal = jr, phase = "new" }, Life)
  if not jr then
    life.decision = "send"
    return life
  end
  local seeded = M.is_seeded(body)
  life.key = jr:key(client.endpoint, body, seeded)
  local rec
  life.key, rec = lookup(client, jr, life.key, seeded)
  life.record = rec
  local state = rec and rec.state
  if state == nil or state == "refused" or state == "failed" then
    life.decision = "send"
    -- an earlier run's cancel took (its watcher saw the job end cancelled): sent anew, and said
    if state == "failed" and M.cancelled(rec.error) then life.resent = true end
  elseif state == "done" then
    life.decision, life.phase = "reuse", "done"
  elseif state == "accepted" and M.valid_id(rec.request_id) then
    life.decision, life.phase = "follow", "accepted"
  elseif client.resubmit_unknown then
    life.decision = "send"
    events.warning(string.format("journal %s: job %s may have reached the queue in an earlier run "
      .. "(its answer was lost); sending it again as asked (resubmit_unknown)", jr.path, life.key))
  else
    life.decision, life.phase = "hold", "unknown"
    -- fal's request listing may say what became of it: look there first (client.send)
    if rec.fp and client:platform_ok("api") then
      life.decision, life.fp, life.sent_at = "settle", rec.fp, rec.sent_at
    end
    life.error = errors.new("UNKNOWN", string.format("not sent: in an earlier run this job's submit "
      .. "may have reached the queue but its answer was lost, so it may already exist and be billed "
      .. "(journal %s, job %s). Check your fal dashboard; to send it again anyway, use "
      .. "--resubmit-unknown (resubmit_unknown = true)", jr.path, life.key), { key = life.key })
  end
  return life
end

-- lifecycle.submit_answer(resp) -> what a submit's HTTP answer means for the job (SPEC §8, as
-- fal's clients read it), one of
--   "accepted"  2xx: the queue took it (its id in the body, or in x-fal-request-id)
--   "exists"    a 5xx that carries x-fal-request-id: fal's queue answered, so the job exists
--               under that id whatever the status; it is followed, never sent again
--   "retry"     not taken, worth another try: 408, 429, 503 without an id (every answer of the
--               queue carries one), or an ingress's 502 page (no id, nginx's text, not fal's
--               JSON), which fal_client retries too
--   "refused"   certainly not taken: any other 4xx, a 504 of the user's own start timeout
--   "unknown"   anything else: a 500 or a 502 that is not the ingress's page, and any 504
--               without an id -- a gateway timeout may come after the request was passed on
--               (fal_client retries an nginx 504; editflow looks for the job in fal's request
--               listing instead, since a retry could pay twice)
local INGRESS = { [502] = true }
function M.submit_answer(resp)
  local st, h = resp.status, resp.headers or {}
  if st >= 200 and st <= 299 then return "accepted" end
  if st >= 500 and M.valid_id(h["x-fal-request-id"]) then return "exists" end
  if st == 504 and (h["x-fal-request-timeout-type"] or "") ~= "" then return "refused" end
  if st == 408 or st == 429 or st == 503 then return "retry" end
  if st < 500 then return "refused" end
  local body = resp.body or ""
  if INGRESS[st] and h["x-fal-request-id"] == nil and body:find("nginx", 1, true)
      and type(json.decode(body)) ~= "table" then
    return "retry"
  end
  return "unknown"
end

-- lifecycle.failed_submit(err) -> what a submit that got no usable answer leaves: "unknown"
-- (it may have made a job: held, looked for in fal's listing) or "refused" (certainly not
-- taken: a new run sends it).
function M.failed_submit(err)
  if err.maybe_submitted or err.code == "UNKNOWN" or err.code == "REPEATED_ID" then return "unknown" end
  return "refused"
end

-- lifecycle.raised_submit(life) -> what a submit interrupted by an error (a signal, a failing
-- callback) leaves: nil when nothing was on its way (no intent), "unknown" when a request had
-- left or its answer come, else "refused" (it stopped in a wait between tries).
function M.raised_submit(life)
  if life.phase ~= "sending" then return nil end
  return (life.on_wire or life.answered) and "unknown" or "refused"
end

-- lifecycle.report(sent, err, stopping) -> what a job that ended without a result means for
-- the run that wanted it: "skipped" (the run was stopping and it was not sent: a re-run sends
-- it), "interrupted" (the stop cancelled it at the queue), "held" (its submit is in doubt: a
-- re-run cannot mend that alone), or "failed". `sent`: whether the queue took it.
function M.report(sent, err, stopping)
  if not sent and err.code == "NOT_SENT" and stopping then return "skipped" end
  if sent and stopping and M.cancelled(err) then return "interrupted" end
  if not sent and (err.code == "UNKNOWN" or err.maybe_submitted) then return "held" end
  return "failed"
end

-- lifecycle.cancelled(err) -> whether a job's outcome is the queue's cancel (fal's
-- client_cancelled, HTTP 499): the job ran no further and is not paid for as an image.
function M.cancelled(err)
  return type(err) == "table" and (err.type == "client_cancelled" or err.status == 499 or err.code == "HTTP_499")
end

-- lifecycle.result_answer(resp, doc) -> what a result call's answer is (SPEC §1): "running"
-- (202, a running status without images, fal's 400 "still in progress"), "output" (2xx: the
-- result), or "error" (then result_outcome says whether it is the job's own).
local RUNNING = { IN_QUEUE = true, IN_PROGRESS = true }
function M.result_answer(resp, doc)
  local st = resp.status
  if st == 202 or (type(doc) == "table" and RUNNING[doc.status] and doc.images == nil) then return "running" end
  if st == 400 and type(doc) == "table" and type(doc.detail) == "string"
      and doc.detail:lower():find("in progress", 1, true) then
    return "running"
  end
  if st >= 200 and st <= 299 then return "output" end
  return "error"
end

-- lifecycle.result_outcome(resp, etype) -> whether a result call's error answer is the job's
-- own outcome: one that carries its error type (`etype`, from the body or X-Fal-Error-Type) --
-- a 5xx only from the queue itself (x-fal-request-id), never an ingress's typed 503 in front of
-- it -- or a validation refusal (422). Any other (a 404 after retention, a proxy's 400, the
-- credential's 401/403, a 429) says nothing of the job: it stays accepted, a new run asks
-- again and never pays again.
function M.result_outcome(resp, etype)
  local st, h = resp.status, resp.headers or {}
  if st == 422 then return true end
  local typed = etype ~= nil or h["x-fal-error-type"] ~= nil
  return typed and st >= 400 and st ~= 401 and st ~= 403 and st ~= 408 and st ~= 409 and st ~= 429
    and (st < 500 or h["x-fal-request-id"] ~= nil) or false
end

-- lifecycle.ended_in_error(status, result) -> whether a job whose following ended with final
-- status `status` and whose result call answered `result` failed: no images, and the status
-- carries an error or is not COMPLETED (a look-alike's FAILED). Images mean success whatever
-- the status said: the result call decides.
function M.ended_in_error(st, res)
  if type(res) == "table" and type(res.images) == "table" then return false end
  local st_error = (type(st.error) == "string" and st.error ~= "") or type(st.error) == "table"
  return st_error or st.status ~= "COMPLETED"
end

-- lifecycle.output(doc) -> doc: what a result answer holds, in the one shape editflow reads.
-- fal's image models answer `images: [File]` or, many of them, `image: File` (one object); the
-- latter gains `images` (a list of that one File; `image` stays), so the journal, saving and
-- the gallery read one shape.
function M.output(doc)
  if type(doc) == "table" and doc.images == nil and type(doc.image) == "table" and doc.image.url ~= nil then
    doc.images = json.array { doc.image }
  end
  return doc
end

-- Whether a body fixes its seed (then every run of it gives the same image). Inside a JSON
-- string a quote is escaped, so `"seed":` followed by a number is the field itself.
function M.is_seeded(body)
  return body:find('"seed":%s*%-?%d') ~= nil
end

-- A request id is used in URL paths: letters, digits and -_.: only, and not dots alone.
function M.valid_id(id)
  return type(id) == "string" and #id <= 200 and id:match("^[%w_.:-]+$") ~= nil and id:find("[%w]") ~= nil
end

-- The job this key named was cancelled at the queue (by an interrupted run) and ended
-- without a result: it is to be sent anew, under the same key.
function Life:resend()
  move(self, "resend")
  self.decision, self.record = "send", nil
end

-- Before the submit is sent. Raises when it cannot be written: nothing is sent then. `fp` is
-- the body's fingerprint as sent (editflow.listing): with the time, what finds the job in
-- fal's request listing should its answer be lost.
function Life:intent(fp)
  if not (M.TRANSITIONS[self.phase] or {}).intent then move(self, "intent") end  -- raises: nothing written
  self.sent_at, self.fp = os.time(), fp
  if self.journal then
    local ok, err = self.journal:append { t = "intent", key = self.key, at = self.sent_at, fp = fp }
    if not ok then error("editflow: not sent: " .. err, 0) end
  end
  move(self, "intent")
end

-- lifecycle.reserve(client, life, id): the request id a lost submit found in fal's listing
-- is this job's from now on (claimed at once, so no other job's settle takes it meanwhile).
function M.reserve(client, life, id)
  local jr, h = client.journal, journal.id_key(id)
  if jr then jr:claim(h, life.key)
  else
    client.ids = client.ids or core.fpmap()
    client.ids:set(h, 0)
  end
  life.reserved = id
end

-- lifecycle.claimed(client, id) -> whether a request id is already some job's (this client's
-- or its journal's): a listed request is adopted only when nobody has it.
function M.claimed(client, id)
  local jr, h = client.journal, journal.id_key(id)
  if jr then return jr:owner(h) ~= nil end
  return client.ids ~= nil and client.ids:get(h) ~= nil
end

-- lifecycle.listed_output(item) -> the output a listed request ended with, when the listing
-- carries it (a success: fal keeps results an hour, its listing longer), else nil: then the
-- adopted job is followed by its id like any other.
function M.listed_output(item)
  local code = math.tointeger(item.status_code)
  if code and code >= 200 and code <= 299 and type(item.json_output) == "table" then
    local out = M.output(item.json_output)
    if type(out.images) == "table" then return out end
  end
  return nil
end

local function error_record(err)
  if not err then return nil end
  return { code = err.code, message = err.message, type = err.type }
end

-- The queue took the job. -> true; or nil, err when the server gave an id it already gave
-- to another job (then this submit's outcome is unknown).
function Life:accepted(job)
  local c, id = self.client, job.request_id
  -- Every id this client was given: the journal's (by fingerprint, see journal.id_key), or
  -- without one the client's own set of fingerprints.
  local jr, h = self.journal, journal.id_key(id)
  if not jr then c.ids = c.ids or core.fpmap() end
  if self.reserved ~= id and ((jr and jr:owner(h)) or (not jr and c.ids:get(h))) then
    local err = errors.new("REPEATED_ID", string.format("the server answered request id %s for a "
      .. "second, different job; the first keeps it, and whether this submit created a job is "
      .. "unknown", id), { request_id = id, maybe_submitted = true })
    if self.phase ~= "unknown" then self:unknown(err) end
    return nil, err
  end
  -- Claimed now, not when the record is durable: another answer repeating this id while the
  -- record waits for its fdatasync (or after it failed to be written) is caught too.
  if jr then jr:claim(h, self.key) else c.ids:set(h, 0) end
  move(self, "accepted")
  self.job = job
  job.life = self
  if self.journal then
    local ok, jerr = self.journal:append { t = "accepted", key = self.key, request_id = id,
      status_url = job.status_url, response_url = job.response_url, cancel_url = job.cancel_url }
    if not ok then journal_warning(self, id, jerr) end
  end
  return true
end

-- The server certainly did not take the job: a new run may send it.
function Life:refused(err)
  move(self, "refused")
  if self.journal then
    local ok, jerr = self.journal:append { t = "refused", key = self.key, error = error_record(err) }
    if not ok then events.warning(jerr) end
  end
end


-- The submit may have created a job, but no usable answer came.
function Life:unknown(err)
  move(self, "unknown")
  -- the client keeps its submits in doubt (the host's report after a signal: in_doubt())
  local c = M.track(self.client)
  c.in_doubt[#c.in_doubt + 1] = { key = self.key, message = err and err.message }
  if self.journal then
    local ok, jerr = self.journal:append { t = "unknown", key = self.key, error = error_record(err) }
    if not ok then events.warning(jerr) end
  end
end

-- A copy of an output for the journal: inline images (data: URIs) are written to files in the
-- journal's folder and recorded by name, so a record stays small whatever the server sent.
local function recordable_output(self, output)
  local images = type(output) == "table" and output.images
  if type(images) ~= "table" then return output end
  local copy, list = {}, {}
  for k, v in pairs(output) do copy[k] = v end
  local dir
  for i, img in ipairs(images) do
    local u = type(img) == "table" and img.url
    if type(u) == "string" and u:find("^data:") then
      local bytes = inputs.decode_data_uri(u)
      local ext = bytes and core.sniff(bytes)
      local entry = {}
      for k, v in pairs(img) do entry[k] = v end
      if ext then
        dir = dir or self.journal:blob_dir()
        local name = string.format("%s-%d.%s", core.safe_name(self.job and self.job.request_id or self.key), i, ext)
        local ok = core.mkdir(dir) and durable.write(dir .. "/" .. name, bytes) and durable.folder(dir)
        entry.url = ok and ("editflow-blob:" .. name) or "(data: URI not kept: the journal folder could not be written)"
      else
        entry.url = "(data: URI that is not an image)"
      end
      list[i] = entry
    else
      list[i] = img
    end
  end
  copy.images = json.array(list)
  return copy
end

-- The job's outcome: its result.
function Life:finished(job, output)
  move(self, "finished")
  if self.journal then
    local ok, jerr = self.journal:append { t = "done", key = self.key, request_id = job.request_id,
      output = recordable_output(self, output) }
    if not ok then journal_warning(self, job.request_id, jerr) end
  end
end

-- The job's outcome: an error the server declared (not a failure to follow it).
function Life:failed(job, err)
  move(self, "failed")
  if self.journal then
    local ok, jerr = self.journal:append { t = "failed", key = self.key, request_id = job.request_id,
      error = error_record(err) }
    if not ok then events.warning(jerr, job) end
  end
end

function Life:cancel_requested(job)
  move(self, "cancel")
  if self.journal then
    local ok, jerr = self.journal:append { t = "cancel", key = self.key, request_id = job.request_id }
    if not ok then events.warning(jerr, job) end
  end
end

-- The images are on disk (files: their {size, sha256}, one a path). -> true, or nil, message.
function Life:saved(job, paths, files)
  move(self, "saved")
  if not self.journal then return true end
  local ok, jerr = self.journal:append { t = "saved", key = self.key, paths = json.array(paths),
    files = files and json.array(files) }
  if not ok then events.warning(jerr, job) return nil, jerr end
  return true
end

-- lifecycle.webhook(client, doc) -> true [, "already"], or nil, err: the outcome fal posted
-- to a webhook ({request_id, status = "OK"|"ERROR", payload, error, payload_error}), for the
-- journal's job of that request id. Only an accepted job takes it: one already done or
-- failed answers true, "already" (fal delivers again for hours); an id the journal does not
-- know, or no longer follows under its key, is NOT_FOUND. A payload fal could not send
-- (payload_error) records nothing (NO_PAYLOAD): the job is then followed as before.
-- The caller verified the request first (editflow.webhook).
function M.webhook(client, doc)
  local jr = client.journal
  if not jr then error("editflow: ingest_webhook needs a client with a journal (journal = dir)", 3) end
  if type(doc) ~= "table" or not M.valid_id(doc.request_id) then
    return nil, errors.new("BAD_WEBHOOK", "webhook: the body carries no valid request_id")
  end
  local id = doc.request_id
  local key = jr:owner(journal.id_key(id))
  if key == 0 then return true, "already" end  -- finished in this process (journal.apply_live)
  local rec = key and jr:get(key)
  if not rec or rec.request_id ~= id then
    return nil, errors.new("NOT_FOUND", string.format("webhook: request %s is not a job of the "
      .. "journal %s", id, jr.path), { request_id = id })
  end
  if rec.state == "done" or rec.state == "failed" then return true, "already" end
  if rec.state ~= "accepted" then
    return nil, errors.new("NOT_FOUND", string.format("webhook: request %s is not in flight in "
      .. "the journal %s (%s)", id, jr.path, tostring(rec.state)), { request_id = id })
  end
  local life = setmetatable({ client = client, journal = jr, key = key, record = rec,
    phase = "accepted", job = { request_id = id } }, Life)
  local out
  if doc.status == "OK" then
    if type(doc.payload) ~= "table" then
      return nil, errors.new("NO_PAYLOAD", string.format("webhook: request %s finished but fal "
        .. "sent no payload (%s); follow the job for its result", id,
        errors.clean(doc.payload_error or "none", 200)), { request_id = id })
    end
    out = { t = "done", key = key, request_id = id, output = recordable_output(life, M.output(doc.payload)) }
  elseif doc.status == "ERROR" then
    local detail = doc.error
    if detail == nil and type(doc.payload) == "table" then detail = doc.payload.detail end
    out = { t = "failed", key = key, request_id = id, error = {
      code = "JOB_FAILED", message = string.format("job failed: %s [request %s]",
        errors.clean(type(detail) == "string" and detail or json.encode(detail or "error"), 500), id) } }
  else
    return nil, errors.new("BAD_WEBHOOK", "webhook: status must be OK or ERROR, got "
      .. errors.clean(tostring(doc.status), 50), { request_id = id })
  end
  local ok, jerr = jr:append(out)
  if not ok then return nil, errors.new("JOURNAL", tostring(jerr), { request_id = id }) end
  return true
end

-- lifecycle.complete(client): the run finished all it set out to do; its seedless jobs are
-- not replayed by the next run (which gets new samples).
function M.complete(client)
  local jr = client.journal
  if jr then
    local ok, err = jr:append { t = "complete" }
    if not ok then events.warning(err) end
  end
end

return M
