-- editflow.experiment.gallery: an experiment folder's index.html, one self-contained page beside
-- its images, to choose in: which prompt, on which model. Built from the folder alone (every run
-- in DIR/manifest.jsonl, the stars in DIR/ratings.json: editflow.experiment.gallery_data), so
-- any run's page, or `editflow rate`'s, shows the same. The jobs travel as JSON in a
-- <script type="application/json"> block and a small script (editflow.experiment.gallery_page and
-- gallery_rate) draws: a summary per model, prompt and variable (report.lua's numbers), the
-- sheet (any dimension across, any down, a third as sections; sorted or coloured by the judge's
-- score), a detail view with the input beside the output and an overlay slider, ratings by mouse
-- and keys, and a run picker. The page's state lives in the URL's hash, e.g.
--   index.html#run=all&across=model&down=prompt&group=style&filter=style:oil&sort=judge&open=3
-- Without script a <noscript> table shows the latest run: every combination in a row, each
-- seed in a column.
--
-- Nothing is fetched from anywhere: outputs are relative links to the files beside the page,
-- local inputs are copied once into inputs/ and shown once at the top, inputs given as URLs
-- are links, never loaded. Everything that comes from the user or the server (prompts,
-- values, parameters, messages, notes) is HTML-escaped in markup; in the JSON every "<", ">"
-- and "&" is written \u00XX, so no text can close the block; the script only ever sets
-- textContent.
local core = require "editflow.core"
local json = require "editflow.json"

local data_of = require "editflow.experiment.gallery_data"
local page = require "editflow.experiment.gallery_page"

local M = {}

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

local function kind_index(data, kind)
  for i, d in ipairs(data.dims) do if d.kind == kind then return i end end
end

-- <noscript>: the latest run, every combination in a row, each seed and output in a column, as
-- plain HTML.
local function fallback(w, data)
  local latest, seed_i, jobs = #data.runs, kind_index(data, "seed"), {}
  for _, j in ipairs(data.jobs) do if j.run == latest then jobs[#jobs + 1] = j end end
  -- a combination: every axis but the seed and the run; named by the ones that vary
  local combo_dims, shown_dims = {}, {}
  for i, d in ipairs(data.dims) do
    if d.axis and d.kind ~= "seed" and d.kind ~= "run" then
      combo_dims[#combo_dims + 1] = i
      local first = jobs[1] and jobs[1].k[i]
      for _, j in ipairs(jobs) do
        if j.k[i] ~= first or d.kind == "var" then shown_dims[#shown_dims + 1] = i break end
      end
    end
  end
  local rows, by_key, seeds, seed_seen, per_job = {}, {}, {}, {}, 1
  for _, j in ipairs(jobs) do
    local parts = {}
    for n, i in ipairs(combo_dims) do parts[n] = j.k[i] end
    local key = table.concat(parts, ",")
    local row = by_key[key]
    if not row then row = { first = j, at = {} }; by_key[key] = row; rows[#rows + 1] = row end
    local s = seed_i and j.k[seed_i] or 0
    if not seed_seen[s] then seed_seen[s] = true; seeds[#seeds + 1] = s end
    row.at[s] = row.at[s] or j
    per_job = math.max(per_job, #j.outputs)
  end
  table.sort(seeds)
  w("<noscript><p class=\"note\">Without script: the latest run, one row per combination, one column per seed",
    per_job > 1 and " and output" or "", "; inputs by their number above.</p>",
    "<table class=\"plain\"><tr><th>variables</th><th>inputs</th><th>prompt</th>")
  for _, s in ipairs(seeds) do
    for n = 1, per_job do
      w("<th>", seed_i and ("seed " .. esc(data.dims[seed_i].values[s + 1].label)) or "result",
        per_job > 1 and (" #" .. n) or "", "</th>")
    end
  end
  w("</tr>")
  for _, row in ipairs(rows) do
    local j1 = row.first
    w("<tr><td class=\"vars\">")
    for _, i in ipairs(shown_dims) do
      w(esc(data.dims[i].label), " = ", esc(data.dims[i].values[j1.k[i] + 1].label), "<br>")
    end
    w("</td><td class=\"refs\">")
    for _, n in ipairs(j1.inputs) do w("#", n + 1, " ") end
    w("</td><td class=\"prompt\">", esc(j1.prompt), "</td>")
    for _, s in ipairs(seeds) do
      local j = row.at[s]
      for n = 1, per_job do
        local o = j and j.outputs[n]
        if o then
          w("<td class=\"out\"><img src=\"", esc(o.src), "\" loading=\"lazy\" alt=\"", esc(j.slug or o.name), "\"><a href=\"", esc(o.src),
            "\">", esc(o.width or "?"), "&times;", esc(o.height or "?"), "</a>", j.reused and " reused" or "", "</td>")
        elseif j and j.status == "skipped" then
          w("<td class=\"skip\">skipped: ", esc(j.error and j.error.message or "budget"), "</td>")
        elseif j and n == 1 then
          w("<td class=\"fail\">", esc(j.status), ": ", esc(j.error and j.error.message or "no result"), "</td>")
        else
          w("<td></td>")
        end
      end
    end
    w("</tr>")
  end
  w("</table></noscript>")
end

-- The detail view's frame and its rating box; the script fills them.
local DETAIL = table.concat {
  "<div id=\"detail\" hidden role=\"dialog\" aria-modal=\"true\" aria-labelledby=\"d-title\"><div class=\"panel\">",
  "<div id=\"d-figure\"></div><div class=\"facts\"><div class=\"nav\">",
  "<button type=\"button\" id=\"d-prev\" title=\"previous (left arrow)\">&lsaquo; prev</button>",
  "<button type=\"button\" id=\"d-next\" title=\"next (right arrow)\">next &rsaquo;</button>",
  "<button type=\"button\" id=\"d-close\" title=\"close (Esc)\">close &times;</button></div>",
  "<h2 id=\"d-title\"></h2>",
  "<div id=\"d-rate\"><p id=\"d-norate\" class=\"hint\" hidden>This job cannot be rated: it was never accepted (no request id).</p>",
  "<div id=\"d-rating\"><span role=\"group\" aria-label=\"stars\">",
  "<button type=\"button\" class=\"starbtn\" data-stars=\"1\" title=\"1 star (key 1)\">&#9733;</button>",
  "<button type=\"button\" class=\"starbtn\" data-stars=\"2\" title=\"2 stars (key 2)\">&#9733;</button>",
  "<button type=\"button\" class=\"starbtn\" data-stars=\"3\" title=\"3 stars (key 3)\">&#9733;</button>",
  "<button type=\"button\" class=\"starbtn\" data-stars=\"4\" title=\"4 stars (key 4)\">&#9733;</button>",
  "<button type=\"button\" class=\"starbtn\" data-stars=\"5\" title=\"5 stars (key 5)\">&#9733;</button></span> ",
  "<button type=\"button\" id=\"d-best\" aria-pressed=\"false\" title=\"the best in this row (key b)\">best in this row</button> ",
  "<button type=\"button\" id=\"d-clear\" title=\"take the rating back\">clear</button>",
  "<label>note (key n)<textarea id=\"d-note\" maxlength=\"2000\"></textarea></label>",
  "<p class=\"hint\">keys: 1&ndash;5 stars &middot; 0 clears &middot; b best in this row &middot; n note (Esc leaves it) &middot; ",
  "&larr; &rarr; previous, next &middot; Esc closes</p></div></div>",
  "<dl id=\"d-facts\"></dl></div></div></div>",
}

-- gallery.write(dir) -> path of index.html. Arguments after dir (experiment.run's older call
-- passed name, plan, records, spec) are not read, but for the name: the page's title when the
-- manifest's records do not name their experiment.
function M.write(dir, name)
  local data, list = data_of.collect(dir, type(name) == "string" and name or nil)
  local out = {}
  local function w(...) for _, s in ipairs({ ... }) do out[#out + 1] = s end end
  local s = data.summaries[data.run]
  local t = s and s.total
  w("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
    "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>", esc(data.name),
    "</title><style>", page.CSS, "</style></head><body><header><h1>", esc(data.name), "</h1>")
  if t then
    w(string.format("<p class=\"meta\" id=\"meta\">run %s: %d jobs: %d done, %d failed%s%s &middot; cost $%.4f</p></header>",
      esc(data.run), t.jobs, t.done, t.failed, t.skipped > 0 and string.format(", %d skipped", t.skipped) or "",
      t.held > 0 and string.format(", %d in doubt", t.held) or "", t.cost))
  else
    w("<p class=\"meta\" id=\"meta\">no runs recorded in this folder</p></header>")
  end
  w("<section id=\"summary\" hidden aria-label=\"summary, best first\"></section>")
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
  w("<div id=\"rating-bar\" hidden><span id=\"rating-count\"></span>",
    "<button type=\"button\" id=\"export\" title=\"download ratings.json; save it beside manifest.jsonl, ",
    "or merge it: editflow rate DIR --import FILE\">export ratings.json</button>",
    "<textarea id=\"export-json\" readonly hidden aria-label=\"the exported ratings.json\"></textarea></div>",
    "<form id=\"controls\" hidden></form><div id=\"sheet\"></div>", DETAIL)
  fallback(w, data)
  -- In a script element only "</script" ends it, but "<!--" changes how it ends: neither can
  -- appear once every "<" is \u003c (and ">", "&" likewise, for any reader of the file).
  local payload = json.encode(data):gsub("[<>&]", { ["<"] = "\\u003c", [">"] = "\\u003e", ["&"] = "\\u0026" })
  w("<script type=\"application/json\" id=\"data\">", payload, "</script><script>", page.SCRIPT,
    "</script></body></html>\n")
  local path = data_of.join(dir, "index.html")
  assert(core.write_file(path, table.concat(out)))
  return path
end

return M
