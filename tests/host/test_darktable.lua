-- tests/host/test_darktable.lua: the darktable plugin (hosts/darktable) headless, in
-- darktable-cli --luacmd against the sandbox: two photos, one a float PFM that darktable reads
-- and editflow refuses (the RAW stand-in), edited through the plugin's edit() with a seed.
-- Checks what darktable holds afterwards (results imported, grouped with their sources, tagged,
-- prompt and seed in their metadata), what the sandbox saw (exactly two submits, each input a
-- JPEG of the capped size, exported by darktable), that editing the same photos again -- in
-- the same darktable and in the next one -- sends nothing, and that a darktable killed while
-- its jobs run loses none of them. darktable-cli missing is a failure, never a skip.
local T = require "testlib"
local core = require "editflow.core"
local json = require "editflow.json"

local SRC = T.source_dir
local CAP = 32  -- the fixtures are 64x48: darktable must scale them to 32x24

local st = T.sh("command -v darktable-cli")
assert(st == 0, "darktable-cli is not installed (apt: darktable); the darktable tests need it")

-- One darktable-cli run of tests/fixtures/darktable/edit_headless.lua; returns the report
-- (key -> value), its exit status and its output.
local function run_cli(sb, work, env, unbounded)
  local report = work .. "/report-" .. core.monotime() .. ".txt"
  local vars = {
    HOME = work .. "/home", XDG_CONFIG_HOME = work .. "/home/.config", XDG_CACHE_HOME = work .. "/home/.cache",
    FAL_KEY = "test-key", EDITFLOW_BASE_URL = sb.url, EDITFLOW_STORAGE_URL = sb.url,
    EDITFLOW_API_URL = sb.url,  -- fal's request listing, where a job in doubt is looked for
    EDITFLOW_DT_PLUGIN = SRC .. "/hosts/darktable", EDITFLOW_DT_PHOTOS = work .. "/photos",
    EDITFLOW_DT_REPORT = report, EDITFLOW_DT_PROMPT = "make it snow", EDITFLOW_DT_SEED = "7",
    EDITFLOW_DT_SIZE = tostring(CAP),
  }
  for k, v in pairs(env or {}) do vars[k] = v end
  local assign = {}
  for k, v in pairs(vars) do assign[#assign + 1] = k .. "=" .. T.quote(v) end
  -- the sanitizer build's module needs the ASan runtime first in darktable too
  local asan = os.getenv("LD_PRELOAD")
  if asan then assign[#assign + 1] = "LD_PRELOAD=" .. T.quote(asan) .. " ASAN_OPTIONS=detect_leaks=0" end
  -- bounded by timeout(1), unless the caller stops it by its PID itself
  local cmd = string.format("env %s %sdarktable-cli %s %s --core --library :memory: --configdir %s "
    .. "--luacmd %s", table.concat(assign, " "), unbounded and "" or "timeout 180 ", T.quote(SRC .. "/tests/fixtures/a.png"),
    T.quote(work .. "/cli-" .. core.monotime() .. ".jpg"), T.quote(work .. "/config"),
    T.quote('dofile("' .. SRC .. '/tests/fixtures/darktable/edit_headless.lua")'))
  return cmd, report, vars
end

local function read_report(path)
  local r = {}
  for line in (T.read(path) or ""):gmatch("[^\n]+") do
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then r[k] = v:gsub("\\n", "\n") end
  end
  return r
end

local function edit(sb, work, env, raises)
  local cmd, report = run_cli(sb, work, env)
  local status, out, err = T.sh(cmd)
  local r = read_report(report)
  T.eq(r.ok, raises and "false" or "true", "the darktable script ran to its end (status " .. status .. "): "
    .. tostring(r.error) .. "\n" .. tostring(out) .. tostring(err))
  return r
end

-- The journal's records of one kind (lua/editflow/journal.lua: one JSON record a line).
local function records(dir, kind)
  local n = 0
  for line in (T.read(dir .. "/.editflow-journal.jsonl") or ""):gmatch("[^\n]+") do
    local ok, rec = pcall(json.decode, line)
    if ok and type(rec) == "table" and rec.t == kind then n = n + 1 end
  end
  return n
end

-- What the photographer reads: no doubled prefix, no Lua source position, no CLI advice.
local function plain(text)
  T.ok(not tostring(text):find("editflow: editflow:", 1, true), "no doubled prefix: " .. tostring(text))
  T.ok(not tostring(text):find("%.lua:%d+:"), "no Lua source position: " .. tostring(text))
  T.ok(not tostring(text):find("--", 1, true), "no CLI flag: " .. tostring(text))
end

local function new_work()
  local work = T.tmpdir()
  assert(core.mkdir(work .. "/photos"))
  assert(core.write_file(work .. "/photos/a-photo.png", T.read(SRC .. "/tests/fixtures/a.png")))
  assert(core.write_file(work .. "/photos/raw-like.pfm", T.read(SRC .. "/tests/fixtures/darktable/raw-like.pfm")))
  return work
end

-- GET a URL's body (the sandbox's storage serves what was uploaded).
local loop = core.loop()
local function get(u)
  local t = assert(loop:request { url = u, method = "GET" })
  while not t:done() do loop:step(50) end
  local r = assert(t:response())
  t:close()
  return r
end

local function submits(sb) return sb.stats().by_route.submit end

local sb = T.sandbox {}

T.case("editflow itself refuses the PFM: only darktable's export can send it", function()
  local editflow = require "editflow"
  local client = editflow.client { key = "test-key", base_url = sb.url, inline = true }
  T.raises(function() client:prepare { prompt = "x", image_urls = { SRC .. "/tests/fixtures/darktable/raw-like.pfm" } } end,
    "not a PNG, JPEG, GIF or WebP")
end)

local work1

T.case("darktable-cli: two photos edited through the plugin, imported, grouped, tagged, noted; sent once", function()
  work1 = new_work()
  local before = submits(sb)
  local r = edit(sb, work1, { EDITFLOW_DT_TWICE = "1" })
  T.eq(r["source.1"], "a-photo.png", "first source")
  T.eq(r["source.2"], "raw-like.pfm", "second source")
  for i = 1, 2 do
    local k = "run1." .. i
    T.eq(r[k .. ".error"], "nil", k .. " error")
    T.ok(tonumber(r[k .. ".id"]), k .. ": an image was imported")
    T.match(r[k .. ".file"], "^" .. work1:gsub("%p", "%%%0") .. "/photos/.+_editflow%-1%.png$", k .. " saved next to its source")
    T.eq(r[k .. ".leader"], "true", k .. " grouped with its source (the source leads)")
    T.eq(r[k .. ".source_leader"], "true", k .. " source still its group's leader")
    T.contains(r[k .. ".tags"], "editflow|fal-ai/qwen-image-edit-plus", k .. " tags")
    T.eq(r[k .. ".description"], "make it snow", k .. " description")
    T.contains(r[k .. ".notes"], "prompt: make it snow", k .. " notes")
    T.contains(r[k .. ".notes"], "seed: 7", k .. " notes")
    T.contains(r[k .. ".notes"], "model: fal-ai/qwen-image-edit-plus", k .. " notes")
    T.match(r[k .. ".notes"], "request id: [%w%-]+", k .. " notes")
    T.match(r[k .. ".notes"], "cost: %$%d", k .. " notes")
    -- the same selection again in the same darktable: the same images, nothing sent
    T.eq(r["run2." .. i .. ".id"], r[k .. ".id"], "run2." .. i .. ": the same image again")
    T.contains(r["run2." .. i .. ".notes"], "reused from the journal", "run2." .. i .. " notes")
  end
  T.ok(r["run1.1.id"] ~= r["run1.2.id"], "two distinct results")
  T.eq(r["run1.progress"], "2/2 saved", "the status line at the end")
  T.eq(submits(sb) - before, 2, "exactly two submits for two photos edited twice")
  -- what the queue received: darktable's JPEG export at the cap, for the PFM too
  local jobs = sb.jobs()
  T.eq(#jobs, 2, "two jobs in the sandbox")
  local names = {}
  for _, j in ipairs(jobs) do
    T.eq(j.input.seed, 7, "the seed was sent")
    local u = j.input.image_urls[1]
    T.match(u, "^" .. sb.url:gsub("%p", "%%%0") .. "/media/", "the input was uploaded to storage")
    names[#names + 1] = u:match("([^/]+)$")
    local body = get(u).body
    T.eq(body:sub(1, 3), "\255\216\255", u .. " is a JPEG")
    local w, h = core.image_size(body)
    T.eq(w .. "x" .. h, "32x24", u .. ": darktable's export at the size cap")
    T.eq(body:find("Exif", 1, true), nil, u .. ": no Exif segment (it would change every export)")
  end
  table.sort(names)
  T.match(names[1], "a%-photo%.jpg$", "the PNG went through darktable's export")
  T.match(names[2], "raw%-like%.jpg$", "the PFM went through darktable's export")
  T.eq(core.listdir(work1 .. "/photos/" .. ".editflow-exports"), nil, "the exports and their folder are removed")
end)

T.case("a second edit while one runs is refused: two photos, two submits", function()
  local work = new_work()
  local before = submits(sb)
  local r = edit(sb, work, { EDITFLOW_DT_NESTED = "1", EDITFLOW_DT_PROMPT = "a second click" })
  T.eq(r["nested.ok"], "false", "the second edit raised")
  T.eq(r["nested.error"], "an edit is already running", "what the second edit said")
  for i = 1, 2 do
    T.eq(r["run1." .. i .. ".error"], "nil", "photo " .. i)
    T.ok(tonumber(r["run1." .. i .. ".id"]), "photo " .. i .. " imported")
  end
  T.eq(submits(sb) - before, 2, "two submits for two photos")
end)

T.case("an output folder that cannot be used fails its photo alone; the other is sent, saved and imported", function()
  local work = T.tmpdir()
  assert(core.mkdir(work .. "/photos"))
  assert(core.mkdir(work .. "/photos2"))
  assert(core.write_file(work .. "/photos/a-photo.png", T.read(SRC .. "/tests/fixtures/a.png")))
  assert(core.write_file(work .. "/photos2/b-photo.png", T.read(SRC .. "/tests/fixtures/b.png")))
  local before = submits(sb)
  local r = edit(sb, work, { EDITFLOW_DT_PHOTOS2 = work .. "/photos2", EDITFLOW_DT_BREAK2 = "1",
    EDITFLOW_DT_PROMPT = "one folder broken" })
  T.eq(r["source.2"], "b-photo.png", "the second photo")
  T.eq(r["run1.1.error"], "nil", "the first photo")
  T.ok(tonumber(r["run1.1.id"]), "the first photo's result imported")
  T.eq(r["run1.2.id"], "false", "no result for the second photo")
  T.contains(r["run1.2.error"], work .. "/photos2", "the second photo's error names its folder")
  plain(r["run1.2.error"])
  T.eq(submits(sb) - before, 1, "one submit: the photo whose folder works")
  T.eq(records(work .. "/photos", "saved"), 1, "the first photo's job saved in its journal")
  T.eq(core.listdir(work .. "/photos/.editflow-exports"), nil, "no export left behind")
end)

T.case("an unknown model and a missing key are refused before anything is exported, in plain words", function()
  local work = new_work()
  local before = submits(sb)
  local r = edit(sb, work, { EDITFLOW_DT_ENDPOINT = "fal-ai/no-such-model" }, true)
  T.contains(r.error, "model: fal-ai/no-such-model", "the field and the id")
  plain(r.error)
  T.eq(r["told_error"], r.error, "on_progress was told")
  r = edit(sb, work, { FAL_KEY = "" }, true)
  T.eq(r.error, "no fal key: start darktable with FAL_KEY set (see hosts/darktable/README.md)", "no key")
  T.eq(submits(sb) - before, 0, "nothing sent")
  T.eq(core.listdir(work .. "/photos/.editflow-exports"), nil, "nothing exported")
end)

T.case("the next darktable edits the same photos: the journal reuses both jobs, nothing is sent", function()
  os.execute("sleep 1.1")  -- a later second: what darktable stamps its exports with has changed
  local before = submits(sb)
  local r = edit(sb, work1)
  for i = 1, 2 do
    T.ok(tonumber(r["run1." .. i .. ".id"]), "imported " .. i)
    T.contains(r["run1." .. i .. ".notes"], "reused from the journal", "notes " .. i)
  end
  T.eq(submits(sb) - before, 0, "no submit")
end)

T.case("darktable quitting while an edit waits: every photo not imported says why, no export is left", function()
  local work = new_work()
  local r = edit(sb, work, { EDITFLOW_DT_WAIT = "hooked", EDITFLOW_DT_PROMPT = "quit meanwhile [slow:5]" })
  for i = 1, 2 do
    T.eq(r["run1." .. i .. ".id"], "false", "photo " .. i .. " not imported")
    T.eq(r["run1." .. i .. ".error"], "darktable is quitting; the job is kept in the journal", "photo " .. i .. " says why")
  end
  T.eq(core.listdir(work .. "/photos/.editflow-exports"), nil, "no export left behind")
end)

T.case("a model that takes no seed: none is sent, and the notes say so rather than show the seed asked", function()
  local work = new_work()
  local before = #sb.jobs()
  local model = "fal-ai/gpt-image-1/edit-image"
  local r = edit(sb, work, { EDITFLOW_DT_ENDPOINT = model, EDITFLOW_DT_PROMPT = "no seed here" })
  for i = 1, 2 do
    T.eq(r["run1." .. i .. ".error"], "nil", "photo " .. i)
    T.contains(r["run1." .. i .. ".notes"], "seed: not taken by " .. model, "notes " .. i)
    T.ok(not r["run1." .. i .. ".notes"]:find("seed: 7", 1, true), "notes " .. i .. " do not claim seed 7")
  end
  local jobs = sb.jobs()
  T.eq(#jobs - before, 2, "two jobs")
  for j = before + 1, #jobs do T.eq(jobs[j].input.seed, nil, "no seed sent") end
end)

T.case("installed under a prefix off Lua's path, the plugin finds the editflow library next to itself", function()
  -- the layout cmake --install makes: <prefix>/share/editflow/darktable, share/lua/5.4, lib/lua/5.4
  local prefix = T.tmpdir() .. "/prefix"
  local plugin = prefix .. "/share/editflow/darktable"
  assert(T.sh(string.format("mkdir -p %s/lib %s/share/lua/5.4 %s/lib/lua/5.4/editflow && cp %s %s && cp %s %s/lib/ "
    .. "&& cp -r %s %s/share/lua/5.4/ && cp %s %s/lib/lua/5.4/editflow/", T.quote(plugin), T.quote(prefix), T.quote(prefix),
    T.quote(SRC .. "/hosts/darktable/editflow_darktable.lua"), T.quote(plugin),
    T.quote(SRC .. "/hosts/darktable/lib") .. "/*.lua", T.quote(plugin),
    T.quote(SRC .. "/lua/editflow"), T.quote(prefix), T.quote(T.build_dir .. "/lib/editflow/core.so"), T.quote(prefix))) == 0)
  local work = T.tmpdir()
  local report = work .. "/report.txt"
  local lua = string.format('package.path = %q .. "/?.lua;" .. package.path; '
    .. 'local ok, m = pcall(require, "editflow_darktable"); local f = io.open(%q, "w"); '
    .. 'f:write(tostring(ok), " ", tostring(ok and m.version or m)); f:close()', plugin, report)
  -- the sanitizer build's module needs the ASan runtime first in darktable too (T.sh drops it)
  local asan = os.getenv("LD_PRELOAD")
  asan = asan and ("LD_PRELOAD=" .. T.quote(asan) .. " ASAN_OPTIONS=detect_leaks=0 ") or ""
  local st, out, err = T.sh(string.format("env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 %sHOME=%s "
    .. "timeout 120 darktable-cli %s %s --core --library :memory: --configdir %s --luacmd %s", asan, T.quote(work),
    T.quote(SRC .. "/tests/fixtures/a.png"), T.quote(work .. "/cli.jpg"), T.quote(work .. "/config"), T.quote(lua)))
  T.match(T.read(report) or "", "^true %d", "the plugin loaded: " .. tostring(T.read(report)) .. tostring(out) .. tostring(err))
end)

T.case("darktable killed while its jobs run: the next edit follows them, none is sent again", function()
  local work = new_work()
  local before = submits(sb)
  local cmd = run_cli(sb, work, { EDITFLOW_DT_PROMPT = "make it snow [slow:4]" }, true)
  local log = work .. "/killed.log"
  local p = io.popen("echo $$; exec " .. cmd .. " >" .. log .. " 2>&1")  -- env execs: $$ is darktable-cli
  local pid = tonumber(p:read("l"))
  -- killed once the journal holds both jobs accepted (on disk: what the next darktable reads),
  -- not merely once the sandbox counted them
  local deadline = core.monotime() + 60
  while records(work .. "/photos", "accepted") < 2 and core.monotime() < deadline do os.execute("sleep 0.1") end
  local accepted = records(work .. "/photos", "accepted")
  os.execute("kill -9 " .. pid .. " 2>/dev/null")
  p:close()
  T.eq(accepted, 2, "both jobs were accepted in the journal before the kill: " .. tostring(T.read(log)))
  T.eq(submits(sb) - before, 2, "two submits before the kill")
  local r = edit(sb, work, { EDITFLOW_DT_PROMPT = "make it snow [slow:4]" })
  for i = 1, 2 do
    T.eq(r["run1." .. i .. ".error"], "nil", "photo " .. i)
    T.ok(tonumber(r["run1." .. i .. ".id"]), "photo " .. i .. " imported")
  end
  T.eq(submits(sb) - before, 2, "still two submits: the killed darktable's jobs were followed by id")
end)

T.run()
