-- editflow.runtime: the one engine loop a Lua state shares, and the way code waits on it.
-- Every client uses this loop unless given its own, so all transfers of a script share one
-- libcurl multi handle (one thread, connections reused). await() drives the loop until the
-- transfer finishes; sleep() waits while letting other transfers progress. Both step the loop
-- in slices of at most 100 ms so a SIGINT hook set by the host runs promptly.
local core = require "editflow.core"

local M = {}

local shared  -- created on first use

function M.loop()
  if not shared then shared = core.loop() end
  return shared
end

M.now = core.monotime

local SLICE_MS = 100

-- Waits until transfer t is done.
function M.await(loop, t)
  while not t:done() do
    local ok, err = loop:step(SLICE_MS)
    if not ok then error("editflow: transfer loop failed: " .. tostring(err), 0) end
  end
end

-- Waits `seconds`, moving the loop's transfers meanwhile.
function M.sleep(loop, seconds)
  local deadline = M.now() + seconds
  while true do
    local left = deadline - M.now()
    if left <= 0 then return end
    local ms = math.min(SLICE_MS, math.ceil(left * 1000))
    local ok, err = loop:step(ms)
    if not ok then error("editflow: transfer loop failed: " .. tostring(err), 0) end
  end
end

return M
