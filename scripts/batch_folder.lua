-- batch_folder.lua: one edit applied to every image in a folder (or a glob).
--   editflow run scripts/batch_folder.lua FOLDER_OR_GLOB "PROMPT" [OUT_DIR]
-- Each image is one job, named after the file; a re-run after an interruption finishes only
-- what is missing (the journal in OUT_DIR/batch remembers what was paid for).
-- Paths: FOLDER_OR_GLOB and OUT_DIR are taken relative to the current folder, so the script
-- runs the same from any folder, in the source tree or installed (share/editflow/scripts/);
-- it has no assets of its own.
local editflow = require "editflow"

local source, prompt, out = arg[1], arg[2], arg[3] or "experiments"
if not source or not prompt then
  io.stderr:write("usage: editflow run batch_folder.lua FOLDER_OR_GLOB \"PROMPT\" [OUT_DIR]\n")
  os.exit(2)
end

local summary = editflow.experiment {
  name = "batch",
  out = out,
  prompt = prompt,
  vars = { photo = editflow.images(source) },
  images = { "${photo}" },
  concurrency = 16,
}
print(summary.gallery)
os.exit(summary.failed == 0 and 0 or 1)
