-- editflow.experiment.gallery: an experiment's index.html, one self-contained page beside its
-- images, to compare in. The jobs travel as JSON in a <script type="application/json"> block
-- and a small script (editflow.experiment.gallery_page) draws the sheet: any variable (or the seed)
-- across, any down, sticky headers, lazy thumbnails, filters by value and a detail view per
-- job. The page's state lives in the URL's hash, written by the controls and read on load
-- through the same function, so a view can be shared or opened from a command line:
--   index.html#across=seed&down=style&filter=style:oil&filter=style:ink&open=3&size=200
-- Without script a <noscript> table shows every combination in a row, each seed in a column.
--
-- Nothing is fetched from anywhere: outputs are relative links to the files beside the page,
-- local inputs are copied once into inputs/ and shown once at the top, inputs given as URLs
-- are links, never loaded. Everything that comes from the user or the server (prompts,
-- values, parameters, messages) is HTML-escaped in markup; in the JSON every "<", ">" and "&"
-- is written \u00XX, so no text can close the block; the script only ever sets textContent.
local core = require "editflow.core"
local inputs = require "editflow.inputs"
local json = require "editflow.json"
local price = require "editflow.price"

local page = require "editflow.experiment.gallery_page"

local M = {}

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

-- A relative URL for a file beside the page: every byte outside a small safe set is
-- percent-encoded, so a name with '#', '?', '%' or a space still points at its file.
local function rel_url(path)
  return (path:gsub("[^%w%-%._~/]", function(c) return string.format("%%%02X", c:byte()) end))
end

local IMAGE_FILE = { png = true, jpg = true, jpeg = true, webp = true, gif = true }

-- A variable's value in full (an editflow.file by its path) and as a header shows it: an
-- image path by its file's stem, as the images' own names do.
local function value_text(v)
  if type(v) == "table" and v.path then return tostring(v.path) end
  return tostring(v)
end

local function value_label(v)
  local s = value_text(v)
  local ext = s:match("%.(%w+)$")
  if not inputs.is_url(s) and (s:find("/", 1, true) or (ext and IMAGE_FILE[ext:lower()])) then
    s = s:match("([^/]*)$"):gsub("%.%w+$", "")
  end
  return s
end

-- A copy of a value the JSON encoder can write and a browser reads back exactly: files by
-- their path, integers past 2^53 (fal's seeds) as text, anything else odd by its tostring.
local function plain(v, depth)
  local ty = type(v)
  if ty == "string" or ty == "boolean" then return v end
  if ty == "number" then
    if math.type(v) == "integer" and (v >= 2^53 or v <= -2^53) then return tostring(v) end
    if v ~= v or v == math.huge or v == -math.huge then return tostring(v) end
    return v
  end
  if ty == "table" and v ~= json.null then
    if v.path ~= nil then return tostring(v.path) end
    if depth > 16 then return "(too deep)" end
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    local list = n > 0 and n == #v
    local out = list and json.array {} or {}
    for k, x in pairs(v) do out[list and k or tostring(k)] = plain(x, depth + 1) end
    return out
  end
  return tostring(v)
end

-- Copies a local input image into dir/inputs; returns its relative path, or nil when it
-- cannot be read (it is listed by name then).
local function copy_input(dir, path)
  local ok, bytes = pcall(inputs.load, "gallery", path)
  if not ok then return nil end
  local ext = core.sniff(bytes) or "img"
  local stem = core.safe_name(path:match("([^/]*)$")):gsub("%.[^.]*$", "")
  local name = core.hash(path):sub(1, 10) .. "-" .. stem .. "." .. ext
  assert(core.mkdir(join(dir, "inputs")))
  assert(core.write_file(join(join(dir, "inputs"), name), bytes))
  return "inputs/" .. name
end

-- Registers one input image (a path, an editflow.file, a URL or a data: URI) once; returns
-- its 0-based number in the page's list of inputs.
local function add_input(dir, list, u)
  if type(u) == "table" and u.path then u = u.path end
  if type(u) ~= "string" then return nil end
  if list.index[u] then return list.index[u] end
  local e
  if u:find("^data:") then
    e = { kind = "inline", name = "inline image", title = string.format("data: URI, %d bytes", #u) }
  elseif inputs.is_url(u) then
    e = { kind = "url", href = u, name = u:match("([^/?#]*)[?#]?[^/]*$") or u, title = u }
  else
    local src = copy_input(dir, u)
    e = { kind = src and "file" or "missing", src = src and rel_url(src), name = u:match("([^/]*)$"), title = u }
  end
  if e.name == "" then e.name = e.title end
  list[#list + 1] = e
  list.index[u] = #list - 1
  return #list - 1
end

-- The field of a job's input that holds its images: the model's (image_urls or image_url),
-- else whichever is neither a parameter given nor one the experiment writes itself.
local function image_field(input, spec)
  if input.image_urls ~= nil then return "image_urls" end
  if input.image_url ~= nil then return "image_url" end
  local own = { prompt = true, negative_prompt = true, seed = true }
  for k in pairs(input) do
    if not own[k] and (spec.params or {})[k] == nil then return k end
  end
end

-- Every distinct value of a dimension gets a label unique within it and never empty, so a
-- filter in the URL (filter=style:oil) names exactly one value and "style:" can mean none.
local function add_value(dim, key, label, title)
  if dim.at[key] then return dim.at[key] end
  if label == "" then label = "(empty)" end
  local base, n = label, 1
  while dim.taken[label] do n = n + 1; label = base .. " (" .. n .. ")" end
  dim.taken[label] = true
  dim.values[#dim.values + 1] = { label = label, title = title ~= label and title or nil }
  dim.at[key] = #dim.values - 1
  return #dim.values - 1
end

local STATUS_ORDER = { "done", "failed", "held", "skipped", "missing" }

-- The page's data: the dimensions (variables, seed, status), the inputs, one entry per job.
local function collect(dir, name, plan, records, spec)
  local list = { index = {} }
  local names = {}
  for k in pairs(plan.combos[1] or {}) do names[#names + 1] = k end
  table.sort(names)
  local taken, dims = {}, {}
  for _, k in ipairs(names) do taken[k] = true end
  -- the seed, status and "none" take their plain names unless a variable already has one
  local function free(id) while taken[id] do id = id .. "*" end taken[id] = true return id end
  local none = free("none")
  for _, k in ipairs(names) do dims[#dims + 1] = { id = k, label = k, axis = true } end
  local seed_dim = spec.seeds and { id = free("seed"), label = "seed", axis = true } or nil
  dims[#dims + 1] = seed_dim
  local status_dim = { id = free("status"), label = "status", axis = false }
  dims[#dims + 1] = status_dim
  for _, d in ipairs(dims) do d.values, d.at, d.taken = {}, {}, {} end
  local statuses = {}

  local jobs = {}
  for _, job in ipairs(plan.jobs) do
    local r = records[job.index] or {}
    local input = job.input
    local field = image_field(input, spec)
    local imgs = field and input[field] or {}
    if type(imgs) ~= "table" or imgs.path then imgs = { imgs } end
    local refs = json.array {}
    for _, u in ipairs(imgs) do refs[#refs + 1] = add_input(dir, list, u) end
    local params = {}
    for k, v in pairs(r.input or input) do
      if k ~= "prompt" and k ~= "seed" and k ~= field then params[k] = plain(v, 0) end
    end
    local outs = json.array {}
    for i, o in ipairs(r.outputs or {}) do
      outs[i] = { src = rel_url(o.path), name = o.path, width = o.width, height = o.height, bytes = o.bytes }
    end
    local status = r.status or "missing"
    statuses[status] = true
    local e = r.error
    jobs[#jobs + 1] = {
      index = job.index, slug = job.slug, status = status, prompt = input.prompt, params = params,
      inputs = refs, outputs = outs, request_id = r.request_id, reused = r.reused or nil,
      seed = (r.seed or job.seed) ~= nil and tostring(r.seed or job.seed) or nil,
      cost = r.cost_estimate or job.cost, timings = r.timings and plain(r.timings, 0),
      elapsed = r.elapsed, nsfw = r.nsfw and plain(r.nsfw, 0),
      error = e and { code = e.code and tostring(e.code), type = e.type and tostring(e.type),
        message = e.message and tostring(e.message) } or nil,
      vars = job.vars, planned_seed = job.seed,
    }
  end

  -- values in order of first use; then each job's value index in each dimension
  for _, vars in ipairs(plan.combos) do
    for i, k in ipairs(names) do
      local t = value_text(vars[k])
      local vi = add_value(dims[i], t, value_label(vars[k]), t)
      if list.index[t] and dims[i].values[vi + 1].input == nil then dims[i].values[vi + 1].input = list.index[t] end
    end
  end
  for _, s in ipairs(spec.seeds or {}) do add_value(seed_dim, tostring(s), tostring(s)) end
  for _, st in ipairs(STATUS_ORDER) do
    if statuses[st] then add_value(status_dim, st, st) end
  end
  for _, j in ipairs(jobs) do
    j.k = json.array {}
    for i, k in ipairs(names) do j.k[i] = dims[i].at[value_text(j.vars[k])] end
    if seed_dim then j.k[#j.k + 1] = seed_dim.at[tostring(j.planned_seed)] or 0 end
    j.k[#j.k + 1] = status_dim.at[j.status]
    j.vars, j.planned_seed = nil, nil
  end
  for _, d in ipairs(dims) do d.at, d.taken = nil, nil; d.values = json.array(d.values) end

  -- the first view: seeds across when there are several, else the fastest-varying variable;
  -- the first variable down
  local across, down = none, none
  if seed_dim and #spec.seeds > 1 then across = seed_dim.id elseif #names > 0 then across = names[#names] end
  for _, d in ipairs(dims) do
    if d.axis and d.id ~= across then down = d.id break end
  end
  return { name = name, none = none, across = across, down = down, dims = json.array(dims),
    inputs = json.array(list), jobs = json.array(jobs),
    price = plan.price and price.describe(plan.price) or "not priced" }, list
end

-- <noscript>: every combination in a row, each seed and output in a column, as plain HTML.
local function fallback(w, plan, records, spec, data)
  local seeds = spec.seeds or { false }
  local per_job = 1
  for _, j in ipairs(plan.jobs) do per_job = math.max(per_job, j.images or 1) end
  w("<noscript><p class=\"note\">Without script: one row per combination, one column per seed",
    per_job > 1 and " and output" or "", "; inputs by their number above.</p>",
    "<table class=\"plain\"><tr><th>variables</th><th>inputs</th><th>prompt</th>")
  for _, seed in ipairs(seeds) do
    for n = 1, per_job do
      w("<th>", seed and ("seed " .. esc(seed)) or "result", per_job > 1 and (" #" .. n) or "", "</th>")
    end
  end
  w("</tr>")
  local by_combo, job_data = {}, {}
  for i, j in ipairs(plan.jobs) do
    by_combo[j.combo] = by_combo[j.combo] or {}
    table.insert(by_combo[j.combo], j)
    job_data[j.index] = data.jobs[i]
  end
  for ci, vars in ipairs(plan.combos) do
    local jobs = by_combo[ci] or {}
    w("<tr><td class=\"vars\">")
    local names = {}
    for k in pairs(vars) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do w(esc(k), " = ", esc(value_label(vars[k])), "<br>") end
    w("</td><td class=\"refs\">")
    for _, n in ipairs(jobs[1] and job_data[jobs[1].index].inputs or {}) do w("#", n + 1, " ") end
    w("</td><td class=\"prompt\">", esc(jobs[1] and jobs[1].input.prompt or ""), "</td>")
    for _, j in ipairs(jobs) do
      local r = records[j.index] or {}
      for n = 1, per_job do
        local o = r.outputs and r.outputs[n]
        if o then
          local src = esc(rel_url(o.path))
          w("<td class=\"out\"><img src=\"", src, "\" loading=\"lazy\" alt=\"", esc(j.slug), "\"><a href=\"", src,
            "\">", esc(o.width or "?"), "&times;", esc(o.height or "?"), "</a>", r.reused and " reused" or "", "</td>")
        elseif r.status == "skipped" then
          w("<td class=\"skip\">skipped: ", esc(r.error and r.error.message or "budget"), "</td>")
        elseif n == 1 then
          w("<td class=\"fail\">", esc(r.status or "failed"), ": ", esc(r.error and r.error.message or "no result"), "</td>")
        else
          w("<td></td>")
        end
      end
    end
    w("</tr>")
  end
  w("</table></noscript>")
end


-- gallery.write(dir, name, plan, records, spec) -> path of index.html
function M.write(dir, name, plan, records, spec)
  local data, list = collect(dir, name, plan, records, spec)
  local out = {}
  local function w(...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end
  local counts = {}
  for _, j in ipairs(data.jobs) do counts[j.status] = (counts[j.status] or 0) + 1 end
  w("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>", esc(name),
    "</title><style>", page.CSS, "</style></head><body><header><h1>", esc(name), "</h1>")
  w(string.format("<p class=\"meta\">%d jobs: %d done, %d failed%s%s &middot; %.2f output megapixels &middot; %s</p></header>",
    #plan.jobs, counts.done or 0, counts.failed or 0,
    counts.skipped and string.format(", %d skipped", counts.skipped) or "",
    counts.held and string.format(", %d in doubt", counts.held) or "",
    plan.megapixels, esc(plan.price and string.format("estimated $%.4f at %s", plan.cost, price.describe(plan.price))
      or "not priced")))
  if #list > 0 then
    w("<section id=\"inputs\"><h2>Inputs</h2>")
    for i, e in ipairs(list) do
      w("<figure title=\"", esc(e.title), "\">")
      if e.src then
        w("<img src=\"", esc(e.src), "\" alt=\"", esc(e.name), "\">")
      elseif e.href then
        w("<a href=\"", esc(e.href), "\">", esc(e.href:sub(1, 60)), "</a>")
      end
      w("<figcaption>#", i, " ", esc(e.name), e.kind == "missing" and " (unreadable)" or "", "</figcaption></figure>")
    end
    w("</section>")
  end
  w("<form id=\"controls\" hidden></form><div id=\"sheet\"></div>",
    "<div id=\"detail\" hidden role=\"dialog\" aria-modal=\"true\" aria-labelledby=\"d-title\"><div class=\"panel\">",
    "<div id=\"d-figure\"></div><div class=\"facts\"><div class=\"nav\">",
    "<button type=\"button\" id=\"d-prev\" title=\"previous (left arrow)\">&lsaquo; prev</button>",
    "<button type=\"button\" id=\"d-next\" title=\"next (right arrow)\">next &rsaquo;</button>",
    "<button type=\"button\" id=\"d-close\" title=\"close (Esc)\">close &times;</button></div>",
    "<h2 id=\"d-title\"></h2><dl id=\"d-facts\"></dl></div></div></div>")
  fallback(w, plan, records, spec, data)
  -- In a script element only "</script" ends it, but "<!--" changes how it ends: neither can
  -- appear once every "<" is \u003c (and ">", "&" likewise, for any reader of the file).
  local payload = json.encode(data):gsub("[<>&]", { ["<"] = "\\u003c", [">"] = "\\u003e", ["&"] = "\\u0026" })
  w("<script type=\"application/json\" id=\"data\">", payload, "</script><script>", page.SCRIPT,
    "</script></body></html>\n")
  local path = join(dir, "index.html")
  assert(core.write_file(path, table.concat(out)))
  return path
end

return M
