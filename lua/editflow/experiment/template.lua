-- editflow.template: ${name} substitution in prompts (and image lists), and the grids of
-- variables an experiment runs over.
-- Syntax: ${name} is replaced by the variable's value (names: letters, digits, _); $$ is a
-- literal $; any other $ is kept as it is. A missing variable is an error that names it and
-- the variables there are, raised before anything is sent.
local M = {}

local function scan(tpl, fn)
  local out, i, n = {}, 1, #tpl
  while i <= n do
    local d = tpl:find("$", i, true)
    if not d then out[#out + 1] = tpl:sub(i) break end
    out[#out + 1] = tpl:sub(i, d - 1)
    local nxt = tpl:sub(d + 1, d + 1)
    if nxt == "$" then
      out[#out + 1] = "$"
      i = d + 2
    elseif nxt == "{" then
      local close = tpl:find("}", d + 2, true)
      if not close then error(string.format("template: '${' without a closing '}' in %q", tpl), 0) end
      local name = tpl:sub(d + 2, close - 1)
      if not name:match("^[%a_][%w_]*$") then
        error(string.format("template: bad variable name '%s' in %q (letters, digits and _)", name, tpl), 0)
      end
      out[#out + 1] = fn(name)
      i = close + 1
    else
      out[#out + 1] = "$"
      i = d + 1
    end
  end
  return table.concat(out)
end

-- The variable names a template uses, in order of first use.
function M.names(tpl)
  local names, seen = {}, {}
  scan(tpl, function(name)
    if not seen[name] then seen[name] = true names[#names + 1] = name end
    return ""
  end)
  return names
end

-- template.render(tpl, vars [, what]) -> text; raises naming any missing variable.
-- A variable's value that is text may itself hold ${other}: it is rendered too, with the same
-- variables (--var 'style=${light} oil' or a prompt held in a variable), so nothing unrendered
-- ever reaches a model; a variable that comes back to itself is refused, naming the cycle.
local function render(tpl, vars, what, stack)
  return (scan(tpl, function(name)
    local v = vars[name]
    if v == nil then
      local have = {}
      for k in pairs(vars) do have[#have + 1] = tostring(k) end
      table.sort(have)
      error(string.format("%s: missing variable '%s' (variables: %s)%s", what or "template", name,
        #have > 0 and table.concat(have, ", ") or "none",
        #stack > 0 and (" in the value of " .. table.concat(stack, " -> ")) or ""), 0)
    end
    if type(v) ~= "string" or not v:find("$", 1, true) then return tostring(v) end
    for i, seen in ipairs(stack) do
      if seen == name then
        local cycle = { table.unpack(stack, i) }
        cycle[#cycle + 1] = name
        error(string.format("%s: the variables refer to each other in a cycle: %s", what or "template",
          table.concat(cycle, " -> ")), 0)
      end
    end
    stack[#stack + 1] = name
    local text = render(v, vars, what, stack)
    stack[#stack] = nil
    return text
  end))
end

function M.render(tpl, vars, what)
  return render(tpl, vars, what, {})
end

-- Checks every template against the variables before anything runs.
function M.check(templates, var_names)
  local have = {}
  for _, n in ipairs(var_names) do have[n] = true end
  for what, tpl in pairs(templates) do
    for _, name in ipairs(M.names(tpl)) do
      if not have[name] then
        table.sort(var_names)
        error(string.format("%s: missing variable '%s' (variables: %s)", what, name,
          #var_names > 0 and table.concat(var_names, ", ") or "none"), 0)
      end
    end
  end
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function check_list(kind, name, list)
  if type(list) ~= "table" or #list == 0 then
    error(string.format("%s: variable '%s' must be a non-empty list", kind, tostring(name)), 0)
  end
end

-- template.product{ a = {1, 2}, b = {"x", "y"} } -> every combination (variables in name
-- order, the last varying fastest): {a=1,b="x"}, {a=1,b="y"}, {a=2,b="x"}, {a=2,b="y"}.
function M.product(vars)
  local combos = { {} }
  for _, name in ipairs(sorted_keys(vars or {})) do
    local list = vars[name]
    check_list("vars", name, list)
    local next_combos = {}
    for _, c in ipairs(combos) do
      for _, v in ipairs(list) do
        local n = {}
        for k, x in pairs(c) do n[k] = x end
        n[name] = v
        next_combos[#next_combos + 1] = n
      end
    end
    combos = next_combos
  end
  return combos
end

-- template.zip{ a = {1, 2}, b = {"x", "y"} } -> {a=1,b="x"}, {a=2,b="y"} (equal lengths).
function M.zip(vars)
  local names, n = sorted_keys(vars or {}), nil
  for _, name in ipairs(names) do
    check_list("zip", name, vars[name])
    if n and #vars[name] ~= n then
      error(string.format("zip: variable '%s' has %d values, the others %d", name, #vars[name], n), 0)
    end
    n = #vars[name]
  end
  local rows = {}
  for i = 1, n or 0 do
    local r = {}
    for _, name in ipairs(names) do r[name] = vars[name][i] end
    rows[i] = r
  end
  return rows
end

-- Every combination of a product and a zip (each product combination with each zip row).
function M.combine(product_vars, zip_vars)
  local p = M.product(product_vars)
  if not zip_vars or next(zip_vars) == nil then return p end
  local out = {}
  for _, c in ipairs(p) do
    for _, r in ipairs(M.zip(zip_vars)) do
      local n = {}
      for k, v in pairs(c) do n[k] = v end
      for k, v in pairs(r) do
        if n[k] ~= nil then error("variable '" .. k .. "' is both in vars and in zip", 0) end
        n[k] = v
      end
      out[#out + 1] = n
    end
  end
  return out
end

return M
