-- test_gallery.lua: an experiment's index.html in a real browser. Galleries made by real runs
-- against the sandbox (and one of 500 jobs written directly) are opened from disk in headless
-- Chromium; the page's state comes from the URL's hash, through the same function the
-- controls call, and --dump-dom shows the DOM after the script ran: the axes, the filters,
-- the detail view, failures in place, and that no prompt, value or message can run as markup.
-- Chromium is required (scripts/deps --test installs it): without it this test fails. Every
-- browser run is bounded by timeout(1), which stops it by PID.
local T = require "testlib"
local editflow = require "editflow"
local gallery = require "editflow.experiment.gallery"
local json = require "editflow.json"

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
    "across=nope&down=seed&filter=status:failed&open=" .. failed.index,
    "filter=" .. pct("style:[fail:nsfw] " .. XSS) .. "&filter=animal:dog&filter=seed:2",
    "filter=animal:" })
  local v = V.first
  not_pwned(v, "first view")
  T.eq(attr(v, "grid", "data-across"), "seed", "seeds across")
  T.eq(attr(v, "grid", "data-down"), "animal", "the first variable down")
  T.eq(attr(v, "grid", "data-rows"), "6", "one row per animal and style")
  T.eq(attr(v, "grid", "data-cols"), "2", "one column per seed")
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
  T.match(v, "<html[^>]*data%-state=\"across=seed&amp;down=animal\"", "the state written back")
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
  T.eq(attr(V.failures, "grid", "data-across"), "seed", "an unknown axis: the default")
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

-- 500 jobs written straight from a plan and records (their image files need not exist):
-- drawn in full, every thumbnail lazy, the server's hostile message inert.
T.case("in Chromium: 500 jobs stay usable", function()
  local dir = T.tmpdir()
  local styles, subjects, seeds = {}, {}, {}
  for i = 1, 5 do styles[i] = "style" .. i end
  for i = 1, 10 do subjects[i] = "subject " .. i; seeds[i] = i end
  local plan = { jobs = {}, combos = {}, megapixels = 0, cost = 0 }
  local records = {}
  for _, st in ipairs(styles) do
    for _, su in ipairs(subjects) do
      local vars = { style = st, subject = su }
      plan.combos[#plan.combos + 1] = vars
      for _, seed in ipairs(seeds) do
        local i = #plan.jobs + 1
        local slug = string.format("j%03d", i)
        plan.jobs[i] = { index = i, combo = #plan.combos, vars = vars, seed = seed, slug = slug, images = 1, cost = 0.01,
          input = { prompt = su .. " in " .. st, seed = seed, image_urls = { A } } }
        records[i] = i % 50 == 0
          and { status = "failed", seed = seed, error = { code = "HTTP_500", message = CLOSE .. " " .. XSS } }
          or { status = "done", seed = seed, request_id = "req-" .. i, cost_estimate = 0.01,
               outputs = { { path = slug .. "-1.png", width = 512, height = 512, bytes = 1000 } } }
      end
    end
  end
  local path = gallery.write(dir, "five hundred", plan, records, { seeds = seeds })
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
  -- a variable called constructor, values called toString and __proto__, and a hash naming them
  local dir = T.tmpdir()
  local plan = { jobs = {}, combos = {}, megapixels = 0, cost = 0 }
  local records = {}
  for _, v in ipairs { "toString", "__proto__", "hasOwnProperty" } do
    local vars = { constructor = v }
    plan.combos[#plan.combos + 1] = vars
    local i = #plan.jobs + 1
    plan.jobs[i] = { index = i, combo = #plan.combos, vars = vars, slug = "j" .. i, images = 1, cost = 0.01,
      input = { prompt = "p " .. v, image_urls = { A } } }
    records[i] = { status = "done", request_id = "req-" .. i, cost_estimate = 0.01,
      outputs = { { path = "j" .. i .. "-1.png", width = 64, height = 64, bytes = 10 } } }
  end
  local path = require("editflow.experiment.gallery").write(dir, "proto", plan, records,
    { vars = { constructor = { "toString", "__proto__", "hasOwnProperty" } } })
  local plain, filtered, odd = doms(path, { "", "filter=constructor:toString", "filter=toString:1&filter=constructor:x" })
  -- (doms() already saw each page's script finish: data-drawn-ms, no TypeError)
  T.ok(odd:find("data-drawn-ms=", 1, true) ~= nil, "a hash naming toString and constructor draws")
  T.eq(count(plain, "data-job="), 3, "three jobs shown")
  T.eq(count(filtered, "data-job="), 1, "the filter on constructor=toString keeps one")
  os.execute("rm -rf " .. T.quote(dir))
end)

T.case("the temporary folders removed", function()
  os.execute("rm -rf " .. T.quote(d) .. " " .. T.quote(profile))
end)

T.run()
