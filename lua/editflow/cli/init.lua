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
local fields = require "editflow.cli.fields"
local schema = require "editflow.schema"
local pricing = require "editflow.price"

local M = {}

local COMMON = {
  { "m", "model", arg = true, metavar = "ID", help = "model endpoint (default fal-ai/qwen-image-edit-plus, or $EDITFLOW_ENDPOINT); its fields become options" },
  { nil, "endpoint", arg = true, metavar = "ID", help = "same as --model" },
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
  { nil, "name", arg = true, metavar = "STEM", help = "file name stem for the results (default: the request id)" },
  { nil, "json", help = "print JSON events on stdout instead of the paths (one object a line; see the README)" },
  { nil, "no-journal", help = "do not read or write the journal in the output folder (always submit)" },
}

-- Options of every model-running command (edit, grid): fields without an option of their
-- own, how local files go, fal's request preferences.
local MODEL_COMMON = {
  { nil, "set", arg = true, multi = true, metavar = "FIELD=VALUE", help = "any input field (VALUE as JSON, else as text)" },
  { nil, "inline", help = "send local images inline as data: URIs instead of uploading them to fal storage" },
  { nil, "allow-fallbacks", help = "let fal use a fallback model (by default refused when a seed is given)" },
  { nil, "no-store-io", help = "ask fal not to keep the request's input and output (X-Fal-Store-IO: 0)" },
  { nil, "output-lifetime", arg = true, metavar = "SECONDS", help = "how long fal keeps the output files" },
}

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

-- The options of the commands about one job by its id (status, result, cancel, wait).
local JOB_COMMON = {
  { "m", "model", arg = true, metavar = "ID", help = "the job's model endpoint (default fal-ai/qwen-image-edit-plus, or $EDITFLOW_ENDPOINT)" },
  { nil, "endpoint", arg = true, metavar = "ID", help = "same as --model" },
  { nil, "base-url", arg = true, metavar = "URL", help = "queue base URL (default https://queue.fal.run, or $EDITFLOW_BASE_URL)" },
  { nil, "auth", arg = true, metavar = "key|bearer", help = "credential scheme (default key, or $EDITFLOW_AUTH)" },
  { nil, "timeout", arg = true, metavar = "SECONDS", help = "bound the command, retries included (default 120; wait: 3600)" },
  { "q", "quiet", help = "no progress on stderr" },
  { "v", "verbose", help = "trace every HTTP call on stderr (never the credential)" },
  { "h", "help", help = "show this help" },
}

local function with_job_common(spec)
  for _, o in ipairs(JOB_COMMON) do spec[#spec + 1] = o end
  return spec
end

local STATUS = with_job_common {
  { nil, "no-logs", help = "do not ask for the job's logs" },
}
local RESULT = with_job_common {
  { "o", "output", arg = true, metavar = "DIR", help = "also save the images into DIR and print their paths" },
}
local CANCEL = with_job_common {}
local WAIT = with_job_common {
  { "o", "output", arg = true, metavar = "DIR", help = "folder for the images (default editflow-output)" },
  { nil, "name", arg = true, metavar = "STEM", help = "file name stem for the images (default: the request id)" },
}
local JOB_SPECS = { status = STATUS, result = RESULT, cancel = CANCEL, wait = WAIT }

-- Which flag sets each model field, to point error messages at what the user typed; filled
-- from the model's options when a command reads them.
local FLAG_OF = { prompt = "-p", image_urls = "-i", image_url = "-i" }

local USAGE = [[
usage: editflow COMMAND [OPTIONS]

commands:
  edit -p PROMPT -i IMAGE [-i IMAGE ...] [-o DIR]   edit images; prints each saved file's path
  grid -p 'a ${animal} in ${style}' --var animal=cat,dog --var style=oil,ink -i IMAGE
       [--seeds 1,2] [-o DIR] [--dry-run] [--max-cost DOLLARS]
                                                    a prompt experiment: every combination x seed,
                                                    images + manifest.jsonl + index.html
  schema [-m] ENDPOINT                              an endpoint's fields: types, defaults, ranges, options
  price [-m] ENDPOINT [--json]                      an endpoint's unit price, unit and where it comes from
  status REQUEST_ID                                 print a job's status as JSON
  result REQUEST_ID [-o DIR]                        print a job's result as JSON (and save its images)
  cancel REQUEST_ID                                 ask the queue to cancel a job
  wait REQUEST_ID [-o DIR]                          follow a job to its end, save its images, print their paths
  run [-q] [--json] [--progress MODE] SCRIPT [ARGS...]
                                                    run a Lua script with editflow available;
                                                    progress on stderr (live on a terminal,
                                                    plain lines otherwise), --json: one object
                                                    per finished job on stdout
  help COMMAND, COMMAND --help                      a command's options
  completion bash|zsh|fish                          the shell completion script
  --help, --version

configuration (environment):
  FAL_KEY               the credential (never printed); FAL_KEY_ID + FAL_KEY_SECRET also work
  EDITFLOW_BASE_URL     queue base URL, default https://queue.fal.run (a proxy: its base URL)
  EDITFLOW_AUTH         key (fal: "Authorization: Key ...") or bearer (proxies: "Bearer ...")
  EDITFLOW_ENDPOINT     model endpoint, default fal-ai/qwen-image-edit-plus
  EDITFLOW_SCHEMA_URL   fal's OpenAPI document for schemas ("off": the shipped ones only)
  EDITFLOW_API_URL      fal's platform API for prices, default https://api.fal.ai
  EDITFLOW_STORAGE_URL  fal storage for local images, default https://rest.fal.ai

exit status: 0 done, 1 failed (network, server, job, files), 2 usage or invalid input,
  128 + the signal after SIGINT (130), SIGTERM (143) or SIGHUP (129): jobs in flight are
  cancelled at the queue first.
A job accepted by the queue is never sent again: a re-run in the same -o folder reuses what
is done, follows what was accepted, and holds back a submit whose answer was lost (see
--resubmit-unknown).
'editflow COMMAND --help' lists a command's options.
]]

-- Standard output: data only. A write that fails (a closed pipe, a full disk) is remembered,
-- and the command then ends with status 1 and a message, as coreutils' do.
local stdout_error

local function out(...)
  local ok, err = io.stdout:write(...)
  if not ok and not stdout_error then stdout_error = err end
end

local function say(quiet, fmt, ...)
  if not quiet then progress.line("editflow: " .. string.format(fmt, ...)) end
end

local json_mode = false  -- --json is on the command line: refusals are events on stdout too

local function usage_error(msg, cmd)
  if json_mode then
    out(json.encode { event = "invalid", ok = false, error = { code = "USAGE", message = msg } }, "\n")
  end
  io.stderr:write("editflow: ", msg, "\n")
  io.stderr:write("Try 'editflow ", cmd and (cmd .. " ") or "", "--help'.\n")
  return 2
end

local function make_client(o, journal_dir)
  local quiet = o.quiet
  local last = {}
  local lifetime = o["output-lifetime"] and math.tointeger(tonumber(o["output-lifetime"]))
  if o["output-lifetime"] and not (lifetime and lifetime > 0) then
    return nil, "--output-lifetime expects a whole number of seconds > 0, got '" .. o["output-lifetime"] .. "'"
  end
  local has_key = (os.getenv("FAL_KEY") or "") ~= "" or ((os.getenv("FAL_KEY_ID") or "") ~= "" and (os.getenv("FAL_KEY_SECRET") or "") ~= "")
  local key = nil
  if o.no_key_ok and not has_key then key = false end  -- none needed, none sent
  local ok, client = pcall(editflow.client, {
    key = key,
    endpoint = o.model or o.endpoint, base_url = o["base-url"], auth = o.auth, verbose = o.verbose or nil,
    inline = o.inline or nil, object_lifecycle = lifetime,
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
  if ok then
    -- options whose value is false (Lua's `x and false or nil` would give nil)
    if o["allow-fallbacks"] then client.disable_fallbacks = false end
    if o["no-store-io"] then client.store_io = false end
  end
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

-- The endpoint a command line names (-m, --model, --endpoint), before its options are read:
-- they depend on it.
-- The values of the command's own options (-p "-m x") are skipped, and so is the word after an
-- option the command does not know yet (a model field's: --negative-prompt "-m x").
local function endpoint_of(argv, own)
  local takes = {}
  for _, list in ipairs { own, COMMON, MODEL_COMMON } do
    for _, o in ipairs(list) do
      if o.arg then
        takes["--" .. o[2]] = true
        if o[1] then takes["-" .. o[1]] = true end
      end
    end
  end
  local found
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--" then break end
    local v = a:match("^%-%-model=(.*)$") or a:match("^%-%-endpoint=(.*)$") or (a:match("^%-m(.+)$"))
    if v then
      found = v
    elseif a == "-m" or a == "--model" or a == "--endpoint" then
      found = argv[i + 1]
      i = i + 1
    elseif takes[a] then
      i = i + 1  -- its value, whatever it looks like
    elseif a:match("^%-%-[^=]+$") and argv[i + 1] and not argv[i + 1]:match("^%-") then
      i = i + 1  -- an option known only to the model: its value, if it has one
    end
    i = i + 1
  end
  return found or os.getenv("EDITFLOW_ENDPOINT") ~= "" and os.getenv("EDITFLOW_ENDPOINT")
    or require("editflow.client").DEFAULT_ENDPOINT
end

-- An endpoint id's form, checked before its schema is looked for (as the client checks it).
local function bad_endpoint(id)
  if type(id) ~= "string" or not id:match("^[%w_.-]+/[%w_.-]+[%w_./-]*$") or id:find("//", 1, true)
      or id:find("/$") or id:find("%.%.") then
    return "the model must look like 'owner/app' or 'owner/app/path', got '" .. tostring(id) .. "'"
  end
end

-- How a model takes its images, for usage lines and -i's help.
local function image_usage(m)
  local field, kind = m:image_field()
  if m.unchecked then return "-i IMAGE [-i IMAGE ...]" end
  if not field then return "" end
  if kind == "one" then return "-i IMAGE" end
  local s = m:deref(m.input.properties[field])
  if s.maxItems == 1 then return "-i IMAGE" end
  return "-i IMAGE [-i IMAGE ...]"
end

local function model_header(m)
  if m.unchecked then return "options of " .. m.endpoint .. " (no schema: --set FIELD=VALUE for its fields)" end
  return "options of " .. m.endpoint .. " (schema: " .. tostring(m.source) .. ")"
end

local function image_help(m)
  local field, kind = m:image_field()
  if m.unchecked then return "input image: URL or local file, sent as image_urls (repeatable)" end
  if not field then return m.endpoint .. " takes no input image" end
  if kind == "one" then return "the input image (" .. field .. "): URL or local file, exactly once" end
  local s = m:deref(m.input.properties[field])
  local lo, hi = math.max(s.minItems or 1, 1), s.maxItems
  return string.format("input image (%s): URL or local file; %s", field,
    hi and (lo == hi and (lo .. " time" .. (lo == 1 and "" or "s")) or (lo .. " to " .. hi .. " times"))
    or ("at least " .. lo .. " time" .. (lo == 1 and "" or "s")))
end

-- A command's options: its own, then the model's fields, then the shared ones.
local function model_spec(own, m, skip)
  local spec = {}
  for _, o in ipairs(own) do
    if o[2] == "image" then  -- -i says how this model takes its images
      local copy = {}
      for k, v in pairs(o) do copy[k] = v end
      copy.help = image_help(m)
      o = copy
    end
    spec[#spec + 1] = o
  end
  local taken = {}
  for _, o in ipairs(spec) do taken[o[2]] = true if o[1] then taken[o[1]] = true end end
  local mine = fields.options(m, skip)
  for _, o in ipairs(mine) do
    if not taken[o[2]] then
      if o[1] and taken[o[1]] then o[1] = nil end
      spec[#spec + 1] = o
      FLAG_OF[o.field] = FLAG_OF[o.field] or ("--" .. o[2])
    end
  end
  for _, o in ipairs(MODEL_COMMON) do spec[#spec + 1] = o end
  return spec, mine
end

-- The input a command line gives: the model's options, --set FIELD=VALUE, the prompt and the
-- images (-i goes to the model's image field: a list, or the one image of image_url models).
local function edit_input(o, m, mine)
  local input = fields.values(o, mine)
  for _, kv in ipairs(o.set or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then error("--set expects FIELD=VALUE, got '" .. kv .. "'", 0) end
    local doc = json.decode(v)
    if doc == nil then doc = v end  -- not JSON: the text as typed
    input[k] = doc
  end
  input.prompt = o.prompt
  if o.image then
    local field, kind = m:image_field()
    if m.unchecked then field, kind = "image_urls", "list" end
    if not field then error(m.endpoint .. " takes no input image (-i)", 0) end
    if kind == "one" then
      if #o.image ~= 1 then error(string.format("%s takes exactly one image (%s), got %d -i", m.endpoint, field, #o.image), 0) end
      input[field] = o.image[1]
    else
      input[field] = o.image
    end
  end
  return input
end

-- A model's message in command-line words: JSON objects, not Lua tables; no editflow.file.
local function cli_text(msg)
  return (tostring(msg):gsub("a table {([^}]*)}", function(names) return "a JSON object with " .. names:gsub("=", "") end):gsub("a table with ", "an object with ")
    :gsub(", a local path or editflow%.file%(path%)", " or a local path"))
end

local function invalid(msg, as_json)
  msg = cli_text(msg):gsub("^[^%s:]+%.lua:%d+: ", "")  -- a user's mistake, not a place in editflow's code
  local field = msg:match("^([%w_]+)")
  local flag = field and FLAG_OF[field]
  if field == "image_size" then flag = (flag or "--image-size") .. ", a size name or WxH" end
  local text = msg .. (flag and (" (option " .. flag .. ")") or "")
  if as_json then
    out(json.encode { event = "invalid", ok = false, error = { code = "INVALID_INPUT", message = text } }, "\n")
  end
  io.stderr:write("editflow: invalid input: ", text, "\n")
  return 2
end

-- The opening every command shares: parse its options, answer --help, check --timeout.
-- -> options, positionals; or nil, the exit status to return at once.
local function parse_command(argv, cmd, spec, usage, m)
  local o, pos = args.parse(argv, 2, spec)
  if not o then
    if m and pos:find("^unknown option '?%-") and not pos:find("Did you mean", 1, true) then
      pos = string.format("%s (not an option of %s; 'editflow %s -m %s --help' lists them)", pos, m.endpoint, cmd, m.endpoint)
    end
    return nil, usage_error(pos, cmd)
  end
  if o.help then
    out("usage: editflow ", usage, "\n\n", args.help(spec), "\n")
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

local function inputs_limit()
  return require("editflow.inputs").MAX_FILE_BYTES
end

-- A private folder for what -i - and -o - pass through, removed when the command ends.
local function scratch(ctx)
  if not ctx.scratch then
    local base = os.tmpname()
    os.remove(base)
    assert(core.mkdir(base))
    ctx.scratch = base
  end
  return ctx.scratch
end

-- -i -: the image on standard input, kept in the scratch folder under the name of what it is.
local function stdin_image(ctx, limit)
  local bytes = io.stdin:read(limit + 1) or ""
  if bytes == "" then return nil, "standard input (-i -) is empty" end
  if #bytes > limit then return nil, string.format("standard input (-i -) is over %d bytes", limit) end
  local kind = core.sniff(bytes)
  if not kind then return nil, "standard input (-i -) is not a PNG, JPEG, GIF or WebP image" end
  local path = scratch(ctx) .. "/stdin." .. kind
  assert(core.write_file(path, bytes))
  return path
end

local edit_body

local function cmd_edit(argv)
  local ctx = {}
  local ok, rc = pcall(edit_body, argv, ctx)
  if ctx.scratch then os.execute("rm -rf '" .. ctx.scratch:gsub("'", "'\\''") .. "'") end
  if not ok then error(rc, 0) end
  return rc
end

function edit_body(argv, ctx)
  local id = endpoint_of(argv, EDIT)
  if bad_endpoint(id) then return usage_error("edit: " .. bad_endpoint(id), "edit") end
  local m = schema.model(id)
  local spec, mine = model_spec(EDIT, m, { prompt = true })
  local o, pos = parse_command(argv, "edit", spec, "edit [-m ENDPOINT] -p PROMPT " .. image_usage(m) .. " [OPTIONS]"
    .. "\n\n" .. model_header(m), m)
  if not o then return pos end
  if #pos > 0 then return usage_error("edit: unexpected argument '" .. pos[1] .. "'", "edit") end
  if not o.prompt then return usage_error("edit: -p PROMPT is required", "edit") end
  if not o.image then return usage_error("edit: at least one -i IMAGE is required", "edit") end
  local timeout = o.timeout
  local to_stdout = o.output == "-"
  if to_stdout and o.json then return usage_error("edit: -o - (the image on standard output) and --json exclude each other", "edit") end
  if to_stdout and core.isatty(1) then
    return usage_error("edit: -o - writes the image's bytes to standard output, which is a terminal; "
      .. "redirect it (> out.png) or give -o DIR", "edit")
  end
  if o.output == "" then return usage_error("edit: -o needs a folder (or - for standard output)", "edit") end
  if o.name == "" then return usage_error("edit: --name needs a file name stem", "edit") end
  local stdin_used = false
  for i, img in ipairs(o.image) do
    if img == "-" then
      if stdin_used then return usage_error("edit: -i - (standard input) can be given once", "edit") end
      stdin_used = true
      local path, why = stdin_image(ctx, inputs_limit())
      if not path then return invalid(why, o.json) end
      o.image[i] = path
    end
  end
  -- -o -: the one image goes to standard output; nothing is kept, so no journal either
  local outdir = to_stdout and (scratch(ctx) .. "/out") or (o.output or "editflow-output")
  local client, cerr, code = make_client(o, not (o["no-journal"] or to_stdout) and outdir or nil)
  if not client then return fail_client(cerr, code, "edit") end

  -- On a terminal the job's progress is the live line (state, queue, time); on a pipe, the
  -- plain lines of on_status and on_log; nothing with -q.
  if not o.quiet and core.isatty(2) then
    client.on_status, client.on_log = nil, nil
    progress.configure { display = "live", tty = true }
  end
  -- Only validation runs under pcall: an error raised once sending has begun (an interrupt,
  -- say) must not be reported as "invalid input, nothing sent".
  local ok, body = pcall(function() return client:prepare(edit_input(o, m, mine)) end)
  if not ok then return invalid(tostring(body), o.json) end
  if to_stdout then  -- one image, or nothing is sent: more could not go to standard output
    local input = json.decode(body)
    local count = 1
    for _, k in ipairs { "num_images", "max_images" } do
      if math.tointeger(input[k]) then count = count * input[k] end
    end
    if count > 1 then
      return usage_error("edit: -o - writes one image; this job asks for " .. count .. " (use -o DIR)", "edit")
    end
  end
  -- A journal that cannot be written before the submit stops it (nothing sent): an error
  -- like any other, not a traceback. A seed asks for that image: no fallback model.
  local seeded = json.decode(body).seed ~= nil
  local sent, job, err = pcall(client.send, client, body,
    { disable_fallbacks = seeded and client.disable_fallbacks ~= false or nil })
  if not sent then
    if tostring(job):find("interrupted", 1, true) then error(job, 0) end
    job, err = nil, errors.new("NOT_SENT", tostring(job))
  end
  local function report(paths, e)
    if o.json then
      local ev = job and progress.job_event(job, paths, e) or { event = "job", ok = false,
        error = e and { code = e.code, message = e.message, type = e.type } }
      out(json.encode(ev), "\n")
    else
      for _, p in ipairs(paths or {}) do out(p, "\n") end
    end
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
  progress.finish()
  if not result then return report(nil, werr) end
  local paths, serr, partial = job:save(outdir, { name = o.name })
  if not paths then return report(partial, serr) end
  client:complete()  -- a run of the same command from now on is a new sample
  if to_stdout then
    if #paths ~= 1 then
      say(false, "-o - writes one image to standard output; job %s gave %d (use -o DIR)", job.request_id, #paths)
      return 1
    end
    out(assert(core.read_file(paths[1], math.maxinteger)))
    return 0
  end
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
  local vars, zip = {}, {}
  local named = {}
  local function once(name, flag)
    if named[name] then return string.format("grid: the variable %s is given twice (%s and %s)", name, named[name], flag) end
    named[name] = flag
  end
  for _, spec in ipairs(o.var or {}) do
    local name, list = split_var("--var", spec)
    if not name then return usage_error(list, "grid") end
    local twice = once(name, "--var")
    if twice then return usage_error(twice, "grid") end
    vars[name] = list
  end
  for _, spec in ipairs(o.zip or {}) do
    local name, list = split_var("--zip", spec)
    if not name then return usage_error(list, "grid") end
    local twice = once(name, "--zip")
    if twice then return usage_error(twice, "grid") end
    zip[name] = list
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
    progress.configure { display = o.quiet and "none" or "auto", tty = core.isatty(2) }
  end
  local ok, summary = pcall(experiment.run, spec)
  progress.finish()
  progress.configure { display = "none" }
  unsubscribe()
  if not ok then
    local msg = tostring(summary)
    if msg:find("interrupted", 1, true) then error(summary, 0) end
    if msg:find("over the budget") or msg:find("cannot keep max_cost", 1, true)
        or msg:find("is in use by another editflow run", 1, true) or msg:find("cannot use the folder", 1, true) then
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
    out(json.encode { event = "summary", ok = summary.failed == 0 and summary.skipped == 0 and (summary.held or 0) == 0,
      done = summary.done, failed = summary.failed, reused = summary.reused, held = summary.held or 0,
      skipped = summary.skipped, spent = summary.spent, manifest = summary.manifest, gallery = summary.gallery }, "\n")
  else
    out(summary.gallery, "\n")
  end
  for _, line in ipairs(summary.held_messages or {}) do say(false, "%s", errors.clean(line)) end
  say(o.quiet, "%d done (%d of them reused), %d failed, %d held back, %d skipped; about $%.4f spent; manifest %s",
    summary.done, summary.reused, summary.failed, summary.held or 0, summary.skipped, summary.spent, summary.manifest)
  return (summary.failed == 0 and summary.skipped == 0 and (summary.held or 0) == 0) and 0 or 1
end

local cmd_about, cmd_completion, COMMANDS

local function cmd_one_id(cmd, argv)
  local o, pos = parse_command(argv, cmd, JOB_SPECS[cmd], cmd .. " REQUEST_ID [OPTIONS]")
  if not o then return pos end
  if #pos ~= 1 then return usage_error(cmd .. ": expects exactly one REQUEST_ID", cmd) end
  local client, cerr, code = make_client(o)
  if not client then return fail_client(cerr, code, cmd) end
  local ok, job = pcall(client.job, client, pos[1])
  if not ok then return usage_error(cmd .. ": " .. tostring(job):gsub("^.-:%d+: ", ""), cmd) end
  if cmd ~= "wait" then client.on_status, client.on_log = nil, nil end  -- these print data, not progress
  job.deadline = require("editflow.runtime").now() + (o.timeout or (cmd == "wait" and 3600 or 120))

  local value, err
  if cmd == "wait" then
    -- follow the job to its end, then save its images: what `edit` does after its submit
    job:_watch()
    value, err = job:wait()
    if value then
      local paths, serr, partial = job:save(o.output or "editflow-output", { name = o.name })
      for _, p in ipairs(paths or partial or {}) do out(p, "\n") end
      if not paths then value, err = nil, serr end
    end
    if not value then
      say(false, "%s", tostring(err))
      if err and err.status == 404 then
        say(false, "the queue knows no such job under %s: a job sent to another model needs -m ENDPOINT", client.app)
      end
      return 1
    end
    return 0
  elseif cmd == "status" then
    value, err = job:status { logs = not o["no-logs"] }
  elseif cmd == "result" then
    value, err = job:result()
  else
    value, err = job:cancel()
  end
  if not value then
    say(false, "%s", tostring(err))
    if err and err.status == 404 then
      say(false, "the queue knows no such job under %s: a job sent to another model needs -m ENDPOINT", client.app)
    end
    return 1
  end
  if cmd == "cancel" then
    out(value, "\n")
    return 0
  end
  if cmd == "result" and o.output then
    job.output = value
    local paths, serr, partial = job:save(o.output)
    for _, p in ipairs(paths or partial or {}) do out(p, "\n") end
    if not paths then
      say(false, "%s", tostring(serr))
      return 1
    end
    return 0
  end
  out(json.encode(value), "\n")
  return 0
end

local ABOUT = {
  { "m", "model", arg = true, metavar = "ID", help = "the endpoint (or give it as the argument; default $EDITFLOW_ENDPOINT)" },
  { nil, "endpoint", arg = true, metavar = "ID", help = "same as --model" },
  { nil, "auth", arg = true, metavar = "key|bearer", help = "credential scheme (default key, or $EDITFLOW_AUTH): only a fal key asks fal's pricing API" },
  { nil, "json", help = "print JSON instead: the input schema as fal publishes it (schema), the price (price)" },
  { "v", "verbose", help = "trace every HTTP call on stderr (never the credential)" },
  { "h", "help", help = "show this help" },
}

-- `editflow schema ENDPOINT` and `editflow price ENDPOINT`.
function cmd_about(cmd, argv)
  local o, pos = parse_command(argv, cmd, ABOUT, cmd .. " [-m] ENDPOINT [OPTIONS]")
  if not o then return pos end
  local env_endpoint = os.getenv("EDITFLOW_ENDPOINT")
  local endpoint = pos[1] or o.model or o.endpoint or (env_endpoint ~= "" and env_endpoint or nil)
  if #pos > 1 or not endpoint then return usage_error(cmd .. ": expects one ENDPOINT", cmd) end
  o.model, o.endpoint = endpoint, nil
  if cmd == "schema" then require("editflow.cli.progress").configure { display = "none", warnings = false } end
  -- schemas are public and prices have the shipped table: no credential needed here
  o.no_key_ok = true
  local client, cerr, code = make_client(o)
  if not client then return fail_client(cerr, code, cmd) end
  if cmd == "schema" then
    local m = client:model()
    if m.unchecked then
      say(false, "no schema for %s: not shipped with editflow, and fal's could not be had", endpoint)
      return 1
    end
    if o.json then
      out(json.encode(m.input), "\n")
    else
      out(endpoint, " (schema: ", tostring(m.source), ")\n\n", fields.describe(m), "\n")
    end
    return 0
  end
  local p, why = pricing.lookup(client, endpoint)
  if not p then
    say(false, "%s", why)
    return 1
  end
  if o.json then
    out(json.encode(p), "\n")
  else
    local m = client:model()
    local est = pricing.estimate(p, m, {})
    out(string.format("%s: %s\none job with the defaults: %s$%.4f (%d image%s, %.2f output megapixels)\n",
      endpoint, pricing.describe(p), est.approx and "about " or "", est.cost, est.images,
      est.images == 1 and "" or "s", est.megapixels))
  end
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
      out("usage: editflow run [-q] [--json] [--progress MODE] SCRIPT [ARGS...]\n\n",
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
  local function joined(...)
    local parts = table.pack(...)
    for k = 1, parts.n do parts[k] = tostring(parts[k]) end
    return table.concat(parts, "\t", 1, parts.n)
  end
  if o.json then  -- stdout carries the JSON events only: the script's own output goes to stderr
    io.output(io.stderr)
    io.stdout = io.stderr
    print = function(...) io.stderr:write(joined(...), "\n") end
  elseif mode ~= "none" and core.isatty(2) then
    -- the live line is on the terminal: the script's own output clears it first
    local write = io.write
    print = function(...)
      progress.clear()
      io.stdout:write(joined(...), "\n")
      io.stdout:flush()
    end
    io.write = function(...)
      progress.clear()
      return write(...)
    end
  end
  return i
end

-- After the script: ends the progress line; -> the number of tasks that failed with nobody
-- collecting their error (the host then exits 1).
function M.run_done()
  progress.finish()
  local n = require("editflow.runtime").unhandled_failures()
  if n > 0 then
    io.stderr:write(string.format("editflow: %d task%s failed and nobody collected %s error (see above)\n",
      n, n == 1 and "" or "s", n == 1 and "its" or "their"))
  end
  return n
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

COMMANDS = { "edit", "grid", "schema", "price", "status", "result", "cancel", "wait", "run", "help", "completion" }

-- `editflow completion bash|zsh|fish`: the shell completion, generated by lua-argparse from the
-- same option tables the commands parse with (edit and grid with the default model's fields).
function cmd_completion(argv)
  local shell = argv[2]
  if shell == "-h" or shell == "--help" or not shell then
    out("usage: editflow completion bash|zsh|fish\n\nPrints the shell completion script. "
      .. "bash: source <(editflow completion bash)\n")
    return shell and 0 or 2
  end
  if shell ~= "bash" and shell ~= "zsh" and shell ~= "fish" then
    return usage_error("completion: expects bash, zsh or fish, got '" .. shell .. "'", "completion")
  end
  local argparse = require "argparse"
  local top = argparse("editflow", "edit images on fal.ai's queue"):add_help(false)
  top:flag("-h --help")
  top:flag("-V --version")
  local m = schema.model(require("editflow.client").DEFAULT_ENDPOINT, { schema_url = false })
  local function add(name, spec, about)
    local c = top:command(name, about):add_help(false)
    for _, o in ipairs(spec) do
      local names = (o[1] and ("-" .. o[1] .. " ") or "") .. "--" .. o[2]
      if o.arg then
        local opt = c:option(names, o.help):argname(o.metavar or "VALUE")
        local e = o.field and m:field(o.field)
        if e and type(e.schema.enum) == "table" then opt:choices(e.schema.enum) end
        if o[2] == "auth" then opt:choices { "key", "bearer" } end
        if o.multi then opt:count("*") end
      else
        c:flag(names, o.help)
      end
    end
    return c
  end
  add("edit", (model_spec(EDIT, m, { prompt = true })), "edit images; prints each saved file's path")
  add("grid", (model_spec(GRID, m, { prompt = true, negative_prompt = true, seed = true })), "a prompt experiment")
  add("schema", ABOUT, "an endpoint's fields")
  add("price", ABOUT, "an endpoint's price")
  for _, name in ipairs { "status", "result", "cancel", "wait" } do add(name, JOB_SPECS[name], name .. " a job by its id") end
  local run = add("run", RUN, "run a Lua script with editflow")
  run:argument("script"):args("?")
  top:command("help"):argument("command"):args("?"):choices(COMMANDS)
  top:command("completion"):argument("shell"):choices { "bash", "zsh", "fish" }
  local text = shell == "bash" and top:get_bash_complete() or shell == "zsh" and top:get_zsh_complete()
    or top:get_fish_complete()
  out(text)
  return 0
end

-- cli.main(argv) -> exit status. argv[1] is the command.
function M.main(argv)
  stdout_error = nil
  local rc = M.dispatch(argv)
  local ok, err = io.stdout:flush()
  if not ok and not stdout_error then stdout_error = err end
  if stdout_error then
    io.stderr:write("editflow: cannot write to standard output: ", tostring(stdout_error), "\n")
    return rc ~= 0 and rc or 1
  end
  return rc
end

function M.dispatch(argv)
  json_mode = false
  for i = 2, #argv do
    if argv[i] == "--" then break end
    if argv[i] == "--json" then json_mode = true end
  end
  local cmd = argv[1]
  progress.configure { display = "none" }  -- warnings are shown by every command
  if cmd == nil then
    io.stderr:write(USAGE)
    return 2
  elseif (cmd == "help" and argv[2]) then  -- `editflow help CMD` is `editflow CMD --help`
    if argv[3] then return usage_error("help: expects one COMMAND, got '" .. argv[3] .. "' too", "help") end
    if argv[2] == "run" then return select(2, M.run_options { "run", "--help" }) == false and 0 or 2 end
    return M.dispatch { argv[2], "--help" }
  elseif cmd == "--help" or cmd == "-h" or cmd == "help" then
    out(USAGE)
    return 0
  elseif cmd == "completion" then
    return cmd_completion(argv)
  elseif cmd == "--version" or cmd == "-V" then
    out("editflow ", editflow.version, " (", require("editflow.core").curl_version, ")\n")
    return 0
  elseif cmd == "edit" then
    return cmd_edit(argv)
  elseif JOB_SPECS[cmd] then
    return cmd_one_id(cmd, argv)
  elseif cmd == "grid" then
    return cmd_grid(argv)
  elseif cmd == "schema" or cmd == "price" then
    return cmd_about(cmd, argv)
  end
  return usage_error("unknown command '" .. cmd .. "'." .. args.suggest(cmd, COMMANDS)
    .. " (commands: " .. table.concat(COMMANDS, ", ") .. ")")
end

return M
