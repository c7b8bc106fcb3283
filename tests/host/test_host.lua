-- test_host.lua: the `editflow` binary as a user meets it: stdout carries data, stderr carries
-- progress and errors, and the exit status is honest (0 done, 1 failed, 2 usage/invalid).
local T = require "testlib"
local core = require "editflow.core"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local A = T.source_dir .. "/tests/fixtures/a.png"
local B = T.source_dir .. "/tests/fixtures/b.png"
local json = require "editflow.json"
local KEY = "test-key-host-7f3a9c"

local sb = T.sandbox { "--key", KEY, "--bearer", KEY .. "-bearer", "--job-time", "0.05" }

-- Runs the binary with an environment (names -> values) and arguments.
local function run(env, ...)
  local parts = { "env" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  parts[#parts + 1] = T.quote(BIN)
  for _, a in ipairs { ... } do parts[#parts + 1] = T.quote(a) end
  return T.sh(table.concat(parts, " "))
end

local function env(extra)
  local e = { FAL_KEY = KEY, EDITFLOW_BASE_URL = sb.url, EDITFLOW_STORAGE_URL = sb.url, EDITFLOW_API_URL = sb.url, EDITFLOW_AUTH = "key" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function lines(s)
  local out = {}
  for l in (s or ""):gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end


T.case("--help and --version go to stdout and exit 0; no command is a usage error", function()
  local st, out, err = run({}, "--help")
  T.eq(st, 0, "exit")
  T.contains(out, "usage: editflow COMMAND", "usage on stdout")
  T.eq(err, "", "nothing on stderr")
  st, out = run({}, "--version")
  T.eq(st, 0, "exit")
  T.match(out, "^editflow %d+%.%d+%.%d+ %(libcurl/", "version line")
  st, out, err = run({})
  T.eq(st, 2, "no command")
  T.contains(err, "usage:", "usage on stderr")
  st, _, err = run({}, "frobnicate")
  T.eq(st, 2, "unknown command")
  T.contains(err, "editflow: unknown command 'frobnicate'", "message")
  st, out = run({}, "edit", "--help")
  T.eq(st, 0, "edit --help")
  T.contains(out, "--num-images N", "edit options listed")
end)

T.case("edit writes the images, prints their paths, exits 0 (Key and Bearer)", function()
  for _, auth in ipairs { "key", "bearer" } do
    local d = T.tmpdir()
    local key = auth == "key" and KEY or (KEY .. "-bearer")
    local st, out, err = run({ FAL_KEY = key, EDITFLOW_BASE_URL = sb.url, EDITFLOW_STORAGE_URL = sb.url, EDITFLOW_API_URL = sb.url, EDITFLOW_AUTH = auth },
      "edit", "-p", "put them side by side", "-i", A, "-i", B, "-o", d, "--num-images", "2", "--seed", "3")
    T.eq(st, 0, auth .. " exit status; stderr: " .. tostring(err))
    local paths = lines(out)
    T.eq(#paths, 2, auth .. ": one path per image on stdout")
    for _, p in ipairs(paths) do
      T.eq(p:sub(1, #d + 1), d .. "/", "inside the output folder")
      T.eq(core.sniff(T.read(p)), "png", "a real PNG at " .. p)
    end
    T.contains(err, "submitted", "progress on stderr")
    T.ok(not out:find("submitted", 1, true), "no progress on stdout")
    os.execute("rm -rf " .. T.quote(d))
  end
  T.eq(sb.stats().auth.bearer >= 3, true, "bearer requests reached the sandbox")
end)

T.case("invalid input exits 2 before any request, naming the field and the flag", function()
  local before = sb.stats().requests
  local cases = {
    { { "-n", "7" }, "num_images must be an integer 1..4, got 7 (option --num-images)" },
    { { "--image-size", "huge" }, "image_size must be a JSON object with height, width or one of square_hd" },
    { { "-i", B, "-i", A, "-i", B }, "image_urls must be a list of 1 to 3 images, got a list of 4 (option -i)" },
    { { "--steps", "1000" }, "num_inference_steps must be an integer 2..100, got 1000 (option --steps)" },
    { { "--format", "gif" }, "output_format must be one of jpeg, png, got 'gif' (option --format)" },
    { { "-i", T.source_dir .. "/tests/fixtures/missing.png" }, "image_urls[2]: cannot read image" },
    { { "-i", T.source_dir .. "/tests/fixtures/not-an-image.png" }, "is not a PNG, JPEG, GIF or WebP image" },
  }
  for _, c in ipairs(cases) do
    local st, out, err = run(env(), "edit", "-p", "x", "-i", A, table.unpack(c[1]))
    T.eq(st, 2, "exit status for " .. c[2])
    T.eq(out, "", "nothing on stdout")
    T.contains(err, c[2], "message")
  end
  local st, _, err = run(env(), "edit", "-i", A)
  T.eq(st, 2, "missing -p")
  T.contains(err, "-p PROMPT is required", "message")
  st, _, err = run(env(), "edit", "-p", "x", "-i", A, "--bogus")
  T.eq(st, 2, "unknown option")
  T.contains(err, "unknown option '--bogus'", "message")
  st, _, err = run(env { FAL_KEY = "" }, "edit", "-p", "x", "-i", A)
  T.eq(st, 2, "no credential")
  T.contains(err, "no credential: set FAL_KEY", "message")
  T.eq(sb.stats().requests, before, "the sandbox saw no request")
end)

T.case("a failed job exits 1 with the server's message and the request id", function()
  local st, out, err = run(env(), "edit", "-p", "[fail:nsfw]", "-i", A, "-o", T.tmpdir())
  T.eq(st, 1, "exit status")
  T.eq(out, "", "no paths")
  T.contains(err, "content_policy_violation", "type")
  T.match(err, "%[request [%w-]+%]", "request id")
  st, out = run(env(), "edit", "--json", "-p", "[fail:500]", "-i", A)
  T.eq(st, 1, "--json failure exit")
  local obj = require("editflow.json").decode(out)
  T.eq(obj.ok, false, "ok=false")
  T.eq(obj.error.code, "HTTP_500", "error code in JSON")
  T.match(obj.request_id, "^[%w-]+$", "request id in JSON")
  st, out = run(env(), "edit", "--json", "-q", "-p", "fine", "-i", A, "-o", T.tmpdir())
  T.eq(st, 0, "--json success exit")
  obj = require("editflow.json").decode(out)
  T.eq(obj.ok, true, "ok=true")
  T.eq(core.sniff(T.read(obj.paths[1])), "png", "paths in JSON")
  st, _, err = run(env { EDITFLOW_BASE_URL = "http://127.0.0.1:9" }, "edit", "-p", "x", "-i", A)
  T.eq(st, 1, "nobody listening")
  T.contains(err, "submit failed", "message")
end)

T.case("status, result and cancel by request id", function()
  local d = T.tmpdir()
  local st, out = run(env(), "edit", "-q", "-p", "x", "-i", A, "-o", d, "--name", "first")
  T.eq(st, 0, "edit")
  T.eq(lines(out)[1], d .. "/first-1.png", "named by --name")
  local jobs = sb.jobs()
  local rid = jobs[#jobs].request_id
  local err
  st, out, err = run(env(), "status", rid)
  T.eq(st, 0, "status exit; " .. tostring(err))
  T.contains(out, '"status":"COMPLETED"', "status JSON")
  st, out = run(env(), "result", rid)
  T.eq(st, 0, "result exit")
  T.contains(out, '"images":[', "result JSON")
  st, out = run(env(), "result", rid, "-o", d .. "/again")
  T.eq(st, 0, "result -o")
  T.eq(core.sniff(T.read(lines(out)[1])), "png", "saved again")
  st, out, err = run(env(), "cancel", rid)
  T.eq(st, 1, "cancelling a finished job fails")
  T.contains(err, "already completed", "message")
  st, _, err = run(env(), "status", "../etc/passwd")
  T.eq(st, 2, "bad id is a usage error")
  T.contains(err, "request_id must be", "message")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("run SCRIPT: arg and ... as in lua; errors print a traceback and exit 1", function()
  local d = T.tmpdir()
  local ok_script = d .. "/ok.lua"
  local f = assert(io.open(ok_script, "w"))
  f:write([[
local editflow = require "editflow"
local a, b = ...
print(arg[0]:match("ok%.lua$") ~= nil, arg[1], arg[2], a, b, editflow.version ~= nil)
local c = editflow.client{}
local result, job = assert(c:edit{ prompt = "from a script", image_urls = { arg[1] } })
for _, p in ipairs(assert(job:save(arg[2]))) do print(p) end
]])
  f:close()
  local st, out, err = run(env(), "run", ok_script, A, d .. "/out")
  T.eq(st, 0, "script exit; stderr: " .. tostring(err))
  local l = lines(out)
  T.eq(l[1], "true\t" .. A .. "\t" .. d .. "/out\t" .. A .. "\t" .. d .. "/out\ttrue", "arg and ...")
  T.eq(core.sniff(T.read(l[2])), "png", "the script saved an image")

  local bad = d .. "/bad.lua"
  f = assert(io.open(bad, "w"))
  f:write("local function inner() error('boom from script') end\nlocal function outer() inner() end\nouter()\n")
  f:close()
  st, out, err = run(env(), "run", bad)
  T.eq(st, 1, "error exit")
  T.eq(out, "", "nothing on stdout")
  T.match(err, "^editflow: [^\n]*bad%.lua:1: boom from script", "message first")
  T.contains(err, "stack traceback:", "traceback")
  T.contains(err, "in upvalue 'inner'", "traceback names the function")
  T.contains(err, "bad.lua:3: in main chunk", "traceback reaches the main chunk")
  st, _, err = run(env(), "run", d .. "/missing.lua")
  T.eq(st, 1, "missing script")
  T.contains(err, "cannot open", "message")
  st, _, err = run(env(), "run")
  T.eq(st, 2, "run without a script")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("run: plain progress on a pipe, --json per finished job, -q for silence", function()
  local d = T.tmpdir()
  local script = d .. "/many.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local editflow = require "editflow"
local c = editflow.client{}
local results, errs = editflow.map({ "one", "two", "[fail:nsfw] three" }, function(p)
  local result, err = c:edit{ prompt = p, image_urls = { "https://cdn.example/a.png" } }
  if not result then error(err) end
  return result
end, { concurrency = 3 })
io.write("script done\n")
]])
  f:close()
  local st, out, err = run(env(), "run", script)
  T.eq(st, 0, "exit")
  T.eq(out, "script done\n", "stdout is the script's own")
  local _, submitted = err:gsub("editflow: [%w-]+ submitted\n", "")
  local _, done = err:gsub("editflow: [%w-]+ done\n", "")
  T.eq(submitted, 3, "a line per submitted job")
  T.eq(done, 2, "a line per finished job")
  T.match(err, "editflow: [%w-]+ failed: result failed: HTTP 422", "the failure")
  T.contains(err, "task map item 3 failed", "the failed task with its traceback")

  st, out, err = run(env(), "run", "--json", "-q", script)
  T.eq(st, 0, "exit with --json")
  local objs = {}
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then objs[#objs + 1] = require("editflow.json").decode(line) end
  end
  T.eq(#objs, 3, "one JSON object per finished job")
  local oks = 0
  for _, o in ipairs(objs) do
    T.ok(type(o.request_id) == "string", "request id")
    if o.ok then
      oks = oks + 1
      T.match(o.images[1], "^http://", "image URL")
    else
      T.eq(o.error.code, "HTTP_422", "error code")
      T.eq(o.error.type, "content_policy_violation", "error type")
    end
  end
  T.eq(oks, 2, "two succeeded")
  T.ok(not err:find("submitted", 1, true), "-q: no progress lines")

  st, _, err = run(env(), "run", "--progress", "sideways", script)
  T.eq(st, 2, "bad progress mode")
  T.contains(err, "progress display must be auto, live, plain or none", "message")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("Ctrl-C: every job in flight is cancelled at the queue, exit status 130", function()
  local d = T.tmpdir()
  local script = d .. "/slow.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local editflow = require "editflow"
local c = editflow.client{ journal = arg[1] }
editflow.map({ 1, 2, 3 }, function(i)
  assert(c:edit{ prompt = "[slow:120] interrupted " .. i, image_urls = { "https://cdn.example/a.png" } })
end, { concurrency = 3 })
]])
  f:close()
  local before = sb.stats()
  local parts = { "env" }
  for k, v in pairs(env()) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  local cmd = table.concat(parts, " ") .. " " .. T.quote(BIN) .. " run -q " .. T.quote(script)
    .. " " .. T.quote(d .. "/out") .. " & pid=$!; i=0; while [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; kill -INT $pid; wait $pid; echo exit=$?"
  -- the signal comes 5 s in; the cancels take a moment (their bound is 5 s); a run that let
  -- its jobs end would take their 120 s: 40 s in all is a guard against that, not a measure
  local t0 = core.monotime()
  local _, out, err = T.sh(cmd)
  T.contains(out, "exit=130", "exit status 130")
  T.ok(core.monotime() - t0 < 40, "ended long before its jobs would have")
  T.contains(err, "interrupted: 3 jobs in flight, cancel requested for 3", "summary")
  local after = sb.stats()
  T.eq(after.by_route.cancel - before.by_route.cancel, 3, "a cancel reached the sandbox for each job")
  T.eq(after.cancelled - before.cancelled, 3, "and the sandbox cancelled them")
  local _, cancels = (T.read(d .. "/out/.editflow-journal.jsonl") or ""):gsub('"t":"cancel"', "")
  T.eq(cancels, 3, "the journal records each cancel")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("grid: dry run sends nothing; a budget refuses; a run writes the gallery, a re-run reuses it", function()
  local d = T.tmpdir()
  local s0 = sb.stats()
  local function sent() local s = sb.stats() return s.by_route.submit + s.upload_initiates end
  local before = sent()
  local grid = { "grid", "-p", "a ${animal} in ${style}", "--var", "animal=cat,dog", "--var", "style=oil,ink",
    "-i", A, "--seeds", "1,2", "-s", "square", "-o", d, "--name", "cli" }
  local function with(...)  -- grid's arguments and more (table.unpack mid-list would cut them)
    local a = table.move(grid, 1, #grid, 1, {})
    for _, x in ipairs({ ... }) do a[#a + 1] = x end
    return table.unpack(a)
  end
  local st, out, err = run(env(), with("--dry-run"))
  T.eq(st, 0, "dry run: " .. tostring(err))
  T.contains(out, "plan: 8 jobs (0 reused from an earlier run), 8 images, 2.10 output megapixels, estimated $0.0629", "the plan")
  T.contains(out, "per megapixel (pricing API)", "priced from fal's pricing API")
  T.eq(sent(), before, "nothing submitted or uploaded")
  st, out, err = run(env(), with("--max-cost", "0.01"))
  T.eq(st, 1, "over budget")
  T.contains(err, "over the budget", "says so")
  T.eq(sent(), before, "still nothing sent")
  st, out, err = run(env(), "grid", "-p", "a ${animal} in ${colour}", "--var", "animal=cat", "-i", A, "-o", d)
  T.eq(st, 2, "missing variable")
  T.contains(err, "missing variable 'colour'", "named")
  -- a cache of its own: the photo was uploaded by an earlier case (and remembered there)
  st, out, err = run(env { XDG_CACHE_HOME = T.tmpdir() }, with())
  T.eq(st, 0, "run: " .. tostring(err))
  T.eq(out, d .. "/index.html\n", "prints the gallery's path: -o DIR is the folder itself")
  T.contains(T.read(d .. "/index.html"), "a dog in ink", "gallery written")
  T.ok(T.exists(d .. "/manifest.jsonl"), "grid -o DIR writes DIR/manifest.jsonl")
  T.eq(sb.stats().uploads - s0.uploads, 1, "8 jobs over one local photo: one upload")
  local submits = sb.stats().by_route.submit
  st, out = run(env(), with())
  T.eq(st, 0, "re-run")
  T.eq(sb.stats().by_route.submit, submits, "the re-run submits nothing")
  st, out = run(env(), with("--dry-run"))
  T.contains(out, "8 jobs (8 reused from an earlier run)", "the plan knows")
  T.contains(out, "estimated $0.0000", "and costs nothing")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("the credential never appears in output, even with --verbose or on failure", function()
  local d = T.tmpdir()
  local st, out, err = run(env(), "edit", "-v", "-p", "x", "-i", A, "-o", d)
  T.eq(st, 0, "edit -v")
  T.contains(err, "POST " .. sb.url, "verbose traces calls")
  T.ok(not (out .. err):find(KEY, 1, true), "key absent from stdout and stderr")
  local journal = T.read(d .. "/.editflow-journal.jsonl")
  T.contains(journal, '"t":"done"', "the journal recorded the job")
  T.ok(not journal:find(KEY, 1, true), "key absent from the journal")
  st, out, err = run(env { FAL_KEY = "wrong-" .. KEY }, "edit", "-v", "-p", "x", "-i", A, "-o", d .. "/other")
  T.eq(st, 1, "401")
  T.ok(not (out .. err):find(KEY, 1, true), "key absent from a failure's output")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("edit run again: a seeded job is reused, a seedless one gives a new sample, and the messages say which", function()
  local d = T.tmpdir()
  local before = sb.stats().by_route.submit
  local st1, out1, err1 = run(env(), "edit", "-p", "journal me", "--seed", "5", "-i", A, "-o", d)
  local st2, out2, err2 = run(env(), "edit", "-p", "journal me", "--seed", "5", "-i", A, "-o", d)
  T.eq(st1, 0, "first run")
  T.eq(st2, 0, "second run")
  T.contains(err1, "submitted", "the first run says it submitted")
  T.contains(err2, "reused", "the second says it reused")
  T.ok(not err2:find("submitted", 1, true), "and not that it submitted: " .. err2)
  T.eq(out2, out1, "the same paths")
  T.eq(sb.stats().by_route.submit - before, 1, "one submit for both runs")
  local st3 = run(env(), "edit", "-q", "--no-journal", "-p", "journal me", "--seed", "5", "-i", A, "-o", d)
  T.eq(st3, 0, "--no-journal")
  T.eq(sb.stats().by_route.submit - before, 2, "--no-journal submits again")
  -- without a seed, every finished run's re-run is a new sample, saved beside the first
  local st4, out4 = run(env(), "edit", "-q", "-p", "no seed", "-i", A, "-o", d)
  local st5, out5, err5 = run(env(), "edit", "-p", "no seed", "-i", A, "-o", d)
  T.eq(st4 + st5, 0, "both seedless runs")
  T.contains(err5, "submitted", "the re-run says submitted")
  T.ok(out4 ~= out5 and T.exists(out4:match("[^\n]+")) and T.exists(out5:match("[^\n]+")), "two files, none replaced")
  T.eq(sb.stats().by_route.submit - before, 4, "a new sample was paid for, as asked")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("any model: -m ENDPOINT takes its schema's fields; schema and price describe it", function()
  local before = sb.stats()
  -- qwen 2511 runs, with -i going to its image_urls
  local d = T.tmpdir()
  local st, out, err = run(env(), "edit", "-m", "fal-ai/qwen-image-edit-2511", "-p", "make it blue", "-i", A,
    "-o", d, "--num-inference-steps", "20")
  T.eq(st, 0, "2511 edit: " .. tostring(err))
  T.eq(#lines(out), 1, "one image saved")
  -- a shipped non-qwen schema refuses a bad field offline: exit 2, the field and the option named
  st, out, err = run(env { EDITFLOW_SCHEMA_URL = "off" }, "edit", "-m", "fal-ai/nano-banana/edit", "-p", "x",
    "-i", A, "--aspect-ratio", "7:5")
  T.eq(st, 2, "invalid aspect ratio")
  T.contains(err, "aspect_ratio must be one of", "the field")
  T.contains(err, "(option --aspect-ratio)", "the option")
  -- Kontext takes one image_url from -i
  st, out, err = run(env { EDITFLOW_SCHEMA_URL = "off" }, "edit", "-m", "fal-ai/flux-pro/kontext", "-p", "x",
    "-i", A, "-i", B)
  T.eq(st, 2, "two images for a one-image model")
  T.contains(err, "takes exactly one image (image_url), got 2", "says so")
  local mid = sb.stats()
  T.eq(mid.by_route.submit - before.by_route.submit, 1, "only the valid edit was submitted")
  -- --help lists the model's own options
  st, out = run(env(), "edit", "-m", "fal-ai/nano-banana/edit", "--help")
  T.eq(st, 0, "help")
  T.contains(out, "--aspect-ratio", "the schema's fields as options")
  T.ok(not out:find("--num-inference-steps", 1, true), "and not another model's")
  -- editflow schema / price
  st, out = run(env(), "schema", "fal-ai/qwen-image-edit")
  T.eq(st, 0, "schema")
  T.contains(out, "num_inference_steps  integer", "fields with types")
  T.contains(out, "an integer 2..50", "ranges")
  T.contains(out, "option:  --steps", "the option")
  st, out = run(env(), "price", "fal-ai/qwen-image-edit-plus")
  T.eq(st, 0, "price")
  T.contains(out, "$0.0300 per megapixel (pricing API", "from the pricing API")
  st, out = run(env { EDITFLOW_API_URL = "http://127.0.0.1:9" }, "price", "fal-ai/qwen-image-edit-plus", "--json")
  T.eq(st, 0, "price, offline")
  T.eq(json.decode(out).source, "shipped", "from the shipped table")
  st, _, err = run(env(), "schema", "someone/nothing")
  T.eq(st, 1, "no schema anywhere")
  T.contains(err, "no schema for someone/nothing", "says so")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("model options on the command line: false flags, fallbacks, a prompt that looks like -m", function()
  local d = T.tmpdir()
  local function last_job() local jobs = sb.jobs() return jobs[#jobs] end
  -- --no-store-io and --allow-fallbacks say false; an edit with a seed asks for no fallback
  local st, _, err = run(env(), "edit", "-p", "x", "-i", "https://cdn.example/a.png", "-o", d, "--seed", "5",
    "--no-store-io", "--output-lifetime", "600")
  T.eq(st, 0, "edit: " .. tostring(err))
  local h = last_job().headers
  T.eq(h["x-fal-store-io"], "0", "X-Fal-Store-IO: 0")
  T.eq(h["x-fal-disable-fallbacks"], "true", "a seed: no fallback model")
  T.eq(h["x-fal-object-lifecycle-preference"], '{"expiration_duration_seconds":600}', "output lifetime")
  st, _, err = run(env(), "edit", "-p", "y", "-i", "https://cdn.example/a.png", "-o", d, "--seed", "5",
    "--allow-fallbacks", "--sync=false")
  T.eq(st, 0, "edit: " .. tostring(err))
  T.eq(last_job().headers["x-fal-disable-fallbacks"], nil, "--allow-fallbacks")
  T.eq(last_job().input.sync_mode, false, "--sync=false")
  -- a prompt starting with -m is a prompt, not a model
  st, _, err = run(env(), "edit", "-p", "-m x", "-i", "https://cdn.example/a.png", "-o", d, "-n", "1")
  T.eq(st, 0, "a prompt '-m x': " .. tostring(err))
  T.eq(last_job().input.prompt, "-m x", "sent as the prompt")
  -- grid's negative prompt template
  st, _, err = run(env(), "grid", "-p", "a ${v}", "--var", "v=cat", "-i", "https://cdn.example/a.png",
    "--negative-prompt", "no ${v}s", "-o", d, "--name", "neg")
  T.eq(st, 0, "grid --negative-prompt: " .. tostring(err))
  T.eq(last_job().input.negative_prompt, "no cats", "rendered")
  -- schema and price need no credential
  st, _, err = run(env { FAL_KEY = "" }, "schema", "fal-ai/nano-banana/edit")
  T.eq(st, 0, "schema without a key: " .. tostring(err))
  -- a field of another model: named as such
  st, _, err = run(env(), "edit", "-p", "x", "-i", A, "--aspect-ratio", "16:9")
  T.eq(st, 2, "not an option of qwen")
  T.contains(err, "not an option of fal-ai/qwen-image-edit-plus", "says whose options these are")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("run exits 1 when a task failed and nobody collected its error; grid shows progress", function()
  local dir = T.tmpdir()
  local function script(name, text)
    local path = dir .. "/" .. name
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
  end
  local st, _, err = run(env(), "run", script("raise.lua", [[
local editflow = require "editflow"
editflow.spawn(function() error("boom") end)
editflow.run()
]]))
  T.eq(st, 1, "a task raised, nobody joined it")
  T.contains(err, "boom", "its error shown")
  T.contains(err, "1 task failed and nobody collected its error", "and counted")
  st = run(env(), "run", script("joined.lua", [[
local editflow = require "editflow"
local t = editflow.spawn(function() error("handled") end)
local ok = editflow.join(t)
assert(ok == false)
]]))
  T.eq(st, 0, "a failed task whose error was collected: the script handled it")
  -- grid on a pipe: a plain line per submitted and finished job; -q: nothing
  local d = T.tmpdir()
  local out
  st, out, err = run(env(), "grid", "-p", "a ${v}", "--var", "v=cat,dog", "-i", "https://cdn.example/a.png",
    "-o", d, "--name", "progress")
  T.eq(st, 0, "grid: " .. tostring(err))
  local _, submitted = err:gsub("submitted", "")
  local _, done = err:gsub(" done\n", "")
  T.eq(submitted, 2, "a line per submitted job")
  T.ok(done >= 2, "a line per finished job")
  T.eq(out, d .. "/index.html\n", "stdout: the gallery only")
  st, _, err = run(env(), "grid", "-q", "-p", "a ${v}", "--var", "v=cow", "-i", "https://cdn.example/a.png", "-o", d)
  T.eq(st, 0, "grid -q")
  T.ok(not err:find("submitted", 1, true), "-q: no progress")
  os.execute("rm -rf " .. T.quote(dir) .. " " .. T.quote(d))
end)

T.case("-i - reads the image from standard input, -o - writes it to standard output; a failed write is an error", function()
  local parts = { "env" }
  for k, v in pairs(env()) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  local prefix = table.concat(parts, " ") .. " " .. T.quote(BIN)
  local out = T.tmpdir() .. "/out.png"
  local st, _, err = T.sh(prefix .. " edit -q -p x -i - -o - < " .. T.quote(A) .. " > " .. T.quote(out))
  T.eq(st, 0, "stdin to stdout: " .. tostring(err))
  T.eq(core.sniff(T.read(out)), "png", "a PNG on standard output")
  st, _, err = T.sh("printf 'not an image' | " .. prefix .. " edit -q -p x -i - -o -")
  T.eq(st, 2, "standard input that is no image")
  T.contains(err, "standard input (-i -) is not a PNG, JPEG, GIF or WebP image", "says so")
  st, _, err = T.sh(prefix .. " --help > /dev/full")
  T.eq(st, 1, "a full disk on standard output")
  T.contains(err, "cannot write to standard output", "says so")
  st, _, err = T.sh("bash -c " .. T.quote(prefix .. " edit -q -p x -i " .. T.quote(A)
    .. " -o - -n 1 | head -c 1 > /dev/null; exit ${PIPESTATUS[0]}"))
  -- the image may fit in the pipe's buffer before head exits (then the write succeeded);
  -- otherwise it is an error that says so, never death by SIGPIPE
  T.ok(st == 0 or (st == 1 and err:find("cannot write to standard output", 1, true)),
    "a closed pipe: done or a clear error, never a signal: " .. st .. " " .. tostring(err))
end)

T.case("--json: one schema of events for edit, grid and run; nothing else on stdout", function()
  local d = T.tmpdir()
  local function events(text)
    local list = {}
    for line in text:gmatch("[^\n]+") do list[#list + 1] = assert(json.decode(line), "a JSON line: " .. line) end
    return list
  end
  local st, out, err = run(env(), "edit", "--json", "-p", "x", "-i", "https://cdn.example/a.png", "-o", d)
  T.eq(st, 0, "edit --json: " .. tostring(err))
  local ev = events(out)
  T.eq(#ev, 1, "one event")
  T.eq(ev[1].event, "job", "a job event")
  T.eq(ev[1].ok, true, "ok")
  T.eq(#ev[1].paths, 1, "with its saved paths")
  T.eq(#ev[1].images, 1, "and its image URLs")
  st, out = run(env(), "edit", "--json", "-p", "x", "-i", A, "-n", "9", "-o", d)
  T.eq(st, 2, "invalid")
  T.eq(events(out)[1].event, "invalid", "an invalid event")
  st, out = run(env(), "edit", "--json", "-p", "x")
  T.eq(st, 2, "a usage error")
  T.eq(events(out)[1].event, "invalid", "is an invalid event too")
  st, out, err = run(env(), "grid", "--json", "-p", "a ${v}", "--var", "v=cat,dog", "-i", "https://cdn.example/a.png",
    "-o", d .. "/g")
  T.eq(st, 0, "grid --json: " .. tostring(err))
  ev = events(out)
  T.eq(#ev, 3, "two jobs and a summary")
  T.eq(ev[1].event, "job", "job")
  T.eq(ev[3].event, "summary", "summary last")
  T.eq(ev[3].done, 2, "two done")
  T.eq(#ev[1].paths, 1, "a grid's job event has its saved paths")
  T.ok(T.exists(ev[1].paths[1]), "which exist")
  T.ok(ev[1].vars.v == "cat" or ev[1].vars.v == "dog", "and its variables")
  local script = d .. "/printing.lua"
  local f = assert(io.open(script, "w"))
  f:write([[
local editflow = require "editflow"
print("hello from the script")
io.write("and io.write\n")
local c = editflow.client()
assert(c:edit { prompt = "p", image_urls = { "https://cdn.example/a.png" } })
]])
  f:close()
  st, out, err = run(env(), "run", "--json", script)
  T.eq(st, 0, "run --json: " .. tostring(err))
  ev = events(out)
  T.eq(#ev, 1, "stdout: the job event only")
  T.eq(ev[1].event, "job", "in the same schema")
  T.contains(err, "hello from the script", "the script's prints went to stderr")
  T.contains(err, "and io.write", "io.write too")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("on a terminal, grid and edit show a moving live line", function()
  local d = T.tmpdir()
  -- a pseudo-terminal (tests/host/pty_run.py, no keys typed): stderr is a TTY as in a user's shell
  local parts = { "env" }
  for k, v in pairs(env()) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  local prefix = table.concat(parts, " ") .. " python3 " .. T.quote(T.source_dir .. "/tests/host/pty_run.py")
    .. " " .. T.quote('{"limit": 60}') .. " " .. T.quote(BIN)
  local st, out = T.sh(prefix .. " grid -p 'a ${v}' --var v=1,2,3,4,5,6,7,8,9,10,11,12 -i https://cdn.example/a.png"
    .. " --concurrency 3 -o " .. T.quote(d .. "/g"))
  T.eq(st, 0, "ran under a pseudo-terminal")
  T.contains(out, "\nPTY_EXIT=0\n", "grid ended with 0 on the terminal")
  local seen = {}
  for n in out:gmatch("\r\27%[Keditflow: (%d+)/12 done") do seen[n] = true end
  local distinct = 0
  for _ in pairs(seen) do distinct = distinct + 1 end
  T.ok(distinct >= 3, "the live line moved through several counts: " .. distinct)
  T.ok(seen["12"], "and ended at 12 done")
  st, out = T.sh(prefix .. " edit -p x -i https://cdn.example/a.png -o " .. T.quote(d .. "/e"))
  T.eq(st, 0, "edit under a pseudo-terminal")
  T.contains(out, "\nPTY_EXIT=0\n", "edit ended with 0 on the terminal")
  T.ok(out:find("\r\27%[Keditflow: 1 done") ~= nil, "edit's live line ends at 1 done")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a folder that cannot be used is an operational error, without a place in editflow's code", function()
  local st, _, err = run(env(), "grid", "-p", "a ${v}", "--var", "v=a", "-i", "https://cdn.example/a.png", "-o", "/etc/passwd")
  T.eq(st, 1, "grid -o FILE")
  T.contains(err, "cannot use the folder /etc/passwd", "names the folder")
  T.ok(not err:find("%.lua:%d+:"), "no Lua source position: " .. err)
  st, _, err = run(env(), "edit", "-p", "x", "-i", "https://cdn.example/a.png", "-o", "/etc/passwd")
  T.eq(st, 1, "edit -o FILE")
  T.ok(not err:find("%.lua:%d+:"), "no Lua source position: " .. err)
end)

T.case("typos get a suggestion; help CMD; wait ID; completions for three shells", function()
  local st, _, err = run({}, "edt")
  T.eq(st, 2, "unknown command")
  T.contains(err, "Did you mean 'edit'?", "suggests edit")
  st, _, err = run(env(), "edit", "-p", "x", "-i", A, "--seeed", "3")
  T.eq(st, 2, "unknown option")
  T.contains(err, "Did you mean '--seed'?", "suggests --seed")
  local out
  st, out = run({}, "help", "wait")
  T.eq(st, 0, "help wait")
  T.contains(out, "usage: editflow wait REQUEST_ID", "is wait --help")
  T.ok(not out:find("--no-logs", 1, true), "wait's own options, not status's")
  st, out = run({}, "run", "--help")
  T.eq(st, 0, "run --help")
  for _, shell in ipairs { "bash", "zsh", "fish" } do
    st, out = run({}, "completion", shell)
    T.eq(st, 0, "completion " .. shell)
    T.contains(out, "num-images", shell .. ": the options are there")
  end
  -- wait: a job submitted elsewhere, followed to its end and saved
  local d = T.tmpdir()
  local c = require("editflow").client { base_url = sb.url, key = KEY }
  local job = assert(c:submit { prompt = "elsewhere", image_urls = { "https://cdn.example/a.png" } })
  st, out, err = run(env(), "wait", job.request_id, "-o", d)
  T.eq(st, 0, "wait: " .. tostring(err))
  T.eq(out, d .. "/" .. job.request_id .. "-1.png\n", "the saved path")
  assert(job:wait())
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("an interrupted grid still writes its manifest and gallery for what ended", function()
  local d = T.tmpdir()
  local parts = { "env" }
  for k, v in pairs(env()) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  local cmd = table.concat(parts, " ") .. " " .. T.quote(BIN) .. " grid -q -p 'a ${v} [slow:3]' --var v=1,2,3,4"
    .. " -i https://cdn.example/a.png --concurrency 2 -o " .. T.quote(d)
  local st = T.sh("bash -c " .. T.quote(cmd .. " & pid=$!; sleep 1.5; kill -INT $pid; wait $pid; exit $?"))
  T.eq(st, 130, "stopped by SIGINT")
  T.ok(T.exists(d .. "/manifest.jsonl"), "the manifest is written")
  T.ok(T.exists(d .. "/index.html"), "and the gallery")
  local n = 0
  for line in io.lines(d .. "/manifest.jsonl") do
    if json.decode(line).interrupted then n = n + 1 end
  end
  T.ok(n >= 1, "the jobs that did not end are marked interrupted (" .. n .. ")")
  os.execute("rm -rf " .. T.quote(d))
end)

-- "env NAME=VALUE ... BIN" for the sandbox, to be completed into a shell command line.
local function command_line(extra)
  local parts = { "env" }
  for k, v in pairs(env(extra)) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  parts[#parts + 1] = T.quote(BIN)
  return table.concat(parts, " ")
end

local function write_script(dir, name, text)
  local path = dir .. "/" .. name
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

T.case("stdout and stderr closed at start: the journal gets editflow's records and nothing else", function()
  -- Closed, fds 1 and 2 would be the first files editflow opens: the journal among them, and
  -- progress and the server's log lines would be appended to it. They get /dev/null instead,
  -- opened so that writing still fails: the paths cannot be printed, so the exit status is 1.
  for _, closing in ipairs { ">&- 2>&-", "<&- >&- 2>&-" } do
    local d = T.tmpdir()
    local st, out, err = T.sh(command_line() .. " edit -p 'closed descriptors' -i " .. T.quote(A)
      .. " -o " .. T.quote(d) .. " --seed 9 --verbose " .. closing)
    T.eq(out .. err, "", closing .. ": nothing reached the test's own stdout and stderr")
    T.eq(st, 1, closing .. ": stdout cannot be written: exit 1")
    local text = T.read(d .. "/.editflow-journal.jsonl") or ""
    local n = 0
    for line in text:gmatch("[^\n]*\n?") do
      if line ~= "" then
        local ok, r = pcall(json.decode, (line:gsub("\n$", "")))
        T.ok(ok and type(r) == "table" and type(r.t) == "string",
          closing .. ": a journal line that is not one of editflow's records: " .. line)
        n = n + 1
      end
    end
    T.ok(n >= 2, closing .. ": the journal holds the job's records (" .. n .. ")")
    T.eq(text:sub(-1), "\n", closing .. ": and ends on a record boundary")
    local images = 0
    for _, name in ipairs(T.list_dir(d)) do
      if name:match("%.png$") then images = images + 1 end
    end
    T.eq(images, 1, closing .. ": the image was saved")
    os.execute("rm -rf " .. T.quote(d))
  end
end)

T.case("the same SIGTERM twice, to the process and then its group, counts once: the jobs are cancelled", function()
  -- timeout(1) and service managers signal the command, then its whole process group: one
  -- request to stop, arriving twice. Here the two come 0.2 s apart (sent together, the kernel
  -- may merge them into one) while the cancels are still trying: the cancel route refuses the
  -- first six calls (each cancel's tries at 0 and about 0.5 s, however late a loaded machine
  -- makes them), and they get through on a retry (about 1.5 s, within the cancels' 5 s).
  -- editflow leads its own group, as under timeout(1).
  local d = T.tmpdir()
  local script = write_script(d, "slow.lua", [[
local editflow = require "editflow"
local c = editflow.client{ journal = arg[1] }
editflow.map({ 1, 2, 3 }, function(i)
  assert(c:edit{ prompt = "[slow:60] twice " .. i, image_urls = { "https://cdn.example/a.png" } })
end, { concurrency = 3 })
]])
  local journal = T.quote(d .. "/out/.editflow-journal.jsonl")
  local before = sb.stats()
  local leader = "python3 -c 'import os, sys; os.setpgid(0, 0); os.execvp(sys.argv[1], sys.argv[1:])' "
  local outage = "python3 -c 'import sys, urllib.request as u; u.urlopen(u.Request(sys.argv[1], "
    .. "sys.argv[2].encode(), {\"Content-Type\": \"application/json\"}))' " .. T.quote(sb.url .. "/_sandbox/control")
    .. " " .. T.quote(json.encode { fail_next = { route = "cancel", status = 503, count = 6 } })
  local _, out, err = T.sh(leader .. command_line() .. " run -q " .. T.quote(script) .. " "
    .. T.quote(d .. "/out") .. " & pid=$!; (sleep 30; kill -KILL $pid) & dog=$!; i=0; "
    .. "while [ $i -lt 100 ] && [ \"$(grep -c '\"accepted\"' " .. journal .. " 2>/dev/null)\" != 3 ]; do "
    .. "sleep 0.1; i=$((i+1)); done; "
    .. outage .. "; kill -TERM $pid; sleep 0.2; kill -TERM -$pid; wait $pid; echo exit=$?; kill $dog")
  T.contains(out, "exit=143", "exit status 143; stderr: " .. tostring(err))
  T.contains(err, "stopped by SIGTERM: 3 jobs in flight, cancel requested for 3", "the summary")
  local after = sb.stats()
  local tries = after.by_route.cancel - before.by_route.cancel
  T.eq(tries, 9, "the cancels were refused six times and tried again (" .. tries .. " calls)")
  T.eq(after.cancelled - before.cancelled, 3, "and the sandbox cancelled the 3 jobs")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("run finishes the tasks the script spawned; a failed or stranded one makes exit 1", function()
  local d = T.tmpdir()
  local out = d .. "/out"
  local st, _, err = run(env(), "run", "-q", write_script(d, "spawn.lua", [[
local editflow = require "editflow"
local c = editflow.client{}
for i = 1, 3 do
  editflow.spawn(function()
    local _, job = assert(c:edit{ prompt = "spawned " .. i, image_urls = { "https://cdn.example/a.png" }, seed = i })
    assert(job:save(arg[1], { name = "spawned-" .. i }))
  end)
end
]]), out)
  T.eq(st, 0, "exit status; stderr: " .. tostring(err))
  local saved = {}
  for _, name in ipairs(T.list_dir(out)) do saved[#saved + 1] = name end
  T.eq(table.concat(saved, " "), "spawned-1-1.png spawned-2-1.png spawned-3-1.png", "three images saved")
  st, _, err = run(env(), "run", "-q", write_script(d, "fails.lua", [[
local editflow = require "editflow"
editflow.spawn(function() editflow.sleep(0.05) error("late boom") end)
editflow.spawn(function() editflow.sleep(0.01) end)
]]))
  T.eq(st, 1, "a task failed after the main chunk returned")
  T.contains(err, "late boom", "its error shown")
  T.contains(err, "1 task failed and nobody collected its error", "and counted")
  st, _, err = run(env(), "run", "-q", write_script(d, "stranded.lua", [[
local editflow = require "editflow"
editflow.spawn(function() require("editflow.runtime").signal():wait() end)
]]))
  T.eq(st, 1, "a task waiting for what can never come")
  T.contains(err, "editflow: 1 task still waiting when nothing was left that could wake it", "is named")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
