-- editflow_darktable/panel.lua: the "editflow" panel of darktable's lighttable (GUI only).
-- Prompt (with a few presets), model (any image model of editflow's catalog), seed, size cap
-- and "edit selected"; a status line for the run's progress, and errors in darktable's own
-- message area. The button runs the edit in its own darktable Lua job (darktable calls button
-- callbacks that way), so waiting there never holds darktable's interface.
-- The button is named "editflow_edit_selected" for CSS (darktable's user.css can style it).
local dt = require "darktable"
local catalog = require "editflow.catalog"

local PRESETS = {
  { "golden hour", "warm golden-hour light, long soft shadows, keep everything else as it is" },
  { "snow", "make it snow: fresh snow on the ground and falling flakes" },
  { "declutter", "remove the people and clutter in the background" },
  { "watercolour", "turn the photo into a loose watercolour painting" },
  { "black and white", "a rich black and white print with deep blacks" },
}
local CAPS = { "768", "1024", "1536", "2048" }

-- The catalog's image models (an entry with an output section; the vision judge makes none).
local function image_models()
  local ids = {}
  for id, entry in pairs(catalog) do
    if type(entry.output) == "table" then ids[#ids + 1] = id end
  end
  table.sort(ids)
  return ids
end

local function index_of(list, v)
  for i, x in ipairs(list) do if x == v then return i end end
  return 1
end

return function(M)
  local models = image_models()
  -- $EDITFLOW_ENDPOINT when set (and listed with the rest if the catalog lacks it), as
  -- editflow.client reads it; an empty value is unset
  local env_model = os.getenv("EDITFLOW_ENDPOINT")
  local default_model = (env_model and env_model ~= "") and env_model or "fal-ai/qwen-image-edit-plus"
  if models[index_of(models, default_model)] ~= default_model then
    table.insert(models, 1, default_model)
  end
  local w = {}
  w.prompt = dt.new_widget("entry") { placeholder = "what to change", text = "", tooltip = "the edit, in words" }
  local preset_names = { "presets..." }
  for i, p in ipairs(PRESETS) do preset_names[i + 1] = p[1] end
  w.presets = dt.new_widget("combobox") {
    label = "presets", selected = 1,
    changed_callback = function(self)
      local p = PRESETS[self.selected - 1]
      if p then w.prompt.text = p[2] end
    end,
    table.unpack(preset_names),
  }
  -- shown without fal's "fal-ai/" (the panel is narrow); the value sent is the full id
  local shown = {}
  for i, id in ipairs(models) do shown[i] = id:gsub("^fal%-ai/", "") end
  w.model = dt.new_widget("combobox") {
    label = "model", tooltip = "the fal endpoint the photos go to",
    selected = index_of(models, default_model), table.unpack(shown),
  }
  w.seed = dt.new_widget("entry") { placeholder = "seed (empty: none)", text = "",
    tooltip = "an integer: the same photo, prompt and seed give the same job (sent once)" }
  w.cap = dt.new_widget("combobox") {
    label = "size cap", tooltip = "longest side of the photo sent, in pixels",
    selected = index_of(CAPS, tostring(M.DEFAULT_CAP)), table.unpack(CAPS),
  }
  w.status = dt.new_widget("label") { label = "editflow: idle", ellipsize = "end", halign = "start" }

  local function report(text, is_error)
    w.status.label = text
    if is_error then
      dt.print_error(text)
      dt.print(text)
    end
  end

  local function edit_selected()
    local images = {}
    for _, image in ipairs(dt.gui.action_images) do images[#images + 1] = image end
    if #images == 0 then return report("editflow: select the photos to edit first", true) end
    local prompt = w.prompt.text
    if prompt == "" then return report("editflow: type what to change first", true) end
    local seed = nil
    if w.seed.text ~= "" then
      seed = math.tointeger(tonumber(w.seed.text))
      if not seed then return report("editflow: the seed must be an integer", true) end
    end
    report(string.format("editflow: %d photo%s", #images, #images == 1 and "" or "s"))
    local ok, imported, errors = pcall(M.edit, images, {
      prompt = prompt, seed = seed, endpoint = models[w.model.selected],
      size = tonumber(w.cap.value), on_progress = report,
    })
    if not ok then return report("editflow: " .. tostring(imported), true) end
    local n = 0
    for _, image in ipairs(imported) do if image then n = n + 1 end end
    report(string.format("editflow: %d of %d edited%s", n, #images, next(errors) and " (see messages)" or ""))
    dt.print(string.format("editflow: %d of %d photos edited", n, #images))
  end

  w.go = dt.new_widget("button") { label = "edit selected", name = "editflow_edit_selected",
    clicked_callback = edit_selected }

  dt.register_lib("editflow", "editflow", true, false,
    { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
    dt.new_widget("box") { orientation = "vertical",
      w.prompt, w.presets, w.model, w.seed, w.cap, w.go, w.status })
  M.widgets = w
end
