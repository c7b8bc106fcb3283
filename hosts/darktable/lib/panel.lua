-- lib/panel.lua (editflow_darktable): the "editflow" panel of darktable's lighttable (GUI only).
-- Prompt (with a few presets), model (any image model of editflow's catalog), seed, size cap
-- and "edit selected"; a status line for the run's progress, and errors in darktable's own
-- message area. The button runs the edit in its own darktable Lua job (darktable calls button
-- callbacks that way), so waiting there never holds darktable's interface. While an edit runs
-- the button is insensitive (and the plugin refuses a second edit anyway): one click, one edit.
-- For lua-scripts' script_manager the plugin's table gets destroy (hide the panel), restart
-- and show (show it again): darktable's Lua cannot remove a lib once registered.
-- The button is named "editflow_edit_selected" for CSS (darktable's user.css can style it).
local dt = require "darktable"
local catalog = require "editflow.catalog"
local schema = require "editflow.schema"

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
  -- a label above each entry (darktable's comboboxes carry their own)
  local function caption(text) return dt.new_widget("label") { label = text, halign = "start" } end
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
  w.seed = dt.new_widget("entry") { placeholder = "empty: none", text = "",
    tooltip = "an integer: the same photo, prompt and seed give the same job (sent once)" }
  w.seed_label = caption("seed")
  -- whether the chosen model takes a seed, from its shipped schema (none shipped: it may)
  local function seed_note(id)
    local ok, model = pcall(schema.shipped, id)
    if ok and model and not M.takes_seed(model) then
      w.seed_label.label = "seed (not taken by this model)"
    else
      w.seed_label.label = "seed"
    end
  end
  -- shown without fal's "fal-ai/" (the panel is narrow); the value sent is the full id
  local shown = {}
  for i, id in ipairs(models) do shown[i] = id:gsub("^fal%-ai/", "") end
  w.model = dt.new_widget("combobox") {
    label = "model", tooltip = "the fal endpoint the photos go to",
    selected = index_of(models, default_model),
    changed_callback = function(self) seed_note(models[self.selected]) end,
    table.unpack(shown),
  }
  seed_note(default_model)
  w.cap = dt.new_widget("combobox") {
    label = "size cap", tooltip = "longest side of the photo sent, in pixels",
    selected = index_of(CAPS, tostring(M.DEFAULT_CAP)), table.unpack(CAPS),
  }
  w.status = dt.new_widget("label") { label = "idle", ellipsize = "end", halign = "start" }

  -- the status line shows the text as it is; darktable's message area names editflow
  local function report(text, is_error)
    w.status.label = text
    if is_error then
      dt.print_error("editflow: " .. text)
      dt.print("editflow: " .. text)
    end
  end

  local function edit_selected()
    if M.busy() then return report(M.BUSY, true) end
    local images = {}
    for _, image in ipairs(dt.gui.action_images) do images[#images + 1] = image end
    if #images == 0 then return report("select the photos to edit first", true) end
    local prompt = w.prompt.text
    if prompt == "" then return report("type what to change first", true) end
    local seed = nil
    if w.seed.text ~= "" then
      seed = math.tointeger(tonumber(w.seed.text))
      if not seed then return report("seed: must be an integer", true) end
    end
    report(string.format("%d photo%s", #images, #images == 1 and "" or "s"))
    w.go.sensitive = false
    local ok, imported, errors = pcall(M.edit, images, {
      prompt = prompt, seed = seed, endpoint = models[w.model.selected],
      size = tonumber(w.cap.value), on_progress = report,
    })
    w.go.sensitive = true
    if not ok then return report(M.plain(imported), true) end
    local n = 0
    for _, image in ipairs(imported) do if image then n = n + 1 end end
    report(string.format("%d of %d edited%s", n, #images, next(errors) and " (see messages)" or ""))
    dt.print(string.format("editflow: %d of %d photos edited", n, #images))
  end

  w.go = dt.new_widget("button") { label = "edit selected", name = "editflow_edit_selected",
    clicked_callback = edit_selected }

  dt.register_lib("editflow", "editflow", true, false,
    { [dt.gui.views.lighttable] = { "DT_UI_CONTAINER_PANEL_RIGHT_CENTER", 100 } },
    dt.new_widget("box") { orientation = "vertical",
      caption("prompt"), w.prompt, w.presets, w.model, w.seed_label, w.seed, w.cap, w.go, w.status })
  M.widgets = w

  -- lua-scripts' script_manager: stopping the script hides the panel, starting it again shows it
  M.destroy_method = "hide"
  function M.destroy() dt.gui.libs["editflow"].visible = false end
  function M.restart() dt.gui.libs["editflow"].visible = true end
  M.show = M.restart
end
