-- editflow.url: parsing just enough of http(s) URLs to compare origins and re-base paths.
-- The origin (scheme, host, port) decides where a credential may go (SPEC §2): URLs the
-- server hands back that point at another origin are re-based onto the configured base URL.
local M = {}

M.MAX = 8192   -- bytes: a longer URL from a server (status, result, image) is refused

local DEFAULT_PORT = { http = 80, https = 443 }

-- url.parse(s) -> { scheme, host, port, path, query, origin, prefix } or nil, message
function M.parse(s)
  if type(s) ~= "string" then return nil, "URL must be a string" end
  local scheme, rest = s:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then return nil, "not an absolute URL: " .. s end
  scheme = scheme:lower()
  if not DEFAULT_PORT[scheme] then return nil, "unsupported URL scheme '" .. scheme .. "'" end
  local authority, tail = rest:match("^([^/?#]*)(.*)$")
  if authority:find("@", 1, true) then
    return nil, "URLs with user:password@ are not supported (pass the credential as key=)"
  end
  local host, port = authority:match("^%[([%x:.]+)%]:?(%d*)$")
  if host then host = "[" .. host .. "]" else host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host or host == "" then return nil, "URL has no host: " .. s end
  port = port ~= "" and tonumber(port) or DEFAULT_PORT[scheme]
  if port < 1 or port > 65535 then return nil, "URL port out of range: " .. s end
  tail = tail:gsub("#.*$", "")
  local path, query = tail:match("^([^?]*)%??(.*)$")
  if path == "" then path = "/" end
  host = host:lower()
  return {
    scheme = scheme, host = host, port = port, path = path,
    query = query ~= "" and query or nil,
    origin = scheme .. "://" .. host .. ":" .. port,
    prefix = path:gsub("/+$", ""),   -- base path without trailing slash ("" for the root)
  }
end

function M.origin(s)
  local u = M.parse(s)
  return u and u.origin
end

-- The root of u as text, without the default port: "https://host" or "http://host:8080".
function M.root(u)
  if u.port == DEFAULT_PORT[u.scheme] then return u.scheme .. "://" .. u.host end
  return u.scheme .. "://" .. u.host .. ":" .. u.port
end

-- url.rebase(returned, base) -> URL on base's origin and prefix, keeping returned's path and
-- query: https://queue.fal.run/a/b/requests/1 under http://h:8080/fal -> http://h:8080/fal/a/b/requests/1
function M.rebase(returned, base)
  local r, err = M.parse(returned)
  if not r then return nil, err end
  local path = r.path
  if base.prefix ~= "" and (path == base.prefix or path:sub(1, #base.prefix + 1) == base.prefix .. "/") then
    path = path:sub(#base.prefix + 1)  -- already carries the prefix
  end
  return M.root(base) .. base.prefix .. path .. (r.query and ("?" .. r.query) or "")
end

function M.escape(s)
  return (s:gsub("[^%w%-._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- Appends query parameters (a table name -> value; sorted for stable URLs).
function M.with_query(s, params)
  local keys = {}
  for k in pairs(params) do keys[#keys + 1] = k end
  if #keys == 0 then return s end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = M.escape(k) .. "=" .. M.escape(tostring(params[k])) end
  return s .. (s:find("?", 1, true) and "&" or "?") .. table.concat(parts, "&")
end

return M
