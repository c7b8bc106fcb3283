-- style_grid.lua: one photo under a grid of styles and seeds, side by side.
--   editflow run scripts/style_grid.lua [PHOTO [OUT_DIR]]
-- Each style × lighting × seed is one job; the result is OUT_DIR/style-grid/index.html.
-- Add --dry-run's equivalent by setting EDITFLOW_DRY_RUN=1 to see the plan and its cost only.
-- Paths: the script's own assets (assets/ beside it) are found from the script's location,
-- so it runs from any folder, in the source tree or installed (share/editflow/scripts/); paths
-- you pass, and the output folder, are taken relative to the current folder.
local editflow = require "editflow"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."  -- this script's folder

local photo = arg[1] or (here .. "/assets/portrait.png")
local out = arg[2] or "experiments"

local summary = editflow.experiment {
  name = "style-grid",
  out = out,
  prompt = "Repaint this photo as ${style}, ${light} lighting, keep the person's pose and face",
  vars = {
    style = { "an oil painting", "an ink drawing", "a watercolour", "a 1980s anime still" },
    light = { "soft morning", "dramatic evening" },
  },
  images = { photo },
  seeds = { 11, 22 },
  params = { image_size = "square_hd" },
  dry_run = os.getenv("EDITFLOW_DRY_RUN") == "1",
}
if summary.dry_run then
  print(string.format("plan: %d jobs, %.2f MP, about $%.2f", summary.jobs, summary.megapixels, summary.cost))
else
  print(summary.gallery)
end
