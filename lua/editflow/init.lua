-- editflow: image-editing jobs on fal.ai's queue, from Lua.
--   local editflow = require "editflow"
--   local client = editflow.client{}            -- FAL_KEY, EDITFLOW_BASE_URL, EDITFLOW_AUTH
--   local result, job = assert(client:edit{ prompt = "...", image_urls = { "a.png" } })
--   local paths = assert(job:save("out"))
-- This file only assembles the public face; each concern lives in its own module.
local core = require "editflow.core"
local client = require "editflow.client"
local inputs = require "editflow.inputs"
local errors = require "editflow.errors"
local model = require "editflow.model"
local json = require "editflow.json"
local runtime = require "editflow.runtime"
local tasks = require "editflow.tasks"

local M = {}

M.version = core.version
M.client = client.new
M.file = inputs.file
M.is_error = errors.is
M.sizes = model.SIZES
M.json = json
M.webhook = require "editflow.webhook"  -- webhook.verify(headers, body [, opts]) -> true | nil, err

-- Concurrency (editflow.runtime, editflow.tasks): tasks are coroutines on the shared loop.
M.spawn = runtime.spawn      -- spawn(fn, ...) -> task
M.join = runtime.join        -- join(task) -> true, results... | false, err
M.map = tasks.map            -- map(list, fn, {concurrency=}) -> results, errors
M.wait = tasks.wait          -- wait(task | job | list) -> results, errors
M.sleep = runtime.sleep
M.step = runtime.step        -- step(timeout_ms) -> pending count; never blocks longer
M.run = runtime.run          -- run until nothing is pending
M.pending = runtime.pending
M.limits = runtime.limits    -- limits{max_connections=} for the shared loop, once
M.subscribe = require("editflow.events").subscribe  -- subscribe(fn(name, job, detail)) -> unsubscribe

-- A host's own event loop waits on editflow (the cqueues convention, so cqueues.poll(editflow)
-- works as it is): pollfd() is readable when editflow has work, timeout() says when it must
-- run at the latest, step(0) does the work. The first pollfd() (or embed()) hands the loop to
-- the host: from then on a waiting call outside an editflow task raises instead of blocking.
M.pollfd = runtime.pollfd    -- pollfd() -> descriptor, or nil where the engine has none
M.pollfile = runtime.pollfile  -- pollfile() -> the same as a Lua file (a dup; yours to close)
M.events = runtime.events    -- events() -> "r"
M.timeout = runtime.timeout  -- timeout() -> seconds until step() is due, or nil: nothing pending
M.embed = runtime.embed      -- embed(): the host owns the loop (without asking for pollfd)

-- Prompt experiments (editflow.experiment and its template module).
M.images = inputs.images     -- images("photos/*.jpg", "more/") -> sorted paths
M.render = require("editflow.experiment.template").render
M.product = require("editflow.experiment.template").product
M.zip = require("editflow.experiment.template").zip
M.report = function(dir, opts) return require("editflow.experiment.report").report(dir, opts) end  -- -> summary | nil, message, code
function M.experiment(spec) return require("editflow.experiment").run(spec) end

return M
