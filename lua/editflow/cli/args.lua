-- editflow.args: command-line options for the host's commands.
-- A spec lists options as { "p", "prompt", arg = true, multi = true }; parse() accepts
-- `-p V`, `-pV`, `--prompt V`, `--prompt=V`, flags without values, and `--` to end options.
-- Errors are returned (nil, message) so the caller can print usage and exit 2.
local M = {}

local function find(spec, short, long)
  for _, o in ipairs(spec) do
    if (short and o[1] == short) or (long and o[2] == long) then return o end
  end
end

-- args.parse(argv, first, spec) -> options (by long name), positionals; or nil, message
function M.parse(argv, first, spec)
  local opts, pos = {}, {}
  local i = first
  local function take(o, value, shown)
    if o.arg then
      if value == nil then
        i = i + 1
        value = argv[i]
        if value == nil then return nil, "option " .. shown .. " needs a value" end
      end
      if o.multi then
        opts[o[2]] = opts[o[2]] or {}
        table.insert(opts[o[2]], value)
      else
        opts[o[2]] = value
      end
    elseif o.boolean and (value == "true" or value == "false") then
      opts[o[2]] = value == "true"  -- --sync=false
    else
      if value ~= nil then
        return nil, "option " .. shown .. " takes no value" .. (o.boolean and " (or =true, =false)" or "")
      end
      opts[o[2]] = true
    end
    return true
  end
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, #argv do pos[#pos + 1] = argv[j] end
      break
    end
    local long, value = a:match("^%-%-([^=]+)=(.*)$")
    if not long then long = a:match("^%-%-(.+)$") end
    local ok, err
    if long then
      local o = find(spec, nil, long)
      if not o then return nil, "unknown option --" .. long end
      ok, err = take(o, value, "--" .. long)
    elseif a:match("^%-%a") then
      local o = find(spec, a:sub(2, 2), nil)
      if not o then return nil, "unknown option " .. a:sub(1, 2) end
      local rest = a:sub(3)
      ok, err = take(o, rest ~= "" and rest or nil, "-" .. a:sub(2, 2))
    else
      pos[#pos + 1] = a
      ok = true
    end
    if not ok then return nil, err end
    i = i + 1
  end
  return opts, pos
end

-- Help text for a spec: one line an option.
function M.help(spec)
  local lines = {}
  for _, o in ipairs(spec) do
    local names = (o[1] and ("-" .. o[1] .. ", ") or "    ") .. "--" .. o[2]
      .. (o.arg and (" " .. (o.metavar or "VALUE")) or "")
    lines[#lines + 1] = string.format("  %-30s %s", names, o.help or "")
  end
  return table.concat(lines, "\n")
end

return M
