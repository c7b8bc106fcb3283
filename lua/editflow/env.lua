-- editflow.env: the one reading of editflow's environment variables: a variable set but empty
-- counts as unset (as shells leave `FAL_KEY=` behind), so a default applies.
local M = {}

local overrides = {}  -- name -> value or false (unset), set by env.set

-- env.set(name, value or nil): a value that wins over the process environment (for an
-- embedding host that cannot change it, and for tests); nil removes the override.
function M.set(name, value)
  overrides[name] = value
end

-- env.get(name) -> the value, or nil when unset or empty.
function M.get(name)
  local v = overrides[name]
  if v == nil then v = os.getenv(name) end
  if v == "" then return nil end
  return v
end

return M
