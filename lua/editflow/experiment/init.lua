-- editflow.experiment: one prompt experiment = templates × a grid of variables × seeds, run as
-- concurrent jobs into one folder with a manifest and a contact sheet.
--
-- Everything is checked and priced before anything is sent (missing variables, every model
-- field, every local image); a dry run stops there. The folder's journal makes a re-run reuse
-- every job already done (same endpoint, same input, same seed) instead of paying again, and
-- finish only what is missing. A budget (max_cost) refuses a plan over it and, while running,
-- skips any new job that would pass it.
local core = require "editflow.core"
local json = require "editflow.json"
local price = require "editflow.price"
local template = require "editflow.experiment.template"
local tasks = require "editflow.tasks"
local gallery = require "editflow.experiment.gallery"
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

local IMAGE_FILE = { png = true, jpg = true, jpeg = true, webp = true, gif = true }

-- How a variable's value reads in a file name: an image path by its file's stem, anything
-- else as it is (so 0.5 and 0.75 stay apart).
local function label(v)
  if type(v) == "table" and v.path then v = v.path end
  local s = tostring(v)
  local ext = s:match("%.(%w+)$")
  if s:find("/", 1, true) or (ext and IMAGE_FILE[ext:lower()]) then
    s = s:match("([^/]*)$"):gsub("%.%w+$", "")
  end
  return s
end

local function vars_text(vars)
  local names, parts = {}, {}
  for k in pairs(vars) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "=" .. tostring(label(vars[k])) .. "|" .. tostring(vars[k]) end
  return names, table.concat(parts, "\n")
end

-- A readable, unique, filesystem-safe name for a combination and seed. When two would read
-- the same (values cut short, or differing only in what the name drops), a short hash of the
-- exact variables tells them apart, the same on every run whatever the grid's order.
local function slug(vars, seed, used)
  local names, exact = vars_text(vars)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "-" .. label(vars[k]):sub(1, 24) end
  local s = core.safe_name(#parts > 0 and table.concat(parts, "_") or "job"):sub(1, 90)
  if used[s .. (seed and ("_s" .. seed) or "")] or #s >= 90 then s = s:sub(1, 80) .. "_" .. core.hash(exact):sub(1, 8) end
  if seed then s = s .. "_s" .. seed end
  used[s] = true
  return s
end

-- Renders one image entry: an editflow.file (or any non-string) passes through; a template
-- that is exactly ${name} takes the variable's value as it is (a path or an editflow.file).
local function render_image(t, vars, what)
  if type(t) ~= "string" then return t end
  local only = t:match("^%${([%a_][%w_]*)}$")
  if only and vars[only] ~= nil then return vars[only] end
  return template.render(t, vars, what)
end

local function check_spec(spec)
  if type(spec) ~= "table" then error("experiment expects a table", 3) end
  if type(spec.prompt) ~= "string" then error("experiment: prompt must be a template string", 3) end
  if spec.name ~= nil and (type(spec.name) ~= "string" or spec.name == "") then
    error("experiment: name must be a non-empty string", 3)
  end
  if spec.seeds ~= nil then
    if type(spec.seeds) ~= "table" or #spec.seeds == 0 then error("experiment: seeds must be a list of integers", 3) end
    local seen = {}
    for i, s in ipairs(spec.seeds) do
      if math.type(s) ~= "integer" or s < 0 then
        error(string.format("experiment: seeds[%d] must be an integer >= 0, got %s", i, tostring(s)), 3)
      end
      -- the same seed twice is the same job twice: paid twice, one file for both
      if seen[s] then error(string.format("experiment: seed %d is given twice", s), 3) end
      seen[s] = true
    end
  end
  for _, group in ipairs { spec.vars or {} } do  -- (a zip's values pair up: they may repeat)
    for name, values in pairs(group) do
      local seen = {}
      for _, v in ipairs(type(values) == "table" and values or {}) do
        local key = type(v) == "table" and tostring(v.path) or tostring(v)
        if seen[key] then
          error(string.format("experiment: the variable %s has the value %s twice", tostring(name), key), 3)
        end
        seen[key] = true
      end
    end
  end
  if spec.max_cost ~= nil and (type(spec.max_cost) ~= "number" or spec.max_cost < 0) then
    error("experiment: max_cost must be a number of dollars >= 0", 3)
  end
  if spec.price ~= nil and type(spec.price) ~= "number" and type(spec.price) ~= "string" then
    error("experiment: price must be dollars (per the endpoint's unit) or 'DOLLARS/UNIT'", 3)
  end
end

-- experiment.plan(spec, client) -> plan: every job with its rendered input, its output pixels
-- and its estimated cost. Raises on anything wrong, before any request.
function M.plan(spec, client)
  check_spec(spec)
  local combos = template.combine(spec.vars, spec.zip)
  local names = {}
  for k in pairs(combos[1] or {}) do names[#names + 1] = k end
  local image_tpls = spec.images or {}
  if type(image_tpls) == "string" then image_tpls = { image_tpls } end
  local templates = { prompt = spec.prompt, negative_prompt = spec.negative_prompt }
  for i, t in ipairs(image_tpls) do
    if type(t) == "string" then templates["images[" .. i .. "]"] = t end
  end
  template.check(templates, names)

  -- the price per unit: given, else fal's pricing API, else the shipped table; none known
  -- means the plan cannot be priced, and a budget cannot be kept
  local p, why
  if spec.price then p = price.given(client.endpoint, spec.price) else p, why = price.lookup(client) end
  if not p and spec.max_cost then
    error(errors.new("BUDGET", string.format("experiment: cannot keep max_cost: %s", why)), 0)
  end
  local m = client:model()
  local seeds = spec.seeds or { false }
  local plan = { jobs = {}, megapixels = 0, cost = 0, images = 0, price = p, unpriced = not p and why or nil,
    combos = combos }
  local used, ahead = {}, {}
  local field, kind = m:image_field()
  if m.unchecked then field, kind = "image_urls", "list" end
  for ci, vars in ipairs(combos) do
    for _, seed in ipairs(seeds) do
      local input = {}
      for k, v in pairs(spec.params or {}) do input[k] = v end
      input.prompt = template.render(spec.prompt, vars, "prompt")
      if spec.negative_prompt then input.negative_prompt = template.render(spec.negative_prompt, vars, "negative_prompt") end
      local imgs = {}
      for i, t in ipairs(image_tpls) do imgs[i] = render_image(t, vars, "images[" .. i .. "]") end
      if #imgs > 0 and not field then
        error(client.endpoint .. " takes no input image, but the experiment gives " .. #imgs, 0)
      elseif kind == "one" then  -- endpoints that take one image_url (fal-ai/qwen-image-edit, Kontext)
        if #imgs ~= 1 then error(client.endpoint .. " takes exactly one image, got " .. #imgs, 0) end
        input[field] = imgs[1]
      elseif #imgs > 0 then
        input[field] = imgs
      end
      if seed then input.seed = seed end
      -- validated, and every local image read and checked, now: client:prepare() below
      local body = client:prepare(input)
      local est = price.estimate(p, m, input)
      local job = { index = #plan.jobs + 1, combo = ci, vars = vars, seed = seed or nil, input = input,
        slug = slug(vars, seed or nil, used), megapixels = est.megapixels, cost = est.cost or 0,
        units = est.units, approx = est.approx or nil, images = est.images }
      if est.approx then plan.approx = true end
      job.full_cost = job.cost
      -- A job the folder's journal already holds costs nothing: it will be reused. Equal
      -- bodies get successive keys, exactly as they will when sent.
      local jr = client.journal
      if jr then
        -- done, accepted or in doubt: already paid for (or held back), never paid again
        if lifecycle.paid(client, body, ahead) then job.reuse, job.cost = true, 0 end
      end
      plan.jobs[#plan.jobs + 1] = job
      plan.megapixels = plan.megapixels + job.megapixels
      plan.cost = plan.cost + job.cost
      plan.images = plan.images + job.images
      if job.reuse then plan.reused = (plan.reused or 0) + 1 end
    end
  end
  return plan
end

-- A copy of an input for the manifest: a local image is recorded by its path (it was sent as
-- a data: URI of that file), a data: URI given directly by its size, never megabytes of base64.
local function recordable(input)
  local out = {}
  for k, v in pairs(input) do out[k] = v end
  if out.image_url ~= nil then out.image_url = type(out.image_url) == "table" and out.image_url.path or out.image_url end
  if out.image_urls then
    local list = json.array {}
    for i, u in ipairs(out.image_urls) do
      if type(u) == "table" then u = u.path end
      list[i] = (type(u) == "string" and u:find("^data:")) and string.format("(data: URI, %d bytes)", #u) or u
    end
    out.image_urls = list
  end
  return out
end

local function file_size(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- experiment.run(spec) -> summary. spec: name, dir (the folder), or out (its parent folder,
-- default "experiments": the folder is then out/name),
-- prompt, negative_prompt, vars, zip, images, params, seeds, client (or client_options),
-- concurrency (8), dry_run, max_cost, partial (with max_cost: run what fits in order and skip
-- the rest instead of refusing the plan), price.
function M.run(spec)
  check_spec(spec)
  local client = spec.client or require("editflow.client").new(spec.client_options or {})
  local name = spec.name or "experiment"
  -- spec.dir is the folder itself; otherwise a folder named after the experiment under spec.out
  local dir = spec.dir or join(spec.out or "experiments", core.safe_name(name))
  if not client.journal and exists(join(dir, journal.FILE)) then
    client.journal = journal.open(dir)  -- reuse what an earlier run paid for
  end
  local plan = M.plan(spec, client)
  local summary = { dir = dir, jobs = #plan.jobs, images = plan.images, megapixels = plan.megapixels,
    cost = plan.cost, price = plan.price, done = 0, failed = 0, reused = 0, skipped = 0, spent = 0 }
  summary.reused_planned = plan.reused or 0
  if spec.max_cost and plan.approx and not spec.dry_run then
    error(errors.new("BUDGET", string.format("experiment '%s': cannot keep max_cost: the cost is an "
      .. "estimate (an output size that follows an input given by URL, or a price unit editflow does "
      .. "not know); give image_size, local input files, or a price per image, megapixel or request", name)), 0)
  end
  if spec.max_cost and plan.cost > spec.max_cost + 1e-9 and not spec.dry_run and not spec.partial then
    error(errors.new("BUDGET", string.format("experiment '%s': the plan costs $%.4f, over the budget "
      .. "max_cost = $%.4f (%d jobs, %d images, %.2f output megapixels at %s)", name, plan.cost, spec.max_cost,
      #plan.jobs, plan.images, plan.megapixels, price.describe(plan.price))), 0)
  end
  if spec.dry_run then
    summary.dry_run, summary.plan = true, plan
    return summary
  end

  local made, merr = core.mkdir(dir)
  if not made then error(errors.new("FOLDER", "editflow: cannot use the folder " .. dir .. ": " .. tostring(merr)), 0) end
  if not client.journal then client.journal = journal.open(dir) end
  events.emit("planned", nil, #plan.jobs)  -- a progress display's "time left" covers them all
  local records = {}
  -- A job the stopping run did not send: skipped, and a re-run in the folder sends it.
  local function not_sent(rec, err)
    rec.status = "skipped"
    rec.error = { code = "NOT_SENT", message = err and err.message or "not sent: the run was stopped before this job was sent" }
    summary.skipped = summary.skipped + 1
  end
  local function run_job(job, rec)
    -- the run is stopping (a signal, --on-interrupt finish): a job not begun is not sent
    if runtime.stopping(true) then return not_sent(rec) end
    local body = client:prepare(job.input)
    local reused = lifecycle.paid(client, body)
    job.cost = reused and 0 or job.full_cost
    rec.cost_estimate = job.cost
    if not reused and spec.max_cost and summary.spent + job.cost > spec.max_cost + 1e-9 then
      rec.status, rec.error = "skipped", { code = "BUDGET", message = string.format(
        "not sent: $%.4f spent, this job ($%.4f) would pass max_cost $%.4f", summary.spent, job.cost, spec.max_cost) }
      summary.skipped = summary.skipped + 1
      return
    end
    if not reused then summary.spent = summary.spent + job.cost end
    -- an explicit seed asks for that image: a fallback model would give another one
    local fallbacks = job.seed ~= nil and client.disable_fallbacks ~= false or nil
    local t0 = core.monotime()
    local j, err = client:send(body, { disable_fallbacks = fallbacks })
    local result
    if j then result, err = j:wait() end
    rec.elapsed = core.monotime() - t0  -- seconds from send to result, queue wait included
    rec.request_id = j and j.request_id
    rec.reused = j and j.from_journal or false
    if rec.reused then
      summary.reused = summary.reused + 1
      rec.cost_estimate = 0
    end
    if not result then
      -- what the job's end means for the run is editflow.lifecycle's (lifecycle.report)
      local how = lifecycle.report(j ~= nil, err, runtime.stopping())
      if not j and lifecycle.failed_submit(err) == "refused" and not reused then
        -- certainly not taken by the queue (refused, not sent): nothing was spent on it
        summary.spent, rec.cost_estimate = summary.spent - job.cost, 0
      end
      if how == "skipped" then return not_sent(rec, err) end
      rec.error = { code = err.code, message = err.message, type = err.type }
      if how == "interrupted" then
        -- cancelled at the queue by this run's stop (a queued job, --on-interrupt finish)
        rec.status, rec.interrupted = "failed", true
        summary.cancelled = (summary.cancelled or 0) + 1
        return
      end
      if how == "held" then  -- in doubt: a re-run cannot mend it alone
        rec.status, summary.held = "held", (summary.held or 0) + 1
        summary.held_messages = summary.held_messages or {}
        table.insert(summary.held_messages, err.message)
      else
        rec.status, summary.failed = "failed", summary.failed + 1
      end
      return
    end
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
      rec.outputs[i] = { path = p:match("([^/]*)$"), bytes = file_size(p), width = img.width, height = img.height }
    end
    summary.done = summary.done + 1
  end

  local price_record = plan.price and { unit_price = plan.price.unit_price, unit = plan.price.unit,
    currency = plan.price.currency, source = plan.price.source } or { source = "unknown: " .. tostring(plan.unpriced) }
  local function new_record(job)
    return { index = job.index, vars = job.vars, seed = job.seed, prompt = job.input.prompt,
      input = recordable(job.input), cost_estimate = job.cost, price = price_record }
  end
  local mapped, stopped = pcall(tasks.map, plan.jobs, function(job)
    local rec = new_record(job)
    records[job.index] = rec
    local ok, e = pcall(run_job, job, rec)
    if not ok then  -- whatever went wrong, the manifest says so
      rec.status, rec.error = "failed", { code = "INTERNAL", message = tostring(e) }
      summary.failed = summary.failed + 1
    end
    events.emit("recorded", nil, rec)  -- its manifest record: saved paths, variables, seed
  end, { concurrency = spec.concurrency or 8 })
  if not mapped then
    -- Stopped (an interrupt): what ended is written down all the same, the rest marked
    -- interrupted; a re-run in the folder finishes it. Then the stop goes on.
    for i, job in ipairs(plan.jobs) do
      records[i] = records[i] or new_record(job)
      if not records[i].status then records[i].interrupted = true end
    end
    pcall(M._write, dir, name, plan, records, spec)
    error(stopped, 0)
  end
  if summary.failed == 0 and summary.skipped == 0 and not summary.held and not summary.cancelled then client:complete() end
  summary.manifest, summary.gallery = M._write(dir, name, plan, records, spec)
  return summary
end

-- The manifest and the gallery of a run. -> their paths.
function M._write(dir, name, plan, records, spec)
  -- The manifest keeps what earlier runs into this folder recorded of other jobs: a run with
  -- another prompt adds to it, never erases what was paid for.
  local lines, mine = {}, {}
  for i = 1, #plan.jobs do
    if records[i].request_id then mine[records[i].request_id] = true end
  end
  local old = io.open(join(dir, "manifest.jsonl"), "rb")
  if old then
    for line in old:lines() do
      local r = json.decode(line)
      if type(r) == "table" and type(r.request_id) == "string" and not mine[r.request_id] then
        lines[#lines + 1] = line
      end
    end
    old:close()
  end
  for i = 1, #plan.jobs do lines[#lines + 1] = json.encode(records[i]) end
  local ok, err = core.write_file(join(dir, "manifest.jsonl"), table.concat(lines, "\n") .. "\n")
  if not ok then error("editflow: cannot write " .. join(dir, "manifest.jsonl") .. ": " .. tostring(err), 0) end
  return join(dir, "manifest.jsonl"), gallery.write(dir, name, plan, records, spec)
end

return M
