-- editflow.cli.common: what the host's commands share: the option tables every command or every
-- model-running command takes, standard output (data only; a failed write is remembered),
-- messages, usage errors, the client made from options, and the reading of a model's options
-- and input from a command line. Host only.
local editflow = require "editflow"
local args = require "editflow.cli.args"
local json = require "editflow.json"
local progress = require "editflow.cli.progress"
local errors = require "editflow.errors"
local fields = require "editflow.cli.fields"
local schema = require "editflow.schema"
local env = require("editflow.env").get
local template = require "editflow.experiment.template"

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

-- A copy of an option's table with some fields changed.
local function with(o, changes)
  local copy = {}
  for k, v in pairs(o) do copy[k] = v end
  for k, v in pairs(changes) do copy[k] = v end
  return copy
end

-- A command's options and the shared ones; spec.multi_common: the shared options it takes
-- several times (grid's -m: one experiment over several models).
local function with_common(spec)
  local multi = spec.multi_common
  spec.multi_common = nil
  for _, o in ipairs(COMMON) do
    if multi and multi[o[2]] then o = with(o, { multi = true }) end
    spec[#spec + 1] = o
  end
  return spec
end

-- Options of every model-running command (edit, grid): fields without an option of their
-- own, how local files go, fal's request preferences.
local MODEL_COMMON = {
  { nil, "set", arg = true, multi = true, metavar = "FIELD=VALUE", help = "any input field (VALUE as JSON, else as text)" },
  { nil, "inline", help = "send local images inline as data: URIs instead of uploading them to fal storage" },
  { nil, "allow-fallbacks", help = "let fal use a fallback model (by default refused when a seed is given)" },
  { nil, "no-store-io", help = "ask fal not to keep the request's input and output (X-Fal-Store-IO: 0)" },
  { nil, "output-lifetime", arg = true, metavar = "SECONDS", help = "how long fal keeps the output files" },
  { nil, "input-lifetime", arg = true, metavar = "SECONDS", help = "how long fal storage keeps the local images uploaded for the jobs (60 at least)" },
  { nil, "hint", arg = true, metavar = "TEXT", help = "fal's runner hint (X-Fal-Runner-Hint): jobs with one hint go to the same runner when fal can" },
  { nil, "on-interrupt", arg = true, metavar = "MODE", choices = { "cancel", "finish", "detach" },
    help = "what Ctrl-C, SIGTERM or SIGHUP does: cancel the jobs in flight (default); finish the running ones, cancel the queued ones; detach: leave them running (journaled)" },
}

-- Which flag sets each model field, to point error messages at what the user typed; filled
-- from the model's options when a command reads them.
local FLAG_OF = { prompt = "-p", image_urls = "-i", image_url = "-i" }

local RUN = {
  { "h", "help", help = "show this help" },
  { "q", "quiet", help = "no progress display" },
  { nil, "json", help = "write one JSON object per finished job on stdout" },
  { nil, "progress", arg = true, metavar = "MODE", help = "auto (default), live, plain or none" },
  { nil, "on-interrupt", arg = true, metavar = "MODE", choices = { "cancel", "finish", "detach" },
    help = "what Ctrl-C, SIGTERM or SIGHUP does: cancel the jobs in flight (default); finish the running ones, cancel the queued ones; detach: leave them running (journaled)" },
}

M.COMMANDS = { "edit", "grid", "report", "rate", "schema", "price", "status", "result", "cancel", "wait", "run", "help", "completion" }

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
  local inputs_for = o["input-lifetime"] and math.tointeger(tonumber(o["input-lifetime"]))
  if o["input-lifetime"] and not (inputs_for and inputs_for >= 60) then
    return nil, "--input-lifetime expects a whole number of seconds >= 60, got '" .. o["input-lifetime"] .. "'"
  end
  local has_key = env("FAL_KEY") or (env("FAL_KEY_ID") and env("FAL_KEY_SECRET"))
  local key = nil
  if o.no_key_ok and not has_key then key = false end  -- none needed, none sent
  local ok, client = pcall(editflow.client, {
    key = key,
    endpoint = o.model or o.endpoint, base_url = o["base-url"], auth = o.auth, verbose = o.verbose or nil,
    inline = o.inline or nil, object_lifecycle = lifetime, input_lifetime = inputs_for, hint = o.hint,
    -- a price or schema lookup: 15 s at most, or --timeout when that is shorter
    lookup_timeout = math.min(tonumber(o.timeout) or 15, 15), logs = not quiet,
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
    local msg = args.cli_words((tostring(client):gsub("^editflow%.client: ", ""):gsub("^editflow: ", "")))
    -- A folder in use or not writable is not a usage mistake: exit 1, no "Try --help".
    local code = errors.code(client)
    if code == "LOCKED" or code == "FOLDER" then
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

-- The endpoints a command line names (-m, --model, --endpoint), in order, before its options
-- are read: they depend on them.
-- The values of the command's own options (-p "-m x") are skipped, and so is the word after an
-- option the command does not know yet (a model field's: --negative-prompt "-m x").
local function named_endpoints(argv, own)
  local takes = {}
  for _, list in ipairs { own, COMMON, MODEL_COMMON } do
    for _, o in ipairs(list) do
      if o.arg then
        takes["--" .. o[2]] = true
        if o[1] then takes["-" .. o[1]] = true end
      end
    end
  end
  local found = {}
  local i = 2
  while i <= #argv do
    local a = argv[i]
    if a == "--" then break end
    local v = a:match("^%-%-model=(.*)$") or a:match("^%-%-endpoint=(.*)$") or (a:match("^%-m(.+)$"))
    if v then
      found[#found + 1] = v
    elseif a == "-m" or a == "--model" or a == "--endpoint" then
      found[#found + 1] = argv[i + 1]
      i = i + 1
    elseif takes[a] then
      i = i + 1  -- its value, whatever it looks like
    elseif a:match("^%-%-[^=]+$") and argv[i + 1] and not argv[i + 1]:match("^%-") then
      i = i + 1  -- an option known only to the model: its value, if it has one
    end
    i = i + 1
  end
  return found
end

local function default_endpoint()
  return env("EDITFLOW_ENDPOINT") or require("editflow.client").DEFAULT_ENDPOINT
end

-- The endpoint of a one-model command (the last named: a second -m is refused by the parser).
local function endpoint_of(argv, own)
  local found = named_endpoints(argv, own)
  return found[#found] or default_endpoint()
end

-- Every endpoint a command line names (grid -m A -m B), in order, each once; or the default.
local function endpoints_of(argv, own)
  local list, seen = {}, {}
  for _, e in ipairs(named_endpoints(argv, own)) do
    if not seen[e] then seen[e] = true list[#list + 1] = e end
  end
  if #list == 0 then list[1] = default_endpoint() end
  return list
end

-- An endpoint id's form, checked before its schema is looked for (as the client checks it).
local function bad_endpoint(id)
  if not require("editflow.client").parse_endpoint(id) then
    return "the model must look like 'owner/app', 'owner/app/path' or 'workflows/owner/app', got '"
      .. tostring(id) .. "'"
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

-- A model with no schema (fal's could not be had, editflow ships none) may be a misspelt id:
-- a note with the closest id editflow ships, if one is close (argparse's own suggestion).
local function model_hint(m)
  if not m.unchecked then return end
  local ids = {}
  for id in pairs(require "editflow.catalog") do ids[#ids + 1] = id end
  table.sort(ids)
  local hint = args.suggest(m.endpoint, ids)
  if hint ~= "" then say(false, "note: %s is not a model editflow knows and its schema could not be had.%s", m.endpoint, hint) end
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
-- A command's own options, -i's help saying how the images go (image_help); and the names
-- (long, and short letters) they and the shared model options take. Editflow's own options and
-- the model's fields never share a name (editflow.cli.fields): a field named like one of ours
-- is given with --set, and help and use say so.
local function own_options(own, image_help_text)
  local spec = {}
  for _, o in ipairs(own) do
    if o[2] == "image" then o = with(o, { help = image_help_text }) end
    spec[#spec + 1] = o
  end
  local taken = {}
  for _, list in ipairs { spec, MODEL_COMMON } do
    for _, o in ipairs(list) do taken[o[2]] = true if o[1] then taken[o[1]] = true end end
  end
  return spec, taken
end

local function model_spec(own, m, skip)
  local spec, taken = own_options(own, image_help(m))
  local mine, _, clashes = fields.options(m, skip, taken)
  for _, o in ipairs(mine) do
    spec[#spec + 1] = o
    FLAG_OF[o.field] = FLAG_OF[o.field] or ("--" .. o[2])
  end
  for _, cl in ipairs(clashes) do FLAG_OF[cl.field] = FLAG_OF[cl.field] or ("--set " .. cl.field .. "=VALUE") end
  for _, o in ipairs(MODEL_COMMON) do spec[#spec + 1] = o end
  spec.clashes = clashes
  return spec, mine
end

-- model_specs(own, models, skip) -> spec, mine_by_model: the options of one command over
-- several models (grid -m A -m B): each model field's option once (the first model that has
-- it describes it), so an option goes to every model with the field; mine_by_model[i] is model
-- i's own list, to read its values with.
local function model_specs(own, models, skip)
  if #models == 1 then
    local spec, mine = model_spec(own, models[1], skip)
    return spec, { mine }
  end
  local spec, taken = own_options(own,
    "input image: URL or local file, to each model's image field (a one-image model takes exactly one)")
  local shown, by_model, clashes, takers = {}, {}, {}, {}
  for i, m in ipairs(models) do
    local mine, _, cl = fields.options(m, skip, taken)
    by_model[i] = mine
    for _, o in ipairs(mine) do
      takers[o[2]] = takers[o[2]] or {}
      table.insert(takers[o[2]], m.endpoint)
      if not shown[o[2]] then
        shown[o[2]] = o
        spec[#spec + 1] = o
        FLAG_OF[o.field] = FLAG_OF[o.field] or ("--" .. o[2])
      end
    end
    for _, c in ipairs(cl) do clashes[#clashes + 1] = c end
  end
  -- help says which models take an option that not all of them have (the values shown are
  -- the first one's; each model checks its own)
  for name, o in pairs(shown) do
    if #takers[name] < #models then
      local copy = with(o, { help = (o.help or "") .. " [" .. table.concat(takers[name], ", ") .. " only]" })
      for i, x in ipairs(spec) do if x == o then spec[i] = copy end end
    end
  end
  for _, o in ipairs(MODEL_COMMON) do spec[#spec + 1] = o end
  spec.clashes = clashes
  return spec, by_model
end

-- The input a command line gives: the model's options, --set FIELD=VALUE, the prompt and the
-- images (-i goes to the model's image field: a list, or the one image of image_url models).
local function edit_input(o, m, mine)
  local input = fields.values(o, mine)
  for _, kv in ipairs(o.set or {}) do
    local k, v = kv:match("^([%a_][%w_]*)=(.*)$")
    if not k then error("--set expects FIELD=VALUE, got '" .. kv .. "'", 0) end
    if input[k] ~= nil or (k == "prompt" and o.prompt ~= nil) then
      error(string.format("%s is given twice (%s and --set %s): it takes one value",
        k, k == "prompt" and "-p" or FLAG_OF[k] or "--set", kv), 0)
    end
    local doc = json.decode(v)
    if doc == nil then doc = v end  -- not JSON: the text as typed
    input[k] = doc
  end
  if o.prompt ~= nil then
    -- one prompt, no variables: ${...} would reach the model unrendered (and be paid for)
    local ok, text = pcall(template.render, o.prompt, {}, "-p")
    if not ok then
      error(tostring(text):gsub(" %(variables: none%)", "") .. ": this command has no variables; "
        .. "write $${ for a literal ${ (and $$ for $), or use 'editflow grid --var'", 0)
    end
    input.prompt = text
  end
  if o.image then
    local field, kind = m:image_field()
    if m.unchecked then field, kind = "image_urls", "list" end
    if not field then error(m.endpoint .. " takes no input image (-i)", 0) end
    if input[field] ~= nil then
      error(string.format("%s is given twice (-i and --set %s): it takes one value", field, field), 0)
    end
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
  local notes = fields.notes(spec.clashes)
  if o.help then
    out("usage: editflow ", usage, "\n\n", args.help(spec), "\n")
    for _, line in ipairs(notes) do out("note: ", line, "\n") end
    return nil, 0
  end
  for i, cl in ipairs(spec.clashes or {}) do  -- our option given: it is ours, and said so
    -- (--set itself names its field: --set set=1 is not ambiguous)
    if cl.option ~= "--set" and o[cl.option:sub(3)] ~= nil then say(false, "note: %s", notes[i]) end
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

-- The state of one command line: a new one starts clean.
function M.reset(argv)
  stdout_error, json_mode = nil, false
  for i = 2, #argv do
    if argv[i] == "--" then break end
    if argv[i] == "--json" then json_mode = true end
  end
end

function M.stdout_error() return stdout_error end
function M.note_stdout_error(err) if not stdout_error then stdout_error = err end end

M.COMMON, M.MODEL_COMMON, M.FLAG_OF, M.RUN, M.with_common = COMMON, MODEL_COMMON, FLAG_OF, RUN, with_common
M.out = out
M.say = say
M.usage_error = usage_error
M.make_client = make_client
M.fail_client = fail_client
M.endpoint_of = endpoint_of
M.endpoints_of = endpoints_of
M.model_specs = model_specs
M.bad_endpoint = bad_endpoint
M.image_usage = image_usage
M.model_header = model_header
M.model_hint = model_hint
M.image_help = image_help
M.model_spec = model_spec
M.edit_input = edit_input
M.cli_text = cli_text
M.invalid = invalid
M.parse_command = parse_command

return M
