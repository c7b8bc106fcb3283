-- editflow.errors: the error values editflow returns for operational failures.
-- Policy (STYLE): misuse raises a string naming the field; a failure of the network, the
-- server or the job returns nil, err where err is one of these tables: a stable `code`
-- ("HTTP_422", "COULDNT_CONNECT", "JOB_FAILED", ...), a readable `message`, and what the
-- server said (`status`, `type`, `detail`, `request_id`, `retryable`). tostring(err) is the
-- message, so `assert(client:edit{...})` raises something readable.
local json = require "editflow.json"

local M = {}

local Error = {}
Error.__index = Error
Error.__tostring = function(e) return e.message end
Error.__name = "editflow.Error"

function M.new(code, message, fields)
  local e = fields or {}
  e.code, e.message = code, message
  return setmetatable(e, Error)
end

function M.is(v)
  return getmetatable(v) == Error
end

-- errors.code(e) -> the code of an error value (returned or raised), or nil: what callers
-- switch on, never the message text.
function M.code(e)
  if getmetatable(e) == Error then return e.code end
  if type(e) == "string" and e:find(M.INTERRUPT_TEXT, 1, true) then return "INTERRUPTED" end
  return nil
end

-- What the host's signal hook raises (src/host/editflow.c, luaL_error) -- read here only, so
-- every other module asks errors.code(e) == "INTERRUPTED".
M.INTERRUPT_TEXT = "interrupted!"

-- Server text made safe to print: control characters (ESC, CR, BEL, ...) shown as \xNN, so a
-- hostile server cannot move the cursor or rewrite a terminal line; cut to `max` bytes.
function M.clean(text, max)
  if type(text) ~= "string" then text = tostring(text) end
  max = max or 2000
  if #text > max then text = text:sub(1, max) .. "..." end
  return (text:gsub("[%z\1-\31\127]", function(c)
    if c == "\n" or c == "\t" then return " " end
    return string.format("\\x%02X", c:byte())
  end))
end

-- "body.image_urls.0" style location from fal's loc list, without the leading "body".
local function where(loc)
  if type(loc) ~= "table" then return nil end
  local parts = {}
  for i, p in ipairs(loc) do
    if not (i == 1 and p == "body") then
      if math.type(p) == "integer" and #parts > 0 then
        parts[#parts] = parts[#parts] .. "[" .. p .. "]"
      else
        parts[#parts + 1] = tostring(p)
      end
    end
  end
  return #parts > 0 and table.concat(parts, ".") or nil
end

-- Reads fal's error bodies: {"detail": [{loc, msg, type}...]} (validation), {"detail": "text",
-- "error_type": ...} (infrastructure) or anything else. Returns text, type, decoded detail.
local function describe(body, headers)
  local doc = json.decode(body or "")
  local etype = headers and headers["x-fal-error-type"]
  if type(doc) ~= "table" then
    local text = (body or ""):gsub("%s+", " "):sub(1, 200)
    return text ~= "" and M.clean(text) or nil, etype, nil
  end
  etype = doc.error_type or etype
  local d = doc.detail
  if type(d) == "string" then return M.clean(d), etype, d end
  if type(d) == "table" and #d > 0 then
    local lines = {}
    for _, item in ipairs(d) do
      if type(item) == "table" then
        local at = where(item.loc)
        lines[#lines + 1] = (at and (at .. ": ") or "") .. tostring(item.msg or "invalid")
          .. (item.type and (" (" .. tostring(item.type) .. ")") or "")
        etype = etype or item.type
      end
    end
    return M.clean(table.concat(lines, "; ")), etype, d
  end
  if type(doc.error) == "string" then return M.clean(doc.error), etype, doc end
  return nil, etype, doc
end

-- An error from an HTTP answer that is not a success. `what` says which call ("submit",
-- "result", ...). The code is HTTP_<status>.
function M.from_http(resp, what, request_id)
  local text, etype, detail = describe(resp.body, resp.headers)
  local retry = resp.headers and resp.headers["x-fal-retryable"]
  local retryable
  if retry then retryable = retry:lower() == "true" end
  local msg = string.format("%s failed: HTTP %d%s", what, resp.status, text and (": " .. text) or "")
  if request_id then msg = msg .. " [request " .. request_id .. "]" end
  return M.new("HTTP_" .. resp.status, msg, {
    status = resp.status, type = type(etype) == "string" and M.clean(etype, 100) or nil,
    detail = detail, request_id = request_id, retryable = retryable, headers = resp.headers,
  })
end

-- A transport failure (no HTTP answer).
function M.from_transport(what, message, code, request_id)
  local msg = string.format("%s failed: %s", what, message)
  if request_id then msg = msg .. " [request " .. request_id .. "]" end
  return M.new(code or "TRANSPORT", msg, { request_id = request_id })
end

return M
