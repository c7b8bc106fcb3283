-- editflow.env: the one reading of editflow's environment variables: a variable set but empty
-- counts as unset (as shells leave `FAL_KEY=` behind), so a default applies.
local M = {}

-- env.get(name) -> the value, or nil when unset or empty.
function M.get(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

return M
