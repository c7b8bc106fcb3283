-- editflow.cli.grid: `editflow grid`: a prompt experiment from the command line (prompt
-- templates, models, variables, seeds, images, a common size, a judge, budget, dry run), its
-- progress and its JSON events. Host only.
local editflow = require "editflow"
local json = require "editflow.json"
local progress = require "editflow.cli.progress"
local core = require "editflow.core"
local errors = require "editflow.errors"
local fields = require "editflow.cli.fields"
local schema = require "editflow.schema"
local pricing = require "editflow.price"
local c = require "editflow.cli.common"
local with_common = c.with_common
local out, say, usage_error, make_client, fail_client = c.out, c.say, c.usage_error, c.make_client, c.fail_client
local endpoints_of, bad_endpoint, image_usage, model_header = c.endpoints_of, c.bad_endpoint, c.image_usage, c.model_header
local model_specs, edit_input, invalid, parse_command = c.model_specs, c.edit_input, c.invalid, c.parse_command

-- grid takes every edit option except the single-job ones, plus the experiment's own; -m and
-- -p may be given several times (models and prompts are axes).
local GRID = with_common {
  multi_common = { model = true },  -- -m several times: the models are an axis
  { "p", "prompt", arg = true, multi = true, metavar = "TEMPLATE", help = "prompt template with ${name} variables ($$ for a literal $); several -p: the prompt is an axis (p1, p2, ...) (required)" },
  { "i", "image", arg = true, multi = true, metavar = "IMAGE", help = "input image, URL or path; may use ${name} (1 to 3 times)" },
  { nil, "var", arg = true, multi = true, metavar = "NAME=A,B", help = "a variable and its values; several --var form a grid (every combination); a value may hold ${other}" },
  { nil, "zip", arg = true, multi = true, metavar = "NAME=A,B", help = "variables that go together, value by value (equal lengths)" },
  { nil, "images-var", arg = true, multi = true, metavar = "NAME=GLOB", help = "a variable over image files: a folder, a file or a glob" },
  { nil, "seeds", arg = true, metavar = "N,N,...", help = "run every combination with each seed" },
  { nil, "aspect", arg = true, metavar = "W:H", help = "the output's aspect, given to each model in its own field (image_size or aspect_ratio)" },
  { nil, "size", arg = true, metavar = "WxH", help = "the output's size in pixels, given to each model in its own field (an aspect_ratio model gets its ratio)" },
  { nil, "judge", arg = true, metavar = "ENDPOINT", help = "score each saved output 0-10 with a vision-language model on fal's queue (e.g. fal-ai/any-llm/vision)" },
  { nil, "rubric", arg = true, metavar = "TEXT", help = "what the judge scores against (default: does the edit follow the prompt and keep the rest of the photo)" },
  { "o", "output", arg = true, metavar = "DIR", help = "folder for the images, manifest.jsonl and index.html (default editflow-output)" },
  { nil, "name", arg = true, metavar = "NAME", help = "the experiment's name, a label in the gallery and manifest (default: experiment)" },
  { nil, "negative-prompt", arg = true, metavar = "TEMPLATE", help = "negative prompt template" },
  { nil, "concurrency", arg = true, metavar = "N", help = "jobs in flight (default 8)" },
  { nil, "json", help = "JSON events on stdout: one a finished job, then a summary (see the README)" },
  { nil, "dry-run", help = "print the plan (jobs, images, megapixels, cost per model) and send nothing" },
  { nil, "max-cost", arg = true, metavar = "DOLLARS", help = "refuse a plan whose new jobs cost more than this (the judge's calls included)" },
  { nil, "partial", help = "with --max-cost: run the jobs that fit, in order, and skip the rest" },
  { nil, "price", arg = true, multi = true, metavar = "[ENDPOINT=]DOLLARS[/UNIT]", help = "price per unit (image, megapixel, request); with several -m, one per model as ENDPOINT=PRICE; default: fal's pricing API, else the shipped table" },
}

local function split_var(flag, spec)
  local name, values = spec:match("^([%a_][%w_]*)=(.*)$")
  if not name then return nil, flag .. " expects NAME=VALUE,VALUE, got '" .. spec .. "'" end
  local list = {}
  for v in (values .. ","):gmatch("([^,]*),") do list[#list + 1] = v end  -- text, as typed
  return name, list
end

-- A failed step: its exit status, already reported.
local Stop = {}
local function stop(rc) error(setmetatable({ rc = rc }, Stop), 0) end
local function usage(msg) stop(usage_error("grid: " .. msg, "grid")) end

-- The models named (-m, several times), each with its schema; and the options they make.
local function read_models(argv)
  local ids = endpoints_of(argv, GRID)
  local models = {}
  for i, id in ipairs(ids) do
    if bad_endpoint(id) then usage(bad_endpoint(id)) end
    models[i] = schema.model(id)
    c.model_hint(models[i])
  end
  return models
end

local function usage_line(models)
  local heads = {}
  for i, m in ipairs(models) do heads[i] = model_header(m) end
  return "grid [-m ENDPOINT ...] -p TEMPLATE [-p TEMPLATE ...] --var NAME=A,B [...] " .. image_usage(models[1])
    .. " [--seeds 1,2] [--aspect W:H] [-o DIR]\n\n" .. table.concat(heads, "\n")
end

-- --var, --zip and --images-var: each variable named once.
local function read_vars(o)
  local vars, zip, named = {}, {}, {}
  local function once(name, flag)
    if named[name] then usage(string.format("the variable %s is given twice (%s and %s)", name, named[name], flag)) end
    named[name] = flag
  end
  for _, kind in ipairs { { "var", vars }, { "zip", zip } } do
    local flag, into = "--" .. kind[1], kind[2]
    for _, spec in ipairs(o[kind[1]] or {}) do
      local name, list = split_var(flag, spec)
      if not name then usage(list) end
      once(name, flag)
      into[name] = list
    end
  end
  for _, spec in ipairs(o["images-var"] or {}) do
    local name, glob = spec:match("^([%a_][%w_]*)=(.+)$")
    if not name then usage("--images-var expects NAME=GLOB, got '" .. spec .. "'") end
    once(name, "--images-var")
    local ok, list = pcall(editflow.images, glob)
    if not ok then stop(invalid(tostring(list), o.json)) end
    vars[name] = list
  end
  return vars, zip
end

local function read_seeds(o)
  if not o.seeds then return nil end
  local seeds = {}
  for v in o.seeds:gmatch("[^,]+") do
    local n = math.tointeger(tonumber(v))
    if not n or n < 0 then usage("--seeds expects integers >= 0, got '" .. v .. "'") end
    seeds[#seeds + 1] = n
  end
  return seeds
end

-- --price: one price (one model), or ENDPOINT=PRICE for each of several.
local function read_prices(o, models)
  if not o.price then return nil end
  if #models == 1 and #o.price == 1 and not o.price[1]:find("=", 1, true) then  -- the one model's
    local p = tonumber(o.price[1]) or o.price[1]
    local ok, err = pcall(pricing.given, models[1].endpoint, p)
    if not ok then usage("--price: " .. tostring(err)) end
    return p
  end
  local known, by = {}, {}
  for _, m in ipairs(models) do known[m.endpoint] = true end
  if o.judge then known[o.judge] = true end
  for _, text in ipairs(o.price) do
    local id, p = text:match("^(.-)=(.+)$")
    if not id then usage("--price: with several models (or a judge) give ENDPOINT=DOLLARS[/UNIT] for each, got '" .. text .. "'") end
    if not known[id] then usage("--price: " .. id .. " is not one of the models (-m) nor the judge (--judge)") end
    if by[id] then usage("--price: " .. id .. " is priced twice") end
    p = tonumber(p) or p
    local ok, err = pcall(pricing.given, id, p)
    if not ok then usage("--price " .. id .. ": " .. tostring(err)) end
    by[id] = p
  end
  return by
end

local function number_option(o, flag, what)
  local v = o[flag]
  if v == nil then return nil end
  local n = tonumber(v)
  if what == "integer" and not math.tointeger(n) then usage("--" .. flag .. " expects an integer, got '" .. v .. "'") end
  if not n then usage("--" .. flag .. " expects " .. what .. ", got '" .. v .. "'") end
  return n
end

-- The model fields given on the command line (options and --set), for every model that has
-- them: the experiment gives each model the ones it takes.
local function read_params(o, models, mine)
  -- the options without the prompt and the images (the experiment's templates): edit_input
  -- reads each model's options and --set, and refuses a field given both ways
  local view = {}
  for k, v in pairs(o) do if k ~= "prompt" and k ~= "image" then view[k] = v end end
  local params = {}
  for i, m in ipairs(models) do
    local ok, p = pcall(edit_input, view, m, mine[i])
    if not ok then stop(invalid(tostring(p), o.json)) end
    for k, v in pairs(p) do params[k] = v end
  end
  for _, own in ipairs { { "prompt", "-p" }, { "seed", "--seeds" }, { "negative_prompt", "--negative-prompt" } } do
    if params[own[1]] ~= nil then
      stop(usage_error(string.format("grid: %s is the experiment's own (%s): --set %s is not taken", own[1], own[2], own[1]), "grid"))
    end
  end
  return params
end

-- The experiment's spec from the options.
local function read_spec(o, models, mine, client)
  local vars, zip = read_vars(o)
  local ids = {}
  for i, id in ipairs(o.model or {}) do ids[i] = id end
  local spec = { name = o.name, dir = o.output or "editflow-output",
    negative_prompt = o["negative-prompt"], vars = vars, zip = zip, images = o.image,
    params = read_params(o, models, mine), seeds = read_seeds(o), client = client,
    concurrency = number_option(o, "concurrency", "integer"), dry_run = o["dry-run"],
    max_cost = number_option(o, "max-cost", "dollars"), price = read_prices(o, models),
    partial = o.partial, aspect = o.aspect, size = o.size }
  if #o.prompt == 1 then spec.prompt = o.prompt[1] else spec.prompts = o.prompt end
  if #ids > 1 then spec.models = ids end
  if o.judge or o.rubric then
    if not o.judge then usage("--rubric needs --judge ENDPOINT") end
    if bad_endpoint(o.judge) then usage("--judge: " .. bad_endpoint(o.judge)) end
    spec.judge = { endpoint = o.judge, rubric = o.rubric }
    -- --price JUDGE=DOLLARS/UNIT prices the judge's calls (fal may publish no price for it)
    if type(spec.price) == "table" and spec.price[o.judge] ~= nil then
      spec.judge.price, spec.price[o.judge] = spec.price[o.judge], nil
    end
  end
  return spec
end

-- While it runs: one JSON event a finished job (from its manifest record: the paths, the
-- variables, the seed, the model and prompt), and the count of submits.
local function watch(o, spec)
  local seen = { submits = 0 }
  seen.unsubscribe = require("editflow.events").subscribe(function(name, _, rec)
    if name == "submitted" then seen.submits = seen.submits + 1 end
    if name == "recorded" and o.json then
      local e = rec.error
      local paths = {}
      for i, f in ipairs(rec.outputs or {}) do paths[i] = spec.dir:gsub("/$", "") .. "/" .. f.path end
      out(json.encode { event = "job", request_id = rec.request_id, ok = rec.status == "done",
        state = rec.status, vars = rec.vars, seed = rec.seed, reused = rec.reused or nil,
        model = rec.model, prompt = rec.prompt_name, judge = rec.judge and rec.judge.score or nil,
        paths = rec.status == "done" and json.array(paths) or nil,
        error = e and { code = e.code, message = e.message, type = e.type } or nil }, "\n")
    end
  end)
  -- the live line on a terminal, plain lines on a pipe, nothing with -q
  if not o["dry-run"] then
    progress.configure { display = o.quiet and "none" or "auto", tty = core.isatty(2), json_notices = o.json,
      words = require("editflow.cli.args").cli_words }
  end
  return seen
end

-- A run that raised: a budget or folder refusal (1), an interrupt (goes on), a failure after
-- something was sent (1), or invalid input with nothing sent (2).
local function failed(o, err, submits)
  local msg = tostring(err)
  local code = errors.code(err)
  if code == "INTERRUPTED" then error(err, 0) end
  if code == "BUDGET" or code == "LOCKED" or code == "FOLDER" then
    io.stderr:write("editflow: ", (msg:gsub("^.-:%d+: ", ""):gsub("^editflow: ", "")), "\n")
    return 1
  end
  if submits > 0 then io.stderr:write("editflow: ", errors.clean(msg:gsub("^.-:%d+: ", "")), "\n") return 1 end
  return invalid(msg, o.json)
end

local function money(p, cost, approx)
  if not p then return nil end
  return string.format("%s$%.4f at %s", approx and "about " or "", cost, pricing.describe(p))
end

-- ", not counting X and Y (not priced)" when some models have no price.
local function unpriced(plan)
  local ids = {}
  for _, e in ipairs(plan.models or {}) do if not e.price then ids[#ids + 1] = e.endpoint end end
  if plan.judge and not plan.judge.unit_cost then ids[#ids + 1] = "the judge " .. plan.judge.endpoint end
  if #ids == 0 then return "" end
  return ", not counting " .. table.concat(ids, " and ") .. " (not priced: give --price ENDPOINT=DOLLARS/UNIT)"
end

-- --dry-run: the plan, per model when there are several (what each model gets, its price).
local function print_plan(o, summary, max_cost)
  local plan = summary.plan
  local over = max_cost and summary.cost > max_cost + 1e-9 or nil
  if o.json then
    local models = json.array {}
    for i, e in ipairs(plan.models) do
      models[i] = { endpoint = e.endpoint, jobs = e.jobs, reused = e.reused, images = e.images,
        megapixels = e.megapixels, cost = e.price and e.cost or nil, price = e.price, unpriced = e.unpriced, gets = e.gets }
    end
    out(json.encode { event = "plan", jobs = summary.jobs, reused = summary.reused_planned,
      images = summary.images, megapixels = summary.megapixels, cost = (plan.price or #plan.models > 1) and summary.cost or nil,
      approx = plan.approx or nil, price = plan.price, unpriced = plan.unpriced, models = models,
      prompts = #plan.prompts, combinations = #plan.combos, judge = plan.judge, over_budget = over,
      notes = plan.notes and #plan.notes > 0 and plan.notes or nil }, "\n")
    return over and 1 or 0
  end
  out(string.format("plan: %d jobs (%d reused from an earlier run), %d images, %.2f output megapixels, %s; nothing sent\n",
    summary.jobs, summary.reused_planned, summary.images, summary.megapixels,
    ((#plan.models == 1 and not plan.judge) and (money(plan.price, summary.cost, plan.approx) and ("estimated " .. money(plan.price, summary.cost, plan.approx)
      .. unpriced(plan)) or ("not priced: " .. tostring(plan.unpriced))))
    or string.format("estimated %s$%.4f in all%s", plan.approx and "about " or "", summary.cost, unpriced(plan))))
  if #plan.models > 1 or plan.judge then
    out(string.format("  %d prompt%s x %d combination%s x %d seed%s on %d model%s:\n", #plan.prompts,
      #plan.prompts == 1 and "" or "s", #plan.combos, #plan.combos == 1 and "" or "s", summary.seeds,
      summary.seeds == 1 and "" or "s", #plan.models, #plan.models == 1 and "" or "s"))
    for _, e in ipairs(plan.models) do
      out(string.format("  %-36s %3d jobs%s  %s%s\n", e.endpoint, e.jobs,
        e.reused > 0 and string.format(" (%d reused)", e.reused) or "",
        money(e.price, e.cost, e.approx) or ("not priced: " .. tostring(e.unpriced)),
        e.gets and ("  " .. e.gets) or ""))
    end
    local j = plan.judge
    if j then
      out(string.format("  %-36s %3d calls  %s\n", "judge " .. j.endpoint, j.calls,
        j.unit_cost and string.format("$%.4f at $%.4f a call", j.cost, j.unit_cost) or ("not priced: " .. tostring(j.unpriced))))
    end
  elseif plan.models[1].gets then
    out("  ", plan.models[1].endpoint, " gets ", plan.models[1].gets, "\n")
  end
  for _, note in ipairs(plan.notes or {}) do out("note: ", note, "\n") end
  if over then out(string.format("over the budget: --max-cost $%.4f\n", max_cost)) end
  return over and 1 or 0
end

local function all_ok(s)
  return s.failed == 0 and s.skipped == 0 and (s.held or 0) == 0 and not s.cancelled
end

-- The end of a run: the JSON summary or the gallery's path on stdout, a line on stderr.
local function print_summary(o, summary)
  if o.json then
    out(json.encode { event = "summary", ok = all_ok(summary),
      done = summary.done, failed = summary.failed, reused = summary.reused, held = summary.held or 0,
      skipped = summary.skipped, cancelled = summary.cancelled, spent = summary.spent,
      judge_spent = summary.judge_spent, judge_errors = summary.judge_errors, judge_skipped = summary.judge_skipped,
      run = summary.run,
      manifest = summary.manifest, gallery = summary.gallery }, "\n")
  else
    out(summary.gallery, "\n")
  end
  for _, line in ipairs(summary.held_messages or {}) do say(false, "%s", errors.clean(line)) end
  say(o.quiet, "%d done (%d of them reused), %d failed, %d held back, %d skipped%s; about $%.4f spent%s%s; manifest %s",
    summary.done, summary.reused, summary.failed, summary.held or 0, summary.skipped,
    summary.cancelled and string.format(", %d cancelled at the queue when interrupted", summary.cancelled) or "",
    summary.spent, summary.judge_spent and string.format(" (+$%.4f judging%s)", summary.judge_spent,
      (summary.judge_errors and string.format(", %d unreadable or failed", summary.judge_errors) or "")
      .. (summary.judge_skipped and string.format(", %d not judged for the budget", summary.judge_skipped) or "")) or "",
    unpriced(summary), summary.manifest)
  if not o.json then say(o.quiet, "the numbers per model, prompt and variable: editflow report %s", summary.dir) end
  return all_ok(summary) and 0 or 1
end

local function grid(argv)
  local models = read_models(argv)
  local spec_opts, mine = model_specs(GRID, models, { prompt = true, negative_prompt = true, seed = true })
  local o, pos = parse_command(argv, "grid", spec_opts, usage_line(models), #models == 1 and models[1] or nil)
  if not o then return pos end
  if #pos > 0 then usage("unexpected argument '" .. pos[1] .. "'") end
  if not o.prompt then usage("-p TEMPLATE is required") end
  local iok, ierr = require("editflow.cli").on_interrupt(o["on-interrupt"])
  if not iok then usage(ierr) end
  -- the client of the first model; the others run on its siblings (editflow.experiment)
  local client, cerr, code = make_client(setmetatable({ model = o.model and o.model[1] }, { __index = o }))
  if not client then return fail_client(cerr, code, "grid") end
  client.on_status, client.on_log = nil, nil
  local spec = read_spec(o, models, mine, client)
  local seen = watch(o, spec)
  local ok, summary = pcall(require("editflow.experiment").run, spec)
  progress.finish()
  progress.configure { display = "none" }
  seen.unsubscribe()
  if not ok then return failed(o, summary, seen.submits) end
  if summary.dry_run then
    summary.seeds = spec.seeds and #spec.seeds or 1
    return print_plan(o, summary, spec.max_cost)
  end
  return print_summary(o, summary)
end

local function cmd_grid(argv)
  local ok, rc = pcall(grid, argv)
  if ok then return rc end
  if getmetatable(rc) == Stop then return rc.rc end
  error(rc, 0)
end

return { SPEC = GRID, run = cmd_grid }
