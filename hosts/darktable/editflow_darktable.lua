-- editflow_darktable.lua: editflow inside darktable (4.2, Lua API 9.0). Returns its module
-- table; edit(images, opts) edits darktable images on fal's queue and returns the imported
-- results in order. Under the GUI it also adds the "editflow" panel to the lighttable
-- (editflow_darktable/panel.lua).
--
-- Owns the run of an edit: one editflow task per photo (submit, follow, save) and the loop that
-- waits for them. Two ways to wait, one per kind of darktable:
--   hooked (the GUI)  the edit runs in a darktable Lua job (a button's callback is one). It waits
--                     with darktable.control.read(editflow.pollfile()), which releases
--                     darktable's Lua lock, so darktable and its other scripts go on, then makes
--                     one editflow.step(0). Darktable calls (export, import) happen between
--                     steps, never inside an editflow task.
--   blocking (darktable-cli --luacmd) plain editflow steps drive the loop, holding the lock.
--     There darktable-cli's main thread tears the library down once its own export is done,
--     even while the --luacmd script still runs (the script runs on a worker in 4.2); the exit
--     event is the one point where it waits for Lua, so an edit in progress holds it there.
-- The journal lives in the output folder (by default the source's own folder, so the results
-- sit next to their sources): quitting darktable loses no accepted job (the next edit resumes
-- it by its id) and editing the same photos again reuses the finished ones.
local dt = require "darktable"
local editflow = require "editflow"
local price = require "editflow.price"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local photos = dofile(here .. "editflow_darktable/photos.lua")

local M = { version = "1", here = here }

M.DEFAULT_CAP = 1024
M.MIN_SIDE = 64                    -- fal's smallest image_size side
M.EXPORTS = ".editflow-exports"   -- under the output folder: the JPEGs sent, until saved

local active = 0       -- edits in progress (the exit hold waits for them in blocking mode)
local pollfile = nil   -- the loop's descriptor as a Lua file, made once (hooked mode)

-- A client per edit and output folder. A new client is a new run of the folder's journal: the
-- same photo, prompt and seed as in an earlier edit is that edit's job, reused, not sent again
-- (within one run a repeated body counts as a job of its own). Its subscriber keeps the status
-- line's states and steps.
local function client_for(run, out, opts)
  local c = run.clients[out]
  if c then return c end
  local o = { journal = out, endpoint = opts.endpoint, base_url = opts.base_url, key = opts.key }
  for k, v in pairs(opts.client or {}) do o[k] = v end
  c = editflow.client(o)
  c:subscribe(function(name, job, detail)
    local photo = run.by_job[job]
    if not photo then return end
    if name == "log" and type(detail) == "table" then
      local s = tostring(detail.message or ""):match("[Ss]tep%s*(%d+%s*/%s*%d+)")
      if s then photo.step = s:gsub("%s", "") end
    end
    run.dirty = true
  end)
  run.clients[out] = c
  return c
end

-- What a finished result cost, from the endpoint's price and the images really made.
local function cost_of(p, result)
  if not p then return nil end
  local kind, images = price.kind(p.unit), result.images or {}
  if kind == "image" then return #images * p.unit_price end
  if kind == "request" then return p.unit_price end
  if kind == "megapixel" then
    local px = 0
    for _, im in ipairs(images) do px = px + (tonumber(im.width) or 1024) * (tonumber(im.height) or 1024) end
    return px / 1e6 * p.unit_price
  end
  return nil
end

-- The model's input for one photo: its image in the model's own image field, the seed where
-- the model takes one, and the export's size where the model takes {width, height} and fal's
-- sizes allow it (64 px a side at least; else the model's default size), so an edit keeps the
-- photo's shape.
local function input_for(model, photo, run)
  local field, shape = model:image_field()
  local input = { prompt = run.prompt }
  input[field or "image_urls"] = (shape == "one") and photo.export or { photo.export }
  if run.seed ~= nil and (model.unchecked or model:field("seed")) then input.seed = run.seed end
  for k, v in pairs(run.params) do input[k] = v end
  if input.image_size == nil and photo.w and math.min(photo.w, photo.h) >= M.MIN_SIDE and model:field("image_size") then
    input.image_size = { width = photo.w, height = photo.h }
    if not pcall(model.validate, model, input) then input.image_size = nil end
  end
  return input
end

-- One photo's task: submit (or find it in the journal), wait, save. Leaves its outcome on the
-- photo; the loop imports it.
local function run_photo(run, photo)
  local client = photo.client
  local input = input_for(client:model(), photo, run)
  local job, err = client:submit(input)
  if not job then error(err, 0) end
  photo.job = job
  run.by_job[job] = photo
  local result, werr = job:wait()
  if not result then error(werr, 0) end
  local paths, serr = job:save(photo.out, { name = photo.name })
  if not paths then error(serr, 0) end
  local p = client:price()
  photo.cost = cost_of(p, result)
  photo.paths = paths
end

-- The status line: how many photos are at each stage, the best queue position, the steps.
local function progress(run)
  local n, parts, counts = #run.photos, {}, { queued = 0, running = 0, saving = 0, saved = 0, failed = 0 }
  local pos, step
  for _, p in ipairs(run.photos) do
    local state = p.job and p.job.state
    if p.error then counts.failed = counts.failed + 1
    elseif p.done then counts.saved = counts.saved + 1
    elseif state == "IN_PROGRESS" then
      counts.running = counts.running + 1
      if p.step then step = p.step end
    elseif state == "COMPLETED" then counts.saving = counts.saving + 1
    elseif p.job or p.task then
      counts.queued = counts.queued + 1
      local q = p.job and p.job.queue_position
      if q and (not pos or q < pos) then pos = q end
    end
  end
  if counts.queued > 0 then parts[#parts + 1] = counts.queued .. " queued" .. (pos and (" (position " .. pos .. ")") or "") end
  if counts.running > 0 then parts[#parts + 1] = counts.running .. " running" .. (step and (" (step " .. step .. ")") or "") end
  if counts.saving > 0 then parts[#parts + 1] = counts.saving .. " saving" end
  parts[#parts + 1] = counts.saved .. "/" .. n .. " saved"
  if counts.failed > 0 then parts[#parts + 1] = counts.failed .. " failed" end
  return "editflow: " .. table.concat(parts, ", ")
end

local function tell(run, text, err)
  if run.on_progress then pcall(run.on_progress, text, err) end
end

-- Imports what finished since the last turn (outside any editflow task: darktable calls may
-- release darktable's Lua lock), and reports progress when something changed.
local function collect(run)
  for i, p in ipairs(run.photos) do
    if p.task and p.task.done and not p.done and not p.error then
      if p.task.ok and p.paths then
        local info = { endpoint = p.client.endpoint, prompt = run.prompt, seed = run.seed,
          request_id = p.job and p.job.request_id, cost = p.cost, reused = p.job and p.job.from_journal }
        local images, err = photos.bring_back(p.paths, p.source, info)
        if images then
          p.done, run.imported[i] = true, images[1]
        else
          p.error = err
        end
      else
        p.error = tostring(p.task.error or "the edit failed"):gsub("\nstack traceback:.*", "")
      end
      if p.export then os.remove(p.export) end
      if p.error then
        run.errors[i] = p.error
        tell(run, "editflow: " .. tostring(p.source.filename) .. ": " .. p.error, true)
      end
      run.dirty = true
    end
  end
  if run.dirty then
    run.dirty = false
    local text = progress(run)
    if text ~= run.last then run.last = text tell(run, text) end
  end
end

local function finished(run)
  for _, p in ipairs(run.photos) do
    if p.task and not (p.done or p.error) then return false end
  end
  return true
end

-- hooked: wait on editflow's descriptor through darktable (the Lua lock is free meanwhile),
-- then one step; a darktable that is quitting stops the wait (the journal keeps the jobs).
local function drive_hooked(run)
  if pollfile == nil then pollfile = editflow.pollfile() or false end
  while true do
    editflow.step(0)
    collect(run)
    if finished(run) or dt.control.ending then return end
    local t = editflow.timeout()
    if t == nil then return end
    if t > 0 then
      if pollfile then
        dt.control.read(pollfile)
      else  -- the poll(2) engine has no descriptor: darktable's sleep at editflow's timeout
        dt.control.sleep(math.max(1, math.ceil(t * 1000)))
      end
    end
  end
end

local function drive_blocking(run)
  while not finished(run) do
    editflow.step(50)
    collect(run)
  end
end

local function check_opts(images, opts)
  if type(images) ~= "table" then error("edit: images must be a list of darktable images", 3) end
  if type(opts) ~= "table" then error("edit: opts must be a table", 3) end
  if type(opts.prompt) ~= "string" or opts.prompt == "" then error("edit: prompt must be a non-empty string", 3) end
  if opts.seed ~= nil and not math.tointeger(opts.seed) then error("edit: seed must be an integer", 3) end
  local cap = opts.size or M.DEFAULT_CAP
  if not math.tointeger(cap) or cap < 16 then error("edit: size must be an integer >= 16 (pixels)", 3) end
  if opts.wait ~= nil and opts.wait ~= "hooked" and opts.wait ~= "blocking" then
    error("edit: wait must be \"hooked\" or \"blocking\"", 3)
  end
  return math.tointeger(cap)
end

-- M.edit(images, opts) -> imported, errors
-- images: darktable images (e.g. darktable.gui.action_images). opts: prompt (required), seed,
-- endpoint, base_url, key (else FAL_KEY), out (a folder; default each photo's own folder),
-- size (longest side sent, default 1024), params (more model fields), client (more
-- editflow.client options), on_progress(text, is_error), wait ("hooked" under the GUI,
-- "blocking" without). imported[i] is the image made from images[i] (false when it failed,
-- errors[i] then says why). Each photo is sent once: its job lives in the output folder's
-- journal.
function M.edit(images, opts)
  opts = opts or {}
  local cap = check_opts(images, opts)
  local run = { prompt = opts.prompt, seed = opts.seed and math.tointeger(opts.seed), params = opts.params or {},
    on_progress = opts.on_progress, photos = {}, imported = {}, errors = {}, by_job = {}, clients = {} }
  local hooked = (opts.wait or (dt.configuration.has_gui and "hooked" or "blocking")) == "hooked"
  active = active + 1
  local ok, err = pcall(function()
    for i, image in ipairs(images) do
      run.imported[i] = false
      local out = opts.out or tostring(image.path)  -- image.path is the photo's folder
      local p = { source = image, out = out, name = tostring(image.filename):gsub("%.[^.]*$", "") .. "_editflow" }
      run.photos[i] = p
      p.client = client_for(run, out, opts)
      local dir = out .. "/" .. M.EXPORTS
      require("editflow.core").mkdir(dir)
      tell(run, "editflow: exporting " .. tostring(image.filename))
      local path, w, h = photos.export(image, cap, dir)
      if not path then
        p.error, run.errors[i] = w, w
        tell(run, "editflow: " .. w, true)
      else
        p.export, p.w, p.h = path, w, h
        p.task = editflow.spawn(run_photo, run, p)
        editflow.step(0)  -- its submit starts while the next photo exports
      end
    end
    run.dirty = true
    if hooked then drive_hooked(run) else drive_blocking(run) end
  end)
  active = active - 1
  if not ok then
    tell(run, "editflow: " .. tostring(err), true)
    error(err, 0)
  end
  return run.imported, run.errors
end

-- darktable-cli (blocking mode): hold darktable's exit while an edit runs (see the header).
-- Under the GUI quitting is never held: the jobs stay in the journal for the next edit.
if not dt.configuration.has_gui then
  dt.register_event("editflow_darktable", "exit", function()
    local waited = 0
    while active > 0 and waited < 3600 * 1000 do
      dt.control.sleep(100)
      waited = waited + 100
    end
  end)
else
  dofile(here .. "editflow_darktable/panel.lua")(M)
end

return M
