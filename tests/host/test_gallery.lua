-- test_gallery.lua: an experiment's index.html in a real browser. Galleries made by real runs
-- against the sandbox, and folders whose manifest.jsonl is written here line by line (two runs
-- of 2 prompts x 3 models x 2 styles with judge scores and a ratings.json; 500 jobs), are
-- opened from disk in headless Chromium. The page's state comes from the URL's hash, through
-- the same function the controls call, and --dump-dom shows the DOM after the script ran: the
-- axes and sections, the filters, the run picker, the summary, the detail view with its
-- before/after, failures in place, and that no prompt, value, note or message can run as
-- markup. Keys are pressed through the DevTools protocol (tests/host/cdp.py): stars by
-- keyboard, exported, imported with `editflow rate --import`, shown by the regenerated page.
-- Chromium is required (scripts/deps --test installs it): without it this test fails. Every
-- browser run is bounded by timeout(1) (cdp.py by its own bound too, and stops the browser by
-- its process group); nothing waits a fixed time: each step waits for its condition.
local T = require "testlib"
local editflow = require "editflow"
local gallery = require "editflow.experiment.gallery"
local json = require "editflow.json"
local core = require "editflow.core"
local report = require "editflow.experiment.report"

local A = T.source_dir .. "/tests/fixtures/a.png"
local B = T.source_dir .. "/tests/fixtures/b.png"

local have = T.sh("command -v chromium")
if have ~= 0 then
  print("FAIL - chromium is missing: install it with scripts/deps --test (Debian package chromium)")
  os.exit(1)
end

local sb = T.sandbox { "--job-time", "0.01", "--workers", "8" }
local function client() return editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key" } end

local profile = T.tmpdir()

-- Runs headless Chromium on a file:// URL; returns its stdout. As root (CI) it needs
-- --no-sandbox; its profile is a directory of this run's, never the user's.
local FLAGS = "--headless=new --no-sandbox --disable-gpu --no-first-run --no-default-browser-check "
  .. "--disable-extensions --disable-sync --mute-audio"
local function chromium(args, path, hash)
  local url = "file://" .. path .. (hash and ("#" .. hash) or "")
  local status, out, err = T.sh("timeout -k 5 60 chromium " .. FLAGS .. " --user-data-dir=" .. T.quote(profile)
    .. " " .. args .. " " .. T.quote(url))
  if status ~= 0 then error(string.format("chromium exited %d: %s", status, (err or ""):sub(-600)), 2) end
  return out
end

-- The DOM after the page's script ran, for each hash (one view each): the browsers run two
-- at a time (more only thrash a small machine), each with a profile of its own, each bounded
-- by timeout(1).
local PARALLEL = 2
local function doms(path, hashes)
  local script, files = {}, {}
  for i, hash in ipairs(hashes) do
    local out = string.format("%s/dom%d", profile, i)
    files[i] = out
    script[#script + 1] = string.format("(timeout -k 5 60 chromium %s --user-data-dir=%s --dump-dom %s >%s 2>%s.err; "
      .. "echo $? >%s.rc) &", FLAGS, T.quote(out .. ".profile"), T.quote("file://" .. path .. "#" .. hash),
      T.quote(out), T.quote(out), T.quote(out))
    if i % PARALLEL == 0 then script[#script + 1] = "wait" end
  end
  script[#script + 1] = "wait"
  T.sh(table.concat(script, "\n"))
  local views = {}
  for i, hash in ipairs(hashes) do
    local rc = tonumber(T.read(files[i] .. ".rc") or "")
    if rc ~= 0 then
      error(string.format("chromium exited %s on #%s: %s", tostring(rc), hash, (T.read(files[i] .. ".err") or ""):sub(-600)), 2)
    end
    views[i] = T.read(files[i])
    T.contains(views[i], "data-drawn-ms=", "the page's script ran (#" .. hash .. ")")
  end
  return table.unpack(views)
end

-- The opening tag of the element with this id, and one attribute of it.
local function tag(d, id)
  local at = d:find(" id=\"" .. id .. "\"", 1, true)
  if not at then return nil end
  local open = d:sub(1, at):match(".*()<")
  return d:match("^<[^>]*>", open)
end
local function attr(d, id, name)
  local t = tag(d, id)
  return t and t:match(" " .. name:gsub("%-", "%%-") .. "=\"([^\"]*)\"")
end
local count = T.count
-- The sheet's part of the DOM: from its div to the detail view's.
local function sheet(d) return d:sub(d:find("id=\"sheet\"", 1, true), d:find("id=\"detail\"", 1, true)) end
-- The text of the element with this id (its markup, as serialised).
local function inner(d, id)
  local t = tag(d, id)
  if not t then return nil end
  local at = d:find(t, 1, true) + #t
  local name = t:match("^<(%w+)")
  return d:sub(at, d:find("</" .. name .. ">", at, true) - 1)
end
-- Text as a DOM serialises it, and as the page's markup escapes it.
local function html_text(s) return (s:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;")) end
local function html_attr(s) return (html_text(s):gsub("\"", "&quot;"):gsub("'", "&#39;")) end
local function pct(s) return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end)) end

local XSS = "<img src=x onerror=\"document.documentElement.setAttribute('data-pwned','1')\">"
local CLOSE = "</script><script>document.documentElement.setAttribute('data-pwned','2')</script>"

local function not_pwned(d, what)
  T.ok(not d:match("<html[^>]* data%-pwned=\""), what .. ": no injected markup ran")
  T.ok(not d:find("<img src=\"x\"", 1, true) and not d:find("<img src=x", 1, true), what .. ": no injected element")
end

local function manifest(dir)
  local out = {}
  for line in (T.read(dir .. "/manifest.jsonl") or ""):gmatch("[^\n]+") do out[#out + 1] = json.decode(line) end
  return out
end

-- Writes records as DIR/manifest.jsonl, one JSON object a line, as experiment.run does.
local function write_manifest(dir, records)
  local lines = {}
  for i, r in ipairs(records) do lines[i] = json.encode(r) end
  assert(core.write_file(dir .. "/manifest.jsonl", table.concat(lines, "\n") .. "\n"))
end

local d = T.tmpdir()
local s, m

T.case("a real run's gallery: one file, escaped, relative, inputs once", function()
  s = editflow.experiment { name = "look", out = d, client = client(), prompt = "a ${animal} in ${style} style " .. CLOSE,
    vars = { animal = { "cat", "dog" }, style = { "oil", "ink", "[fail:nsfw] " .. XSS } },
    images = { A, B }, seeds = { 1, 2 }, params = { image_size = "square" } }
  T.eq(s.done, 8, "eight done")
  T.eq(s.failed, 4, "the [fail:nsfw] style fails")
  m = manifest(s.dir)
  local html = T.read(s.gallery)
  T.ok(not html:find(XSS, 1, true) and not html:find(CLOSE, 1, true), "nothing user-given is written raw")
  T.contains(html, html_attr(XSS), "the value HTML-escaped in the no-script table")
  local data = html:match("<script type=\"application/json\" id=\"data\">(.-)</script>")
  T.ok(data and not data:find("<", 1, true), "no '<' inside the data block")
  local decoded = assert(json.decode(data))
  T.eq(#decoded.jobs, 12, "every job in the data")
  T.contains(decoded.jobs[1].prompt, CLOSE, "the prompt intact in the data")
  T.eq(count(html, "<script"), 2, "two scripts: the data and the page's own")
  for _, name in ipairs { "src", "href" } do
    for u in html:gmatch(" " .. name .. "=\"([^\"]*)\"") do
      T.ok(not u:find("^%a[%w+.-]*:") and not u:find("^/"), "every src and href relative: " .. u)
    end
  end
  T.eq(#T.list_dir(s.dir .. "/inputs"), 2, "each input copied once")
  T.eq(count(inner(html, "inputs"), "<figure"), 2, "each input shown once at the top")
  T.contains(html, "loading=\"lazy\"", "the no-script table's images load lazily")
end)

-- The views of that gallery, each a state set by the hash, all opened at once: each view
-- checks several things, since each browser run costs seconds.
local V = {}
local done, failed

T.case("in Chromium: the first view, failures in place, nothing injected", function()
  for _, r in ipairs(m) do
    if r.status == "done" and not done then done = r end
    if r.status == "failed" and not failed then failed = r end
  end
  V.first, V.styles, V.same, V.failures, V.marked, V.none = doms(s.gallery, {
    "",
    "across=style&down=seed&open=" .. done.index,
    "across=animal&down=animal&filter=style:oil&filter=style:ink&open=999",
    "across=nope&down=style&filter=status:failed&open=" .. failed.index,
    "filter=" .. pct("style:[fail:nsfw] " .. XSS) .. "&filter=animal:dog&filter=seed:2",
    "filter=animal:" })
  local v = V.first
  not_pwned(v, "first view")
  -- one model, one prompt: the two dimensions with the most values, styles (3) then animals
  T.eq(attr(v, "grid", "data-across"), "style", "the dimension with the most values across")
  T.eq(attr(v, "grid", "data-down"), "animal", "the next down (before the seed: its order)")
  T.eq(attr(v, "grid", "data-rows"), "4", "one row per animal and seed")
  T.eq(attr(v, "grid", "data-cols"), "3", "one column per style")
  local part = sheet(v)
  T.eq(count(part, "data-job=\""), 12, "every job in a cell")
  T.eq(count(part, "class=\"shot\""), 8, "eight thumbnails")
  T.eq(count(part, "loading=\"lazy\""), 8, "loaded lazily")
  T.eq(count(part, "class=\"state failed\""), 4, "four failures in place")
  T.contains(part, html_text(failed.error.message), "with the server's message")
  T.contains(part, html_text(XSS), "the hostile value shown as text")
  T.contains(v, "<title>look</title>", "title unchanged")
  T.ok(not tag(v, "controls"):find("hidden", 1, true), "the controls shown")
  T.ok(tag(v, "detail"):find("hidden", 1, true), "no detail view")
  T.ok(not tag(v, "run"), "one run: no run picker")
  T.match(v, "<html[^>]*data%-state=\"across=style&amp;down=animal\"", "the state written back")
end)

T.case("in Chromium: the axes from the hash", function()
  local v = V.styles
  T.eq(attr(v, "grid", "data-across"), "style", "styles across")
  T.eq(attr(v, "grid", "data-down"), "seed", "seeds down")
  T.eq(attr(v, "grid", "data-cols"), "3", "three styles")
  T.eq(attr(v, "grid", "data-rows"), "4", "seed x animal")
  local heads = {}
  for h in v:gmatch("<th data%-value=\"([^\"]*)\"") do heads[#heads + 1] = h end
  T.eq(table.concat(heads, "|", 1, 2), "oil|ink", "columns in the grid's order")
  T.contains(v, "<div class=\"key\">seed = <span", "rows led by the seed")
  not_pwned(v, "styles across")
  -- the same variable twice: down gives way; an unknown one: the default, and not twice
  T.eq(attr(V.same, "grid", "data-across"), "animal", "animal across")
  T.eq(attr(V.same, "grid", "data-down"), "none", "down none when both name one variable")
  T.eq(attr(V.failures, "grid", "data-across"), "style", "an unknown axis: the default")
  T.eq(attr(V.failures, "grid", "data-down"), "none", "and then not the same twice")
end)

T.case("in Chromium: filters by value and by status", function()
  local v = V.same
  T.eq(attr(v, "grid", "data-jobs"), "8", "two styles of three")
  T.eq(attr(v, "grid", "data-rows"), "4", "rows: style x seed")
  T.eq(count(sheet(v), "class=\"state failed\""), 0, "the failing style filtered out")
  local boxes = v:match("<fieldset data%-dim=\"style\">(.-)</fieldset>")
  T.eq(count(boxes, "<input "), 3, "a box per style")
  T.eq(count(boxes, "checked"), 2, "two checked")
  T.match(boxes, "value=\"oil\" checked", "oil's among them")
  T.eq(attr(V.failures, "grid", "data-jobs"), "4", "only the failures")
  T.eq(count(sheet(V.failures), "class=\"state failed\""), 4, "all failed")
  T.eq(attr(V.marked, "grid", "data-jobs"), "1", "a value with markup in it, filtered by its label")
  not_pwned(V.marked, "filtered")
  T.eq(attr(V.none, "grid", "data-jobs"), "0", "no animal: nothing")
  T.contains(V.none, "No job matches the filters.", "and it says so")
end)

T.case("in Chromium: the detail view", function()
  local v = V.styles
  T.ok(not tag(v, "detail"):find("hidden", 1, true), "the detail view open")
  T.eq(inner(v, "d-prompt"), html_text(done.prompt), "the prompt, whole, as text")
  T.eq(inner(v, "d-seed"), tostring(done.seed), "the seed used")
  T.eq(inner(v, "d-rid"), done.request_id, "the request id")
  T.contains(inner(v, "d-cost"), string.format("$%.4f", done.cost_estimate), "the cost")
  T.contains(inner(v, "d-timings"), "inference", "the server's timings")
  T.contains(inner(v, "d-params"), "image_size: \"square\"", "the parameters")
  T.eq(count(inner(v, "d-inputs"), "<img "), 2, "its inputs")
  T.contains(inner(v, "d-files"), done.outputs[1].path, "its files")
  T.contains(inner(v, "d-figure"), "<img src=\"" .. done.outputs[1].path .. "\"", "the full image")
  T.ok(not inner(v, "d-figure"):find("lazy", 1, true), "loaded at once")
  T.contains(inner(v, "d-title"), "job " .. done.index, "titled by its number")
  T.ok(tag(V.same, "detail"):find("hidden", 1, true), "no such job: no detail view")
  v = V.failures
  T.contains(inner(v, "d-error"), html_text(failed.error.message), "a failure's message")
  T.contains(inner(v, "d-error"), failed.error.code, "and code")
  not_pwned(v, "a failure's detail")
end)

-- 500 jobs written straight into a manifest (their image files need not exist): drawn in
-- full, every thumbnail lazy, the server's hostile message inert.
T.case("in Chromium: 500 jobs stay usable", function()
  local dir = T.tmpdir()
  local records = {}
  for si = 1, 5 do
    for su = 1, 10 do
      for seed = 1, 10 do
        local i = #records + 1
        local slug = string.format("j%03d", i)
        local r = { run = "r1", started = "2026-01-01T00:00:00Z", experiment = "five hundred", index = i, slug = slug,
          model = "fal-ai/x", prompt_name = "p1", template = "${subject} in ${style}",
          prompt = "subject " .. su .. " in style" .. si, vars = { style = "style" .. si, subject = "subject " .. su },
          seed = seed, input = { prompt = "subject " .. su .. " in style" .. si, seed = seed, image_urls = json.array { A } },
          inputs = json.array { A }, cost = 0.01, cost_estimate = 0.01 }
        if i % 50 == 0 then
          r.status, r.error = "failed", { code = "HTTP_500", message = CLOSE .. " " .. XSS }
        else
          r.status, r.request_id = "done", "req-" .. i
          r.outputs = json.array { { path = slug .. "-1.png", width = 512, height = 512, bytes = 1000 } }
        end
        records[i] = r
      end
    end
  end
  write_manifest(dir, records)
  local path = gallery.write(dir)
  T.ok(not T.read(path):find(CLOSE, 1, true), "the message escaped in the file")
  -- How fast is not checked here (each browser run's timeout(1) of 60 s guards against a page
  -- that never finishes; the draw time below is for the reader): tests/bench/gallery_draw.lua
  local t0 = os.time()
  local v, filtered = doms(path, { "across=style&down=seed", "filter=subject:subject%203&filter=style:style2" })
  print(string.format("   two browser runs on the 500-job gallery took %d s", os.time() - t0))
  T.eq(attr(v, "grid", "data-jobs"), "500", "all 500 drawn")
  T.eq(attr(v, "grid", "data-rows"), "100", "seed x subject rows")
  T.eq(count(sheet(v), "loading=\"lazy\""), 490, "every thumbnail lazy")
  T.eq(count(sheet(v), "class=\"state failed\""), 10, "failures in place")
  not_pwned(v, "500 jobs")
  print(string.format("   500 jobs drawn by the page's script in %s ms", v:match("data%-drawn%-ms=\"(%d+)\"")))
  v = filtered
  T.eq(attr(v, "grid", "data-jobs"), "10", "filtered to one subject and style")
  os.execute("rm -rf " .. T.quote(dir))
end)

-- A 100-job grid (5 x 5 x 4 seeds) from the sandbox, screenshotted; with
-- EDITFLOW_GALLERY_SCREENSHOT=PATH the PNG is kept there (docs/gallery.png is made so).
T.case("in Chromium: a screenshot of a 100-job grid", function()
  local g = editflow.experiment { name = "styles", out = d, client = client(), prompt = "a ${subject}, ${style}",
    vars = { subject = { "lighthouse", "fox", "teapot", "bicycle", "cactus" },
             style = { "oil painting", "ink wash", "watercolour", "pixel art", "charcoal" } },
    images = { A }, seeds = { 1, 2, 3, 4 }, params = { image_size = "square" } }
  T.eq(g.done, 100, "100 done")
  local shot = os.getenv("EDITFLOW_GALLERY_SCREENSHOT") or (d .. "/gallery.png")
  chromium("--screenshot=" .. T.quote(shot) .. " --window-size=1400,1000 --hide-scrollbars --virtual-time-budget=5000",
    g.gallery, "across=style&down=subject&size=144")
  local png = T.read(shot)
  T.ok(png and png:sub(1, 8) == "\137PNG\r\n\26\n", "a PNG written")
  T.ok(#png > 20000, "with something on it (" .. #png .. " bytes)")
end)

T.case("in Chromium: names JavaScript objects have are plain names here", function()
  -- a variable called constructor, values called toString and __proto__, a request id called
  -- __proto__ in ratings.json, and a hash naming them
  local dir = T.tmpdir()
  local records = {}
  for i, v in ipairs { "toString", "__proto__", "hasOwnProperty" } do
    records[i] = { run = "r1", started = "2026-01-01T00:00:00Z", experiment = "proto", index = i, slug = "j" .. i,
      model = "fal-ai/x", prompt_name = "p1", prompt = "p " .. v, vars = { constructor = v },
      input = { prompt = "p " .. v, image_urls = json.array { A } }, status = "done",
      request_id = i == 2 and "__proto__" or ("req-" .. i), cost = 0.01,
      outputs = json.array { { path = "j" .. i .. "-1.png", width = 64, height = 64, bytes = 10 } } }
  end
  write_manifest(dir, records)
  assert(core.write_file(dir .. "/ratings.json", '{"__proto__": {"stars": 3}, "constructor": {"stars": 9}}'))
  local path = gallery.write(dir)
  local plain, filtered, odd = doms(path, { "", "filter=constructor:toString", "filter=toString:1&filter=constructor:x&open=__proto__" })
  -- (doms() already saw each page's script finish: data-drawn-ms, no TypeError)
  T.ok(odd:find("data-drawn-ms=", 1, true) ~= nil, "a hash naming toString and constructor draws")
  T.eq(count(sheet(plain), "data-job="), 3, "three jobs shown")
  T.eq(count(sheet(filtered), "data-job="), 1, "the filter on constructor=toString keeps one")
  T.eq(count(sheet(plain), "data-stars=\"3\""), 1, "the rating of request __proto__ shown on its job")
  os.execute("rm -rf " .. T.quote(dir))
end)

-- ---- which prompt, on which model: a folder of two runs written line by line ----
-- Each run: 2 prompts x 3 models x 2 styles = 12 jobs, job n = (prompt-1)*6 + (model-1)*2 + style;
-- the judge scored job n (n * 3) % 11; in the latest run job 12 failed before it was accepted
-- (no request id: it cannot be rated). ratings.json rates job 3 of the latest run.
local MODELS = { "fal-ai/nano-banana/edit", "fal-ai/qwen-image-edit-plus", "fal-ai/flux-pro/kontext" }
local PROMPTS = { { "warm", "make the light warm, ${style} " .. XSS }, { "cold", "make the light cold, ${style}" } }
local STYLES = { "oil", "ink" }
local RUNS = { { id = "20261206T080102Z-aaaa", started = "2026-12-06T08:01:02Z" },
               { id = "20261207T090000Z-bbbb", started = "2026-12-07T09:00:00Z" } }
local OLD, LATEST = RUNS[1].id, RUNS[2].id
local function score(n) return (n * 3) % 11 end
local NOTE = "keeps the face " .. XSS .. CLOSE

local function compare_folder(dir)
  local png = T.read(A)
  local records = {}
  for ri, run in ipairs(RUNS) do
    local n = 0
    for _, p in ipairs(PROMPTS) do
      for _, model in ipairs(MODELS) do
        for _, style in ipairs(STYLES) do
          n = n + 1
          local rid = string.format("r%d-job%02d", ri, n)
          local failed = ri == 2 and n == 12
          local prompt = p[2]:gsub("%${style}", style)
          local r = { run = run.id, started = run.started, experiment = "cmp", index = n, slug = rid, model = model,
            prompt_name = p[1], template = p[2], prompt = prompt, vars = { style = style },
            input = { prompt = prompt, image_urls = json.array { A } }, inputs = json.array { A },
            cost = 0.04, cost_estimate = 0.04, reused = false, elapsed = 1 + n / 10,
            price = { unit_price = 0.04, unit = "image", currency = "USD", source = "test" } }
          if failed then
            r.status, r.error = "failed", { code = "HTTP_422", message = CLOSE .. " " .. XSS }
          else
            assert(core.write_file(dir .. "/" .. rid .. "-1.png", png))
            r.status, r.request_id = "done", rid
            r.outputs = json.array { { path = rid .. "-1.png", width = 64, height = 48, bytes = #png } }
            r.judge = { endpoint = "fal-ai/any-llm/vision", score = score(n), text = "judged " .. n .. " " .. XSS,
              request_id = "judge-" .. rid, cost = 0.001 }
          end
          records[#records + 1] = r
        end
      end
    end
  end
  write_manifest(dir, records)
  assert(core.write_file(dir .. "/ratings.json", json.encode { ["r2-job03"] = { stars = 2, note = NOTE } }))
  return gallery.write(dir)
end

local C = {}  -- the compare folder and its views

T.case("a folder's runs and ratings: the page is built from the manifest alone", function()
  C.dir = T.tmpdir()
  C.path = compare_folder(C.dir)
  local html = T.read(C.path)
  T.ok(not html:find(XSS, 1, true) and not html:find(CLOSE, 1, true), "nothing user-given is written raw")
  local data = assert(json.decode(html:match("<script type=\"application/json\" id=\"data\">(.-)</script>")))
  T.eq(#data.jobs, 24, "every job of both runs")
  T.eq(data.run, LATEST, "the latest run first")
  T.eq(#data.runs, 2, "both runs listed")
  T.eq(data.across .. " " .. data.down, "model prompt", "models across, prompts down")
  T.contains(data.key, "cmp", "the browser's ratings are kept per experiment")
  T.contains(data.key, OLD, "and per folder (its first run)")
  T.eq(data.ratings["r2-job03"].stars, 2, "ratings.json's stars carried")
  T.eq(#T.list_dir(C.dir .. "/inputs"), 1, "the input copied once")
  -- the summary is report.lua's, with the folder's ratings
  local records = assert(report.load(C.dir))
  local want = report.summarize(records, { ["r2-job03"] = { stars = 2 } })
  T.eq(data.summaries[LATEST].total.jobs, 12, "the latest run's summary")
  T.eq(data.summaries[LATEST].by.model[1].value, want.by.model[1].value, "the same best model as report")
  T.eq(data.summaries.all.total.jobs, 24, "and every run's: 24 request ids (the one without an id from the latest)")
  -- the old call (experiment.run before issue 18) still works: its extra arguments are not read
  T.eq(gallery.write(C.dir, "ignored", {}, {}, {}), C.path, "gallery.write(dir, name, plan, records, spec)")
end)

T.case("in Chromium: model across, prompt down, style in sections; the run picker; sort by score", function()
  C.first, C.grouped, C.old, C.all, C.sorted, C.open, C.failed, C.badrun = doms(C.path, {
    "", "group=style", "run=" .. OLD, "run=all", "sort=judge&color=judge", "open=1",
    "open=12", "run=nope&across=prompt&down=model&group=style" })
  local v = C.first
  not_pwned(v, "compare: first view")
  T.eq(attr(v, "grid", "data-across"), "model", "models across")
  T.eq(attr(v, "grid", "data-down"), "prompt", "prompts down")
  T.eq(attr(v, "grid", "data-cols"), "3", "three models")
  T.eq(attr(v, "grid", "data-rows"), "4", "prompt x style")
  T.eq(attr(v, "grid", "data-jobs"), "12", "the latest run only")
  local heads = {}
  for h in v:gmatch("<th data%-value=\"([^\"]*)\"") do heads[#heads + 1] = h end
  T.eq(table.concat(heads, "|"), table.concat(MODELS, "|"), "one column per model, in order")
  T.contains(v, "title=\"prompt = make the light warm, ${style} ", "a prompt's heading names its template")
  T.contains(sheet(v), "r2-job01-1.png", "the latest run's images")
  T.ok(not sheet(v):find("r1-job01", 1, true), "not the earlier run's")
  T.eq(count(sheet(v), "class=\"state failed\""), 1, "the failed job in place")
  T.match(v, "<html[^>]*data%-state=\"across=model&amp;down=prompt\"", "the default view's hash")
  -- the run picker: newest first, then all
  local picker = v:match("<select id=\"run\"[^>]*>(.-)</select>")
  T.ok(picker, "a run picker")
  local ids = {}
  for id in picker:gmatch("<option value=\"([^\"]*)\"") do ids[#ids + 1] = id end
  T.eq(table.concat(ids, " "), LATEST .. " " .. OLD .. " all", "every run, the latest first, and all")
  T.contains(picker, "12 jobs", "each with its job count")
  T.contains(picker, RUNS[1].started, "and start")
  -- the summary at the top
  local model_table = v:match("<table data%-dim=\"model\">(.-)</table>")
  T.ok(model_table, "a summary per model")
  T.eq(count(model_table, "<tr><td"), 3, "a row per model")
  T.ok(v:match("<table data%-dim=\"prompt\">"), "per prompt")
  T.ok(v:match("<table data%-dim=\"style\">"), "per variable")
  T.contains(model_table, "2.0\u{2605} (1)", "the stars from ratings.json")
  T.contains(sheet(v), "title=\"keeps the face ", "a note's mark on its job, the note as its title")

  v = C.grouped
  T.eq(attr(v, "grid", "data-group"), "style", "styles as sections")
  T.eq(attr(v, "grid", "data-sections"), "2", "two sections")
  T.eq(count(sheet(v), "<tr class=\"section\""), 2, "each with its heading row")
  T.match(sheet(v), "<tr class=\"section\" data%-group=\"oil\">.-<tr class=\"section\" data%-group=\"ink\">", "in order")
  T.eq(attr(v, "grid", "data-rows"), "4", "prompt rows in each")

  v = C.old
  T.eq(attr(v, "grid", "data-jobs"), "12", "the earlier run by the hash")
  T.contains(sheet(v), "r1-job12-1.png", "its images")
  T.ok(not sheet(v):find("r2-job", 1, true), "none of the latest run's")
  T.contains(v, "data-state=\"run=" .. OLD .. "&amp;", "the run in the hash")
  T.eq(attr(C.all, "grid", "data-jobs"), "24", "run=all: every request id once")
  T.eq(attr(C.badrun, "grid", "data-jobs"), "12", "an unknown run: the latest")
  T.eq(attr(C.badrun, "grid", "data-across") .. " " .. attr(C.badrun, "grid", "data-down") .. " " .. attr(C.badrun, "grid", "data-group"),
    "prompt model style", "any dimension on any axis")

  -- sort=judge: the columns by their mean score, best first (computed here from the formula)
  local means = {}
  for mi, model in ipairs(MODELS) do
    local sum, n = 0, 0
    for pi = 1, 2 do for si = 1, 2 do
      local job = (pi - 1) * 6 + (mi - 1) * 2 + si
      if job ~= 12 then sum, n = sum + score(job), n + 1 end
    end end
    means[#means + 1] = { model = model, mean = sum / n, at = mi }
  end
  table.sort(means, function(x, y) if x.mean ~= y.mean then return x.mean > y.mean end return x.at < y.at end)
  heads = {}
  for h in C.sorted:gmatch("<th data%-value=\"([^\"]*)\"") do heads[#heads + 1] = h end
  local want = {}
  for i, x in ipairs(means) do want[i] = x.model end
  T.eq(table.concat(heads, "|"), table.concat(want, "|"), "models by mean judge score, best first")
  T.ok(table.concat(want, "|") ~= table.concat(MODELS, "|"), "(an order the grid's is not)")
  T.eq(count(sheet(C.sorted), "class=\"score\""), 11, "each judged job's score on its cell")
  T.match(sheet(C.sorted), "<td style=\"background: rgb%(", "cells coloured by score")
  T.ok(not sheet(C.first):find("<td style=", 1, true), "not without color=judge")
end)

T.case("in Chromium: before and after, the judge, no rating without a request id", function()
  local v = C.open
  not_pwned(v, "compare: detail")
  T.ok(not tag(v, "detail"):find("hidden", 1, true), "the detail view open")
  local before = tag(v, "d-before")
  T.ok(before, "the input beside the output")
  T.match(v, "<figure id=\"d%-before\"><img src=\"inputs/[^\"]+\"", "the input's copy")
  T.match(v, "<figure class=\"after\"><a href=\"r2%-job01%-1%.png\"", "the output")
  local cmp = v:match("<div class=\"compare\" id=\"d%-compare\"[^>]*>(.-)</div>")
  T.ok(cmp, "the overlay")
  T.eq(count(cmp, "<img "), 2, "input and output one over the other")
  T.match(cmp, "class=\"top\" style=\"clip%-path: inset%(0px 50%% 0px 0px%)", "the output clipped to half")
  T.eq(attr(v, "d-slider", "type"), "range", "a slider (keyboard-operable)")
  T.eq(attr(v, "d-rate", "data-can"), "1", "a job with a request id can be rated")
  T.contains(inner(v, "d-judge"), "3.0 of 10", "the judge's score")
  T.contains(inner(v, "d-judge"), html_text("judged 1 " .. XSS), "and its text, as text")
  T.contains(inner(v, "d-template"), html_text(PROMPTS[1][2]), "the template")
  v = C.failed
  T.eq(attr(v, "d-rate", "data-can"), "0", "a job never accepted cannot be rated")
  T.ok(not tag(v, "d-norate"):find("hidden", 1, true), "and says why")
  T.contains(inner(v, "d-error"), html_text(CLOSE), "its error as text")
  not_pwned(v, "compare: failed detail")
end)

-- Runs tests/host/cdp.py with these steps; -> its results (raises with its error).
local CDP = T.source_dir .. "/tests/host/cdp.py"
local function cdp(steps, downloads)
  local prof = T.tmpdir()
  local file = prof .. "/steps.json"
  assert(core.write_file(file, json.encode(json.array(steps))))
  local status, out, err = T.sh("timeout -k 5 150 python3 " .. T.quote(CDP) .. " --timeout 120 --profile "
    .. T.quote(prof .. "/p") .. (downloads and (" --downloads " .. T.quote(downloads)) or "") .. " <" .. T.quote(file))
  os.execute("rm -rf " .. T.quote(prof))
  local r = json.decode(out or "")
  if status ~= 0 or not r or not r.ok then
    error(string.format("cdp.py exited %d: %s %s", status, out or "", (err or ""):sub(-400)), 2)
  end
  return r.results
end
local DRAWN = "document.documentElement && document.documentElement.hasAttribute('data-drawn-ms')"
local function marks(job)  -- an expression: the marks under job N's image, as text
  return "(function(){var a=document.querySelector('#sheet [data-job=\"" .. job .. "\"]');"
    .. "var m=a&&a.parentNode.querySelector('.marks');return m?(m.querySelector('.stars')?m.querySelector('.stars').dataset.stars:'-')"
    .. "+(m.querySelector('.best')?' best':''):'none'})()"
end

T.case("in Chromium, by keyboard: stars, best in the row, a note, the slider; export; kept in the browser", function()
  local url = "file://" .. C.path
  local key = json.decode(T.read(C.path):match("<script type=\"application/json\" id=\"data\">(.-)</script>")).key
  C.downloads = T.tmpdir()
  local r = cdp({
    { navigate = url .. "#open=1" }, { wait = DRAWN },
    { wait = "!document.getElementById('detail').hidden" },
    -- the detail view: 4 stars, best, a note (n focuses it, Esc leaves it)
    { key = "4" }, { wait = "document.getElementById('d-rate').getAttribute('data-stars') === '4'" },
    { key = "b" }, { wait = "document.getElementById('d-best').getAttribute('aria-pressed') === 'true'" },
    { key = "n" }, { wait = "document.activeElement === document.getElementById('d-note')" },
    { text = "warm and sharp" }, { key = "Escape" },
    { wait = "document.activeElement !== document.getElementById('d-note')" },
    { eval = "location.hash", name = "hash_open" },
    -- the next job in its row (qwen, warm, oil): 5 stars and best, which takes job 1's away
    { key = "ArrowRight" }, { wait = "document.documentElement.getAttribute('data-state').indexOf('open=3') >= 0" },
    { key = "5" }, { key = "b" },
    { wait = "document.getElementById('d-best').getAttribute('aria-pressed') === 'true'" },
    -- the slider by its keys: it moves, the job stays
    { eval = "document.getElementById('d-slider').focus()" }, { key = "ArrowLeft", ["repeat"] = 5 },
    { wait = "document.getElementById('d-compare').getAttribute('data-reveal') === '45'" },
    { eval = "document.documentElement.getAttribute('data-state')", name = "after_slider" },
    { eval = "document.activeElement.blur()" },
    { key = "Escape" }, { wait = "document.getElementById('detail').hidden" },
    -- on the sheet: a focused image takes 3 and stays focused
    { eval = "document.querySelector('#sheet [data-job=\"7\"]').focus()" }, { key = "3" },
    { wait = marks(7) .. " === '3'" },
    { eval = "document.activeElement.getAttribute('data-job')", name = "focused" },
    { eval = marks(1), name = "marks1" }, { eval = marks(3), name = "marks3" },
    -- a job without a request id: keys do nothing
    { eval = "location.hash = 'open=12'" }, { wait = "!document.getElementById('detail').hidden" },
    { key = "2" }, { key = "b" },
    { eval = "Object.keys(JSON.parse(localStorage.getItem(" .. json.encode(key) .. "))).sort().join(' ')", name = "stored" },
    { key = "Escape" }, { wait = "document.getElementById('detail').hidden" },
    -- the export: a download and the same text in the page
    { eval = "document.getElementById('export').click()" },
    { wait = "!document.getElementById('export-json').hidden" },
    { eval = "document.getElementById('export-json').value", name = "export" },
    { eval = "document.getElementById('export-json').readOnly", name = "readonly" },
    { wait_file = C.downloads .. "/ratings.json" },
    -- kept in the browser: a reload shows them
    -- (the old document is marked, so the waits below see the new one)
    { eval = "document.documentElement.setAttribute('data-old', '1')" },
    -- (the checks are on jobs 1 and 3, rated well before: once, under a heavy load, the rating
    -- made last -- job 7's -- was not yet in the storage a reload reads, a commit race of the
    -- browser's, not the page's; job 7's rating was checked stored above)
    { reload = true }, { wait = "document.documentElement && !document.documentElement.hasAttribute('data-old') && " .. DRAWN },
    { wait = marks(3) .. " === '5 best'" },
    { eval = marks(1), name = "reload1" }, { eval = marks(3), name = "reload3" },
  }, C.downloads)
  T.eq(r.hash_open, "#across=model&down=prompt&open=1", "the open job in the hash")
  T.ok(not r.after_slider:find("open=1", 1, true) and r.after_slider:find("open=3", 1, true), "the slider's keys did not change the job")
  T.eq(r.focused, "7", "the focus stays on the rated image")
  T.eq(r.marks1, "4", "job 1: four stars, best taken away by job 3")
  T.eq(r.marks3, "5 best", "job 3: five stars, the best of its row")
  T.eq(r.stored, "r2-job01 r2-job03 r2-job07", "three rated, the job without a request id not")
  T.eq(r.readonly, true, "the export's box is read-only")
  T.eq(r.reload1 .. "|" .. r.reload3, "4|5 best", "kept across a reload")
  local doc = assert(json.decode(r.export))
  T.eq(doc["r2-job01"].stars, 4, "exported: job 1's stars")
  T.eq(doc["r2-job01"].best, false, "not best any more")
  T.eq(doc["r2-job01"].note, "warm and sharp", "its note")
  T.eq(doc["r2-job03"].stars, 5, "job 3's stars over ratings.json's")
  T.eq(doc["r2-job03"].note, NOTE, "ratings.json's note kept")
  T.eq(doc["r2-job07"].stars, 3, "job 7's, given on the sheet")
  T.eq(T.read(C.downloads .. "/ratings.json"), r.export, "the download holds the same text")
end)

T.case("editflow rate --import of the export; the regenerated page shows those stars", function()
  local status, out, err = T.sh(T.quote(os.getenv("EDITFLOW_BIN")) .. " rate " .. T.quote(C.dir) .. " --import "
    .. T.quote(C.downloads .. "/ratings.json"))
  T.eq(status, 0, "rate --import: " .. (out or "") .. (err or ""))
  local file = assert(json.decode(T.read(C.dir .. "/ratings.json")))
  T.eq(file["r2-job07"].stars, 3, "merged into ratings.json")
  local v = doms(C.path, { "" })  -- a fresh profile: nothing in the browser, all from the file
  T.eq(count(sheet(v), "data-stars=\"4\""), 1, "job 1's four stars")
  T.eq(count(sheet(v), "data-stars=\"5\""), 1, "job 3's five")
  T.eq(count(sheet(v), "data-stars=\"3\""), 1, "job 7's three")
  T.eq(count(sheet(v), "class=\"best\""), 1, "one best")
  T.contains(v:match("<table data%-dim=\"model\">(.-)</table>"), "\u{2605} (", "the summary's stars")
  not_pwned(v, "after the import")
end)

-- 2 prompts x 3 models from the sandbox, rated, for the README; with
-- EDITFLOW_GALLERY_COMPARE_SCREENSHOT=PATH the PNG is kept there (docs/gallery-compare.png).
T.case("in Chromium: a screenshot of 2 prompts x 3 models", function()
  local dir = T.tmpdir()
  local spec = { name = "sky", dir = dir, client = client(), images = { A }, seeds = { 7 },
    prompts = { warm = "make the sky ${c} at sunset", calm = "paint the sky ${c}, keep the rest" },
    models = { "fal-ai/qwen-image-edit-plus", "fal-ai/nano-banana/edit", "fal-ai/flux-pro/kontext" },
    vars = { c = { "red", "teal" } } }
  local judged = true
  spec.judge = { endpoint = "fal-ai/any-llm/vision" }
  -- nano-banana/edit ships no price: the sandbox's pricing API gives one, as fal's would
  sb.control { price = { endpoint_id = "fal-ai/nano-banana/edit", unit_price = 0.039, unit = "image" } }
  local g = editflow.experiment(spec)
  T.eq(g.done, 12, "12 done")
  local stars, rated = { 5, 3, 4, 2, 4, 1 }, {}
  for i, rec in ipairs(manifest(dir)) do
    if rec.request_id and stars[i] then rated[rec.request_id] = { stars = stars[i], best = i == 1 or nil } end
  end
  assert(core.write_file(dir .. "/ratings.json", json.encode(rated)))
  local path = gallery.write(dir)
  local shot = os.getenv("EDITFLOW_GALLERY_COMPARE_SCREENSHOT") or (dir .. "/compare.png")
  chromium("--screenshot=" .. T.quote(shot) .. " --window-size=1400,900 --hide-scrollbars --virtual-time-budget=5000"
    .. " --run-all-compositor-stages-before-draw", path, "across=model&down=prompt&group=c&size=128" .. (judged and "&color=judge" or ""))
  local png = T.read(shot)
  T.ok(png and png:sub(1, 8) == "\137PNG\r\n\26\n", "a PNG written")
  T.ok(#png > 20000, "with something on it (" .. #png .. " bytes)")
  os.execute("rm -rf " .. T.quote(dir))
end)

T.case("the temporary folders removed", function()
  os.execute("rm -rf " .. T.quote(d) .. " " .. T.quote(profile) .. " " .. T.quote(C.dir or "") .. " " .. T.quote(C.downloads or ""))
end)

T.run()
