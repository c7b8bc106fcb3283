-- editflow.cli.job: the commands about one job by its id: status, result, cancel, wait.
-- Host only.
local editflow = require "editflow"
local json = require "editflow.json"
local progress = require "editflow.cli.progress"
local args = require "editflow.cli.args"
local c = require "editflow.cli.common"
local COMMON = c.COMMON
local out, say, usage_error, make_client, fail_client = c.out, c.say, c.usage_error, c.make_client, c.fail_client
local parse_command = c.parse_command

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

-- The command's failure, with a hint when the queue does not know the id (another model's job).
local function failed(client, err)
  say(false, "%s", args.cli_words(err))
  if err and err.status == 404 then
    say(false, "the queue knows no such job under %s: a job sent to another model needs -m ENDPOINT", client.app)
  end
  return 1
end

local function cmd_one_id(cmd, argv)
  local o, pos = parse_command(argv, cmd, JOB_SPECS[cmd], cmd .. " REQUEST_ID [OPTIONS]")
  if not o then return pos end
  if #pos ~= 1 then return usage_error(cmd .. ": expects exactly one REQUEST_ID", cmd) end
  local client, cerr, code = make_client(o)
  if not client then return fail_client(args.cli_words(cerr), code, cmd) end
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
    if not value then return failed(client, err) end
    return 0
  elseif cmd == "status" then
    value, err = job:status { logs = not o["no-logs"] }
  elseif cmd == "result" then
    value, err = job:result()
  else
    value, err = job:cancel()
  end
  if not value then return failed(client, err) end
  if cmd == "cancel" then
    out(value, "\n")
    return 0
  end
  if cmd == "result" and o.output then
    job.output = value
    local paths, serr, partial = job:save(o.output)
    for _, p in ipairs(paths or partial or {}) do out(p, "\n") end
    if not paths then
      say(false, "%s", args.cli_words(serr))
      return 1
    end
    return 0
  end
  out(json.encode(value), "\n")
  return 0
end

return { SPECS = JOB_SPECS, COMMON = JOB_COMMON, run = cmd_one_id }
