-- test_compare.lua: experiments that compare prompts and models (issue 18): prompt templates
-- and models as axes, each job built in its own model's shape and checked by the sandbox
-- against that model's schema, each model priced in its own unit; a variable's value rendered
-- when it holds another; nothing unrendered, ambiguous or unfit ever sent.
local T = require "testlib"
local editflow = require "editflow"
local json = require "editflow.json"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local A = T.source_dir .. "/tests/fixtures/a.png"
local B = T.source_dir .. "/tests/fixtures/b.png"
local QWEN, NANO, KONTEXT = "fal-ai/qwen-image-edit-plus", "fal-ai/nano-banana/edit", "fal-ai/flux-pro/kontext"

local sb = T.sandbox { "--job-time", "0.01", "--workers", "8" }
-- nano-banana/edit ships no price: the sandbox's pricing API gives one, per image
sb.control { price = { endpoint_id = NANO, unit_price = 0.039, unit = "image" } }

local function client(extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key" }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function submits() return sb.stats().by_route.submit or 0 end

local function records(dir)
  local out = {}
  for line in (T.read(dir .. "/manifest.jsonl") or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end

local function spec(extra)
  local s = { name = "compare", client = client(), prompts = { "make the sky ${c}", "paint the sky ${c}, keep the rest" },
    models = { QWEN, NANO, KONTEXT }, vars = { c = { "red", "teal" } }, images = { A }, aspect = "16:9", seeds = { 7 },
    params = { num_images = 1, guidance_scale = 3 } }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

T.case("2 prompts x 3 models x 2 values: each body in its model's shape, each model priced in its unit", function()
  local d = T.tmpdir()
  local plan = editflow.experiment(spec { dir = d, dry_run = true }).plan
  T.eq(#plan.jobs, 12, "every combination on every model")
  local by = {}
  for _, e in ipairs(plan.models) do by[e.endpoint] = e end
  T.eq(by[QWEN].jobs + by[NANO].jobs + by[KONTEXT].jobs, 12, "four jobs a model")
  -- qwen: $0.03 a megapixel of landscape_16_9 (1024x576); Kontext $0.04 an image; nano's unit
  -- price from the pricing API
  T.eq(by[QWEN].price.unit, "megapixels", "qwen is priced per megapixel")
  T.ok(math.abs(by[QWEN].cost - 4 * 0.03 * 1024 * 576 / 1e6) < 1e-9, "qwen: 4 x $0.03 x 0.59 MP, got " .. by[QWEN].cost)
  T.ok(math.abs(by[KONTEXT].cost - 4 * 0.04) < 1e-9, "Kontext: 4 images at $0.04, got " .. by[KONTEXT].cost)
  T.ok(math.abs(by[NANO].cost - 4 * 0.039) < 1e-9, "nano: 4 images at the API's $0.039, got " .. by[NANO].cost)
  T.ok(math.abs(plan.cost - (by[QWEN].cost + by[NANO].cost + by[KONTEXT].cost)) < 1e-9, "the plan is their sum")
  T.eq(by[QWEN].gets, "image_size=landscape_16_9", "qwen gets the size name of that ratio")
  T.eq(by[NANO].gets, "aspect_ratio=16:9", "nano gets its aspect_ratio")
  T.eq(by[KONTEXT].gets, "aspect_ratio=16:9", "Kontext too")
  T.eq(submits(), 0, "a dry run sends nothing")

  local before = #sb.jobs()
  local s = editflow.experiment(spec { dir = d })
  T.eq(s.done, 12, "all done")
  local jobs = sb.jobs()
  T.eq(#jobs - before, 12, "twelve submits")
  local seen, prompts = {}, {}
  for _, j in ipairs(jobs) do
    local input = j.input
    seen[j.endpoint] = (seen[j.endpoint] or 0) + 1
    prompts[input.prompt] = true
    T.ok(not input.prompt:find("${", 1, true), "nothing unrendered: " .. input.prompt)
    if j.endpoint == QWEN then
      T.eq(type(input.image_urls), "table", "qwen: a list of images")
      T.eq(#input.image_urls, 1, "qwen: the one image")
      T.eq(input.image_size, "landscape_16_9", "qwen: image_size")
      T.eq(input.aspect_ratio, nil, "qwen: no aspect_ratio")
      T.eq(input.guidance_scale, 3, "qwen has guidance_scale: given")
    elseif j.endpoint == NANO then
      T.eq(#input.image_urls, 1, "nano: a list of images")
      T.eq(input.aspect_ratio, "16:9", "nano: aspect_ratio")
      T.eq(input.image_size, nil, "nano: no image_size")
      T.eq(input.guidance_scale, nil, "nano has no guidance_scale: not given")
    else
      T.eq(j.endpoint, KONTEXT, "only the three models")
      T.eq(type(input.image_url), "string", "Kontext: one image_url")
      T.eq(input.image_urls, nil, "Kontext: no list")
      T.eq(input.aspect_ratio, "16:9", "Kontext: aspect_ratio")
      T.eq(input.guidance_scale, 3, "Kontext has guidance_scale: given")
    end
    T.eq(input.num_images, 1, "num_images goes to every model that has it")
  end
  T.eq(seen[QWEN], 4, "4 on qwen")
  T.eq(seen[NANO], 4, "4 on nano")
  T.eq(seen[KONTEXT], 4, "4 on Kontext")
  for _, p in ipairs { "make the sky red", "make the sky teal", "paint the sky red, keep the rest", "paint the sky teal, keep the rest" } do
    T.ok(prompts[p], "sent: " .. p)
  end

  -- the manifest: the model, the prompt's name and template of every job, one file each
  local m = records(d)
  T.eq(#m, 12, "one record a job")
  local endpoint_of, files = {}, {}
  for _, j in ipairs(jobs) do endpoint_of[j.request_id] = j.endpoint end
  for _, r in ipairs(m) do
    T.eq(r.model, endpoint_of[r.request_id], "the record names the model its job ran on")
    T.ok(r.prompt_name == "p1" or r.prompt_name == "p2", "prompt_name p1 or p2")
    T.eq(r.template, r.prompt_name == "p1" and "make the sky ${c}" or "paint the sky ${c}, keep the rest", "the template")
    T.eq(r.run, s.run, "the run's id")
    T.ok(not files[r.outputs[1].path], "a file of its own: " .. r.outputs[1].path)
    files[r.outputs[1].path] = true
    T.ok(T.exists(d .. "/" .. r.outputs[1].path), "saved")
  end
  -- the report names what p1 and p2 stand for
  local rst, rtext = T.sh(T.quote(BIN) .. " report " .. T.quote(d))
  T.eq(rst, 0, "report")
  T.contains(rtext, "p2: paint the sky ${c}, keep the rest", "the report says which template p2 is")
  -- a re-run pays nothing: every job of every model reused
  local n = submits()
  T.eq(editflow.experiment(spec { dir = d }).reused, 12, "all reused")
  T.eq(submits(), n, "nothing sent again")
end)

T.case("named prompts: the names are the axis's values and in the file names", function()
  local d = T.tmpdir()
  local s = editflow.experiment(spec { dir = d, prompts = { warm = "warm ${c} light", cold = "cold ${c} light" },
    models = { QWEN, KONTEXT } })
  T.eq(s.done, 8, "2 x 2 x 2")
  local names = {}
  for _, r in ipairs(records(d)) do
    names[r.prompt_name] = true
    T.contains(r.outputs[1].path, "prompt-" .. r.prompt_name, "the file name says the prompt")
    T.contains(r.outputs[1].path, r.model == QWEN and "model-qwen-image-edit-plus" or "model-flux-pro-kontext", "and the model")
  end
  T.ok(names.warm and names.cold, "warm and cold")
end)

T.case("a variable's value holding ${other} is rendered; a cycle is refused, nothing sent", function()
  local d = T.tmpdir()
  local n = #sb.jobs()
  local s = editflow.experiment { dir = d, client = client(), prompt = "${tpl}", images = { A },
    vars = { tpl = { "a ${c} sky", "the ${c} sea" }, c = { "red" } } }
  T.eq(s.done, 2, "two jobs")
  local sent = {}
  for i, j in ipairs(sb.jobs()) do if i > n then sent[j.input.prompt] = true end end
  T.ok(sent["a red sky"] and sent["the red sea"], "rendered through the variable")
  local before = submits()
  T.raises(function()
    editflow.experiment { dir = T.tmpdir(), client = client(), prompt = "${a}", images = { A },
      vars = { a = { "x ${b}" }, b = { "y ${a}" } } }
  end, "cycle: a -> b -> a", "a cycle is named")
  T.raises(function()
    editflow.experiment { dir = T.tmpdir(), client = client(), prompt = "${a}", images = { A }, vars = { a = { "x ${zz}" } } }
  end, "missing variable 'zz'", "a variable a value names but nobody gives")
  T.eq(submits(), before, "nothing sent")
end)

T.case("what a model cannot take is refused before anything is sent, naming the model", function()
  local before = submits()
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), images = { A, B } }) end,
    KONTEXT .. " takes exactly one image (image_url), but the experiment gives 2", "two images on a one-image model")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), aspect = "5:4" }) end,
    KONTEXT .. ": no aspect_ratio fits the aspect 5:4", "an aspect Kontext does not list (nano has 5:4, qwen takes pixels)")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), params = { loras = {} } }) end,
    "loras is a field of none of the models", "a field none of them has")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), size = "1000x1000", aspect = "1:1" }) end,
    "aspect or size, not both", "one size option")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), vars = { model = { "x" } } }) end,
    "cannot be named 'model'", "a variable named like an axis")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), models = { QWEN, QWEN } }) end,
    "given twice", "a model twice")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), price = 0.05 }) end,
    "a table by endpoint", "one price for several models")
  local s = spec { dir = T.tmpdir(), models = { NANO, KONTEXT }, params = { aspect_ratio = "5:4" } }
  s.aspect = nil
  T.raises(function() editflow.experiment(s) end, "got '5:4' (for " .. KONTEXT .. ")",
    "a value one model refuses: the message names that model")
  T.eq(submits(), before, "nothing sent")
end)

T.case("size WxH: pixels where the model takes them, its ratio where it takes a ratio", function()
  local s = spec { dir = T.tmpdir(), size = "1920x1080", dry_run = true }
  s.aspect = nil
  local plan = editflow.experiment(s).plan
  local gets = {}
  for _, e in ipairs(plan.models) do gets[e.endpoint] = e.gets end
  T.eq(gets[QWEN], "image_size=1920x1080", "qwen: the pixels ({width, height})")
  T.eq(gets[NANO], "aspect_ratio=16:9", "nano: the ratio of 1920x1080")
  s = spec { dir = T.tmpdir(), models = { QWEN, NANO }, params = { image_size = "square_hd" }, dry_run = true }
  s.aspect = nil
  plan = editflow.experiment(s).plan
  T.eq(plan.models[1].gets, "image_size=square_hd", "qwen gets the image_size given")
  T.eq(plan.models[2].gets, "its default size", "nano has no image_size: its default, said")
  T.contains(plan.notes[1], NANO .. " keeps its default size", "and a note says so")
  plan = editflow.experiment(spec { dir = T.tmpdir(), aspect = "3:2", models = { QWEN, NANO }, dry_run = true }).plan
  T.eq(#plan.notes, 0, "no note when every model gets the size")
  T.eq(plan.models[1].gets, "image_size=1024x688", "no 3:2 size name: 1024 on the long side, a multiple of 16")
  T.eq(plan.models[2].gets, "aspect_ratio=3:2", "nano lists 3:2")
end)

-- The command line: -p and -m as axes, a variable holding a template, and prompts that would
-- reach a model unrendered refused.
local function editflow_cmd(args)
  return T.sh("env FAL_KEY=test-key EDITFLOW_API_URL=" .. sb.url .. " EDITFLOW_STORAGE_URL=" .. sb.url
    .. " " .. T.quote(BIN) .. " " .. args)
end

-- A grid against `box` (a sandbox) into d with ARGS, as a command line.
local function grid_cmd(box, d, args)
  return string.format("env FAL_KEY=test-key EDITFLOW_API_URL=%s EDITFLOW_STORAGE_URL=%s %s grid --base-url %s -o %s %s",
    box.url, box.url, T.quote(BIN), box.url, T.quote(d), args)
end

-- Starts a command in the background -> its PID.
local function start(cmd)
  local p = io.popen("sh -c " .. T.quote(cmd .. " >/dev/null 2>&1 & echo $!"))
  local pid = math.tointeger(tonumber(p:read("l")))
  p:close()
  T.ok(pid, "started")
  return pid
end

-- Waits (bounded: 60 s) until ready() is true.
local function wait_until(ready)
  for _ = 1, 600 do
    if ready() then return true end
    os.execute("sleep 0.1")
  end
  return ready()
end

-- Sends a signal to a PID and waits (bounded: 30 s) until it is gone.
local function stop_pid(pid, sig)
  os.execute("kill -" .. sig .. " " .. pid .. " 2>/dev/null")
  for _ = 1, 300 do
    if T.sh("kill -0 " .. pid .. " 2>/dev/null") ~= 0 then return end
    os.execute("sleep 0.1")
  end
end

T.case("grid: -p and -m several times, --aspect per model, the plan per model", function()
  local d = T.tmpdir()
  local st, out, err = editflow_cmd(string.format("grid --base-url %s -o %s -m %s -m %s -m %s -p 'sky ${c}' -p 'sea ${c}' "
    .. "--var c=red,teal -i %s --aspect 16:9 --guidance 3 --dry-run --json", sb.url, T.quote(d), QWEN, NANO, KONTEXT, T.quote(A)))
  T.eq(st, 0, "a plan: " .. tostring(err))
  local plan = json.decode(out)
  T.eq(plan.jobs, 12, "2 prompts x 2 values x 3 models")
  T.eq(plan.prompts, 2, "two prompts")
  T.eq(#plan.models, 3, "three models")
  T.eq(plan.models[3].gets, "aspect_ratio=16:9", "what Kontext gets")
  T.ok(math.abs(plan.models[3].cost - 0.16) < 1e-9, "Kontext's price")
  local _, help = editflow_cmd(string.format("grid -m %s -m %s --help", NANO, KONTEXT))
  T.contains(help, "[" .. KONTEXT .. " only]", "help says which models take an option not all of them have")
  T.ok(not help:match("%-%-num%-images[^\n]*only%]"), "and nothing on one they all have")
  local n = submits()
  st, out, err = editflow_cmd(string.format("grid --base-url %s -o %s -m %s -m %s -p '${tpl}' --var 'tpl=a ${c} sky,the ${c} sea' "
    .. "--var c=red -i %s -q", sb.url, T.quote(d), QWEN, NANO, T.quote(A)))
  T.eq(st, 0, "ran: " .. tostring(err))
  T.eq(submits() - n, 4, "2 templates x 2 models")
  for _, j in ipairs(sb.jobs()) do T.ok(not j.input.prompt:find("${", 1, true), "nothing unrendered: " .. j.input.prompt) end
end)

T.case("edit: a prompt that would reach the model unrendered is refused, exit 2, nothing sent; $$ is $", function()
  local n = submits()
  local st, _, err = editflow_cmd(string.format("edit --base-url %s -o %s -p 'make it ${color}' -i %s", sb.url, T.quote(T.tmpdir()), T.quote(A)))
  T.eq(st, 2, "refused")
  T.contains(err, "missing variable 'color'", "names the variable")
  T.contains(err, "$${", "and says how to write a literal ${")
  T.eq(submits(), n, "nothing sent")
  st, _, err = editflow_cmd(string.format("edit --base-url %s -o %s -p 'price tag $$5 ${x' -i %s -q", sb.url, T.quote(T.tmpdir()), T.quote(A)))
  T.eq(st, 2, "an unclosed ${ is refused too: " .. tostring(err))
  st, _, err = editflow_cmd(string.format("edit --base-url %s -o %s -p 'price tag $$5, $${x}' -i %s -q", sb.url, T.quote(T.tmpdir()), T.quote(A)))
  T.eq(st, 0, "sent: " .. tostring(err))
  local jobs = sb.jobs()
  T.eq(jobs[#jobs].input.prompt, "price tag $5, ${x}", "$$ is a literal $")
end)

local JUDGE = "fal-ai/any-llm/vision"
local function judge_submits() return (sb.stats().submits_by_endpoint or {})[JUDGE] or 0 end

T.case("the judge: each output scored once, read strictly, priced in the plan, never twice on a re-run", function()
  local d = T.tmpdir()
  local function judged()
    return spec { dir = d, models = { QWEN, KONTEXT }, judge = { endpoint = JUDGE },
      prompts = { good = "make the sky ${c} [judge-score:7]", odd = "make the sea ${c} [judge:unreadable]" } }
  end
  local plan = editflow.experiment((function() local s = judged() s.dry_run = true return s end)()).plan
  T.eq(plan.judge.calls, 8, "one judge call an output: 2 prompts x 2 values x 2 models")
  T.ok(math.abs(plan.judge.cost - 8 * 0.001) < 1e-12, "priced at the sandbox's $0.001 a call: " .. plan.judge.cost)
  T.ok(math.abs(plan.cost - (plan.models[1].cost + plan.models[2].cost + plan.judge.cost)) < 1e-9, "in the plan's cost")
  local before, edits = judge_submits(), submits()
  local s = editflow.experiment(judged())
  T.eq(s.done, 8, "all edits done")
  T.eq(judge_submits() - before, 8, "judge submits = outputs")
  T.eq(submits() - edits, 16, "8 edits and 8 judge calls in all")
  local scored, unreadable = 0, 0
  for _, r in ipairs(records(d)) do
    T.eq(r.judge.endpoint, JUDGE, "the judge's endpoint in the record")
    T.ok(type(r.judge.request_id) == "string", "the judge's request id")
    if r.prompt_name == "good" then
      T.eq(r.judge.score, 7, "the score as the judge gave it")
      T.eq(r.judge.error, nil, "no error")
      scored = scored + 1
    else
      T.eq(r.judge.score, nil, "an unreadable answer is no score, never a guess")
      T.eq(r.judge.error.code, "JUDGE_UNREADABLE", "but a recorded judge error")
      T.ok(#r.judge.text > 0, "with the answer kept")
      unreadable = unreadable + 1
    end
  end
  T.eq(scored, 4, "four scored")
  T.eq(unreadable, 4, "four unreadable, none of them a crash")
  local again = editflow.experiment(judged())
  T.eq(again.reused, 8, "the edits reused")
  T.eq(judge_submits() - before, 8, "and no output judged twice")
  local bad = judged()
  bad.judge = { endpoint = JUDGE, model = "no/such-model" }
  local n = submits()
  T.raises(function() editflow.experiment(bad) end, "judge " .. JUDGE, "a judge input its model refuses: before any edit")
  T.eq(submits(), n, "nothing sent")
  local replan = judged()
  replan.dry_run = true
  T.eq(editflow.experiment(replan).plan.judge.calls, 0, "a re-run's plan has no judge call to pay for")
end)

-- A grid with a judge, killed (SIGKILL) while it runs, then run again to its end: every output
-- judged exactly once, every edit sent once, whenever the kill landed.
T.case("the judge after a kill and a re-run: judge submits = outputs, none twice", function()
  local slow = T.sandbox { "--job-time", "0.4", "--workers", "4" }
  local d = T.tmpdir()
  local function count(endpoint) return (slow.stats().submits_by_endpoint or {})[endpoint] or 0 end
  local cmd = grid_cmd(slow, d, string.format("-m %s -m %s -p 'sky ${c}' --var c=red,teal,blue --seeds 1 -i %s "
    .. "--judge %s --concurrency 2 -q", QWEN, KONTEXT, T.quote(A), JUDGE))
  local pid = start(cmd)
  T.ok(wait_until(function() return count(JUDGE) >= 1 end), "a judge call was sent before the kill")
  stop_pid(pid, "9")
  -- the killed run wrote no manifest: whatever its edits, none of its outputs counts as judged
  local pst, pout = T.sh(cmd .. " --dry-run --json")
  T.eq(pst, 0, "the re-run's plan")
  local planned = json.decode(pout).judge.calls
  local judged_before = count(JUDGE)
  T.ok(planned <= 6 - judged_before, "no judge call already sent is planned again")
  local st, _, err = T.sh(cmd)
  T.eq(st, 0, "the re-run ends well: " .. tostring(err))
  T.eq(count(JUDGE) - judged_before, planned, "the plan counted exactly the judge calls the re-run made")
  T.eq(count(QWEN) + count(KONTEXT), 6, "each edit sent once")
  T.eq(count(JUDGE), 6, "each output judged once")
  slow.stop()
end)

T.case("a misspelled spec field, or equal bodies from an unused variable with seeds, is refused before anything is sent", function()
  local before = submits()
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), dryrun = true }) end,
    "unknown field 'dryrun'", "dryrun is not dry_run: refused, not ignored (its jobs would be paid)")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), max_cots = 0.01 }) end,
    "unknown field 'max_cots'", "nor a budget spelled wrong")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), vars = { c = { "red" }, rep = { "1", "2" } } }) end,
    "the same body", "with seeds, an unused variable's values would repeat the same image")
  -- but a variable that only labels (a zip partner), or has one value, is no repeat
  local ok = pcall(editflow.experiment, spec { dir = T.tmpdir(), models = { QWEN }, dry_run = true,
    vars = { c = { "red" }, note = { "one" } } })
  T.ok(ok, "a one-value variable no template uses is fine")
  T.eq(submits(), before, "nothing sent")
  -- (without seeds equal bodies are samples, each a new image: allowed, see test_experiment)
end)

T.case("a prompt keeps its name from run to run in a folder; a new one gets a new name", function()
  local d = T.tmpdir()
  local function names(prompts)
    local s = spec { dir = d, models = { QWEN }, vars = { c = { "red" } }, prompts = prompts }
    s.aspect = nil
    editflow.experiment(s)
    local by = {}
    for _, r in ipairs(records(d)) do by[r.template] = by[r.template] or {} by[r.template][r.prompt_name] = true end
    return by
  end
  names { "first ${c}", "second ${c}" }
  local by = names { "third ${c}", "second ${c}" }
  T.ok(by["first ${c}"].p1, "first: p1")
  local second = {}
  for name in pairs(by["second ${c}"]) do second[#second + 1] = name end
  T.eq(table.concat(second, ","), "p2", "second keeps p2 in both runs (in the second a new prompt comes before it)")
  T.ok(by["third ${c}"].p3, "third: p3, a name no earlier template had")
end)

T.case("a job the server failed (5xx) costs the run nothing; the others their price", function()
  local d = T.tmpdir()
  local s = spec { dir = d, models = { KONTEXT }, prompts = { "sky ${c}", "sky ${c} [fail:500]" } }
  local r = editflow.experiment(s)
  T.eq(r.done, 2, "two done")
  T.eq(r.failed, 2, "two failed by the server")
  T.ok(math.abs(r.spent - 2 * 0.04) < 1e-9, "spent: the two done at $0.04, got " .. r.spent)
  for _, rec in ipairs(records(d)) do
    T.eq(rec.cost, 0.04, "every job's price is recorded")
    T.eq(rec.cost_estimate, rec.status == "done" and 0.04 or 0, "what this run spent on it: " .. tostring(rec.status))
  end
end)

-- Ctrl-C while jobs run: the manifest keeps the request id of every job sent, and a job never
-- sent costs the run nothing.
T.case("an interrupted grid: request ids of the jobs sent kept, jobs not sent cost nothing", function()
  local slow = T.sandbox { "--job-time", "30", "--workers", "2" }
  local d = T.tmpdir()
  local pid = start(grid_cmd(slow, d, string.format("-m %s -p 'sky ${c}' --var c=red,teal,blue,grey --seeds 1,2 -i %s "
    .. "--concurrency 2 -q", KONTEXT, T.quote(A))))
  wait_until(function() return #slow.jobs() >= 2 end)
  T.eq(#slow.jobs(), 2, "two jobs in flight")
  stop_pid(pid, "INT")
  local sent = {}
  for _, j in ipairs(slow.jobs()) do sent[j.request_id] = true end
  local with_id, spent = 0, 0
  local m = records(d)
  T.eq(#m, 8, "every job has its record")
  for _, r in ipairs(m) do
    if r.request_id then
      with_id = with_id + 1
      T.ok(sent[r.request_id], "a request id the queue gave")
      T.eq(r.cost_estimate, 0.04, "a job sent: its price")
    else
      T.eq(r.cost_estimate, 0, "a job never sent costs the run nothing")
    end
    spent = spent + r.cost_estimate
  end
  T.eq(with_id, 2, "both jobs in flight keep their request id")
  local st, out = T.sh(T.quote(BIN) .. " report --json " .. T.quote(d))
  T.eq(st, 0, "report")
  T.ok(math.abs(json.decode(out).total.spent - spent) < 1e-9, "report's spent: the jobs sent")
  slow.stop()
end)

T.case("a model with no price: its cost is unknown ('?'), never $0, and it does not sort as the cheapest", function()
  local SEEDREAM = "fal-ai/bytedance/seedream/v4/edit"  -- no price shipped, none from the sandbox's API
  local d = T.tmpdir()
  local s = spec { dir = d, models = { KONTEXT, SEEDREAM } }
  local r = editflow.experiment(s)
  T.eq(r.done, 8, "all done")
  local rep = editflow.report(d)
  T.eq(rep.by.model[1].value, KONTEXT, "the priced model first (costs otherwise equal)")
  T.eq(rep.by.model[2].value, SEEDREAM, "the unpriced one after it")
  T.eq(rep.by.model[2].unpriced, 4, "its four jobs are counted unpriced")
  local st, text = T.sh(T.quote(BIN) .. " report " .. T.quote(d))
  T.eq(st, 0, "report")
  T.ok(text:match(SEEDREAM:gsub("%p", "%%%0") .. "%s+4%s+4%s+0%s+%?"), "the table shows '?' as its cost:\n" .. text)
  T.contains(text, "of a model with no price", "and says why")
  -- the judge priced from the command line
  local _, out = editflow_cmd(string.format("grid --base-url %s -o %s -m %s -p 'sky ${c}' --var c=red -i %s --judge %s "
    .. "--price %s=0.002/request --dry-run --json", sb.url, T.quote(T.tmpdir()), KONTEXT, T.quote(A), JUDGE, JUDGE))
  T.eq(json.decode(out).judge.unit_cost, 0.002, "--price JUDGE=... prices the judge's calls")
end)

T.case("more refusals before anything is sent: equal bodies with a seed, an image model as judge, --set beside its option", function()
  local before = submits()
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), prompts = { "sky ${c} $$", "sky ${c} $" } }) end,
    "the same body", "two templates that render alike, with a seed: the same image paid twice")
  T.raises(function() editflow.experiment(spec { dir = T.tmpdir(), judge = KONTEXT }) end,
    "looks like an image model", "an edit model as the judge would pay an edit per output and never score")
  local _, _, err = editflow_cmd(string.format("grid --base-url %s -o %s -m %s -p 'sky ${c}' --var c=red -i %s "
    .. "--set num_images=2 --num-images 3 --dry-run", sb.url, T.quote(T.tmpdir()), QWEN, T.quote(A)))
  T.contains(err, "num_images is given twice", "grid: --set and the field's own option")
  _, _, err = editflow_cmd(string.format("grid --base-url %s -o %s -m %s -p 'sky ${c}' --var c=red -i %s "
    .. "--set seed=5 --seeds 1,2 --dry-run", sb.url, T.quote(T.tmpdir()), QWEN, T.quote(A)))
  T.contains(err, "seed is the experiment's own (--seeds)", "grid: --set seed")
  _, _, err = editflow_cmd(string.format("grid --base-url %s -o %s -m fal-ai/nano-banan/edit -p 'sky ${c}' --var c=red -i %s "
    .. "--dry-run --price 0.01/image", sb.url, T.quote(T.tmpdir()), T.quote(A)))
  T.contains(err, "Did you mean 'fal-ai/nano-banana/edit'?", "a misspelt model id: the close one named")
  T.eq(submits(), before, "nothing sent")
  -- the judge given as its endpoint id alone
  local plan = editflow.experiment(spec { dir = T.tmpdir(), models = { KONTEXT }, judge = JUDGE, dry_run = true }).plan
  T.eq(plan.judge.endpoint, JUDGE, "judge = 'ENDPOINT' works as { endpoint = ... }")
end)

T.case("a model with both image_size and aspect_ratio gets its aspect_ratio when no image_size fits", function()
  local model = require "editflow.model"
  local shape = require "editflow.experiment.shape"
  local doc = { openapi = "3.0.4", components = { schemas = { In = { type = "object", properties = {
    prompt = { type = "string" }, image_urls = { type = "array", items = { type = "string" } },
    image_size = { type = "string", enum = { "square_hd", "auto" } },
    aspect_ratio = { type = "string", enum = { "16:9", "1:1" } } }, required = { "prompt" } } } },
    paths = { ["/x/both"] = { post = { requestBody = { content = { ["application/json"] = {
      schema = { ["$ref"] = "#/components/schemas/In" } } } } } } } }
  local m = model.compile(doc, "x/both", "test")
  local f, v = shape.size_for(m, shape.size_request { aspect = "16:9" })
  T.eq(f, "aspect_ratio", "the field that fits")
  T.eq(v, "16:9", "its value")
  f, v = shape.size_for(m, shape.size_request { aspect = "1:1" })
  T.eq(f, "image_size", "image_size first when it fits")
  T.eq(v, "square_hd", "square_hd")
  f, v = shape.size_for(m, shape.size_request { aspect = "4:3" })
  T.eq(f, nil, "neither fits")
  T.contains(v, "no image_size has the aspect 4:3", "both named")
  T.contains(v, "no aspect_ratio fits the aspect 4:3", "both named")
end)

T.case("two models whose labels read alike keep files of their own", function()
  local d = T.tmpdir()
  local s = spec { dir = d, models = { "fal-ai/x/y", "fal-ai/x-y" }, prompts = { "sky ${c}" }, params = {} }
  s.aspect = nil
  s.price = { ["fal-ai/x/y"] = "0.01/image", ["fal-ai/x-y"] = "0.01/image" }
  local plan = editflow.experiment((function() s.dry_run = true return s end)()).plan
  local slugs = {}
  for _, j in ipairs(plan.jobs) do
    T.ok(not slugs[j.slug], "a slug of its own: " .. j.slug)
    slugs[j.slug] = true
  end
end)

T.case("the budget covers the judge: reused edits judged only while max_cost allows", function()
  local d = T.tmpdir()
  local s = spec { dir = d, models = { KONTEXT }, prompts = { "sky ${c}" } }
  T.eq(editflow.experiment(s).done, 2, "two edits, no judge")
  local before = judge_submits()
  s = spec { dir = d, models = { KONTEXT }, prompts = { "sky ${c}" }, judge = JUDGE, max_cost = 0.0015, partial = true }
  local dry = spec { dir = d, models = { KONTEXT }, prompts = { "sky ${c}" }, judge = JUDGE, dry_run = true }
  T.eq(editflow.experiment(dry).plan.judge.calls, 2, "the reused edits were never judged: two calls planned")
  local r = editflow.experiment(s)
  T.eq(r.reused, 2, "the edits reused")
  T.eq(judge_submits() - before, 1, "one judge call fits $0.0015 at $0.001, the second would pass it")
  local budget = 0
  for _, rec in ipairs(records(d)) do
    if rec.run == r.run and rec.judge and rec.judge.error and rec.judge.error.code == "BUDGET" then budget = budget + 1 end
  end
  T.eq(budget, 1, "the other is recorded not judged, for the budget")
  -- a budget smaller than one call: the judged output's answer is collected all the same (its
  -- call is in the journal: it costs nothing), the other is not judged
  local tight = spec { dir = d, models = { KONTEXT }, prompts = { "sky ${c}" }, judge = JUDGE, max_cost = 0.0005, partial = true }
  local t = editflow.experiment(tight)
  T.eq(judge_submits() - before, 1, "nothing new sent")
  local kept, skipped = 0, 0
  for _, rec in ipairs(records(d)) do
    if rec.run == t.run then
      if rec.judge and rec.judge.score then kept = kept + 1 end
      if rec.judge and rec.judge.error and rec.judge.error.code == "BUDGET" then skipped = skipped + 1 end
    end
  end
  T.eq(kept, 1, "the answer already paid for is collected, not dropped for the budget")
  T.eq(skipped, 1, "the other would cost: not judged")
  -- again with the first budget: the other fits now
  local again = editflow.experiment(s)
  T.eq(judge_submits() - before, 2, "the one not judged is judged now, the judged one not again")
  for _, rec in ipairs(records(d)) do
    if rec.run == again.run then T.ok(rec.judge and rec.judge.error == nil, "both judged in the third run") end
  end
end)

T.case("negative_prompt goes to the models that take it; -i beside --set image_urls is refused", function()
  local s = spec { dir = T.tmpdir(), models = { QWEN, NANO }, negative_prompt = "blurry ${c}", dry_run = true }
  local plan = editflow.experiment(s).plan
  for _, j in ipairs(plan.jobs) do
    if j.model == QWEN then T.eq(j.input.negative_prompt, "blurry " .. j.vars.c, "qwen takes it")
    else T.eq(j.input.negative_prompt, nil, "nano has no negative_prompt: not given") end
  end
  local _, _, err = editflow_cmd(string.format("grid --base-url %s -o %s -m %s -p 'sky ${c}' --var c=red -i %s "
    .. "--set 'image_urls=[\"https://example.com/a.png\"]' --dry-run", sb.url, T.quote(T.tmpdir()), QWEN, T.quote(A)))
  T.contains(err, "image_urls is given twice (images, and params.image_urls / --set image_urls)", "-i and --set of the image field")
end)

-- --on-interrupt finish: the running job is finished and saved, the queued one cancelled at the
-- queue, where it never ran: it costs nothing.
T.case("an interrupt that cancels a queued job: that job costs the run nothing", function()
  local slow = T.sandbox { "--job-time", "3", "--workers", "1" }
  local d = T.tmpdir()
  local pid = start(grid_cmd(slow, d, string.format("-m %s -p 'sky ${c}' --var c=red,teal --seeds 1 -i %s "
    .. "--concurrency 2 --on-interrupt finish -q", KONTEXT, T.quote(A))))
  -- until one job runs and one waits in the queue
  wait_until(function()
    local running, queued = 0, 0
    for _, j in ipairs(slow.jobs()) do
      if j.status == "IN_PROGRESS" then running = running + 1 elseif j.status == "IN_QUEUE" then queued = queued + 1 end
    end
    return running == 1 and queued == 1
  end)
  stop_pid(pid, "INT")
  local done, cancelled = 0, 0
  for _, r in ipairs(records(d)) do
    if r.status == "done" then
      done = done + 1
      T.eq(r.cost_estimate, 0.04, "the finished job: its price")
    elseif r.interrupted then
      cancelled = cancelled + 1
      T.ok(r.request_id, "the cancelled job's request id kept")
      T.eq(r.cost_estimate, 0, "the job cancelled in the queue costs nothing")
    end
  end
  T.eq(done, 1, "one finished")
  T.eq(cancelled, 1, "one cancelled at the queue")
  slow.stop()
end)

T.run()
