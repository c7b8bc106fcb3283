-- editflow.cli.edit: `editflow edit`: one job, its images saved (or on standard output with
-- -o -), its input from the command line (-i - reads standard input). Host only.
local editflow = require "editflow"
local args = require "editflow.cli.args"
local json = require "editflow.json"
local progress = require "editflow.cli.progress"
local core = require "editflow.core"
local errors = require "editflow.errors"
local schema = require "editflow.schema"
local c = require "editflow.cli.common"
local with_common = c.with_common
local out, say, usage_error, make_client, fail_client = c.out, c.say, c.usage_error, c.make_client, c.fail_client
local endpoint_of, bad_endpoint, image_usage, model_header = c.endpoint_of, c.bad_endpoint, c.image_usage, c.model_header
local model_spec, edit_input, invalid, parse_command = c.model_spec, c.edit_input, c.invalid, c.parse_command

local EDIT = with_common {
  { "p", "prompt", arg = true, metavar = "TEXT", help = "what to do to the images (required)" },
  { "i", "image", arg = true, multi = true, metavar = "IMAGE", help = "input image: URL or local file; 1 to 3 times (required)" },
  { "o", "output", arg = true, metavar = "DIR", help = "folder for the results (default editflow-output)" },
  { nil, "name", arg = true, metavar = "STEM", help = "file name stem for the results (default: the request id)" },
  { nil, "json", help = "print JSON events on stdout instead of the paths (one object a line; see the README)" },
  { nil, "no-journal", help = "do not read or write the journal in the output folder (always submit)" },
}

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

-- ---- the steps of an edit ----
-- Each step reads and fills `ctx` (o: the options, m: the model, client, job, ...) and
-- returns nil to go on, or the exit status to end with.

-- What the job did, on stdout (the paths, or the job's JSON event) and stderr: -> 0, or 1.
local function report(ctx, paths, e)
  local o, job = ctx.o, ctx.job
  if o.json then
    local ev = job and progress.job_event(job, paths, e) or { event = "job", ok = false,
      error = e and { code = e.code, message = e.message, type = e.type } }
    out(json.encode(ev), "\n")
  else
    for _, p in ipairs(paths or {}) do out(p, "\n") end
  end
  if e then say(false, "%s", args.cli_words(e)) end
  return e and 1 or 0
end

-- The command line, read by the model's schema (-m picks the model whose fields are options).
local function parse(ctx, argv)
  local id = endpoint_of(argv, EDIT)
  if bad_endpoint(id) then return usage_error("edit: " .. bad_endpoint(id), "edit") end
  local m = schema.model(id)
  c.model_hint(m)
  local spec, mine = model_spec(EDIT, m, { prompt = true })
  local o, pos = parse_command(argv, "edit", spec, "edit [-m ENDPOINT] -p PROMPT " .. image_usage(m) .. " [OPTIONS]"
    .. "\n\n" .. model_header(m), m)
  if not o then return pos end
  if #pos > 0 then return usage_error("edit: unexpected argument '" .. pos[1] .. "'", "edit") end
  if not o.prompt then return usage_error("edit: -p PROMPT is required", "edit") end
  if not o.image then return usage_error("edit: at least one -i IMAGE is required", "edit") end
  local iok, ierr = require("editflow.cli").on_interrupt(o["on-interrupt"])
  if not iok then return usage_error("edit: " .. ierr, "edit") end
  ctx.o, ctx.m, ctx.mine = o, m, mine
end

-- Where the images go: -o DIR, or -o - (standard output, which must not be a terminal).
local function check_output(ctx)
  local o = ctx.o
  ctx.to_stdout = o.output == "-"
  if ctx.to_stdout and o.json then return usage_error("edit: -o - (the image on standard output) and --json exclude each other", "edit") end
  if ctx.to_stdout and core.isatty(1) then
    return usage_error("edit: -o - writes the image's bytes to standard output, which is a terminal; "
      .. "redirect it (> out.png) or give -o DIR", "edit")
  end
  if o.output == "" then return usage_error("edit: -o needs a folder (or - for standard output)", "edit") end
  if o.name == "" then return usage_error("edit: --name needs a file name stem", "edit") end
  -- -o -: the one image goes to standard output; nothing is kept, so no journal either
  ctx.outdir = ctx.to_stdout and (scratch(ctx) .. "/out") or (o.output or "editflow-output")
end

-- -i -: standard input read once into a file, which then goes as any local image.
local function read_stdin_images(ctx)
  local o, stdin_used = ctx.o, false
  for i, img in ipairs(o.image) do
    if img == "-" then
      if stdin_used then return usage_error("edit: -i - (standard input) can be given once", "edit") end
      stdin_used = true
      local path, why = stdin_image(ctx, inputs_limit())
      if not path then return invalid(why, o.json) end
      o.image[i] = path
    end
  end
end

-- The client (credential, queue, journal in the output folder), and how progress shows.
local function open_client(ctx)
  local o = ctx.o
  local client, cerr, code = make_client(o, not (o["no-journal"] or ctx.to_stdout) and ctx.outdir or nil)
  if not client then return fail_client(args.cli_words(cerr), code, "edit") end
  ctx.client = client
  -- On a terminal the job's progress is the live line (state, queue, time); on a pipe, the
  -- plain lines of on_status and on_log; nothing with -q.
  -- Notices (a job an earlier run cancelled, sent again; the queue unreachable) on stderr
  -- unless -q, and as JSON events with --json.
  if not o.quiet and core.isatty(2) then
    client.on_status, client.on_log = nil, nil
    progress.configure { display = "live", tty = true, json_notices = o.json, words = args.cli_words }
  else
    progress.configure { display = "none", say = not o.quiet, json_notices = o.json, words = args.cli_words }
  end
end

-- The input checked against the model before anything is sent.
local function prepare(ctx)
  local o = ctx.o
  -- Only validation runs under pcall: an error raised once sending has begun (an interrupt,
  -- say) must not be reported as "invalid input, nothing sent".
  local ok, body, input = pcall(function() return ctx.client:prepare(edit_input(o, ctx.m, ctx.mine)) end)
  if not ok then return invalid(tostring(body), o.json) end
  if ctx.to_stdout then  -- one image, or nothing is sent: more could not go to standard output
    local count = 1
    for _, k in ipairs { "num_images", "max_images" } do
      if math.tointeger(input[k]) then count = count * input[k] end
    end
    if count > 1 then
      return usage_error("edit: -o - writes one image; this job asks for " .. count .. " (use -o DIR)", "edit")
    end
  end
  ctx.body, ctx.input = body, input
end

-- The submit (or the journal's answer: reused, resumed), said on stderr.
local function send(ctx)
  local o, client = ctx.o, ctx.client
  -- A journal that cannot be written before the submit stops it (nothing sent): an error
  -- like any other, not a traceback. A seed asks for that image: no fallback model.
  local seeded = ctx.input.seed ~= nil
  local sent, job, err = pcall(client.send, client, ctx.body,
    { disable_fallbacks = seeded and client.disable_fallbacks ~= false or nil })
  if not sent then
    if errors.code(job) == "INTERRUPTED" then error(job, 0) end
    job, err = nil, errors.new("NOT_SENT", tostring(job))
  end
  if not job then return report(ctx, nil, err) end
  ctx.job = job
  if job.from_journal then
    say(o.quiet, "reused %s: finished in an earlier run (nothing sent%s)", job.request_id,
      o.seed and "" or "; a new sample needs a new run after this one completes, or --no-journal")
  elseif job.resumed then
    say(o.quiet, "resumed %s: accepted in an earlier run, followed by its id (not sent again)", job.request_id)
  else
    say(o.quiet, "submitted %s to %s", job.request_id, client.endpoint)
  end
end

-- The job followed to its end (or --timeout).
local function follow(ctx)
  local result, werr = ctx.job:wait { timeout = ctx.o.timeout }
  progress.finish()
  if not result then return report(ctx, nil, werr) end
end

-- Its images saved (or written to standard output), their paths printed. -> 0, or 1.
local function save(ctx)
  local o, job = ctx.o, ctx.job
  local paths, serr, partial = job:save(ctx.outdir, { name = o.name })
  if not paths then return report(ctx, partial, serr) end
  ctx.client:complete()  -- a run of the same command from now on is a new sample
  if ctx.to_stdout then
    if #paths ~= 1 then
      say(false, "-o - writes one image to standard output; job %s gave %d (use -o DIR)", job.request_id, #paths)
      return 1
    end
    out(assert(core.read_file(paths[1], math.maxinteger)))
    return 0
  end
  report(ctx, paths)
  say(o.quiet, "saved %d image%s in %s", #paths, #paths == 1 and "" or "s", ctx.outdir)
  return 0
end

-- An edit, step by step (as lua.c's pmain): each step may end it with an exit status.
local function edit_body(argv, ctx)
  return parse(ctx, argv)
    or check_output(ctx)
    or read_stdin_images(ctx)
    or open_client(ctx)
    or prepare(ctx)
    or send(ctx)
    or follow(ctx)
    or save(ctx)
end

-- `editflow edit`: the scratch folder (-i -, -o -) is removed however the edit ends.
local function cmd_edit(argv)
  local ctx = {}
  local ok, rc = pcall(edit_body, argv, ctx)
  if ctx.scratch then os.execute("rm -rf '" .. ctx.scratch:gsub("'", "'\\''") .. "'") end
  if not ok then error(rc, 0) end
  return rc
end

return { SPEC = EDIT, run = cmd_edit }
