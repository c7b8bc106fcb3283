-- gallery_draw.lua: how long an experiment's index.html takes to draw in headless Chromium
-- for galleries of N jobs (5 styles x N/50 subjects x 10 seeds, one failure in 50), written
-- as manifest lines (one run) as tests/host/test_gallery.lua's 500-job case does. Prints
-- the page's own draw time (data-drawn-ms) and the browser run's wall time per size. Run by
-- hand (not part of ./scripts/test), with the build's module on the paths:
--   LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="build/lib/?.so;;" \
--     lua5.4 tests/bench/gallery_draw.lua [N...]        (default: 500 5000)
-- Needs chromium; each browser run is bounded by timeout(1) and its profile is a temporary one.
local core = require "editflow.core"
local gallery = require "editflow.experiment.gallery"
local json = require "editflow.json"

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
  local lines, jobs = {}, 0
  for s = 1, 5 do
    for u = 1, subjects do
      local vars = { style = "style" .. s, subject = "subject " .. u }
      for seed = 1, 10 do
        jobs = jobs + 1
        local slug = string.format("j%05d", jobs)
        local rec = { run = "20260101T000000000Z-bench", started = "2026-01-01T00:00:00.000Z", experiment = n .. " jobs",
          index = jobs, slug = slug, model = "fal-ai/qwen-image-edit-plus", prompt_name = "p1",
          template = "${subject} in ${style}", prompt = vars.subject .. " in " .. vars.style, vars = vars, seed = seed,
          input = { prompt = vars.subject .. " in " .. vars.style, seed = seed }, cost = 0.01, cost_estimate = 0.01 }
        if jobs % 50 == 0 then
          rec.status, rec.error = "failed", { code = "HTTP_500", message = "failed" }
        else
          rec.status, rec.request_id = "done", "req-" .. jobs
          rec.outputs = { { path = slug .. "-1.png", width = 512, height = 512, bytes = 1000 } }
        end
        lines[#lines + 1] = json.encode(rec)
      end
    end
  end
  assert(core.write_file(dir .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n"))
  local path = gallery.write(dir)
  local t0 = core.monotime()
  local p = io.popen("timeout -k 5 120 chromium " .. FLAGS .. " --user-data-dir=" .. q(dir .. "/profile")
    .. " --dump-dom " .. q("file://" .. path .. "#across=style&down=seed") .. " 2>/dev/null")
  local dom = p:read("a")
  p:close()
  local wall = core.monotime() - t0
  local ms = dom:match("data%-drawn%-ms=\"(%d+)\"")
  print(string.format("%6d jobs: drawn by the page's script in %s ms; browser run %.1f s", jobs,
    ms or "? (the script did not finish)", wall))
  os.execute("rm -rf " .. q(dir))
end

local sizes = {}
for _, a in ipairs(arg) do sizes[#sizes + 1] = assert(tonumber(a), "usage: gallery_draw.lua [N...]") end
if #sizes == 0 then sizes = { 500, 5000 } end
for _, n in ipairs(sizes) do one(n) end
