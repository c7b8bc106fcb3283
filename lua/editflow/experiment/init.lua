-- editflow.experiment: one prompt experiment = prompt templates × a grid of variables × seeds ×
-- models, run as concurrent jobs into one folder with a manifest and a gallery to compare in.
--
-- Everything is checked and priced before anything is sent (missing variables, every model's
-- fields, every local image, the size each model can take); a dry run stops there. The
-- folder's journal makes a re-run reuse every job already done (same endpoint, same input, same
-- seed) instead of paying again, and finish only what is missing. A budget (max_cost) refuses a
-- plan over it and, while running, skips any new job that would pass it. With a judge, each
-- saved output is scored by a vision-language model on fal's queue, journaled like any job.
local core = require "editflow.core"
local json = require "editflow.json"
local price = require "editflow.price"
local tasks = require "editflow.tasks"
local gallery = require "editflow.experiment.gallery"
local planner = require "editflow.experiment.plan"
local manifest = require "editflow.experiment.manifest"
local lifecycle = require "editflow.lifecycle"
local errors = require "editflow.errors"
local journal = require "editflow.journal"
local events = require "editflow.events"
local runtime = require "editflow.runtime"

local M = {}

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- The judge of a spec (spec.judge = { endpoint =, rubric =, model = }), on a sibling client so
-- its jobs share the folder's journal; nil without one.
local function make_judge(spec, client)
  if spec.judge == nil then return nil end
  local judge = require "editflow.experiment.judge"
  local given = spec.judge
  if type(given) == "string" then given = { endpoint = given } end  -- judge = "fal-ai/any-llm/vision"
  if type(given) ~= "table" then error("experiment: judge must be an endpoint id or a table { endpoint =, rubric = }", 0) end
  local opts = {}
  for k, v in pairs(given) do opts[k] = v end
  opts.endpoint = opts.endpoint or judge.DEFAULT_ENDPOINT
  judge.check(opts)
  return judge.new(opts, client:sibling(opts.endpoint))
end

-- The judge's body for one output, and whether the folder's journal already has that call
-- (done, accepted or in doubt: paid for, never paid again).
local function judge_body(J, job, output)
  local ok, body = pcall(J.client.prepare, J.client, J:input { prompt = job.input.prompt,
    inputs = job.images_given, output = output })
  if not ok then return nil, false end
  return body, lifecycle.paid(J.client, body)
end

-- The judge calls a reused job still needs: one per output of its result (the journal's) that
-- the judge's journal does not hold; every output when the result or an output's URL is not
-- at hand (then the folder's manifest may show the job judged).
local function judge_calls(J, job, judged)
  if not job.reuse then return job.images end
  local _, rec = lifecycle.paid_record(job.entry.client, job.body)
  local out = rec and rec.state == "done" and rec.output
  if type(out) == "string" then out = json.decode(out) end
  if type(out) ~= "table" or type(out.images) ~= "table" or #out.images == 0 then
    return judged[job.model .. "\n" .. job.slug] and 0 or job.images
  end
  local n = 0
  for _, img in ipairs(out.images) do
    local url = type(img) == "table" and type(img.url) == "string" and img.url:match("^https?://") and img.url
    local _, paid = judge_body(J, job, url or "https://example.invalid/inline.png")
    if not (url and paid) then n = n + 1 end
  end
  return n
end

-- The judge's part of the plan: one call per output of every job not reused, and the calls
-- reused jobs still need (a run killed before judging, or one whose judge calls failed).
-- Priced per call.
local function plan_judge(plan, J, spec, dir)
  if not J then return end
  local judged = dir and manifest.judged(dir) or {}
  local calls = 0
  for _, job in ipairs(plan.jobs) do
    job.judge_cost = 0
    job.judge_calls = judge_calls(J, job, judged)
    calls = calls + job.judge_calls
  end
  -- the judge's own input checked now (its model name, its params, the images it will get),
  -- not after the edits are paid for: an output URL stands in for the one to come
  local first = plan.jobs[1]
  if first then
    local ok, err = pcall(J.client.prepare, J.client, J:input { prompt = first.input.prompt,
      inputs = first.images_given, output = "https://example.invalid/output.png" })
    if not ok then error("experiment: judge " .. J.client.endpoint .. ": " .. tostring(err), 0) end
  end
  local unit, why = J:unit_cost()
  plan.judge = { endpoint = J.client.endpoint, calls = calls, unit_cost = unit, unpriced = not unit and why or nil,
    cost = (unit or 0) * calls }
  if not unit and spec.max_cost then
    error(errors.new("BUDGET", string.format("experiment: cannot keep max_cost: the judge %s: %s", J.client.endpoint, tostring(why))), 0)
  end
  for _, job in ipairs(plan.jobs) do job.judge_cost = (unit or 0) * job.judge_calls end
  plan.cost = plan.cost + plan.judge.cost
end

-- experiment.plan(spec, client) -> plan (editflow.experiment.plan), with the judge's calls.
function M.plan(spec, client)
  local plan = planner.plan(spec, client)
  plan_judge(plan, make_judge(spec, client), spec, spec.dir)
  return plan
end

-- The refusals of a plan before anything is sent: an estimate under a budget, a plan over it.
local function check_budget(spec, plan, name)
  if not spec.max_cost or spec.dry_run then return end
  if plan.approx then
    error(errors.new("BUDGET", string.format("experiment '%s': cannot keep max_cost: the cost is an "
      .. "estimate (an output size that follows an input given by URL, or a price unit editflow does "
      .. "not know); give image_size, local input files, or a price per image, megapixel or request", name)), 0)
  end
  if plan.cost > spec.max_cost + 1e-9 and not spec.partial then
    error(errors.new("BUDGET", string.format("experiment '%s': the plan costs $%.4f, over the budget "
      .. "max_cost = $%.4f (%d jobs, %d images, %.2f output megapixels%s)", name, plan.cost, spec.max_cost,
      #plan.jobs, plan.images, plan.megapixels, plan.price and (" at " .. price.describe(plan.price)) or "")), 0)
  end
end

local function price_record(e)
  if e.price then
    return { unit_price = e.price.unit_price, unit = e.price.unit, currency = e.price.currency, source = e.price.source }
  end
  return { source = "unknown: " .. tostring(e.unpriced) }
end

-- A job's manifest record before it runs (the manifest's fields: README, "The manifest").
local function new_record(run, name, job)
  return { run = run.id, started = run.started, experiment = name, index = job.index, slug = job.slug,
    model = job.model, prompt_name = job.prompt_name, template = job.template, vars = job.vars, seed = job.seed,
    prompt = job.input.prompt, input = manifest.recordable(job.input), inputs = manifest.inputs(job.images_given),
    -- cost: the job's price; cost_estimate: what this run spent on it, 0 until it is sent
    cost = job.full_cost, cost_estimate = 0, price = price_record(job.entry), unpriced = job.entry.price == nil or nil }
end

-- What the run has spent so far: its edits and its judge's calls.
local function spent(summary) return summary.spent + (summary.judge_spent or 0) end

-- The judge's scores of a job's saved outputs, each output once; the record's judge is the
-- output's own (one output) or their mean, cost summed (several).
local function judge_outputs(ctx, job, result, rec)
  local J, summary, max = ctx.judge, ctx.summary, ctx.spec.max_cost
  local total, scored, sum = 0, 0, 0
  local unit = max and (J:unit_cost() or 0) or 0
  for i, out in ipairs(rec.outputs) do
    local img = type(result.images) == "table" and result.images[i] or {}
    local url = type(img.url) == "string" and img.url:match("^https?://") and img.url or nil
    local j
    -- a call the journal holds is free: no budget to keep for it
    local free = max and select(2, judge_body(J, job, url or out.file))
    if max and not free and spent(summary) + unit > max + 1e-9 then
      j = { endpoint = J.client.endpoint, cost = 0, error = { code = "BUDGET", message = string.format(
        "not judged: $%.4f spent, a judge call ($%.4f) would pass max_cost $%.4f", spent(summary), unit, max) } }
    else
      -- the call's price is held before it is made (jobs judge side by side), then settled
      local held = free and 0 or unit
      summary.judge_spent = (summary.judge_spent or 0) + held
      j = J:score { prompt = job.input.prompt, inputs = job.images_given, output = url or out.file }
      summary.judge_spent = summary.judge_spent - held + (j.cost or 0)
    end
    out.judge = j
    total = total + (j.cost or 0)
    if type(j.score) == "number" then scored, sum = scored + 1, sum + j.score end
    if j.error and j.error.code == "BUDGET" then
      summary.judge_skipped = (summary.judge_skipped or 0) + 1
    elseif j.error then
      summary.judge_errors = (summary.judge_errors or 0) + 1
    end
  end
  summary.judge_spent = summary.judge_spent or 0
  if #rec.outputs == 1 then
    rec.judge = rec.outputs[1].judge
  elseif #rec.outputs > 1 then
    rec.judge = { endpoint = J.client.endpoint, score = scored > 0 and sum / scored or nil, cost = total, n = scored }
  end
  for _, out in ipairs(rec.outputs) do out.file = nil end
end

-- What a job's end means for the run, when it gave no result (editflow.lifecycle's report).
local function record_failure(rec, job, j, err, reused, summary, not_sent)
  local how = lifecycle.report(j ~= nil, err, runtime.stopping())
  if not reused and rec.cost_estimate > 0 and ((not j and lifecycle.failed_submit(err) == "refused")
      or (j and type(err.status) == "number" and err.status >= 500)) then
    -- certainly not taken by the queue (refused, not sent), or a server error, which fal never
    -- bills (SPEC §4): nothing was spent on it
    summary.spent, rec.cost_estimate = summary.spent - job.cost, 0
  end
  if how == "skipped" then return not_sent(rec, err) end
  rec.error = { code = err.code, message = err.message, type = err.type }
  if how == "interrupted" then
    -- cancelled at the queue by this run's stop (a queued job, --on-interrupt finish): it ran
    -- no further and is not paid for (lifecycle.cancelled)
    if rec.cost_estimate > 0 then summary.spent, rec.cost_estimate = summary.spent - job.cost, 0 end
    rec.status, rec.interrupted = "failed", true
    summary.cancelled = (summary.cancelled or 0) + 1
  elseif how == "held" then  -- in doubt: a re-run cannot mend it alone
    rec.status, summary.held = "held", (summary.held or 0) + 1
    summary.held_messages = summary.held_messages or {}
    table.insert(summary.held_messages, err.message)
  else
    rec.status, summary.failed = "failed", summary.failed + 1
  end
end

-- One job, from send to saved files (and the judge's scores): its record says how it ended.
local function run_job(ctx, job, rec)
  local spec, summary, dir = ctx.spec, ctx.summary, ctx.dir
  -- the run is stopping (a signal, --on-interrupt finish): a job not begun is not sent
  if runtime.stopping(true) then return ctx.not_sent(rec) end
  local client = job.entry.client
  local body = client:prepare(job.input)
  local reused = lifecycle.paid(client, body)
  job.cost = reused and 0 or job.full_cost
  local ahead = job.cost + (job.judge_cost or 0)
  if not reused and spec.max_cost and spent(summary) + ahead > spec.max_cost + 1e-9 then
    rec.status, rec.error = "skipped", { code = "BUDGET", message = string.format(
      "not sent: $%.4f spent, this job ($%.4f) would pass max_cost $%.4f", spent(summary), ahead, spec.max_cost) }
    summary.skipped = summary.skipped + 1
    return
  end
  if not reused then summary.spent = summary.spent + job.cost end
  rec.cost_estimate = job.cost
  -- an explicit seed asks for that image: a fallback model would give another one
  local fallbacks = job.seed ~= nil and client.disable_fallbacks ~= false or nil
  local t0 = core.monotime()
  local j, err = client:send(body, { disable_fallbacks = fallbacks })
  local result
  -- the request id is the record's as soon as the queue gave it: an interrupt while the job
  -- runs leaves it in the manifest (a re-run follows it by that id)
  if j then rec.request_id = j.request_id end
  if j then result, err = j:wait() end
  rec.elapsed = core.monotime() - t0  -- seconds from send to result, queue wait included
  rec.request_id = j and j.request_id
  rec.reused = j and j.from_journal or false
  if rec.reused then
    summary.reused = summary.reused + 1
    rec.cost_estimate = 0
  end
  if not result then return record_failure(rec, job, j, err, reused, summary, ctx.not_sent) end
  rec.seed = result.seed or job.seed
  rec.timings, rec.nsfw = result.timings, result.has_nsfw_concepts
  local paths, serr = j:save(dir, { name = job.slug })
  if not paths then
    rec.status, rec.error = "failed", { code = serr.code, message = serr.message }
    summary.failed = summary.failed + 1
    return
  end
  rec.status = "done"
  rec.outputs = json.array {}
  for i, p in ipairs(paths) do
    local img = type(result.images) == "table" and result.images[i] or {}
    rec.outputs[i] = { path = p:match("([^/]*)$"), bytes = file_size(p), width = img.width, height = img.height, file = p }
  end
  summary.done = summary.done + 1
  if ctx.judge then judge_outputs(ctx, job, result, rec) end
  for _, o in ipairs(rec.outputs) do o.file = nil end
end

-- Every job of the plan, spec.concurrency at a time; whatever goes wrong in one is in its
-- record. Stopped by an interrupt: what ended is written down all the same, the rest marked
-- interrupted (a re-run in the folder finishes it), then the stop goes on.
local function run_jobs(ctx, plan)
  local records = ctx.records
  local mapped, stopped = pcall(tasks.map, plan.jobs, function(job)
    local rec = new_record(ctx.run, ctx.name, job)
    records[job.index] = rec
    local ok, e = pcall(run_job, ctx, job, rec)
    if not ok then
      if errors.code(e) == "INTERRUPTED" then error(e, 0) end
      rec.status, rec.error = "failed", { code = "INTERNAL", message = tostring(e) }
      ctx.summary.failed = ctx.summary.failed + 1
    end
    events.emit("recorded", nil, rec)  -- its manifest record: saved paths, variables, seed
  end, { concurrency = ctx.spec.concurrency or 8 })
  if not mapped then
    for i, job in ipairs(plan.jobs) do
      records[i] = records[i] or new_record(ctx.run, ctx.name, job)
      if not records[i].status then records[i].interrupted = true end
      for _, o in ipairs(records[i].outputs or {}) do o.file = nil end  -- (judging was cut short)
    end
    pcall(M._write, ctx.dir, plan, records, ctx.run)
    error(stopped, 0)
  end
end

-- The experiment's folder and client: spec.dir is the folder itself; otherwise a folder named
-- after the experiment under spec.out. An earlier run's journal there is reused.
local function open_folder(spec, name)
  local client = spec.client or require("editflow.client").new(spec.client_options or {})
  local dir = spec.dir or join(spec.out or "experiments", core.safe_name(name))
  if exists(join(dir, journal.FILE)) and (not client.journal or client.journal.dir == dir) then
    -- reuse what an earlier run paid for, counting equal bodies from the first again: a client
    -- that ran this folder before holds its last run's count (its bodies' second copies)
    client.journal = journal.open(dir)
  end
  return client, dir
end

local function new_summary(dir, plan)
  return { dir = dir, jobs = #plan.jobs, images = plan.images, megapixels = plan.megapixels,
    cost = plan.cost, price = plan.price, models = plan.models, judge = plan.judge, done = 0, failed = 0,
    reused = 0, skipped = 0, spent = 0, reused_planned = plan.reused or 0 }
end

-- experiment.run(spec) -> summary. spec: name, dir (the folder), or out (its parent folder,
-- default "experiments": the folder is then out/name), prompt (one template) or prompts (a
-- list, or a table of short names), negative_prompt, vars, zip, images, params, seeds, model
-- or models (endpoint ids; default the client's), aspect ("W:H") or size ("WxH"), judge
-- ({ endpoint, rubric }), client (or client_options), concurrency (8), dry_run, max_cost,
-- partial (with max_cost: run what fits in order and skip the rest instead of refusing the
-- plan), price (dollars, "DOLLARS/UNIT", or a table of them by endpoint).
function M.run(spec)
  planner.check_spec(spec)
  local name = spec.name or "experiment"
  local client, dir = open_folder(spec, name)
  local judge = make_judge(spec, client)
  local plan = planner.plan(spec, client, manifest.prompt_names(dir))
  plan_judge(plan, judge, spec, dir)
  local summary = new_summary(dir, plan)
  check_budget(spec, plan, name)
  summary.notes = plan.notes
  if spec.dry_run then
    summary.dry_run, summary.plan = true, plan
    return summary
  end
  for _, note in ipairs(plan.notes or {}) do events.warning("experiment: " .. note) end
  local made, merr = core.mkdir(dir)
  if not made then error(errors.new("FOLDER", "editflow: cannot use the folder " .. dir .. ": " .. tostring(merr)), 0) end
  if not client.journal then
    client.journal = journal.open(dir)
    for _, e in ipairs(plan.models) do e.client.journal = client.journal end
    if judge then judge.client.journal = client.journal end
  end
  -- a progress display's "time left" covers them all, the judge's calls too
  events.emit("planned", nil, #plan.jobs + (plan.judge and plan.judge.calls or 0))
  local ctx = { spec = spec, summary = summary, dir = dir, name = name, judge = judge, records = {},
    run = manifest.new_run() }
  -- A job the stopping run did not send: skipped, and a re-run in the folder sends it.
  function ctx.not_sent(rec, err)
    rec.status = "skipped"
    rec.error = { code = "NOT_SENT", message = err and err.message or "not sent: the run was stopped before this job was sent" }
    summary.skipped = summary.skipped + 1
  end
  run_jobs(ctx, plan)
  if summary.failed == 0 and summary.skipped == 0 and not summary.held and not summary.cancelled then
    client:complete()  -- one journal for every model's jobs and the judge's
  end
  summary.run = ctx.run.id
  summary.manifest, summary.gallery = M._write(dir, plan, ctx.records, ctx.run)
  return summary
end

-- The manifest and the gallery of a run. -> their paths.
function M._write(dir, plan, records, run)
  local list = {}
  for i = 1, #plan.jobs do list[i] = records[i] end
  -- the gallery is drawn from the folder alone (every run of its manifest, its ratings.json)
  return manifest.write(dir, run.id, list), gallery.write(dir)
end

return M
