-- gallery_draw.lua: how long an experiment's index.html takes to draw in headless Chromium
-- for galleries of N jobs (5 styles x N/50 subjects x 10 seeds, one failure in 50), written
-- straight from a plan and records as tests/host/test_gallery.lua's 500-job case does. Prints
-- the page's own draw time (data-drawn-ms) and the browser run's wall time per size. Run by
-- hand (not part of ./scripts/test), with the build's module on the paths:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lib/?.so;;" \
--     lua5.4 tests/bench/gallery_draw.lua [N...]        (default: 500 5000)
-- Needs chromium; each browser run is bounded by timeout(1) and its profile is a temporary one.
local core = require "editflow.core"
local gallery = require "editflow.experiment.gallery"

local FLAGS = "--headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check "
  .. "--disable-extensions --disable-sync --mute-audio"

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(core.mkdir(p))
  return p
end

local function one(n)
  local dir = tmpdir()
  local subjects = math.max(1, n // 50)
  local plan, records, seeds = { jobs = {}, combos = {}, megapixels = 0, cost = 0 }, {}, {}
  for i = 1, 10 do seeds[i] = i end
  for s = 1, 5 do
    for u = 1, subjects do
      local vars = { style = "style" .. s, subject = "subject " .. u }
      plan.combos[#plan.combos + 1] = vars
      for _, seed in ipairs(seeds) do
        local i = #plan.jobs + 1
        local slug = string.format("j%05d", i)
        plan.jobs[i] = { index = i, combo = #plan.combos, vars = vars, seed = seed, slug = slug, images = 1,
          cost = 0.01, input = { prompt = vars.subject .. " in " .. vars.style, seed = seed } }
        records[i] = i % 50 == 0
          and { status = "failed", seed = seed, error = { code = "HTTP_500", message = "failed" } }
          or { status = "done", seed = seed, request_id = "req-" .. i, cost_estimate = 0.01,
               outputs = { { path = slug .. "-1.png", width = 512, height = 512, bytes = 1000 } } }
      end
    end
  end
  local path = gallery.write(dir, n .. " jobs", plan, records, { seeds = seeds })
  local t0 = core.monotime()
  local p = io.popen("timeout -k 5 120 chromium " .. FLAGS .. " --user-data-dir=" .. q(dir .. "/profile")
    .. " --dump-dom " .. q("file://" .. path .. "#across=style&down=seed") .. " 2>/dev/null")
  local dom = p:read("a")
  p:close()
  local wall = core.monotime() - t0
  local ms = dom:match("data%-drawn%-ms=\"(%d+)\"")
  print(string.format("%6d jobs: drawn by the page's script in %s ms; browser run %.1f s", #plan.jobs,
    ms or "? (the script did not finish)", wall))
  os.execute("rm -rf " .. q(dir))
end

local sizes = {}
for _, a in ipairs(arg) do sizes[#sizes + 1] = assert(tonumber(a), "usage: gallery_draw.lua [N...]") end
if #sizes == 0 then sizes = { 500, 5000 } end
for _, n in ipairs(sizes) do one(n) end
