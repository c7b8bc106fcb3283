-- editflow.cache: the one owner of editflow's XDG cache folder ($XDG_CACHE_HOME/editflow, else
-- ~/.cache/editflow): small JSON documents fetched from fal (schemas, prices, signing keys) and
-- what was uploaded to fal storage, each under a name ("schemas/fal-ai__x.json"), written
-- atomically, stamped with where it came from and when.
-- A cache is best effort: one that cannot be read or written only means fetching again.
-- An entry is used only for the URL it was fetched from, and only while younger than the
-- caller's age limit (and not from the future: a clock set back does not make it fresh).
local core = require "editflow.core"
local json = require "editflow.json"
local env = require("editflow.env").get

local M = {}

M.MAX_BYTES = 8 * 1024 * 1024  -- a cache file larger than this is not read

-- The cache folder: `dir` when given, else the XDG one; nil when there is no home.
function M.dir(dir)
  if dir then return dir end
  local base = env("XDG_CACHE_HOME") or (env("HOME") and env("HOME") .. "/.cache")
  return base and (base .. "/editflow") or nil
end

-- A file name for any key (an endpoint id, a URL): safe characters kept, the rest escaped,
-- so two keys never share a file.
function M.name_for(key)
  return (key:gsub("[^%w%-.]", function(c) return string.format("_%02x", c:byte()) end))
end

-- cache.get(name, url, max_age [, dir]) -> entry (the stored table: its `value`, `at`), or nil.
-- max_age nil: any age.
function M.get(name, u, max_age, dir)
  dir = M.dir(dir)
  if not dir then return nil end
  local text = core.read_file(dir .. "/" .. name, M.MAX_BYTES)
  local doc = text and json.decode(text)
  if type(doc) ~= "table" or doc.url ~= u or type(doc.at) ~= "number" then return nil end
  local now = os.time()
  if doc.at > now + 60 or (max_age and now - doc.at >= max_age) then return nil end
  return doc
end

-- cache.put(name, url, value [, dir, at]) -> true or nil. Best effort.
function M.put(name, u, value, dir, at)
  dir = M.dir(dir)
  if not dir then return nil end
  local path = dir .. "/" .. name
  local folder = path:match("^(.*)/[^/]*$")
  if not core.mkdir(folder) then return nil end
  local ok, text = pcall(json.encode, { url = u, at = at or os.time(), value = value })
  if not ok then return nil end
  return core.write_file(path, text) and true or nil
end

return M
