-- edit_pair.lua: the demo workflow. Two local photos, two prompts, both edits in flight at
-- once, every result saved into one folder.
--   editflow run scripts/edit_pair.lua [OUT_DIR [PHOTO_1 PHOTO_2]]
-- Configuration comes from the environment (FAL_KEY, EDITFLOW_BASE_URL, EDITFLOW_AUTH).
-- Paths: the script's own assets (assets/ beside it) are found from the script's location,
-- so it runs from any folder, in the source tree or installed (share/editflow/scripts/); paths
-- you pass, and the output folder, are taken relative to the current folder.
local editflow = require "editflow"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."  -- this script's folder

local out = arg[1] or "demo-output"
local photos = { arg[2] or (here .. "/assets/portrait.png"), arg[3] or (here .. "/assets/street.png") }
local prompts = {
  "Place the person from the first image on the road of the second image, golden hour light",
  "Make the person from the first image walk along this road, painted as a watercolour",
}

local client = editflow.client {
  on_log = function(job, entry) io.stderr:write(job.request_id, ": ", entry.message, "\n") end,
}

-- Submit every job first, so they queue and run together; then collect them in order.
local jobs = {}
for i, prompt in ipairs(prompts) do
  jobs[i] = assert(client:submit { prompt = prompt, image_urls = photos, seed = 2509 + i })
  io.stderr:write("submitted ", jobs[i].request_id, "\n")
end
local failed = 0
for i, job in ipairs(jobs) do
  local paths, err = job:save(out, { name = string.format("edit%d", i) })
  if paths then
    for _, p in ipairs(paths) do print(p) end
  else
    failed = failed + 1
    io.stderr:write("edit ", i, " failed: ", tostring(err), "\n")
  end
end
os.exit(failed == 0 and 0 or 1)
