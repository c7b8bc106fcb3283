-- combine_refs.lua: 2–3 reference images combined under a list of prompts (the model's
-- multi-image edit), one row per prompt, three seeds each.
--   editflow run scripts/combine_refs.lua [OUT_DIR] [REF_1 REF_2 [REF_3]]
-- Paths: the script's own assets (assets/ beside it) are found from the script's location,
-- so it runs from any folder, in the source tree or installed (share/editflow/scripts/); paths
-- you pass, and the output folder, are taken relative to the current folder.
local editflow = require "editflow"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."  -- this script's folder

local out = arg[1] or "experiments"
local refs = { arg[2] or (here .. "/assets/portrait.png"), arg[3] or (here .. "/assets/street.png"), arg[4] }

local summary = editflow.experiment {
  name = "combine-refs",
  out = out,
  prompt = "${scene}",
  vars = { scene = {
    "The person from the first image walks along the road from the second image",
    "The person from the first image stands at the roadside at sunset, photographed from low",
    "A postcard of the road from the second image with the person from the first image waving",
  } },
  images = refs,
  seeds = { 1, 2, 3 },
  params = { image_size = "landscape_4_3" },
}
print(summary.gallery)
