-- editflow.cli.grid: `editflow grid`: a prompt experiment from the command line (variables,
-- seeds, images, budget, dry run), its progress and its JSON events. Host only.
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
local endpoint_of, bad_endpoint, image_usage, model_header = c.endpoint_of, c.bad_endpoint, c.image_usage, c.model_header
local model_spec, edit_input, invalid, parse_command = c.model_spec, c.edit_input, c.invalid, c.parse_command

-- grid takes every edit option except the single-job ones, plus the experiment's own.
local GRID = with_common {
  { "p", "prompt", arg = true, metavar = "TEMPLATE", help = "prompt template with ${name} variables ($$ for a literal $) (required)" },
  { "i", "image", arg = true, multi = true, metavar = "IMAGE", help = "input image, URL or path; may use ${name} (1 to 3 times)" },
  { nil, "var", arg = true, multi = true, metavar = "NAME=A,B", help = "a variable and its values; several --var form a grid (every combination)" },
  { nil, "zip", arg = true, multi = true, metavar = "NAME=A,B", help = "variables that go together, value by value (equal lengths)" },
  { nil, "images-var", arg = true, multi = true, metavar = "NAME=GLOB", help = "a variable over image files: a folder, a file or a glob" },
  { nil, "seeds", arg = true, metavar = "N,N,...", help = "run every combination with each seed" },
  { "o", "output", arg = true, metavar = "DIR", help = "folder for the images, manifest.jsonl and index.html (default editflow-output)" },
  { nil, "name", arg = true, metavar = "NAME", help = "the experiment's name, a label in the gallery and manifest (default: experiment)" },
  { nil, "negative-prompt", arg = true, metavar = "TEMPLATE", help = "negative prompt template" },
  { nil, "concurrency", arg = true, metavar = "N", help = "jobs in flight (default 8)" },
  { nil, "json", help = "JSON events on stdout: one a finished job, then a summary (see the README)" },
  { nil, "dry-run", help = "print the plan (jobs, images, megapixels, cost) and send nothing" },
  { nil, "max-cost", arg = true, metavar = "DOLLARS", help = "refuse a plan whose new jobs cost more than this" },
  { nil, "partial", help = "with --max-cost: run the jobs that fit, in order, and skip the rest" },
  { nil, "price", arg = true, metavar = "DOLLARS[/UNIT]", help = "price per unit (image, megapixel, request); default: fal's pricing API, else the shipped table" },
}

local function split_var(flag, spec)
  local name, values = spec:match("^([%a_][%w_]*)=(.*)$")
  if not name then return nil, flag .. " expects NAME=VALUE,VALUE, got '" .. spec .. "'" end
  local list = {}
  for v in (values .. ","):gmatch("([^,]*),") do list[#list + 1] = v end  -- text, as typed
  return name, list
end

local function cmd_grid(argv)
  local id = endpoint_of(argv, GRID)
  if bad_endpoint(id) then return usage_error("grid: " .. bad_endpoint(id), "grid") end
  local m = schema.model(id)
  local spec_opts, mine = model_spec(GRID, m, { prompt = true, negative_prompt = true, seed = true })
  local o, pos = parse_command(argv, "grid", spec_opts,
    "grid [-m ENDPOINT] -p TEMPLATE --var NAME=A,B [...] " .. image_usage(m) .. " [--seeds 1,2] [-o DIR]"
    .. "\n\n" .. model_header(m), m)
  if not o then return pos end
  if #pos > 0 then return usage_error("grid: unexpected argument '" .. pos[1] .. "'", "grid") end
  if not o.prompt then return usage_error("grid: -p TEMPLATE is required", "grid") end
  local iok, ierr = require("editflow.cli").on_interrupt(o["on-interrupt"])
  if not iok then return usage_error("grid: " .. ierr, "grid") end
  local vars, zip = {}, {}
  local named = {}
  local function once(name, flag)
    if named[name] then return string.format("grid: the variable %s is given twice (%s and %s)", name, named[name], flag) end
    named[name] = flag
  end
  for _, kind in ipairs { { "var", vars }, { "zip", zip } } do
    local flag, into = "--" .. kind[1], kind[2]
    for _, spec in ipairs(o[kind[1]] or {}) do
      local name, list = split_var(flag, spec)
      if not name then return usage_error(list, "grid") end
      local twice = once(name, flag)
      if twice then return usage_error(twice, "grid") end
      into[name] = list
    end
  end
  for _, spec in ipairs(o["images-var"] or {}) do
    local name, glob = spec:match("^([%a_][%w_]*)=(.+)$")
    if not name then return usage_error("--images-var expects NAME=GLOB, got '" .. spec .. "'", "grid") end
    local twice = once(name, "--images-var")
    if twice then return usage_error(twice, "grid") end
    local ok, list = pcall(editflow.images, glob)
    if not ok then return invalid(tostring(list), o.json) end
    vars[name] = list
  end
  local seeds
  if o.seeds then
    seeds = {}
    for v in o.seeds:gmatch("[^,]+") do
      local n = math.tointeger(tonumber(v))
      if not n or n < 0 then return usage_error("--seeds expects integers >= 0, got '" .. v .. "'", "grid") end
      seeds[#seeds + 1] = n
    end
  end
  local function num(flag)
    local v = o[flag]
    if v == nil then return nil end
    return tonumber(v) or v
  end
  local max_cost, price = num("max-cost"), num("price")
  if max_cost ~= nil and type(max_cost) ~= "number" then return usage_error("--max-cost expects dollars", "grid") end
  if price ~= nil then
    local pok, perr = pcall(pricing.given, m.endpoint, price)
    if not pok then return usage_error("--price: " .. tostring(perr), "grid") end
  end
  local concurrency = num("concurrency")
  if concurrency ~= nil and not math.tointeger(concurrency) then return usage_error("--concurrency expects an integer", "grid") end
  local client, cerr, code = make_client(o)
  if not client then return fail_client(cerr, code, "grid") end
  client.on_status, client.on_log = nil, nil
  local iok, params = pcall(edit_input, { set = o.set }, m, mine)
  if not iok then return invalid(tostring(params), o.json) end
  for k, v in pairs(fields.values(o, mine)) do params[k] = v end
  params.prompt = nil
  local spec = { name = o.name, dir = o.output or "editflow-output", prompt = o.prompt, negative_prompt = o["negative-prompt"],
    vars = vars, zip = zip, images = o.image, params = params, seeds = seeds, client = client,
    concurrency = concurrency, dry_run = o["dry-run"], max_cost = max_cost, price = price,
    partial = o.partial }
  local experiment = require "editflow.experiment"
  local submits = 0
  local unsubscribe = require("editflow.events").subscribe(function(name, _, rec)
    if name == "submitted" then submits = submits + 1 end
    if name == "recorded" and o.json then  -- one job event a job, once its images are saved
      local e = rec.error
      local paths = {}
      for i, f in ipairs(rec.outputs or {}) do paths[i] = spec.dir:gsub("/$", "") .. "/" .. f.path end
      out(json.encode { event = "job", request_id = rec.request_id, ok = rec.status == "done",
        state = rec.status, vars = rec.vars, seed = rec.seed, reused = rec.reused or nil,
        paths = rec.status == "done" and json.array(paths) or nil,
        error = e and { code = e.code, message = e.message, type = e.type } or nil }, "\n")
    end
  end)
  -- while it runs: the live line on a terminal, plain lines on a pipe, nothing with -q
  if not o["dry-run"] then
    -- (grid's JSON job events come from its manifest records, which have the paths, the
    -- variables and the seed: see below)
    progress.configure { display = o.quiet and "none" or "auto", tty = core.isatty(2), json_notices = o.json }
  end
  local ok, summary = pcall(experiment.run, spec)
  progress.finish()
  progress.configure { display = "none" }
  unsubscribe()
  if not ok then
    local msg = tostring(summary)
    local code = errors.code(summary)
    if code == "INTERRUPTED" then error(summary, 0) end
    if code == "BUDGET" or code == "LOCKED" or code == "FOLDER" then
      io.stderr:write("editflow: ", (msg:gsub("^.-:%d+: ", ""):gsub("^editflow: ", "")), "\n")
      return 1
    end
    -- Once something was sent, a failure is operational (1), never "invalid input" (2).
    if submits > 0 then io.stderr:write("editflow: ", errors.clean(msg:gsub("^.-:%d+: ", "")), "\n") return 1 end
    return invalid(msg, o.json)
  end
  if summary.dry_run then
    local plan = summary.plan
    if o.json then
      out(json.encode { event = "plan", jobs = summary.jobs, reused = summary.reused_planned,
        images = summary.images, megapixels = summary.megapixels, cost = plan.price and summary.cost or nil,
        approx = plan.approx or nil, price = plan.price, unpriced = plan.unpriced,
        over_budget = (max_cost and summary.cost > max_cost + 1e-9) or nil }, "\n")
      return (max_cost and summary.cost > max_cost + 1e-9) and 1 or 0
    end
    out(string.format("plan: %d jobs (%d reused from an earlier run), %d images, %.2f output megapixels, %s; nothing sent\n",
      summary.jobs, summary.reused_planned, summary.images, summary.megapixels,
      plan.price and string.format("estimated %s$%.4f at %s", plan.approx and "about " or "", summary.cost,
        pricing.describe(plan.price)) or ("not priced: " .. tostring(plan.unpriced))))
    if max_cost and summary.cost > max_cost + 1e-9 then
      out(string.format("over the budget: --max-cost $%.4f\n", max_cost))
      return 1
    end
    return 0
  end
  if o.json then
    out(json.encode { event = "summary", ok = summary.failed == 0 and summary.skipped == 0 and (summary.held or 0) == 0
        and (summary.cancelled or 0) == 0,
      done = summary.done, failed = summary.failed, reused = summary.reused, held = summary.held or 0,
      skipped = summary.skipped, cancelled = summary.cancelled, spent = summary.spent, manifest = summary.manifest,
      gallery = summary.gallery }, "\n")
  else
    out(summary.gallery, "\n")
  end
  for _, line in ipairs(summary.held_messages or {}) do say(false, "%s", errors.clean(line)) end
  say(o.quiet, "%d done (%d of them reused), %d failed, %d held back, %d skipped%s; about $%.4f spent; manifest %s",
    summary.done, summary.reused, summary.failed, summary.held or 0, summary.skipped,
    summary.cancelled and string.format(", %d cancelled at the queue when interrupted", summary.cancelled) or "",
    summary.spent, summary.manifest)
  return (summary.failed == 0 and summary.skipped == 0 and (summary.held or 0) == 0 and not summary.cancelled) and 0 or 1
end

return { SPEC = GRID, run = cmd_grid }
