-- editflow.listing: fal's record of an endpoint's requests (SPEC §8), read to settle a submit
-- whose answer was lost. GET {api}/v1/models/requests/by-endpoint?endpoint_id=&start=&end=
-- &expand=payloads (Key auth) lists the requests that ENDED in a window, newest first, each
-- with the input it was sent (json_input) and a success's output (json_output). A job is
-- known by the fingerprint of its body as sent (listing.fingerprint), taken the same way from
-- json_input, so a listed request is this job's when the two agree. Which listed request a
-- job adopts, and what an unavailable listing means, is editflow.lifecycle's.
local core = require "editflow.core"
local json = require "editflow.json"
local url = require "editflow.url"

local M = {}

M.PAGE = 100        -- requests per page (fal's most)
M.MAX_PAGES = 20    -- pages read per look: the window is short, the endpoint may be busy
M.SLACK = 600       -- seconds either side of the submit's intent the window spans (clocks differ)
M.SKEW = 5          -- seconds a listed request may seem sent before the intent (fal's clock vs ours):
                    -- an equal body sent earlier than that is another run's, never this job's

-- listing.fingerprint(body) -> a hex fingerprint of a JSON body (its canonical encoding:
-- editflow's encoder sorts keys), the same for the text sent and for json_input read back.
function M.fingerprint(body)
  local doc = type(body) == "string" and json.decode(body) or body
  if doc == nil then return nil end
  return string.format("%016x", core.hash64(json.encode(doc)))
end

local function iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%SZ", math.floor(t))
end

-- Unix seconds of an ISO 8601 UTC time ("2026-12-06T03:11:08.154Z", an offset, or none), or nil.
function M.seconds(text)
  if type(text) ~= "string" then return nil end
  local y, mo, d, h, mi, sec, rest = text:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(.*)$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  -- days from 1970-01-01 of a civil date (the proleptic Gregorian calendar)
  local a = mo <= 2 and 1 or 0
  local yy, mm = y - a, mo + 12 * a - 3
  local era = yy // 400
  local yoe = yy - era * 400
  local doy = (153 * mm + 2) // 5 + d - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  local t = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
  local sign, oh, om = rest:match("([+-])(%d%d):?(%d%d)$")
  if sign then t = t - (sign == "+" and 1 or -1) * (tonumber(oh) * 3600 + tonumber(om) * 60) end
  return t
end

-- listing.look(client, endpoint, fp, since, taken) -> item, or nil, err.
-- One look through the window [since - SLACK, now + SLACK]: of the listed requests whose input
-- has fingerprint fp and whose id taken(id) does not claim, the one sent nearest the submit's
-- intent (`since`): an equal body another run or client sent earlier is not this job's, and
-- two equal bodies lost in one run each find their own. err.unavailable: the listing cannot
-- be used here (no fal key for fal's platform, 401/403/404); err.message otherwise.
function M.look(client, endpoint, fp, since, taken)
  if not client:platform_ok("api") then
    return nil, { unavailable = true, message = "fal's request listing needs a fal key for fal's platform" }
  end
  local base = client:platform_url("api") .. "/v1/models/requests/by-endpoint"
  local cursor
  local found = {}
  local deadline = core.monotime() + client.lookup_timeout  -- one look, every page
  for _ = 1, M.MAX_PAGES do
    local u = url.with_query(base, { endpoint_id = endpoint, start = iso((since or os.time()) - M.SLACK),
      ["end"] = iso(os.time() + M.SLACK), expand = "payloads", limit = M.PAGE, cursor = cursor })
    local resp, err = client:platform_call("listing", "GET", u, nil, nil, false, { once = true, deadline = deadline })
    if not resp then
      return nil, { unreachable = true, message = "fal's request listing cannot be reached: "
        .. tostring(err and (err.message or err.code)) }
    end
    if resp.status == 401 or resp.status == 403 or resp.status == 404 then
      return nil, { unavailable = true, message = "fal's request listing answered HTTP " .. resp.status }
    end
    if resp.status < 200 or resp.status > 299 then
      return nil, { message = "fal's request listing answered HTTP " .. resp.status }
    end
    local doc = json.decode(resp.body)
    if type(doc) ~= "table" or type(doc.items) ~= "table" then
      return nil, { message = "fal's request listing answered no items" }
    end
    for _, item in ipairs(doc.items) do
      if type(item) == "table" and type(item.request_id) == "string" and item.json_input ~= nil
          and M.fingerprint(item.json_input) == fp and not taken(item.request_id) then
        found[#found + 1] = item
      end
    end
    if doc.has_more ~= true or type(doc.next_cursor) ~= "string" or doc.next_cursor == ""
        or doc.next_cursor == cursor then
      break
    end
    cursor = doc.next_cursor
  end
  local best, gap
  local t0 = since or os.time()
  for _, item in ipairs(found) do
    local at = M.seconds(item.sent_at)
    local d = at and math.abs(at - t0) or M.SLACK  -- no readable time: taken last
    if (not at or at >= t0 - M.SKEW) and d <= M.SLACK and (not gap or d < gap) then best, gap = item, d end
  end
  return best
end

return M
