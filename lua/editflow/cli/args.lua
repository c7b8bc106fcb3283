-- editflow.cli.args: the host's command lines, parsed by lua-argparse from the option tables of
-- editflow.cli (one table per command: { "p", "prompt", arg = true, multi = true, metavar =,
-- help = }), so parsing, "did you mean" suggestions and the shell completions all come from the
-- same definitions. Accepted: `-p V`, `-pV`, `--prompt V`, `--prompt=V`, flags, `--` to end
-- options; a value that starts with '-' is still the option's value (`-p "-make it red"`), as
-- getopt(3) has it; `--flag=true|false` for the boolean fields of a model.
-- Errors are returned (nil, message) so the caller can print usage and exit 2.
local argparse = require "argparse"

local M = {}

local function names(o)
  return (o[1] and ("-" .. o[1] .. " ") or "") .. "--" .. o[2]
end

-- An argparse parser for one command's options; positionals go to `pos`.
function M.parser(prog, spec, description)
  local p = argparse(prog, description):add_help(false)
  p:argument("pos"):args("*")
  for _, o in ipairs(spec) do
    if o.arg then
      local opt = p:option(names(o), o.help):target(o[2]):argname(o.metavar or "VALUE")
      if o.multi then opt:count("*") end
      if o.choices then opt:choices(o.choices) end
    else
      p:flag(names(o), o.help):target(o[2])
    end
  end
  return p
end

-- The words argparse reads: an option's value that starts with '-' joined to its option
-- (argparse would take it for an option), `--flag=true|false` of a boolean field turned into
-- `--flag` or `--no-flag`.
local function normalise(argv, first, spec)
  local takes, boolean = {}, {}
  for _, o in ipairs(spec) do
    if o.arg then
      takes["--" .. o[2]] = "--" .. o[2] .. "="
      if o[1] then takes["-" .. o[1]] = "-" .. o[1] end
    elseif o.boolean then
      boolean["--" .. o[2]] = o[2]
    end
  end
  local out, i = {}, first
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i, #argv do out[#out + 1] = argv[j] end
      break
    end
    local joined = takes[a]
    local long, value = a:match("^(%-%-[^=]+)=(.*)$")
    if joined and argv[i + 1] ~= nil and argv[i + 1]:sub(1, 1) == "-" then
      out[#out + 1] = joined .. argv[i + 1]
      i = i + 1
    elseif long and boolean[long] and (value == "true" or value == "false") then
      out[#out + 1] = value == "true" and long or ("--no-" .. boolean[long])
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

-- args.parse(argv, first, spec) -> options (by long name), positionals; or nil, message
function M.parse(argv, first, spec)
  local ok, r = M.parser("editflow", spec):pparse(normalise(argv, first, spec))
  if not ok then return nil, (tostring(r):gsub("\n", ". ")) end
  local opts = {}
  for _, o in ipairs(spec) do
    local v = r[o[2]]
    if o.multi and type(v) == "table" and #v == 0 then v = nil end
    if v ~= nil and v ~= false then opts[o[2]] = v end
  end
  return opts, r.pos or {}
end

-- args.suggest(word, choices) -> " Did you mean 'x'?" or "" (argparse's own suggestion).
function M.suggest(word, choices)
  local p = argparse("editflow"):add_help(false)
  for _, c in ipairs(choices) do p:command(c) end
  local ok, msg = p:pparse { word }
  if ok then return "" end
  local hint = tostring(msg):match("\n(Did you mean.*)$")
  return hint and (" " .. hint) or ""
end

-- Help text for a spec: one line an option.
function M.help(spec)
  local lines = {}
  for _, o in ipairs(spec) do
    local shown = (o[1] and ("-" .. o[1] .. ", ") or "    ") .. "--" .. o[2]
      .. (o.arg and (" " .. (o.metavar or "VALUE")) or "")
    lines[#lines + 1] = string.format("  %-30s %s", shown, o.help or "")
  end
  return table.concat(lines, "\n")
end

return M
