-- editflow.cli: the host's one-shot commands (edit, status, result, cancel), --help, --version.
-- `editflow run SCRIPT` is handled by the host itself, as `lua SCRIPT` would be.
-- Contract: data on stdout (saved paths, JSON), progress and errors on stderr; exit 0 when
-- everything asked for was done, 1 on an operational failure (network, server, failed job,
-- a file that could not be written), 2 on a usage error or invalid input (nothing was sent).
local editflow = require "editflow"
local args = require "editflow.cli.args"
local json = require "editflow.json"
local progress = require "editflow.cli.progress"
local core = require "editflow.core"
local errors = require "editflow.errors"

local M = {}

local COMMON = {
  { nil, "endpoint", arg = true, metavar = "ID", help = "model endpoint (default fal-ai/qwen-image-edit-plus, or $EDITFLOW_ENDPOINT)" },
  { nil, "base-url", arg = true, metavar = "URL", help = "queue base URL (default https://queue.fal.run, or $EDITFLOW_BASE_URL)" },
  { nil, "auth", arg = true, metavar = "key|bearer", help = "credential scheme (default key, or $EDITFLOW_AUTH)" },
  { nil, "timeout", arg = true, metavar = "SECONDS", help = "bound each job (submit to saved images) and cancel it at expiry (default 3600)" },
  { nil, "resubmit-unknown", help = "send again jobs whose earlier submit may have reached the queue (its answer was lost): may pay twice" },
  { "q", "quiet", help = "no progress on stderr" },
  { "v", "verbose", help = "trace every HTTP call on stderr (never the credential)" },
  { "h", "help", help = "show this help" },
}

local function with_common(spec)
  for _, o in ipairs(COMMON) do spec[#spec + 1] = o end
  return spec
end

local EDIT = with_common {
  { "p", "prompt", arg = true, metavar = "TEXT", help = "what to do to the images (required)" },
  { "i", "image", arg = true, multi = true, metavar = "IMAGE", help = "input image: URL or local file; 1 to 3 times (required)" },
  { "o", "output", arg = true, metavar = "DIR", help = "folder for the results (default editflow-output)" },
  { "n", "num-images", arg = true, metavar = "N", help = "images to generate, 1..4 (default 1)" },
  { "s", "image-size", arg = true, metavar = "SIZE", help = "square_hd, square, portrait_4_3, portrait_16_9, landscape_4_3, landscape_16_9, or WxH" },
  { nil, "steps", arg = true, metavar = "N", help = "num_inference_steps, 2..100 (default 50)" },
  { "g", "guidance", arg = true, metavar = "X", help = "guidance_scale, 0..20 (default 4)" },
  { nil, "seed", arg = true, metavar = "N", help = "seed, for repeatable results" },
  { nil, "negative-prompt", arg = true, metavar = "TEXT", help = "what to avoid" },
  { "f", "format", arg = true, metavar = "png|jpeg", help = "output format (default png)" },
  { nil, "acceleration", arg = true, metavar = "none|regular", help = "speed/quality trade-off (default regular)" },
  { nil, "no-safety-checker", help = "send enable_safety_checker=false" },
  { nil, "sync", help = "sync_mode: images come back inline as data: URIs" },
  { nil, "name", arg = true, metavar = "STEM", help = "file name stem for the results (default: the request id)" },
  { nil, "json", help = "print one JSON object (request_id, ok, paths or error) instead of the paths" },
  { nil, "no-journal", help = "do not read or write the journal in the output folder (always submit)" },
}

-- grid takes every edit option except the single-job ones, plus the experiment's own.
local GRID = with_common {
  { "p", "prompt", arg = true, metavar = "TEMPLATE", help = "prompt template with ${name} variables ($$ for a literal $) (required)" },
  { "i", "image", arg = true, multi = true, metavar = "IMAGE", help = "input image, URL or path; may use ${name} (1 to 3 times)" },
  { nil, "var", arg = true, multi = true, metavar = "NAME=A,B", help = "a variable and its values; several --var form a grid (every combination)" },
  { nil, "zip", arg = true, multi = true, metavar = "NAME=A,B", help = "variables that go together, value by value (equal lengths)" },
  { nil, "images-var", arg = true, multi = true, metavar = "NAME=GLOB", help = "a variable over image files: a folder, a file or a glob" },
  { nil, "seeds", arg = true, metavar = "N,N,...", help = "run every combination with each seed" },
  { "o", "output", arg = true, metavar = "DIR", help = "parent folder of the experiment folder (default experiments)" },
  { nil, "name", arg = true, metavar = "NAME", help = "experiment name = its folder (default: experiment)" },
  { nil, "negative-prompt", arg = true, metavar = "TEMPLATE", help = "negative prompt template" },
  { "n", "num-images", arg = true, metavar = "N", help = "images per job, 1..4" },
  { "s", "image-size", arg = true, metavar = "SIZE", help = "a size name or WxH" },
  { nil, "steps", arg = true, metavar = "N", help = "num_inference_steps" },
  { "g", "guidance", arg = true, metavar = "X", help = "guidance_scale" },
  { "f", "format", arg = true, metavar = "png|jpeg", help = "output format" },
  { nil, "acceleration", arg = true, metavar = "none|regular", help = "acceleration" },
  { nil, "no-safety-checker", help = "send enable_safety_checker=false" },
  { nil, "concurrency", arg = true, metavar = "N", help = "jobs in flight (default 8)" },
  { nil, "dry-run", help = "print the plan (jobs, images, megapixels, cost) and send nothing" },
  { nil, "max-cost", arg = true, metavar = "DOLLARS", help = "refuse a plan whose new jobs cost more than this" },
  { nil, "partial", help = "with --max-cost: run the jobs that fit, in order, and skip the rest" },
  { nil, "price", arg = true, metavar = "DOLLARS", help = "price per output megapixel (default: the endpoint's, $0.03)" },
}

local ONE_ID = with_common {
  { "o", "output", arg = true, metavar = "DIR", help = "(result) also save the images into DIR and print their paths" },
  { nil, "no-logs", help = "(status) do not ask for the job's logs" },
}

-- Which flag sets each model field, to point error messages at what the user typed.
local FLAG_OF = {
  prompt = "-p", image_urls = "-i", num_images = "--num-images", image_size = "--image-size",
  num_inference_steps = "--steps", guidance_scale = "--guidance", seed = "--seed",
  negative_prompt = "--negative-prompt", output_format = "--format", acceleration = "--acceleration",
}

local USAGE = [[
usage: editflow COMMAND [OPTIONS]

commands:
  edit -p PROMPT -i IMAGE [-i IMAGE ...] [-o DIR]   edit images; prints each saved file's path
  grid -p 'a ${animal} in ${style}' --var animal=cat,dog --var style=oil,ink -i IMAGE
       [--seeds 1,2] [-o DIR] [--dry-run] [--max-cost DOLLARS]
                                                    a prompt experiment: every combination x seed,
                                                    images + manifest.jsonl + index.html
  status REQUEST_ID                                 print a job's status as JSON
  result REQUEST_ID [-o DIR]                        print a job's result as JSON (and save its images)
  cancel REQUEST_ID                                 ask the queue to cancel a job
  run [-q] [--json] [--progress MODE] SCRIPT [ARGS...]
                                                    run a Lua script with editflow available;
                                                    progress on stderr (live on a terminal,
                                                    plain lines otherwise), --json: one object
                                                    per finished job on stdout
  --help, --version

configuration (environment):
  FAL_KEY             the credential (never printed); FAL_KEY_ID + FAL_KEY_SECRET also work
  EDITFLOW_BASE_URL   queue base URL, default https://queue.fal.run (a proxy: its base URL)
  EDITFLOW_AUTH       key (fal: "Authorization: Key ...") or bearer (proxies: "Bearer ...")
  EDITFLOW_ENDPOINT   model endpoint, default fal-ai/qwen-image-edit-plus

exit status: 0 done, 1 failed (network, server, job, files), 2 usage or invalid input,
  128 + the signal after SIGINT (130), SIGTERM (143) or SIGHUP (129): jobs in flight are
  cancelled at the queue first.
A job accepted by the queue is never sent again: a re-run in the same -o folder reuses what
is done, follows what was accepted, and holds back a submit whose answer was lost (see
--resubmit-unknown).
'editflow COMMAND --help' lists a command's options.
]]

local function say(quiet, fmt, ...)
  if not quiet then io.stderr:write("editflow: ", string.format(fmt, ...), "\n") end
end

local function usage_error(msg, cmd)
  io.stderr:write("editflow: ", msg, "\n")
  io.stderr:write("Try 'editflow ", cmd and (cmd .. " ") or "", "--help'.\n")
  return 2
end

local function make_client(o, journal_dir)
  local quiet = o.quiet
  local last = {}
  local ok, client = pcall(editflow.client, {
    endpoint = o.endpoint, base_url = o["base-url"], auth = o.auth, verbose = o.verbose or nil,
    journal = journal_dir, job_timeout = o.timeout, resubmit_unknown = o["resubmit-unknown"] or nil,
    on_status = function(job, st)
      local shown = st.status .. tostring(st.queue_position)
      if last[job] ~= shown then
        last[job] = shown
        if st.status == "IN_QUEUE" and st.queue_position then
          say(quiet, "%s queued, position %s", job.request_id, tostring(st.queue_position))
        else
          say(quiet, "%s %s", job.request_id, errors.clean(st.status:lower():gsub("_", " "), 100))
        end
      end
    end,
    on_log = function(job, entry)
      say(quiet, "%s log: %s", job.request_id, errors.clean(tostring(entry.message)))
    end,
  })
  if not ok then
    local msg = tostring(client):gsub("^editflow%.client: ", ""):gsub("^editflow: ", "")
    -- A folder in use or not writable is not a usage mistake: exit 1, no "Try --help".
    if msg:find("is in use by another editflow run", 1, true) or msg:find("cannot use the folder", 1, true)
        or msg:find("cannot lock the folder", 1, true) then
      return nil, msg, 1
    end
    return nil, msg
  end
  return client
end

local function fail_client(msg, code, cmd)
  if code then
    io.stderr:write("editflow: ", msg, "\n")
    return code
  end
  return usage_error(msg, cmd)
end

local function number_or_text(s)
  if s == nil then return nil end
  return tonumber(s) or s
end

local function edit_input(o)
  local size = o["image-size"]
  if size then
    local w, h = size:match("^(%d+)[xX](%d+)$")
    if w then size = { width = tonumber(w), height = tonumber(h) } end
  end
  return {
    prompt = o.prompt, image_urls = o.image, image_size = size,
    num_images = number_or_text(o["num-images"]),
    num_inference_steps = number_or_text(o.steps), guidance_scale = number_or_text(o.guidance),
    seed = number_or_text(o.seed), negative_prompt = o["negative-prompt"],
    output_format = o.format, acceleration = o.acceleration,
    enable_safety_checker = o["no-safety-checker"] and false or nil,
    sync_mode = o.sync or nil,
  }
end

local function invalid(msg)
  local field = msg:match("^([%w_]+)")
  local flag = field and FLAG_OF[field]
  io.stderr:write("editflow: invalid input: ", msg, flag and (" (option " .. flag .. ")") or "", "\n")
  return 2
end

-- The opening every command shares: parse its options, answer --help, check --timeout.
-- -> options, positionals; or nil, the exit status to return at once.
local function parse_command(argv, cmd, spec, usage)
  local o, pos = args.parse(argv, 2, spec)
  if not o then return nil, usage_error(pos, cmd) end
  if o.help then
    io.stdout:write("usage: editflow ", usage, "\n\n", args.help(spec), "\n")
    return nil, 0
  end
  if o.timeout then
    local t = tonumber(o.timeout)
    if not (t and t > 0) then
      return nil, usage_error("--timeout must be a positive number of seconds, got '" .. o.timeout .. "'", cmd)
    end
    o.timeout = t
  end
  return o, pos
end

local function cmd_edit(argv)
  local o, pos = parse_command(argv, "edit", EDIT, "edit -p PROMPT -i IMAGE [-i IMAGE ...] [OPTIONS]")
  if not o then return pos end
  if #pos > 0 then return usage_error("edit: unexpected argument '" .. pos[1] .. "'", "edit") end
  if not o.prompt then return usage_error("edit: -p PROMPT is required", "edit") end
  if not o.image then return usage_error("edit: at least one -i IMAGE is required", "edit") end
  local timeout = o.timeout
  local outdir = o.output or "editflow-output"
  local client, cerr, code = make_client(o, not o["no-journal"] and outdir or nil)
  if not client then return fail_client(cerr, code, "edit") end

  -- Only validation runs under pcall: an error raised once sending has begun (an interrupt,
  -- say) must not be reported as "invalid input, nothing sent".
  local ok, body = pcall(client.prepare, client, edit_input(o))
  if not ok then return invalid(tostring(body)) end
  -- A journal that cannot be written before the submit stops it (nothing sent): an error
  -- like any other, not a traceback.
  local sent, job, err = pcall(client.send, client, body)
  if not sent then
    if tostring(job):find("interrupted", 1, true) then error(job, 0) end
    job, err = nil, errors.new("NOT_SENT", tostring(job))
  end
  local function report(paths, e)
    if o.json then
      io.stdout:write(json.encode {
        request_id = job and job.request_id, ok = e == nil, paths = paths and json.array(paths) or nil,
        error = e and { code = e.code, message = e.message, type = e.type } or nil,
      }, "\n")
    else
      for _, p in ipairs(paths or {}) do io.stdout:write(p, "\n") end
    end
    io.stdout:flush()
    if e then say(false, "%s", tostring(e)) end
    return e and 1 or 0
  end
  if not job then return report(nil, err) end
  if job.from_journal then
    say(o.quiet, "reused %s: finished in an earlier run (nothing sent%s)", job.request_id,
      o.seed and "" or "; a new sample needs a new run after this one completes, or --no-journal")
  elseif job.resumed then
    say(o.quiet, "resumed %s: accepted in an earlier run, followed by its id (not sent again)", job.request_id)
  else
    say(o.quiet, "submitted %s to %s", job.request_id, client.endpoint)
  end
  local result, werr = job:wait { timeout = timeout }
  if not result then return report(nil, werr) end
  local paths, serr, partial = job:save(outdir, { name = o.name })
  if not paths then return report(partial, serr) end
  client:complete()  -- a run of the same command from now on is a new sample
  report(paths)
  say(o.quiet, "saved %d image%s in %s", #paths, #paths == 1 and "" or "s", outdir)
  return 0
end

local function split_var(flag, spec)
  local name, values = spec:match("^([%a_][%w_]*)=(.*)$")
  if not name then return nil, flag .. " expects NAME=VALUE,VALUE, got '" .. spec .. "'" end
  local list = {}
  for v in (values .. ","):gmatch("([^,]*),") do list[#list + 1] = v end  -- text, as typed
  return name, list
end

local function cmd_grid(argv)
  local o, pos = parse_command(argv, "grid", GRID,
    "grid -p TEMPLATE --var NAME=A,B [...] -i IMAGE [--seeds 1,2] [-o DIR]")
  if not o then return pos end
  if #pos > 0 then return usage_error("grid: unexpected argument '" .. pos[1] .. "'", "grid") end
  if not o.prompt then return usage_error("grid: -p TEMPLATE is required", "grid") end
  local vars, zip = {}, {}
  for _, spec in ipairs(o.var or {}) do
    local name, list = split_var("--var", spec)
    if not name then return usage_error(list, "grid") end
    vars[name] = list
  end
  for _, spec in ipairs(o.zip or {}) do
    local name, list = split_var("--zip", spec)
    if not name then return usage_error(list, "grid") end
    zip[name] = list
  end
  for _, spec in ipairs(o["images-var"] or {}) do
    local name, glob = spec:match("^([%a_][%w_]*)=(.+)$")
    if not name then return usage_error("--images-var expects NAME=GLOB, got '" .. spec .. "'", "grid") end
    local ok, list = pcall(editflow.images, glob)
    if not ok then return invalid(tostring(list)) end
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
  if price ~= nil and type(price) ~= "number" then return usage_error("--price expects dollars", "grid") end
  local concurrency = num("concurrency")
  if concurrency ~= nil and not math.tointeger(concurrency) then return usage_error("--concurrency expects an integer", "grid") end
  local client, cerr, code = make_client(o)
  if not client then return fail_client(cerr, code, "grid") end
  client.on_status, client.on_log = nil, nil
  local e = edit_input(o)
  local params = {}
  for _, k in ipairs { "image_size", "num_images", "num_inference_steps", "guidance_scale", "output_format",
                       "acceleration", "enable_safety_checker" } do params[k] = e[k] end
  local spec = { name = o.name, out = o.output, prompt = o.prompt, negative_prompt = o["negative-prompt"],
    vars = vars, zip = zip, images = o.image, params = params, seeds = seeds, client = client,
    concurrency = concurrency, dry_run = o["dry-run"], max_cost = max_cost, price = price,
    partial = o.partial }
  local experiment = require "editflow.experiment"
  local submits = 0
  local unsubscribe = require("editflow.events").subscribe(function(name)
    if name == "submitted" then submits = submits + 1 end
  end)
  local ok, summary = pcall(experiment.run, spec)
  unsubscribe()
  if not ok then
    local msg = tostring(summary)
    if msg:find("interrupted", 1, true) then error(summary, 0) end
    if msg:find("over the budget") or msg:find("is in use by another editflow run", 1, true) then
      io.stderr:write("editflow: ", (msg:gsub("^.-:%d+: ", ""):gsub("^editflow: ", "")), "\n")
      return 1
    end
    -- Once something was sent, a failure is operational (1), never "invalid input" (2).
    if submits > 0 then io.stderr:write("editflow: ", errors.clean(msg:gsub("^.-:%d+: ", "")), "\n") return 1 end
    return invalid(msg)
  end
  if summary.dry_run then
    io.stdout:write(string.format("plan: %d jobs (%d reused from an earlier run), %d images, %.2f output megapixels, estimated $%.4f at $%.3f/MP; nothing sent\n",
      summary.jobs, summary.reused_planned, summary.images, summary.megapixels, summary.cost, summary.price))
    if max_cost and summary.cost > max_cost + 1e-9 then
      io.stdout:write(string.format("over the budget: --max-cost $%.4f\n", max_cost))
      return 1
    end
    return 0
  end
  io.stdout:write(summary.gallery, "\n")
  for _, line in ipairs(summary.held_messages or {}) do say(false, "%s", errors.clean(line)) end
  say(o.quiet, "%d done (%d of them reused), %d failed, %d held back, %d skipped; about $%.4f spent; manifest %s",
    summary.done, summary.reused, summary.failed, summary.held or 0, summary.skipped, summary.spent, summary.manifest)
  return (summary.failed == 0 and summary.skipped == 0 and (summary.held or 0) == 0) and 0 or 1
end

local function cmd_one_id(cmd, argv)
  local o, pos = parse_command(argv, cmd, ONE_ID, cmd .. " REQUEST_ID [OPTIONS]")
  if not o then return pos end
  if #pos ~= 1 then return usage_error(cmd .. ": expects exactly one REQUEST_ID", cmd) end
  if o.output and cmd ~= "result" then return usage_error(cmd .. ": -o is for 'result' only", cmd) end
  local client, cerr, code = make_client(o)
  if not client then return fail_client(cerr, code, cmd) end
  local ok, job = pcall(client.job, client, pos[1])
  if not ok then return usage_error(cmd .. ": " .. tostring(job):gsub("^.-:%d+: ", ""), cmd) end
  client.on_status, client.on_log = nil, nil  -- these commands print data, not progress
  job.deadline = require("editflow.runtime").now() + (o.timeout or 120)  -- retries included

  local value, err
  if cmd == "status" then
    value, err = job:status { logs = not o["no-logs"] }
  elseif cmd == "result" then
    value, err = job:result()
  else
    value, err = job:cancel()
  end
  if not value then
    say(false, "%s", tostring(err))
    return 1
  end
  if cmd == "cancel" then
    io.stdout:write(value, "\n")
    return 0
  end
  if cmd == "result" and o.output then
    job.output = value
    local paths, serr, partial = job:save(o.output)
    for _, p in ipairs(paths or partial or {}) do io.stdout:write(p, "\n") end
    if not paths then
      say(false, "%s", tostring(serr))
      return 1
    end
    return 0
  end
  io.stdout:write(json.encode(value), "\n")
  return 0
end

local RUN = {
  { "h", "help", help = "show this help" },
  { "q", "quiet", help = "no progress display" },
  { nil, "json", help = "write one JSON object per finished job on stdout" },
  { nil, "progress", arg = true, metavar = "MODE", help = "auto (default), live, plain or none" },
}

-- cli.run_options(argv) -> index of SCRIPT in argv; or nil, message. argv[1] is "run".
-- Configures the progress display for the script's jobs.
function M.run_options(argv)
  local i, o = 2, {}
  while argv[i] and argv[i]:sub(1, 1) == "-" and argv[i] ~= "-" do
    local a = argv[i]
    if a == "--" then i = i + 1 break end
    if a == "-h" or a == "--help" then
      io.stdout:write("usage: editflow run [-q] [--json] [--progress MODE] SCRIPT [ARGS...]\n\n",
        "Runs a Lua script with editflow available (arg and ... as under lua).\n\n", args.help(RUN), "\n")
      return nil, false  -- help shown: nothing to run, exit 0
    elseif a == "-q" or a == "--quiet" then o.quiet = true
    elseif a == "--json" then o.json = true
    elseif a == "--progress" then i = i + 1; o.progress = argv[i]
    elseif a:match("^%-%-progress=") then o.progress = a:match("=(.*)$")
    else return nil, "run: unknown option " .. a .. " (-q, --json, --progress MODE)" end
    i = i + 1
  end
  if not argv[i] then return nil, "run: missing SCRIPT (usage: editflow run [-q] [--json] [--progress MODE] SCRIPT [ARGS...])" end
  local mode = o.quiet and "none" or (o.progress or "auto")
  local ok, err = pcall(progress.configure, { display = mode, json = o.json, tty = core.isatty(2) })
  if not ok then return nil, "run: " .. tostring(err):gsub("^.-:%d+: ", "") end
  return i
end

function M.run_done()
  progress.finish()
end

-- After a Ctrl-C, SIGTERM or SIGHUP (called by the host, which then exits 128 + the signal):
-- ask the queue to cancel every job still in flight, all at once, waiting at most a few
-- seconds for the answers; journal each cancel; then say what happened.
function M.interrupted(_, signame)
  progress.configure { display = "none" }
  progress.finish()
  local runtime = require "editflow.runtime"
  local jobs = require("editflow.job").live()
  local asked, failed = 0, 0
  for _, job in ipairs(jobs) do
    runtime.spawn(function()
      local ok = job:cancel()  -- the job's lifecycle journals a confirmed cancel
      if ok then asked = asked + 1 else failed = failed + 1 end
    end)
  end
  local deadline = runtime.now() + 5
  while asked + failed < #jobs and runtime.now() < deadline do runtime.step(50) end
  io.stderr:write(string.format("\neditflow: %s: %d job%s in flight, cancel requested for %d%s\n",
    signame and signame ~= "SIGINT" and ("stopped by " .. signame) or "interrupted", #jobs, #jobs == 1 and "" or "s", asked,
    (#jobs - asked) > 0 and string.format(" (%d could not be cancelled: already ended or unreachable)", #jobs - asked) or ""))
  for _, job in ipairs(jobs) do io.stderr:write("editflow:   ", job.request_id, "\n") end
  local doubt = require("editflow.lifecycle").in_doubt
  if #doubt > 0 then
    io.stderr:write(string.format("editflow: %d submit%s %s on the way when stopped: the queue may have "
      .. "taken %s (not known); a new run holds %s back unless told --resubmit-unknown\n", #doubt,
      #doubt == 1 and "" or "s", #doubt == 1 and "was" or "were", #doubt == 1 and "it" or "them",
      #doubt == 1 and "it" or "them"))
  end
end

-- cli.main(argv) -> exit status. argv[1] is the command.
function M.main(argv)
  local cmd = argv[1]
  progress.configure { display = "none" }  -- warnings are shown by every command
  if cmd == nil then
    io.stderr:write(USAGE)
    return 2
  elseif cmd == "--help" or cmd == "-h" or cmd == "help" then
    io.stdout:write(USAGE)
    return 0
  elseif cmd == "--version" or cmd == "-V" then
    io.stdout:write("editflow ", editflow.version, " (", require("editflow.core").curl_version, ")\n")
    return 0
  elseif cmd == "edit" then
    return cmd_edit(argv)
  elseif cmd == "status" or cmd == "result" or cmd == "cancel" then
    return cmd_one_id(cmd, argv)
  elseif cmd == "grid" then
    return cmd_grid(argv)
  end
  return usage_error("unknown command '" .. cmd .. "' (edit, grid, status, result, cancel, run)")
end

return M
