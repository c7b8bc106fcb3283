-- editflow.gallery: an experiment's contact sheet, index.html beside its images.
-- One row per variable combination, one column per seed and output image; the combination's
-- variables, its input images as thumbnails and the rendered prompt head each row; failures
-- and skipped jobs show as such. Plain HTML and CSS: it opens from disk with no network and
-- no script. Local input images are copied into inputs/ so the folder is self-contained;
-- inputs given as URLs are shown as links, never loaded.
local core = require "editflow.core"
local inputs = require "editflow.inputs"
local price = require "editflow.price"

local M = {}

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function join(dir, name) return (dir:sub(-1) == "/" and dir or dir .. "/") .. name end

local CSS = [[
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px}p.meta{color:#666;margin:0 0 16px}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:8px;vertical-align:top;background:#fff}
th{background:#f0f0f0;font-weight:600}.vars{font-family:ui-monospace,monospace;font-size:12px}
.prompt{max-width:280px;color:#333}.thumbs img{width:64px;height:64px;object-fit:cover;margin:2px;border:1px solid #ccc}
.out img{width:192px;height:192px;object-fit:contain;background:#eee;display:block}
.fail{background:#fdecec;color:#a00;width:192px;font-size:12px}.skip{background:#f4f4f4;color:#777;width:192px;font-size:12px}
.tag{font-size:11px;color:#777}
]]

-- Copies a local input image into dir/inputs once; returns its relative path.
local function thumb(dir, path, copied)
  if copied[path] then return copied[path] end
  local ok, bytes, mime = pcall(inputs.load, "gallery", path)
  if not ok then return nil end
  local ext = core.sniff(bytes) or "img"
  local name = core.hash(path):sub(1, 10) .. "-" .. core.safe_name(path:match("([^/]*)$")):gsub("%.[^.]*$", "") .. "." .. ext
  assert(core.mkdir(join(dir, "inputs")))
  assert(core.write_file(join(join(dir, "inputs"), name), bytes))
  copied[path] = "inputs/" .. name
  return copied[path], mime
end

-- gallery.write(dir, name, plan, records, spec) -> path of index.html
function M.write(dir, name, plan, records, spec)
  local seeds = spec.seeds or { false }
  local per_job = 0
  for _, j in ipairs(plan.jobs) do if j.images > per_job then per_job = j.images end end
  local out, copied = {}, {}
  local function w(...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end
  w("<!doctype html><html><head><meta charset=\"utf-8\"><title>", esc(name), "</title><style>", CSS,
    "</style></head><body><h1>", esc(name), "</h1>")
  local done, failed = 0, 0
  for _, r in ipairs(records) do
    if r.status == "done" then done = done + 1 elseif r.status == "failed" then failed = failed + 1 end
  end
  w(string.format("<p class=\"meta\">%d jobs, %d done, %d failed &middot; %.2f output megapixels &middot; %s</p>",
    #plan.jobs, done, failed, plan.megapixels, esc(plan.price
      and string.format("estimated $%.4f at %s", plan.cost, price.describe(plan.price)) or "not priced")))
  w("<table><tr><th>variables</th><th>inputs</th><th>prompt</th>")
  for _, seed in ipairs(seeds) do
    for n = 1, math.max(per_job, 1) do
      w("<th>", seed and ("seed " .. esc(seed)) or "result", per_job > 1 and (" #" .. n) or "", "</th>")
    end
  end
  w("</tr>")
  local by_combo = {}
  for _, j in ipairs(plan.jobs) do
    by_combo[j.combo] = by_combo[j.combo] or {}
    table.insert(by_combo[j.combo], j)
  end
  for ci, vars in ipairs(plan.combos) do
    local jobs = by_combo[ci] or {}
    local first = jobs[1]
    w("<tr><td class=\"vars\">")
    local names = {}
    for k in pairs(vars) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do w(esc(k), " = ", esc(vars[k]), "<br>") end
    w("</td><td class=\"thumbs\">")
    local shown = first and (first.input.image_urls or { first.input.image_url }) or {}
    for _, u in ipairs(shown) do
      if type(u) == "table" then u = u.path end
      if type(u) ~= "string" then  -- nothing to show
      elseif u:find("^data:") then
        w("<span class=\"tag\">(inline image)</span><br>")
      elseif inputs.is_url(u) then
        w("<a href=\"", esc(u), "\">", esc(u:sub(1, 40)), "</a><br>")
      else
        local rel = thumb(dir, u, copied)
        if rel then w("<img src=\"", esc(rel), "\" alt=\"", esc(u), "\" title=\"", esc(u), "\">") end
      end
    end
    w("</td><td class=\"prompt\">", esc(first and first.input.prompt or ""), "</td>")
    for _, j in ipairs(jobs) do
      local r = records[j.index] or {}
      for n = 1, math.max(per_job, 1) do
        local o = r.outputs and r.outputs[n]
        if o then
          w("<td class=\"out\"><img src=\"", esc(o.path), "\" alt=\"", esc(j.slug), "\">",
            "<span class=\"tag\">", esc(o.width or "?"), "&times;", esc(o.height or "?"),
            r.reused and " &middot; reused" or "", "</span></td>")
        elseif r.status == "skipped" then
          w("<td class=\"skip\">skipped: ", esc(r.error and r.error.message or "budget"), "</td>")
        elseif n == 1 then
          w("<td class=\"fail\">failed: ", esc(r.error and r.error.message or "no result"), "</td>")
        else
          w("<td></td>")
        end
      end
    end
    w("</tr>")
  end
  w("</table></body></html>\n")
  local path = join(dir, "index.html")
  assert(core.write_file(path, table.concat(out)))
  return path
end

return M
