-- editflow.cli: the host's command line: the usage text, the dispatch to the commands (edit,
-- grid: cli.edit, cli.grid; status, result, cancel, wait: cli.job; schema, price, completion:
-- cli.about), --help, --version, and what `editflow run SCRIPT` needs from Lua (its options,
-- its end, an interrupt). The host runs the script itself, as `lua SCRIPT` would.
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
local c = require "editflow.cli.common"
local out, usage_error, RUN = c.out, c.usage_error, c.RUN
local edit, grid, job, about = require "editflow.cli.edit", require "editflow.cli.grid",
  require "editflow.cli.job", require "editflow.cli.about"

local M = {}

local USAGE = [[
usage: editflow COMMAND [OPTIONS]

commands:
  edit [-m ID] -p PROMPT -i IMAGE [...] [-o DIR]    edit images; prints each saved file's path
                                                    (-i - reads standard input, -o - writes to it;
                                                    -m ID: any fal model, its fields as options)
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
                                                    plain lines otherwise), --json: one JSON
                                                    event per finished job on stdout
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

local stranded = 0  -- tasks of `editflow run`'s script that could never end (see run_wait)

-- After the script's main chunk: turns the loop until every task the script spawned (and
-- every job it submitted) has ended, so a script of editflow.spawn calls alone does its work.
-- Tasks left waiting for what nothing can bring any more are reported and count as failed.
function M.run_wait()
  stranded = require("editflow.runtime").finish()
  if stranded > 0 then
    progress.clear()
    io.stderr:write(string.format("editflow: %d task%s still waiting when nothing was left that could "
      .. "wake %s (a signal never fired?): ended\n", stranded, stranded == 1 and "" or "s",
      stranded == 1 and "it" or "them"))
  end
end

-- After the script: ends the progress line; -> the number of tasks that failed with nobody
-- collecting their error, or that could never end (the host then exits 1).
function M.run_done()
  progress.finish()
  local n = require("editflow.runtime").unhandled_failures()
  if n > 0 then
    io.stderr:write(string.format("editflow: %d task%s failed and nobody collected %s error (see above)\n",
      n, n == 1 and "" or "s", n == 1 and "its" or "their"))
  end
  return n + stranded
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
  c.reset(argv)
  local rc = M.dispatch(argv)
  local ok, err = io.stdout:flush()
  if not ok then c.note_stdout_error(err) end
  if c.stdout_error() then
    io.stderr:write("editflow: cannot write to standard output: ", tostring(c.stdout_error()), "\n")
    return rc ~= 0 and rc or 1
  end
  return rc
end

function M.dispatch(argv)
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
    return about.completion(argv)
  elseif cmd == "--version" or cmd == "-V" then
    out("editflow ", editflow.version, " (", require("editflow.core").curl_version, ")\n")
    return 0
  elseif cmd == "edit" then
    return edit.run(argv)
  elseif job.SPECS[cmd] then
    return job.run(cmd, argv)
  elseif cmd == "grid" then
    return grid.run(argv)
  elseif cmd == "schema" or cmd == "price" then
    return about.run(cmd, argv)
  end
  return usage_error("unknown command '" .. cmd .. "'." .. args.suggest(cmd, c.COMMANDS)
    .. " (commands: " .. table.concat(c.COMMANDS, ", ") .. ")")
end

return M
