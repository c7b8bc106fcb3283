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
M.SLACK = 120       -- seconds before the submit's intent the window opens (clocks differ)

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

-- listing.look(client, endpoint, fp, since, taken) -> item, or nil, err.
-- One look through the window [since - SLACK, now]: the first listed request (oldest sent
-- first, so two equal bodies adopt in the order they were sent) whose input has fingerprint
-- fp and whose id taken(id) does not claim. err.unavailable: the listing cannot be used here
-- (no fal key for fal's platform, 401/403/404); err.code otherwise.
function M.look(client, endpoint, fp, since, taken)
  if not client:platform_ok("api") then
    return nil, { unavailable = true, message = "fal's request listing needs a fal key for fal's platform" }
  end
  local base = client:platform_url("api") .. "/v1/models/requests/by-endpoint"
  local cursor
  local found = {}
  for _ = 1, M.MAX_PAGES do
    local u = url.with_query(base, { endpoint_id = endpoint, start = iso((since or os.time()) - M.SLACK),
      ["end"] = iso(os.time() + 60), expand = "payloads", limit = M.PAGE, cursor = cursor })
    local resp, err = client:platform_call("listing", "GET", u, nil, nil, false, { once = true })
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
    if doc.has_more ~= true or type(doc.next_cursor) ~= "string" or doc.next_cursor == "" then break end
    cursor = doc.next_cursor
  end
  -- newest first in the listing: the oldest match is the earliest submit of this body
  return found[#found]
end

return M
