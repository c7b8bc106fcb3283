-- editflow.cli.args: the host's command lines, parsed by lua-argparse from the option tables of
-- editflow.cli (one table per command: { "p", "prompt", arg = true, multi = true, metavar =,
-- help = }), so parsing, "did you mean" suggestions and the shell completions all come from the
-- same definitions. Accepted: `-p V`, `-pV`, `--prompt V`, `--prompt=V`, flags, `--` to end
-- options; a value that starts with '-' is still the option's value (`-p "-make it red"`), as
-- getopt(3) has it; `--flag=true|false` for the boolean fields of a model.
-- One value, one meaning: an option that takes one value (-p, --seed, -m, -o, ...) given twice
-- is an error naming it and both values, never last-wins (the paid job would run with a value
-- the user may not have meant); so are two options that set the same thing (--steps and
-- --num-inference-steps, --sync and --no-sync, --model and --endpoint). A flag given twice
-- (-q -q) says the same thing twice and is accepted. Repeatable options are marked `multi`.
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
      -- argparse's overwrite(false): a second -p is refused, not kept in place of the first
      if o.multi then opt:count("*") else opt:overwrite(false) end
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

-- The values the words give an option (any of its names: -s V, -sV, --seed V, --seed=V), for
-- the message that refuses a second one. The words are normalise's: an option's value that
-- starts with '-' is already joined to it, so a word that is an option's name is one.
local function values_of(words, o)
  local long, short = "--" .. o[2], o[1] and ("-" .. o[1])
  local found, i = {}, 1
  while i <= #words and words[i] ~= "--" do
    local w = words[i]
    if w == long or w == short then
      if words[i + 1] ~= nil then found[#found + 1] = words[i + 1] end
      i = i + 1
    elseif w:sub(1, #long + 1) == long .. "=" then
      found[#found + 1] = w:sub(#long + 2)
    elseif short and #w > 2 and w:sub(1, 2) == short then
      found[#found + 1] = w:sub(3)
    end
    i = i + 1
  end
  return found
end

-- argparse's "option '--seed' must be used at most 1 time" in our words, with the values.
local function given_twice(message, words, spec)
  local name = tostring(message):match("^option '([^']+)' must be used at most 1 time")
  if not name then return nil end
  for _, o in ipairs(spec) do
    if o.arg and not o.multi and (name == "--" .. o[2] or (o[1] and name == "-" .. o[1])) then
      local v = values_of(words, o)
      local shown = {}
      for i, x in ipairs(v) do shown[i] = "'" .. x .. "'" end
      local list = #shown >= 2 and (" (" .. table.concat(shown, ", ", 1, #shown - 1) .. " and " .. shown[#shown] .. ")") or ""
      return string.format("option '%s' given %s%s: it takes one value", name,
        #shown > 2 and (#shown .. " times") or "twice", list)
    end
  end
  return string.format("option '%s' given twice: it takes one value", name)
end

-- What an option sets: a model's field (its alias, its own name, --x and --no-x all set one
-- field), or the option itself; --endpoint is another name of --model.
local SAME = { endpoint = "model" }

local function sets(o) return o.field or SAME[o[2]] or o[2] end

-- Two different options given that set the same thing -> the message, else nil.
local function same_thing(opts, spec)
  local by = {}
  for _, o in ipairs(spec) do
    if opts[o[2]] ~= nil then
      local what = sets(o)
      if by[what] and by[what] ~= o[2] then
        return string.format("options '--%s' and '--%s' both set %s: give one", by[what], o[2], what)
      end
      by[what] = o[2]
    end
  end
end

-- args.parse(argv, first, spec) -> options (by long name), positionals; or nil, message
function M.parse(argv, first, spec)
  local words = normalise(argv, first, spec)
  local ok, r = M.parser("editflow", spec):pparse(words)
  if not ok then return nil, given_twice(r, words, spec) or (tostring(r):gsub("\n", ". ")) end
  local opts = {}
  for _, o in ipairs(spec) do
    local v = r[o[2]]
    if o.multi and type(v) == "table" and #v == 0 then v = nil end
    if v ~= nil and v ~= false then opts[o[2]] = v end
  end
  local clash = same_thing(opts, spec)
  if clash then return nil, clash end
  return opts, r.pos or {}
end

-- ---- the library's words in the command line's ----
-- editflow's library names its options as a Lua script gives them (key=, base_url=,
-- job_timeout); a command-line user gives them as options and environment variables. The
-- library keeps its words (Lua users need them); the commands show their messages through
-- M.cli_words. Each rule is one pattern and its replacement, applied in order; the result has
-- no pattern's text left, so applying it twice changes nothing.
local CLI_WORDS = {
  { "no credential: set FAL_KEY %(for a proxy token also set EDITFLOW_AUTH=bearer%), or pass key= %(key=false sends none%)",
    "no credential: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET); for a proxy's token, FAL_KEY and --auth bearer" },
  { "^base_url must", "--base-url (or EDITFLOW_BASE_URL) must" },
  { "^base_url: ", "--base-url (or EDITFLOW_BASE_URL): " },
  { "^api_url: ", "EDITFLOW_API_URL: " },
  { "^storage_url: ", "EDITFLOW_STORAGE_URL: " },
  { "^auth must be", "--auth (or EDITFLOW_AUTH) must be" },
  { "^endpoint must look like", "the model (-m) must look like" },
  { "^key must be a string", "the credential (FAL_KEY) must be a string" },
  { "^hint must be", "--hint must be" },
  { "^follow must be", "EDITFLOW_FOLLOW must be" },
  { "%(pass the credential as key=%)", "(the credential goes in FAL_KEY)" },
  { " %(job_timeout%)", " (--timeout)" },
  { " %(resubmit_unknown = true%)", "" },
  { "%(resubmit_unknown%)", "(--resubmit-unknown)" },
}

-- args.cli_words(message) -> the message in the command line's words (see CLI_WORDS).
function M.cli_words(msg)
  msg = tostring(msg)
  for _, rule in ipairs(CLI_WORDS) do msg = msg:gsub(rule[1], rule[2]) end
  return msg
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
