-- test_experiment.lua: templated prompt experiments: templates, grids, seeds, the manifest,
-- the gallery, dry runs, budgets and reuse on re-run.
local T = require "testlib"
local editflow = require "editflow"
local template = require "editflow.experiment.template"
local json = require "editflow.json"

local A = T.source_dir .. "/tests/fixtures/a.png"
local B = T.source_dir .. "/tests/fixtures/b.png"
local sb = T.sandbox { "--job-time", "0.02", "--workers", "8" }

local function client() return editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key" } end

-- The manifest's records (of one run: the latest when run is nil; "all": every line).
local function manifest(dir, run)
  local all, latest = {}, nil
  for line in (T.read(dir .. "/manifest.jsonl") or ""):gmatch("[^\n]+") do
    local r = json.decode(line)
    all[#all + 1] = r
    latest = r.run  -- a run's lines come after every earlier run's
  end
  if run == "all" then return all end
  local out = {}
  for _, r in ipairs(all) do if r.run == (run or latest) then out[#out + 1] = r end end
  return out
end

T.case("templates: substitution, $$ escape, missing variables named", function()
  T.eq(template.render("a ${x} for $$${y} $5", { x = "cat", y = 3 }), "a cat for $3 $5", "render")
  T.raises(function() template.render("a ${animal} in ${style}", { animal = "cat" }, "prompt") end,
    "prompt: missing variable 'style' (variables: animal)")
  T.raises(function() template.render("a ${oops", {}) end, "without a closing")
  T.raises(function() template.render("a ${1x}", {}) end, "bad variable name '1x'")
  local names = template.names("${b} ${a} ${b} $${c}")
  T.eq(table.concat(names, ","), "b,a", "names in order, escapes skipped")
end)

T.case("grids: product, zip, both, and errors", function()
  T.eq(#template.product { a = { 1, 2, 3 }, b = { "x", "y" } }, 6, "product size")
  local p = template.product { a = { 1, 2 }, b = { "x", "y" } }
  T.eq(p[2].a .. p[2].b, "1y", "last variable varies fastest")
  local z = template.zip { a = { 1, 2 }, b = { "x", "y" } }
  T.eq(#z, 2, "zip size")
  T.eq(z[2].a .. z[2].b, "2y", "zip pairs")
  T.eq(#template.combine({ a = { 1, 2 } }, { b = { 1, 2, 3 }, c = { 4, 5, 6 } }), 6, "product x zip")
  T.raises(function() template.zip { a = { 1 }, b = { 1, 2 } } end, "has 2 values, the others 1")
  T.raises(function() template.product { a = {} } end, "must be a non-empty list")
  local imgs = editflow.images(T.source_dir .. "/tests/fixtures/*.png")
  T.eq(#imgs, 2, "glob over fixtures: a and b; not-an-image.png is text, left out")
  T.raises(function() editflow.images(T.source_dir .. "/tests") end, "nothing matches")
  T.eq(#editflow.images(T.source_dir .. "/scripts/assets"), 2, "a folder's images")
  T.raises(function() editflow.images(T.source_dir .. "/nope/*.png") end, "nothing matches")
end)

local SPEC = {
  name = "grid", prompt = "a ${animal} in ${style} style", vars = { animal = { "cat", "dog" }, style = { "oil", "ink" } },
  images = { A }, seeds = { 1, 2, 3 }, params = { image_size = "square" },
}

local function spec(extra)
  local s = {}
  for k, v in pairs(SPEC) do s[k] = v end
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

T.case("a dry run plans and prices, and sends nothing", function()
  local d = T.tmpdir()
  local before = sb.stats()
  local s = editflow.experiment(spec { out = d, client = client(), dry_run = true })
  T.eq(s.jobs, 12, "2 x 2 combinations x 3 seeds")
  T.eq(s.images, 12, "one image each")
  T.ok(math.abs(s.megapixels - 12 * 0.262144) < 1e-9, "512x512 each")
  T.ok(math.abs(s.cost - 12 * 0.262144 * 0.03) < 1e-9, "at $0.03 per megapixel")
  T.eq(s.plan.price.source, "pricing API", "priced from fal's pricing API")
  local after = sb.stats()
  T.eq(after.by_route.submit, before.by_route.submit, "nothing sent")
  T.eq(after.upload_initiates, before.upload_initiates, "nothing uploaded")
  T.eq(after.pricing_calls, before.pricing_calls + 1, "one pricing call")
  before = after
  T.eq(#T.list_dir(d), 0, "no folder made")
  local priced = editflow.experiment(spec { out = d, client = client(), dry_run = true, price = 0.1 })
  T.ok(math.abs(priced.cost - 12 * 0.262144 * 0.1) < 1e-9, "price changeable")
  T.raises(function() editflow.experiment(spec { out = d, client = client(), prompt = "${colour}" }) end,
    "prompt: missing variable 'colour'")
  T.eq(sb.stats().requests, before.requests, "a missing variable sends nothing")
end)

T.case("a run: images named by combination, manifest, gallery; a re-run pays nothing", function()
  local d = T.tmpdir()
  local s = editflow.experiment(spec { out = d, client = client() })
  T.eq(s.done, 12, "all done")
  local m = manifest(s.dir)
  T.eq(#m, 12, "one manifest line per job")
  local r = m[1]
  T.eq(r.vars.animal .. r.vars.style, "catoil", "variables recorded (names sorted, values in order)")
  T.eq(r.prompt, "a cat in oil style", "rendered prompt")
  T.eq(r.seed, 1, "seed used")
  T.match(r.request_id, "^[%w-]+$", "request id")
  T.eq(r.input.image_urls[1], A, "a local input recorded by its path, not its base64")
  T.eq(r.input.image_size, "square", "model fields recorded")
  T.eq(r.outputs[1].path, "animal-cat_style-oil_s1-1.png", "readable, unique file name")
  T.eq(r.outputs[1].width, 512, "size recorded")
  T.ok(r.outputs[1].bytes > 0, "bytes recorded")
  T.eq(r.nsfw[1], false, "nsfw flags")
  T.ok(r.cost_estimate > 0, "cost estimate")
  T.eq(r.reused, false, "not reused")
  for _, rec in ipairs(m) do T.ok(T.exists(s.dir .. "/" .. rec.outputs[1].path), rec.outputs[1].path) end
  T.ok(not T.read(s.dir .. "/manifest.jsonl"):find("test-key", 1, true), "no credential in the manifest")
  local html = T.read(s.gallery)
  local _, rows = html:gsub("<tr><td class=\"vars\">", "")
  T.eq(rows, 4, "one gallery row per combination")
  local _, imgs = html:gsub("<td class=\"out\"><img src=\"", "")
  T.eq(imgs, 12, "one cell per seed")
  T.contains(html, "a dog in oil style", "rendered prompt under the row")
  T.contains(html, "<img src=\"inputs/", "input thumbnails copied beside the page")
  T.contains(html, "<script type=\"application/json\" id=\"data\">", "the jobs as data for the page's script")
  T.ok(not html:find("<script[^>]*src") and not html:find("<link", 1, true) and not html:find("http", 1, true),
    "one file: no script or style from elsewhere, nothing from the network")
  -- run again: every job reused, nothing sent, the manifest says so
  local before = sb.stats().by_route.submit
  local again = editflow.experiment(spec { out = d, client = client() })
  T.eq(sb.stats().by_route.submit, before, "no new submit")
  T.eq(again.reused, 12, "all reused")
  T.eq(manifest(s.dir)[5].reused, true, "the re-run's record says reused")
  T.eq(#manifest(s.dir, "all"), 24, "the manifest keeps both runs: 12 lines each")
  T.eq(manifest(s.dir, "all")[5].reused, false, "the first run's record is kept as it was")
  T.eq(again.run ~= s.run and manifest(s.dir)[1].run, again.run, "each run has its own id")
  local plan = editflow.experiment(spec { out = d, client = client(), dry_run = true })
  T.eq(plan.cost, 0, "a re-run's plan costs nothing")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("failures are recorded and shown as such", function()
  local d = T.tmpdir()
  local s = editflow.experiment { name = "fails", out = d, client = client(), prompt = "${p}",
    vars = { p = { "fine", "[fail:nsfw] bad" } }, images = { A } }
  T.eq(s.done, 1, "one done")
  T.eq(s.failed, 1, "one failed")
  local m = manifest(s.dir)
  local failed = m[1].status == "failed" and m[1] or m[2]
  T.eq(failed.error.type, "content_policy_violation", "error recorded")
  T.contains(T.read(s.gallery), "class=\"fail\">failed: ", "shown as failed")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("the budget: a plan over it is refused; partial runs what fits", function()
  local d = T.tmpdir()
  local before = sb.stats().by_route.submit
  local one = 0.262144 * 0.03
  T.raises(function() editflow.experiment(spec { out = d, client = client(), max_cost = one * 3.5 }) end,
    "over the budget")
  T.eq(sb.stats().by_route.submit, before, "refused before any submit")
  local s = editflow.experiment(spec { out = d, client = client(), max_cost = one * 3.5, partial = true,
    concurrency = 1 })
  T.eq(s.done, 3, "three fit")
  T.eq(s.skipped, 9, "the rest skipped")
  T.eq(sb.stats().by_route.submit - before, 3, "three submits")
  T.contains(T.read(s.gallery), "class=\"skip\">skipped", "skipped shown")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("zip and image variables: each photo with its own prompt", function()
  local d = T.tmpdir()
  local s = editflow.experiment { name = "pairs", out = d, client = client(), prompt = "make it ${mood}",
    zip = { photo = { A, B }, mood = { "sunny", "rainy" } }, images = { "${photo}" } }
  T.eq(s.done, 2, "two jobs")
  local m = manifest(s.dir)
  T.eq(m[1].vars.mood, "sunny", "zipped")
  T.contains(m[2].outputs[1].path, "photo-b", "named by the photo")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("equal bodies: each is priced and counted, never all taken as reused", function()
  local d = T.tmpdir()
  local one = 1024 * 1024 / 1e6 * 0.03
  local base = { name = "reps", out = d, prompt = "a cat", vars = { rep = { "1", "2", "3" } }, images = { A } }
  local function with(extra)
    local t = {}
    for k, v in pairs(base) do t[k] = v end
    for k, v in pairs(extra) do t[k] = v end
    t.client = client()
    return t
  end
  local first = editflow.experiment(with { max_cost = one * 1.5, partial = true, concurrency = 1 })
  T.eq(first.done, 1, "one fits")
  local plan = editflow.experiment(with { dry_run = true })
  T.eq(plan.reused_planned, 1, "only the first is reused")
  T.ok(math.abs(plan.cost - 2 * one) < 1e-9, "the other two are priced")
  T.raises(function() editflow.experiment(with { max_cost = one * 1.5 }) end, "over the budget")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("file names do not depend on the grid's order; a re-run never overwrites another's image", function()
  local d = T.tmpdir()
  local function run(values)
    return editflow.experiment { name = "names", out = d, client = client(), prompt = "style ${s}",
      vars = { s = values }, images = { A }, seeds = { 1 } }
  end
  run { "ink.v2" }
  local s = run { "ink.v1", "ink.v2" }
  local m = manifest(s.dir)
  T.ok(m[1].outputs[1].path ~= m[2].outputs[1].path, "two combinations, two files")
  T.eq(run({ "0.5", "0.75" }).done, 2, "numbers with dots stay apart")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("editflow.file in images, directly and as a variable's value", function()
  local d = T.tmpdir()
  local s = editflow.experiment { name = "files", out = d, client = client(), prompt = "p ${img}",
    vars = { img = { editflow.file(A), editflow.file(B) } }, images = { "${img}", editflow.file(A) } }
  T.eq(s.done, 2, "both ran")
  T.eq(manifest(s.dir)[1].input.image_urls[2], A, "recorded by path")
  local _, thumbs = T.read(s.gallery):gsub("<img src=\"inputs/", "")
  T.eq(thumbs, 2, "each input image shown once, at the top")
  local single = editflow.experiment { name = "single", out = d, dry_run = true, prompt = "p",
    images = { A }, client = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "k", endpoint = "fal-ai/qwen-image-edit" } }
  T.eq(single.plan.jobs[1].input.image_url, A, "one-image endpoints get image_url")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a refused experiment leaves no folder behind", function()
  local d = T.tmpdir()
  T.raises(function() editflow.experiment(spec { out = d, client = client(), max_cost = 0.0001 }) end, "over the budget")
  T.raises(function() editflow.experiment(spec { out = d, client = client(), prompt = "${nope}" }) end, "missing variable")
  T.eq(#T.list_dir(d), 0, "nothing created")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a second grid into the same folder with another prompt keeps the first's images and manifest", function()
  local d = T.tmpdir()
  local function grid(prompt)
    return editflow.experiment { name = "same", out = d, client = client(), prompt = prompt,
      vars = { s = { "a", "b" } }, seeds = { 1 }, images = { A }, params = { image_size = "square" } }
  end
  local first = grid("first ${s}")
  T.eq(first.done, 2, "first run")
  local before, kept = {}, 0
  for _, name in ipairs(T.list_dir(d .. "/same")) do
    if name:find("%.png$") then before[name], kept = T.read(d .. "/same/" .. name), kept + 1 end
  end
  T.eq(kept, 2, "the first run's two images, to compare with")
  local second = grid("second ${s}")
  T.eq(second.done, 2, "second run")
  local pngs = 0
  for _, name in ipairs(T.list_dir(d .. "/same")) do
    if name:find("%.png$") then pngs = pngs + 1 end
  end
  T.eq(pngs, 4, "four images: none replaced")
  for name, bytes in pairs(before) do
    T.eq(T.read(d .. "/same/" .. name), bytes, name .. " unchanged")
  end
  local lines = 0
  for _ in (T.read(d .. "/same/manifest.jsonl") or ""):gmatch("[^\n]+") do lines = lines + 1 end
  T.eq(lines, 4, "the manifest keeps both runs' records")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
