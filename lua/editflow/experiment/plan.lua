-- editflow.experiment.plan: an experiment's plan: every job (prompt template × combination of
-- variables × seed × model) with the body it will send in its model's own shape, its output
-- pixels and its estimated cost, per model in that model's price unit. Everything is checked
-- here, before any request: missing or cyclic variables, every model's fields, every local
-- image, the size each model can take; a plan that cannot be sent as asked raises.
local core = require "editflow.core"
local price = require "editflow.price"
local template = require "editflow.experiment.template"
local lifecycle = require "editflow.lifecycle"
local errors = require "editflow.errors"
local axes = require "editflow.experiment.axes"
local shape = require "editflow.experiment.shape"

local M = {}

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

-- A readable, unique, filesystem-safe name for a job. When two would read the same (values
-- cut short, or differing only in what the name drops), a short hash of the exact values
-- tells them apart, the same on every run whatever the grid's order. `named`: the variables,
-- plus the prompt's and the model's names when there are several of them.
local function slug(named, seed, used, extra)
  local names, exact = vars_text(named)
  exact = exact .. "\n" .. (extra or "")  -- (the model's endpoint: labels may read alike)
  local parts = {}
  for _, k in ipairs(names) do parts[#parts + 1] = k .. "-" .. label(named[k]):sub(1, 24) end
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

-- The fields an experiment's spec may have: a misspelled one (dryrun, max_cots) would be
-- ignored silently and its jobs sent and paid for as if it were not there.
local FIELDS = { "name", "dir", "out", "prompt", "prompts", "negative_prompt", "vars", "zip", "images", "params",
  "seeds", "model", "models", "aspect", "size", "judge", "client", "client_options", "concurrency", "dry_run",
  "max_cost", "partial", "price" }
local KNOWN = {}
for _, k in ipairs(FIELDS) do KNOWN[k] = true end

function M.check_spec(spec)
  if type(spec) ~= "table" then error("experiment expects a table", 3) end
  for k in pairs(spec) do
    if not KNOWN[k] then
      local sorted = { table.unpack(FIELDS) }
      table.sort(sorted)
      error(string.format("experiment: unknown field '%s' (fields: %s)", tostring(k), table.concat(sorted, ", ")), 3)
    end
  end
  if spec.concurrency ~= nil and not (math.tointeger(spec.concurrency) and spec.concurrency >= 1) then
    error("experiment: concurrency must be an integer >= 1, got " .. tostring(spec.concurrency), 3)
  end
  axes.prompts(spec)
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
  if spec.price ~= nil and type(spec.price) ~= "number" and type(spec.price) ~= "string" and type(spec.price) ~= "table" then
    error("experiment: price must be dollars (per the endpoint's unit), 'DOLLARS/UNIT', or a table of them by endpoint", 3)
  end
  shape.size_request(spec)
end

-- The price given for one model: one price for a single model, else a table by endpoint.
local function given_price(spec, endpoint, several)
  local p = spec.price
  if type(p) == "table" then p = p[endpoint] end
  if p ~= nil and several and type(spec.price) ~= "table" then
    error("experiment: with several models, give price as a table by endpoint ({ ['" .. endpoint .. "'] = 0.03 })", 0)
  end
  return p
end

-- One model of the plan: its client (a sibling of the experiment's), schema, price and what
-- the common size option becomes in its own field.
local function model_entry(spec, client, endpoint, several, size_req)
  local c = client:sibling(endpoint)
  local m = c:model()
  local e = { endpoint = endpoint, client = c, model = m, label = axes.model_label(endpoint),
    jobs = 0, images = 0, megapixels = 0, cost = 0, reused = 0 }
  local p, why = given_price(spec, endpoint, several), nil
  if p ~= nil then p = price.given(endpoint, p) else p, why = price.lookup(c) end
  e.price, e.unpriced = p, not p and why or nil
  if size_req then
    local field, value = shape.size_for(m, size_req)
    if not field then error("experiment: " .. value, 0) end
    if spec.params and spec.params[field] ~= nil then
      error(string.format("experiment: %s's size is given twice: %s %s and params.%s", endpoint,
        size_req.aspect and "aspect" or "size", size_req.text, field), 0)
    end
    e.size_field, e.size_value = field, value
    e.gets = field .. "=" .. shape.text(value)
  end
  return e
end

-- The parameters each model gets: a field goes to every model that has it. With several models
-- a field none of them has is an error naming them; with one, the model's own check names it.
local function params_for(models, params)
  local per = {}
  for i = 1, #models do per[i] = {} end
  for k, v in pairs(params or {}) do
    local takers = 0
    for i, e in ipairs(models) do
      if #models == 1 or shape.has(e.model, k) then per[i][k] = v; takers = takers + 1 end
    end
    if takers == 0 then
      local ids = {}
      for i, e in ipairs(models) do ids[i] = e.endpoint end
      error(string.format("experiment: %s is a field of none of the models (%s)", tostring(k), table.concat(ids, ", ")), 0)
    end
  end
  return per
end

-- With several models and a size given through a model's own field (image_size,
-- aspect_ratio): what each model gets, and a note when some keep their default size, so a
-- comparison at one size is not silently made at several.
local SIZE_FIELDS = { "image_size", "aspect_ratio" }
local function note_sizes(notes, models, params)
  local without = {}
  local given = false
  for i, e in ipairs(models) do
    for _, f in ipairs(SIZE_FIELDS) do
      if params[i][f] ~= nil then e.gets = f .. "=" .. shape.text(params[i][f]) given = true end
    end
    if not e.gets then without[#without + 1] = e.endpoint end
  end
  if given and #without > 0 then
    for _, e in ipairs(models) do e.gets = e.gets or "its default size" end
    notes[#notes + 1] = string.format("%s keep%s %s default size (a size field goes only to the models that "
      .. "have it): aspect W:H or size WxH gives every model one", table.concat(without, ", "),
      #without == 1 and "s" or "", #without == 1 and "its" or "their")
  end
end

local function check_templates(spec, prompts, combos, image_tpls)
  local names = {}
  for k in pairs(combos[1] or {}) do names[#names + 1] = k end
  axes.check_names(names)
  local templates = { negative_prompt = spec.negative_prompt }
  for _, p in ipairs(prompts) do templates[#prompts > 1 and ("prompts." .. p.name) or "prompt"] = p.template end
  for i, t in ipairs(image_tpls) do
    if type(t) == "string" then templates["images[" .. i .. "]"] = t end
  end
  template.check(templates, names)
end

-- The body of one job for one model: the parameters it takes, the rendered prompt, the images
-- in its field, the size in its own field, the seed.
local function job_input(spec, e, params, prompt, vars, imgs, seed)
  local input = {}
  for k, v in pairs(params) do input[k] = v end
  input.prompt = prompt
  -- (with several models, only those that have the field get it: params_for checks one has it)
  if spec.negative_prompt and (not e.several or shape.has(e.model, "negative_prompt")) then
    input.negative_prompt = template.render(spec.negative_prompt, vars, "negative_prompt")
  end
  local field, value = shape.images(e.model, imgs)
  if field and params[field] ~= nil then
    error(string.format("experiment: %s is given twice (images, and params.%s / --set %s): it takes one value",
      field, field, field), 0)
  end
  if field then input[field] = value end
  if e.size_field then input[e.size_field] = e.size_value end
  if seed then input.seed = seed end
  return input
end

-- Adds a job to the plan and its model's totals. A job the folder's journal already holds
-- costs nothing: it will be reused (equal bodies get successive keys, as when sent).
local function add_job(plan, e, job, body, ahead)
  local est = price.estimate(e.price, e.model, job.input)
  job.megapixels, job.cost, job.units, job.images = est.megapixels, est.cost or 0, est.units, est.images
  job.approx = est.approx or nil
  if est.approx then plan.approx, e.approx = true, true end
  job.full_cost, job.body = job.cost, body
  -- done, accepted or in doubt: already paid for (or held back), never paid again
  if e.client.journal and lifecycle.paid(e.client, body, ahead) then job.reuse, job.cost = true, 0 end
  job.index = #plan.jobs + 1
  plan.jobs[job.index] = job
  for _, t in ipairs { plan, e } do
    t.megapixels = t.megapixels + job.megapixels
    t.cost = t.cost + job.cost
    t.images = t.images + job.images
    if job.reuse then t.reused = (t.reused or 0) + 1 end
  end
  e.jobs = e.jobs + 1
end

-- experiment.plan(spec, client [, known_prompts]) -> plan: every job with its rendered input,
-- its output pixels and its estimated cost (known_prompts: the folder's names of templates,
-- editflow.experiment.manifest.prompt_names); plan.models: per model its price, jobs, cost and what it gets. Raises
-- on anything wrong, before any request.
function M.plan(spec, client, known_prompts)
  M.check_spec(spec)
  local prompts = axes.prompts(spec, known_prompts)
  local endpoints = axes.models(spec, client.endpoint)
  local combos = template.combine(spec.vars, spec.zip)
  local image_tpls = spec.images or {}
  if type(image_tpls) == "string" then image_tpls = { image_tpls } end
  check_templates(spec, prompts, combos, image_tpls)
  local size_req = shape.size_request(spec)
  local several = #endpoints > 1
  local plan_notes = {}
  local models = {}
  for i, endpoint in ipairs(endpoints) do models[i] = model_entry(spec, client, endpoint, several, size_req) end
  local params = params_for(models, spec.params)
  if spec.negative_prompt ~= nil then params_for(models, { negative_prompt = true }) end  -- one model takes it
  for _, e in ipairs(models) do e.several = several end
  if several and not size_req then note_sizes(plan_notes, models, params) end
  local plan = { jobs = {}, megapixels = 0, cost = 0, images = 0, combos = combos, prompts = prompts,
    models = models, notes = plan_notes }
  -- one price for the plan when there is one model (as before); else each model's own
  plan.price, plan.unpriced = models[1].price, models[1].unpriced
  for _, e in ipairs(models) do
    if not e.price then plan.unpriced = plan.unpriced or (e.endpoint .. ": " .. tostring(e.unpriced)) end
    if not e.price and spec.max_cost then
      error(errors.new("BUDGET", string.format("experiment: cannot keep max_cost: %s: %s", e.endpoint, e.unpriced)), 0)
    end
  end
  if several then plan.price = nil end
  local seeds = spec.seeds or { false }
  local used, ahead, same = {}, {}, {}
  for _, p in ipairs(prompts) do
    for ci, vars in ipairs(combos) do
      local what = #prompts > 1 and ("prompts." .. p.name) or "prompt"
      local prompt = template.render(p.template, vars, what)
      local imgs = {}
      for i, t in ipairs(image_tpls) do imgs[i] = render_image(t, vars, "images[" .. i .. "]") end
      for _, seed in ipairs(seeds) do
        for mi, e in ipairs(models) do
          if seed and not shape.has(e.model, "seed") then
            error(string.format("experiment: %s has no seed field: seeds cannot be given to it", e.endpoint), 0)
          end
          local input = job_input(spec, e, params[mi], prompt, vars, imgs, seed)
          -- validated, and every local image read and checked, now; with several models the
          -- message says which one refused
          local ok, body = pcall(e.client.prepare, e.client, input)
          if not ok then
            if several and type(body) == "string" then error(body .. " (for " .. e.endpoint .. ")", 0) end
            error(body, 0)
          end
          local named = {}
          for k, v in pairs(vars) do named[k] = v end
          if #prompts > 1 then named.prompt = p.name end
          if several then named.model = e.label end
          -- with a seed, an equal body is the same image again (paid twice): refused; without
          -- one it is another sample
          if seed then
            local key = e.endpoint .. "\n" .. body
            if same[key] then
              error(string.format("experiment: two jobs would send the same body to %s with seed %d (prompt %q): "
                .. "the same image paid twice; make the prompts or variables differ", e.endpoint, seed, prompt), 0)
            end
            same[key] = true
          end
          add_job(plan, e, { combo = ci, vars = vars, seed = seed or nil, input = input, images_given = imgs,
            prompt_name = p.name, template = p.template, model = e.endpoint, entry = e,
            slug = slug(named, seed or nil, used, several and e.endpoint or nil) }, body, ahead)
        end
      end
    end
  end
  return plan
end

return M
