-- editflow_darktable.lua: editflow inside darktable (4.2, Lua API 9.0). Returns its module
-- table; edit(images, opts) edits darktable images on fal's queue and returns the imported
-- results in order. Under the GUI it also adds the "editflow" panel to the lighttable
-- (lib/panel.lua). Its helpers live under lib/, which lua-scripts' script_manager never
-- starts as scripts of their own.
--
-- Owns the run of an edit: one editflow task per photo (submit, follow, save) and the loop that
-- waits for them. One edit at a time: a second edit while one runs is refused, never run beside
-- it (two runs of the same photos would each send them: each run is a journal run of its own).
-- Two ways to wait, one per kind of darktable:
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
-- it by its id) and editing the same photos again reuses the finished ones. Every output
-- folder is opened (its journal locked) and the model checked before anything is exported or
-- sent, and once a photo's job is started the run follows it to its end whatever else fails.
local dt = require "darktable"

local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"

-- The editflow library: where darktable's Lua finds it, else next to this plugin's install
-- (<prefix>/share/editflow/darktable/ -> <prefix>/share/lua/5.4 and <prefix>/lib/lua/5.4).
local function load_editflow()
  local ok, mod = pcall(require, "editflow")
  if ok then return mod end
  local prefix = here:match("^(.*)/share/editflow/darktable/$")
  if not prefix then
    error("the editflow library is not on darktable's Lua path: " .. tostring(mod), 0)
  end
  package.path = string.format("%s/share/lua/5.4/?.lua;%s/share/lua/5.4/?/init.lua;%s",
    prefix, prefix, package.path)
  package.cpath = string.format("%s/lib/lua/5.4/?.so;%s", prefix, package.cpath)
  return require "editflow"
end

local editflow = load_editflow()
local core = require "editflow.core"
local price = require "editflow.price"
local catalog = require "editflow.catalog"
local photos = dofile(here .. "lib/photos.lua")

local M = { version = "2", here = here }

M.DEFAULT_CAP = 1024
M.MIN_SIDE = 64                    -- fal's smallest image_size side
M.EXPORTS = ".editflow-exports"   -- under the output folder: the JPEGs sent, until each is done
M.BUSY = "an edit is already running"
M.QUITTING = "darktable is quitting; the job is kept in the journal"
M.STOPPED = "the edit stopped before this photo's job ended; the job is kept in the journal "
  .. "(edit the photo again to follow it)"

local busy = false     -- an edit in progress (one at a time; the exit hold waits for it)
local runs = 0         -- edits made in this darktable: names each run's export files
local pollfile = nil   -- the loop's descriptor as a Lua file, made once (hooked mode)

function M.busy() return busy end

-- What the photographer reads: editflow's message without its prefixes, a Lua source position
-- or a traceback, and with the plugin's own advice where the library's names a CLI flag or an
-- argument the photographer cannot pass.
function M.plain(err)
  local s = tostring(err == nil and "the edit failed" or (type(err) == "table" and err.message) or err)
  s = s:gsub("\nstack traceback:.*", "")
  local again = true
  while again do
    again = false
    for _, pat in ipairs { "^[^\n:]*%.lua:%d+: ", "^editflow[%w%.]*: ", "^edit: " } do
      local n
      s, n = s:gsub(pat, "")
      if n > 0 then again = true end
    end
  end
  if s:find("no credential", 1, true) then
    return "no fal key: start darktable with FAL_KEY set (see hosts/darktable/README.md)"
  end
  s = s:gsub("%s*%(a new run holds it back unless told %-%-resubmit%-unknown%)",
    " (the next edit holds it back too: check your fal dashboard)")
  s = s:gsub("[;.]%s*[Tt]o send it again anyway, use %-%-resubmit%-unknown %(resubmit_unknown = true%)", "")
  return s
end

-- A client per output folder: opening it opens and locks the folder's journal. A new client is
-- a new run of the folder's journal: the same photo, prompt and seed as in an earlier edit is
-- that edit's job, reused, not sent again. Its subscriber keeps the status line's steps.
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

-- Whether the model takes a seed (a model without a schema passes everything through).
function M.takes_seed(model)
  return model.unchecked or model:field("seed") ~= nil
end

-- The model's input for one photo: its image in the model's own image field, the seed where
-- the model takes one, and the export's size where the model takes {width, height} and fal's
-- sizes allow it (64 px a side at least; else the model's default size), so an edit keeps the
-- photo's shape.
local function input_for(model, photo, run)
  local field, shape = model:image_field()
  local input = { prompt = run.prompt }
  input[field or "image_urls"] = (shape == "one") and photo.export or { photo.export }
  if run.seed ~= nil and M.takes_seed(model) then input.seed = run.seed end
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
  photo.seed_sent = input.seed
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
    local job = p.job
    local state = job and job.state
    if p.error or (p.task and p.task.done and not p.task.ok) or (job and job.error) then
      counts.failed = counts.failed + 1
    elseif p.done then counts.saved = counts.saved + 1
    elseif state == "IN_PROGRESS" then
      counts.running = counts.running + 1
      if p.step then step = p.step end
    elseif state == "COMPLETED" then counts.saving = counts.saving + 1
    elseif job or p.task then
      counts.queued = counts.queued + 1
      local q = job and job.queue_position
      if q and q > 0 and (not pos or q < pos) then pos = q end
    end
  end
  if counts.queued > 0 then parts[#parts + 1] = counts.queued .. " queued" .. (pos and (" (position " .. pos .. ")") or "") end
  if counts.running > 0 then parts[#parts + 1] = counts.running .. " running" .. (step and (" (step " .. step .. ")") or "") end
  if counts.saving > 0 then parts[#parts + 1] = counts.saving .. " saving" end
  parts[#parts + 1] = counts.saved .. "/" .. n .. " saved"
  if counts.failed > 0 then parts[#parts + 1] = counts.failed .. " failed" end
  return table.concat(parts, ", ")
end

local function tell(run, text, err)
  if run.on_progress then pcall(run.on_progress, text, err) end
end

-- A photo's export, gone once its job is done with (or never started).
local function drop_export(p)
  if p.export then os.remove(p.export) p.export_done, p.export = p.export, nil end
end

-- A photo that failed: its error kept and told, its export removed.
local function fail(run, i, err)
  local p = run.photos[i]
  p.error = M.plain(err)
  run.errors[i] = p.error
  drop_export(p)
  tell(run, tostring(p.source.filename) .. ": " .. p.error, true)
  run.dirty = true
end

-- Imports what finished since the last turn (outside any editflow task: darktable calls may
-- release darktable's Lua lock), and reports progress when something changed. Never raises:
-- a photo whose import fails keeps its error, the others go on.
local function collect(run)
  for i, p in ipairs(run.photos) do
    if p.task and p.task.done and not p.done and not p.error then
      drop_export(p)
      if p.task.ok and p.paths then
        local model = p.client.endpoint
        local info = { endpoint = model, prompt = run.prompt, seed = p.seed_sent, seed_asked = run.seed,
          request_id = p.job and p.job.request_id, cost = p.cost, reused = p.job and p.job.from_journal }
        local ok, images, err = pcall(photos.bring_back, p.paths, p.source, info)
        if ok and images then
          p.done, run.imported[i] = true, images[1]
          run.dirty = true
        else
          fail(run, i, ok and err or images)
        end
      else
        fail(run, i, p.task.error)
      end
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

-- The loop until done() says so. hooked: wait on editflow's descriptor through darktable (the
-- Lua lock is free meanwhile), then one step; a darktable that is quitting stops the wait (the
-- journal keeps the jobs). blocking: editflow's own steps. done() is asked after every step.
local function drive(hooked, done)
  if not hooked then
    while not done() do editflow.step(50) end
    return
  end
  if pollfile == nil then pollfile = editflow.pollfile() or false end
  while true do
    editflow.step(0)
    if done() or dt.control.ending then return end
    local t = editflow.timeout()
    if t == nil then return end  -- nothing more will happen: the caller looks once more
    if t > 0 then
      if pollfile then
        dt.control.read(pollfile)
      else  -- the poll(2) engine has no descriptor: darktable's sleep at editflow's timeout
        dt.control.sleep(math.max(1, math.ceil(t * 1000)))
      end
    end
  end
end

-- Before anything is exported: every photo's output folder opened (the client, its journal
-- locked) with its exports folder made, and each client's model known. A folder that cannot be
-- used fails its own photos; a model that is not one raises (nothing has started yet).
local function prepare(run, images, opts, hooked)
  for i, image in ipairs(images) do
    run.imported[i] = false
    local out = opts.out or tostring(image.path)  -- image.path is the photo's folder
    local p = { source = image, out = out, name = tostring(image.filename):gsub("%.[^.]*$", "") .. "_editflow" }
    run.photos[i] = p
    local ok, c = pcall(client_for, run, out, opts)
    if not ok then
      local msg = M.plain(c)
      if msg:find("^no fal key") then error(msg, 0) end  -- the same for every photo
      fail(run, i, msg)
    else
      p.client = c
      p.dir = out .. "/" .. M.EXPORTS
      local made, merr = core.mkdir(p.dir)
      if not made then fail(run, i, "cannot make the folder " .. p.dir .. ": " .. tostring(merr)) end
    end
  end
  -- the models (a waiting call the first time: fetched in tasks, while darktable goes on)
  local looks, whose = {}, {}
  for _, c in pairs(run.clients) do
    looks[#looks + 1] = editflow.spawn(function() return c:model() end)
    whose[#looks] = c.endpoint
  end
  drive(hooked, function()
    for _, t in ipairs(looks) do if not t.done then return false end end
    return true
  end)
  for i, t in ipairs(looks) do
    if not t.done then error(M.QUITTING, 0) end
    if not t.ok then error("model: " .. whose[i] .. ": " .. M.plain(t.error), 0) end
    if t.results[1] and t.results[1].unchecked and not catalog[whose[i]] then
      error("model: " .. whose[i] .. " is not a model editflow or fal knows", 0)
    end
  end
end

-- Export each photo through darktable and start its task; a photo that cannot be exported
-- fails alone.
local function start(run, cap)
  for i, p in ipairs(run.photos) do
    if p.client and not p.error then
      tell(run, "exporting " .. tostring(p.source.filename))
      local ok, path, w, h = pcall(photos.export, p.source, cap, p.dir, run.tag)
      if not ok or not path then
        fail(run, i, ok and w or path)
      else
        p.export, p.w, p.h = path, w, h
        p.task = editflow.spawn(run_photo, run, p)
        editflow.step(0)  -- its submit starts while the next photo exports
      end
    end
  end
  run.dirty = true
end

-- The end of a run, however it ended: what never finished says why (kept in the journal),
-- every export is removed and the exports folders too when empty.
local function close(run)
  pcall(collect, run)
  local why = dt.control.ending and M.QUITTING or M.STOPPED
  for i, p in ipairs(run.photos) do
    if not run.imported[i] and not run.errors[i] then
      p.error = p.task and why or (run.abort or "not started")
      run.errors[i] = p.error
    end
    drop_export(p)
  end
  for _, p in ipairs(run.photos) do
    if p.dir then os.remove(p.dir) end  -- only when empty (remove(3) on a folder is rmdir)
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
-- journal. Raises M.BUSY while another edit runs, and a plain message when nothing could
-- start (no fal key, an unknown model).
function M.edit(images, opts)
  opts = opts or {}
  local cap = check_opts(images, opts)
  if busy then error(M.BUSY, 0) end
  busy = true
  runs = runs + 1
  local run = { prompt = opts.prompt, seed = opts.seed and math.tointeger(opts.seed), params = opts.params or {},
    on_progress = opts.on_progress, photos = {}, imported = {}, errors = {}, by_job = {}, clients = {},
    tag = string.format("%x%x", os.time(), runs) }
  local hooked = (opts.wait or (dt.configuration.has_gui and "hooked" or "blocking")) == "hooked"
  local ok, err = pcall(function()
    prepare(run, images, opts, hooked)
    start(run, cap)
  end)
  if not ok then run.abort = M.plain(err) end
  -- tasks already started are followed to their end and imported, whatever failed above
  local started = false
  for _, p in ipairs(run.photos) do if p.task then started = true end end
  if started then
    for _ = 1, 3 do
      local dok, derr = pcall(drive, hooked, function() collect(run) return finished(run) end)
      if dok then break end
      run.abort = run.abort or M.plain(derr)
    end
  end
  pcall(close, run)
  busy = false
  if not started and not ok then
    tell(run, run.abort, true)
    error(run.abort, 0)
  end
  return run.imported, run.errors
end

-- darktable-cli (blocking mode): hold darktable's exit while an edit runs (see the header).
-- Under the GUI quitting is never held: the jobs stay in the journal for the next edit.
if not dt.configuration.has_gui then
  dt.register_event("editflow_darktable", "exit", function()
    local waited = 0
    while busy and waited < 3600 * 1000 do
      dt.control.sleep(100)
      waited = waited + 100
    end
  end)
else
  dofile(here .. "lib/panel.lua")(M)
end

return M
