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
       [-p TEMPLATE ...] [-m ID ...] [--aspect W:H] [--seeds 1,2] [--judge ID] [-o DIR]
       [--dry-run] [--max-cost DOLLARS]
                                                    a prompt experiment: every prompt x combination
                                                    x seed x model, images + manifest.jsonl +
                                                    index.html (the gallery)
  report DIR [--run ID|all] [--by DIM] [--json]     an experiment folder per model, prompt, seed and
                                                    variable: jobs, failures, cost, stars, judge
                                                    score, latency; best first
  rate DIR --import FILE                            merge ratings (the gallery's export) into
                                                    DIR/ratings.json; or DIR REQUEST_ID --stars N
  schema [-m] ENDPOINT                              an endpoint's fields: types, defaults, ranges, options
  price [-m] ENDPOINT [--json]                      an endpoint's unit price, unit and where it comes from
  status REQUEST_ID                                 print a job's status as JSON
  result REQUEST_ID [-o DIR]                        print a job's result as JSON (and save its images)
  cancel REQUEST_ID                                 ask the queue to cancel a job
  wait REQUEST_ID [-o DIR]                          follow a job to its end, save its images, print their paths
  run [-q] [--json] [--progress MODE] [--on-interrupt MODE] SCRIPT [ARGS...]
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
  cancelled at the queue first (--on-interrupt finish: queued ones only, running ones are
  finished and saved; --on-interrupt detach: none, they are left running, journaled).
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
      out("usage: editflow run [-q] [--json] [--progress MODE] [--on-interrupt MODE] SCRIPT [ARGS...]\n\n",
        "Runs a Lua script with editflow available (arg and ... as under lua).\n\n", args.help(RUN), "\n")
      return nil, false  -- help shown: nothing to run, exit 0
    elseif a == "-q" or a == "--quiet" then o.quiet = true
    elseif a == "--json" then o.json = true
    elseif a == "--progress" or a:match("^%-%-progress=") or a == "--on-interrupt" or a:match("^%-%-on%-interrupt=") then
      local name, v = a:match("^%-%-([%w-]+)=(.*)$")
      if not name then name, v, i = a:sub(3), argv[i + 1], i + 1 end
      local key = name:gsub("-", "_")
      if o[key] ~= nil then  -- one value each, never last-wins
        return nil, string.format("run: option '--%s' given twice ('%s' and '%s'): it takes one value", name, o[key], tostring(v))
      end
      o[key] = v
    else return nil, "run: unknown option " .. a .. " (-q, --json, --progress MODE, --on-interrupt MODE)" end
    i = i + 1
  end
  if not argv[i] then return nil, "run: missing SCRIPT (usage: editflow run [-q] [--json] [--progress MODE] [--on-interrupt MODE] SCRIPT [ARGS...])" end
  local iok, ierr = M.on_interrupt(o.on_interrupt)
  if not iok then return nil, "run: " .. ierr end
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

-- ---- stop signals: --on-interrupt cancel | finish | detach ----
-- The host (editflow.c) owns the timing: which signal counts, when the script is unwound, when
-- the process is killed at once. What a stop does to the jobs is decided here:
--   cancel  (default) the first signal unwinds the run; every job in flight is cancelled at the
--           queue (interrupted() below), the cancels journaled; exit 128 + the signal.
--   finish  the first signal is only noted by the host; poll_stop(), run at the start of every
--           turn of the loop, then stops sending (runtime.stop: a submit not yet sent is not
--           sent), cancels the jobs still IN_QUEUE and lets the IN_PROGRESS ones finish and be
--           saved by the command as usual; at its end interrupted() reports. A second signal
--           unwinds as cancel does and cancels the rest.
--   detach  the first signal unwinds the run and nothing is cancelled: the jobs in flight stay
--           at the queue, accepted in the journal; the report says how to pick them up.
local host = (function()
  local ok, h = pcall(require, "editflow.cli.host")  -- preloaded by the editflow binary only
  return ok and h or nil
end)()
local MODES = { cancel = true, finish = true, detach = true }
local stop = { mode = "cancel", asked = {}, cancelled = 0 }

local function plural(n, one, many) return n == 1 and one or (many or one .. "s") end

-- "interrupted" for Ctrl-C, "stopped by SIGTERM" for the others.
local function stopped_by(signame)
  return signame and signame ~= "SIGINT" and ("stopped by " .. signame) or "interrupted"
end

-- Asks the queue to cancel one job of a finishing run (once), in a task of its own.
local function cancel_queued(job)
  if stop.asked[job] then return end
  stop.asked[job] = true
  local runtime = require "editflow.runtime"
  runtime.spawn(function()
    if job:cancel() then stop.cancelled = stop.cancelled + 1 end
  end)
end

-- --on-interrupt finish: the host noted a first stop signal. Run at the start of a turn of the
-- loop (runtime.on_turn), outside any task: nothing new is sent, queued jobs are cancelled,
-- running ones go on; a job accepted from now on (its submit was on its way) is cancelled if
-- it is still queued.
local function poll_stop()
  local signame, unwinding = host.interrupt()
  if not signame or unwinding or stop.noted then return end
  local runtime = require "editflow.runtime"
  runtime.on_turn = nil
  stop.noted, stop.signame = true, signame
  runtime.stop()
  local running, queued = {}, {}
  for _, job in ipairs(require("editflow.job").live()) do
    if job.state == "IN_PROGRESS" then running[#running + 1] = job else queued[#queued + 1] = job end
  end
  stop.running, stop.queued = running, queued
  for _, job in ipairs(queued) do cancel_queued(job) end
  require("editflow.events").subscribe(function(name, job, detail)
    if name == "submitted" and detail ~= "resumed" and job.state == "IN_QUEUE" then cancel_queued(job) end
  end, { except = { "log" } })
  progress.line(string.format("editflow: %s: sending nothing new, cancelling %d queued %s at the queue, "
    .. "waiting for %d running %s to finish and be saved (%s again cancels %s)", stopped_by(signame),
    #queued, plural(#queued, "job"), #running, plural(#running, "one"),
    signame == "SIGINT" and "Ctrl-C" or "a second signal", #running == 1 and "it" or "them"))
end

-- cli.on_interrupt(mode) -> true, or nil, message: what the first stop signal does (edit,
-- grid and run's --on-interrupt; default cancel).
function M.on_interrupt(mode)
  mode = mode or "cancel"
  if not MODES[mode] then
    return nil, "--on-interrupt must be cancel, finish or detach, got '" .. tostring(mode) .. "'"
  end
  stop.mode = mode
  if host then host.on_interrupt(mode) end
  require("editflow.runtime").on_turn = (mode == "finish" and host) and poll_stop or nil
  return true
end

-- The submits of this run that may have reached the queue without an answer, when any.
local function report_doubt()
  local doubt = require("editflow.lifecycle").in_doubt()
  if #doubt > 0 then
    io.stderr:write(string.format("editflow: %d submit%s %s on the way when stopped: the queue may have "
      .. "taken %s (not known); a new run holds %s back unless told --resubmit-unknown\n", #doubt,
      #doubt == 1 and "" or "s", #doubt == 1 and "was" or "were", #doubt == 1 and "it" or "them",
      #doubt == 1 and "it" or "them"))
  end
end

-- finish: the run ended after the first signal; what became of what was in flight then.
local function report_finished(signame)
  local runtime = require "editflow.runtime"
  local not_sent = runtime.declined()
  if not stop.noted then
    io.stderr:write(string.format("editflow: %s as the run ended: nothing was in flight\n", stopped_by(signame)))
    return
  end
  local ok, saved = 0, 0
  for _, job in ipairs(stop.running) do
    if job.output then ok = ok + 1 end
    if job.paths then saved = saved + 1 end
  end
  local asked = 0
  for _ in pairs(stop.asked) do asked = asked + 1 end
  io.stderr:write(string.format("editflow: %s: %d of %d running %s finished (%d saved), %d queued %s "
    .. "cancelled at the queue%s, %d %s not sent%s\n", stopped_by(signame), ok, #stop.running,
    plural(#stop.running, "job"), saved, stop.cancelled, plural(stop.cancelled, "job"),
    asked > stop.cancelled and string.format(" (%d more could not be: already ended or unreachable)",
      asked - stop.cancelled) or "", not_sent, plural(not_sent, "job"),
    (not_sent + stop.cancelled) > 0 and "; run the same command again to send what is missing" or ""))
  report_doubt()
end

-- detach: the jobs in flight are left running at the queue.
local function report_detached(signame)
  local jobs = require("editflow.job").live()
  local journals, folders = {}, {}
  for _, job in ipairs(jobs) do
    local jr = job.life and job.life.journal
    if jr and not journals[jr] then
      journals[jr] = true
      folders[#folders + 1] = jr.dir or jr.path
    end
  end
  local all_journaled = #jobs > 0
  for _, job in ipairs(jobs) do
    if not (job.life and job.life.journal) then all_journaled = false end
  end
  io.stderr:write(string.format("\neditflow: %s: detached: %d %s left running at the queue%s\n",
    stopped_by(signame), #jobs, plural(#jobs, "job"), #jobs == 0 and "" or (all_journaled
      and string.format(", journaled in %s; to pick %s up, run the same command again with the same -o "
        .. "(it follows %s by id) or 'editflow wait ID -o DIR'", table.concat(folders, ", "),
        #jobs == 1 and "it" or "them", #jobs == 1 and "it" or "them")
      or string.format("; to pick %s up: 'editflow wait ID -o DIR'", #jobs == 1 and "it" or "them"))))
  for _, job in ipairs(jobs) do io.stderr:write("editflow:   ", job.request_id, "\n") end
  report_doubt()
end

-- cancel (and finish's second signal): ask the queue to cancel every job still in flight, all
-- at once, waiting at most a few seconds for the answers; journal each cancel. A job accepted
-- meanwhile (its submit was on its way) is cancelled too; nothing new is sent.
local function cancel_all(signame)
  local runtime = require "editflow.runtime"
  local Job = require "editflow.job"
  local asked, answered, confirmed, seen = {}, 0, 0, 0
  local list = {}
  local function sweep()
    for _, job in ipairs(Job.live()) do
      if not asked[job] then
        asked[job] = true
        seen = seen + 1
        list[#list + 1] = job
        runtime.spawn(function()
          local ok = job:cancel()  -- the job's lifecycle journals a confirmed cancel
          answered = answered + 1
          if ok then confirmed = confirmed + 1 end
        end)
      end
    end
  end
  sweep()
  local deadline = runtime.now() + 5
  while answered < seen and runtime.now() < deadline do
    runtime.step(50)
    sweep()
  end
  io.stderr:write(string.format("\neditflow: %s: %d job%s in flight, cancel requested for %d%s\n",
    stopped_by(signame), seen, seen == 1 and "" or "s", confirmed,
    (seen - confirmed) > 0 and string.format(" (%d could not be cancelled: already ended or unreachable)", seen - confirmed) or ""))
  for _, job in ipairs(list) do io.stderr:write("editflow:   ", job.request_id, "\n") end
  local not_sent = runtime.declined()
  if not_sent > 0 then
    io.stderr:write(string.format("editflow: %d %s not sent\n", not_sent, plural(not_sent, "job")))
  end
  report_doubt()
end

-- After a Ctrl-C, SIGTERM or SIGHUP (called by the host, which then exits 128 + the signal):
-- the script was unwound (cancel, detach, or finish's second signal), or a finishing run has
-- ended. Nothing new is sent from here on.
function M.interrupted(_, signame)
  progress.configure { display = "none" }
  progress.finish()
  require("editflow.runtime").stop()
  local unwinding, mode = true, stop.mode
  if host then
    local _
    _, unwinding, mode = host.interrupt()
  end
  if not unwinding then return report_finished(signame) end
  if mode == "detach" then return report_detached(signame) end
  return cancel_all(signame)
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
  elseif cmd == "report" or cmd == "rate" then
    return require("editflow.cli.report").run(cmd, argv)
  elseif cmd == "schema" or cmd == "price" then
    return about.run(cmd, argv)
  end
  return usage_error("unknown command '" .. cmd .. "'." .. args.suggest(cmd, c.COMMANDS)
    .. " (commands: " .. table.concat(c.COMMANDS, ", ") .. ")")
end

return M
