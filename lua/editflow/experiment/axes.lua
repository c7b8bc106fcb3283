-- editflow.experiment.axes: the axes an experiment runs over besides its variables: the prompt
-- templates (a list, or a table of short names) and the models (endpoint ids), read and checked
-- from the spec; and the names they take in files, the manifest and the gallery.
local core = require "editflow.core"

local M = {}

-- Names a variable cannot take: they are the manifest's and the gallery's own axes.
M.RESERVED = { prompt = true, model = true, seed = true, run = true, status = true }

local function is_list(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n == #t
end

-- Names for unnamed templates: the one an earlier run in the folder gave the same template
-- (`known`: template -> name), else the first p1, p2, ... that no template of the folder or of
-- this spec has.
local function auto_names(list, known)
  known = known or {}
  local taken = {}
  for _, name in pairs(known) do taken[name] = true end
  for _, p in ipairs(list) do
    if not p.name and type(p.template) == "string" and known[p.template] then p.name = known[p.template] end
    if p.name then taken[p.name] = true end
  end
  local n = 0
  for _, p in ipairs(list) do
    if not p.name then
      repeat n = n + 1 until not taken["p" .. n]
      p.name = "p" .. n
      taken[p.name] = true
    end
  end
  return list
end

-- axes.prompts(spec [, known]) -> { { name =, template = }, ... }: `prompt` (one template),
-- `prompts = { "T1", "T2" }` (named p1, p2, ... -- or the names the folder's earlier runs gave
-- them: `known`, template -> name) or `prompts = { short = "T1", ... }` (by name, sorted). The
-- same template twice would be the same jobs twice: refused.
function M.prompts(spec, known)
  if spec.prompt ~= nil and spec.prompts ~= nil then
    error("experiment: give prompt (one template) or prompts (several), not both", 0)
  end
  if spec.prompts == nil then
    if type(spec.prompt) ~= "string" then
      error("experiment: prompt must be a template string (or prompts = { ... } for several)", 0)
    end
    return auto_names({ { template = spec.prompt } }, known)
  end
  local given = spec.prompts
  if type(given) ~= "table" or next(given) == nil then
    error("experiment: prompts must be a non-empty list of templates, or a table of short names to templates", 0)
  end
  local list = {}
  if is_list(given) then
    for i, t in ipairs(given) do list[i] = { template = t } end
  else
    local names = {}
    for k in pairs(given) do
      if type(k) ~= "string" or not k:match("^[%w][%w_.-]*$") or #k > 40 then
        error(string.format("experiment: prompts: %s is not a short name (letters, digits, '_', '.', '-'; "
          .. "40 at most; or give a plain list)", type(k) == "string" and ("'" .. k .. "'") or tostring(k)), 0)
      end
      names[#names + 1] = k
    end
    table.sort(names)
    for i, k in ipairs(names) do list[i] = { name = k, template = given[k] } end
  end
  local seen = {}
  for i, p in ipairs(list) do
    local shown = p.name or ("[" .. i .. "]")  -- as the spec has it
    if type(p.template) ~= "string" then
      error(string.format("experiment: prompts%s must be a template string, got %s",
        p.name and ("." .. p.name) or shown, type(p.template)), 0)
    end
    if seen[p.template] then
      error(string.format("experiment: prompts %s and %s are the same template (the same jobs twice)", seen[p.template], shown), 0)
    end
    seen[p.template] = shown
  end
  return auto_names(list, known)
end

-- axes.models(spec, default) -> { endpoint, ... }: `model` (one), `models` (several), else the
-- client's endpoint.
function M.models(spec, default)
  if spec.model ~= nil and spec.models ~= nil then
    error("experiment: give model (one endpoint) or models (several), not both", 0)
  end
  if spec.models == nil then
    if spec.model ~= nil and type(spec.model) ~= "string" then
      error("experiment: model must be an endpoint id like 'fal-ai/qwen-image-edit-plus'", 0)
    end
    return { spec.model or default }
  end
  if type(spec.models) ~= "table" or #spec.models == 0 or not is_list(spec.models) then
    error("experiment: models must be a non-empty list of endpoint ids", 0)
  end
  local seen, list = {}, {}
  for i, e in ipairs(spec.models) do
    if type(e) ~= "string" then error(string.format("experiment: models[%d] must be an endpoint id, got %s", i, type(e)), 0) end
    if seen[e] then error(string.format("experiment: the model %s is given twice", e), 0) end
    seen[e] = true
    list[i] = e
  end
  return list
end

-- axes.check_names(names): no variable takes the name of an axis of its own.
function M.check_names(names)
  for _, k in ipairs(names) do
    if M.RESERVED[k] then
      error(string.format("experiment: a variable cannot be named '%s' (prompt, model, seed, run and status "
        .. "are the experiment's own axes)", k), 0)
    end
  end
end

-- How a model reads in file names: its endpoint without fal's own owner, '/' as '-'.
function M.model_label(endpoint)
  return core.safe_name((endpoint:gsub("^fal%-ai/", ""):gsub("/", "-")))
end

return M
