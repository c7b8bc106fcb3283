-- test_untrusted_schema.lua: a schema is a server's text, and editflow's cache folder is only a
-- folder: a planted or fetched schema can neither spin the CPU (a doubling $ref/anyOf tree
-- falls back to the shipped copy, naming why), nor drive the terminal (ESC, CR, C1 and stray
-- bytes are shown escaped), nor take one of editflow's own options (timeout, json, set: the
-- fields are given with --set, and both sides are named). Also: the JSON encoder writes valid
-- UTF-8 whatever it is given (a grid over a Latin-1 file name keeps a manifest python reads),
-- and `editflow price` says truly why fal's pricing API was not asked.
-- Every run of the binary is under timeout -s KILL 20: a hang limit, never a timing assertion.
local T = require "testlib"
local json = require "editflow.json"
local cache = require "editflow.cache"
local model = require "editflow.model"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local A = T.source_dir .. "/tests/fixtures/a.png"
local KEY = "test-key-untrusted"
local CLOSED = "http://127.0.0.1:9/openapi.json"  -- a schema URL nothing answers: the cache decides
local sb = T.sandbox { "--key", KEY, "--job-time", "0.02" }

-- Runs the binary with an environment and arguments, killed after 20 s. -> status, out, err.
local function run(env, ...)
  local parts = { "timeout", "-s", "KILL", "20", "env" }
  for k, v in pairs(env) do parts[#parts + 1] = k .. "=" .. T.quote(v) end
  parts[#parts + 1] = T.quote(BIN)
  for _, a in ipairs { ... } do parts[#parts + 1] = T.quote(a) end
  return T.sh(table.concat(parts, " "))
end

local function doc_of(endpoint, schemas)
  return { openapi = "3.0.0", paths = { ["/" .. endpoint] = { post = { requestBody = { content = {
    ["application/json"] = { schema = { ["$ref"] = "#/components/schemas/In" } } } } } } },
    components = { schemas = schemas } }
end

-- A ~4 KB document whose field `knob` is D1, each Dn anyOf [Dn+1, Dn+1]: 2^40 paths.
local function bomb(endpoint)
  local schemas = { In = { type = "object", required = { "prompt", "image_urls" }, properties = {
    prompt = { type = "string" }, image_urls = { type = "array", items = { type = "string" } },
    knob = { ["$ref"] = "#/components/schemas/D1" } } } }
  for i = 1, 40 do
    local nxt = i < 40 and { ["$ref"] = "#/components/schemas/D" .. (i + 1) } or { type = "integer" }
    schemas["D" .. i] = { anyOf = { nxt, nxt } }
  end
  return doc_of(endpoint, schemas)
end

local ESC = "\27[31m"
local HOSTILE = doc_of("test/hostile", { In = { type = "object", required = { "prompt", "image_urls" },
  properties = {
    prompt = { type = "string", maxLength = 10, description = "the prompt" .. ESC .. "RED\r\127\u{9b}2J" },
    image_urls = { type = "array", items = { type = "string" }, minItems = 1, maxItems = 2 },
    timeout = { type = "integer", description = "the model's own timeout" },
    json = { type = "boolean" },
    set = { type = "string" },
    mode = { enum = { "a", "b" .. ESC .. "x" }, title = "mode" .. ESC },
  } } })

-- A cache folder holding `doc` as the fresh copy of `endpoint` fetched from CLOSED.
local function planted(endpoint, doc)
  local home = T.tmpdir()
  assert(cache.put("schemas/" .. cache.name_for(endpoint) .. ".json", CLOSED, doc, home .. "/editflow"))
  return home
end

local function env(home, extra)
  local e = { XDG_CACHE_HOME = home, EDITFLOW_SCHEMA_URL = CLOSED, FAL_KEY = KEY,
    EDITFLOW_BASE_URL = sb.url, EDITFLOW_STORAGE_URL = sb.url, EDITFLOW_API_URL = sb.url }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

local function terminal_safe(text, what)
  T.ok(not text:find("[\0-\8\11-\31\127]"), what .. ": no control character but newline and tab")
  T.ok(not text:find("\194[\128-\159]"), what .. ": no C1 control")
  T.ok(utf8.len(text), what .. ": valid UTF-8")
end

T.case("a doubling $ref/anyOf schema is refused at once, by its cost, and says so", function()
  -- a hang limit in instructions, not time: a compile that spins is stopped (and its pcall
  -- reports the stop as the reason, which the check below refuses)
  debug.sethook(function() error("still walking after 200M instructions", 0) end, "", 200000000)
  local m, why = model.compile(bomb("x/y"), "x/y")
  debug.sethook()
  T.eq(m, nil, "not compiled")
  T.contains(why, "too costly to check", "the reason")
  T.ok(model.compile(json.decode(require("editflow.catalog.qwen_image_edit_plus")), "fal-ai/qwen-image-edit-plus"),
    "a real schema is well inside the budget")
end)

T.case("a planted schema bomb: schema, price, --help and edit fall back to the shipped copy", function()
  local ep = "fal-ai/qwen-image-edit-plus"
  local home = planted(ep, bomb(ep))
  local st, out, err = run(env(home), "schema", ep)
  T.eq(st, 0, "schema finishes: " .. tostring(err))
  T.contains(out, "(schema: shipped)", "the shipped copy")
  T.contains(err, "too costly to check", "a warning names the reason")
  st, out, err = run(env(home), "price", ep)
  T.eq(st, 0, "price finishes: " .. tostring(err))
  T.contains(err, "too costly to check", "price warns too")
  st, out, err = run(env(home), "edit", "--help")
  T.eq(st, 0, "edit --help finishes: " .. tostring(err))
  T.contains(out, "(schema: shipped)", "help from the shipped copy")
  -- an edit is checked by the shipped copy: its range refuses 9 images before anything is sent
  local before = sb.stats().requests
  st, _, err = run(env(home), "edit", "-p", "p", "-i", A, "-o", T.tmpdir(), "--num-images", "9")
  T.eq(st, 2, "invalid input: " .. tostring(err))
  T.contains(err, "num_images must be an integer 1..4", "the shipped range")
  T.eq(sb.stats().requests, before, "nothing sent")
end)

T.case("a fetched schema bomb: the shipped copy, and the warning names the reason", function()
  local ep = "fal-ai/qwen-image-edit-2511"
  sb.control { schema = { endpoint_id = ep, doc = bomb(ep) } }
  local st, out, err = run(env(T.tmpdir(), { EDITFLOW_SCHEMA_URL = sb.url .. "/api/openapi/queue/openapi.json" }),
    "schema", ep)
  sb.control { schema = { endpoint_id = ep, doc = json.null } }
  T.eq(st, 0, "finishes: " .. tostring(err))
  T.contains(out, "(schema: shipped)", "the shipped copy")
  T.contains(err, "too costly to check", "why")
end)

T.case("schema text reaches the terminal escaped: schema, --help, error messages", function()
  T.eq(model.printable("a" .. ESC .. "b\r\127\u{9b}\xff\u{e9}"), "a\\x1B[31mb\\x0D\\x7F\\u009B\\xFF\u{e9}", "printable")
  local home = planted("test/hostile", HOSTILE)
  local st, out, err = run(env(home), "schema", "test/hostile")
  T.eq(st, 0, "schema: " .. tostring(err))
  terminal_safe(out, "schema")
  T.contains(out, "the prompt\\x1B[31mRED\\x0D\\x7F\\u009B2J", "the description, escaped")
  T.contains(out, "one of a, b\\x1B[31mx", "the enum, escaped")
  st, out = run(env(home), "edit", "-m", "test/hostile", "--help")
  T.eq(st, 0, "--help")
  terminal_safe(out, "--help")
  T.contains(out, "--mode a|b\\x1B[31mx", "the option's values, escaped")
  st, out, err = run(env(home), "edit", "-m", "test/hostile", "-p", "p", "-i", A, "--mode", "c")
  T.eq(st, 2, "invalid")
  terminal_safe(err, "the error")
  T.contains(err, "mode must be one of a, b\\x1B[31mx, got 'c'", "the message, escaped")
end)

T.case("fields named like editflow's options: no option, --set reaches them, both sides named", function()
  local home = planted("test/hostile", HOSTILE)
  local st, out = run(env(home), "edit", "-m", "test/hostile", "--help")
  T.eq(st, 0, "--help")
  for _, name in ipairs { "timeout", "json", "set" } do
    T.contains(out, "the model's field " .. name .. " has no option: --" .. name .. " is editflow's own; "
      .. "give the field with --set " .. name .. "=VALUE", "a note for " .. name)
  end
  st, out = run(env(home), "schema", "test/hostile")
  T.contains(out, "option:  --set timeout=VALUE (--timeout is editflow's own)", "schema says so too")
  -- editflow's --timeout stays editflow's (and says so); the fields go with --set
  local d = T.tmpdir()
  local err
  st, out, err = run(env(home), "edit", "-m", "test/hostile", "-p", "p", "-i", "https://cdn.example/a.png",
    "-o", d, "--timeout", "60", "--set", "timeout=7", "--set", "json=true", "--set", "set=v", "--json")
  T.eq(st, 0, "edit: " .. tostring(err))
  T.contains(err, "the model's field timeout has no option: --timeout is editflow's own", "a notice naming both")
  local sent
  for _, j in ipairs(sb.jobs()) do if j.endpoint == "test/hostile" or (j.input and j.input.set == "v") then sent = j end end
  T.ok(sent, "the job reached the sandbox")
  T.eq(sent.input.timeout, 7, "the model's timeout")
  T.eq(sent.input.json, true, "the model's json")
  T.eq(sent.input.set, "v", "the model's set")
  T.eq(json.decode(out:match("[^\n]+")).event, "job", "--json is editflow's: a job event on stdout")
  st, _, err = run(env(home), "edit", "-m", "test/hostile", "-p", "p", "-i", A, "--set", "timeout=x")
  T.eq(st, 2, "a bad value")
  T.contains(err, "timeout must be an integer, got 'x' (option --set timeout=VALUE)", "pointing at --set")
end)

T.case("string and list limits: the field, the limit, the length in characters", function()
  local m = assert(model.compile(doc_of("x/y", { In = { type = "object", properties = {
    prompt = { type = "string", maxLength = 5 },
    code = { type = "string", minLength = 3, maxLength = 4 },
    tags = { type = "array", items = { type = "string" }, minItems = 2, maxItems = 3 },
    note = { anyOf = { { type = "string", maxLength = 2 }, { type = "null" } } },
  } } }), "x/y"))
  T.raises(function() m:validate { prompt = "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}" } end,
    "prompt must have at most 5 characters, got 6")
  T.eq(m:validate({ prompt = "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}" }).prompt, "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
    "5 characters in 10 bytes fit")
  T.raises(function() m:validate { code = "ab" } end, "code must have at least 3 characters, got 2")
  T.raises(function() m:validate { code = "abcde" } end, "code must have at most 4 characters, got 5")
  T.raises(function() m:validate { tags = { "a" } } end, "tags must have at least 2 items, got 1")
  T.raises(function() m:validate { tags = { "a", "b", "c", "d" } } end, "tags must have at most 3 items, got 4")
  T.raises(function() m:validate { note = "abc" } end, "note must have at most 2 characters, got 3")
  T.eq(m:field("code").accepts, "a string of 3 to 4 characters", "described")
end)

T.case("the encoder writes valid UTF-8: stray bytes as their Latin-1 reading, C and Lua alike", function()
  local cases = { "\xffname.png", "caf\xe9", "\u{e9}\xc3", "\xed\xa0\x80", "\xc2\x9b[2J", "\xf0\x9f\x98\x80\x80",
    "\xe0\x80\x80", "\xf4\x90\x80\x80", "ok \u{1f600}" }
  for _, s in ipairs(cases) do
    local c = json.encode { s = s }
    T.eq(json.encode(setmetatable({ s = s }, {})), c, "the Lua encoder agrees for " .. string.format("%q", s))
    T.ok(utf8.len(c), "valid UTF-8 for " .. string.format("%q", s))
    T.ok(json.decode(c), "editflow reads it back")
  end
  T.eq(json.encode { "\xffa" }, '["\\u00ffa"]', "Latin-1 reading")
  T.eq(json.decode(json.encode { "\xed\xa0\x80" })[1], "\xed\xa0\x80", "a lone surrogate round-trips")
  T.eq(json.encode { "\u{e9}\u{1f600}" }, '["\u{e9}\u{1f600}"]', "valid text as it is")
end)

T.case("a grid over a non-UTF-8 file name keeps a manifest every JSON reader accepts", function()
  local d = T.tmpdir()
  assert(require("editflow.core").mkdir(d .. "/in"))
  assert(require("editflow.core").write_file(d .. "/in/photo-\xff\xfe.png", T.read(A)))
  assert(require("editflow.core").write_file(d .. "/in/caf\xe9.png", T.read(A)))
  local outdir = d .. "/out"
  local st, _, err = run(env(T.tmpdir(), { EDITFLOW_SCHEMA_URL = "off" }), "grid", "-p", "a cat",
    "--images-var", "pic=" .. d .. "/in", "-i", "${pic}", "-o", outdir, "--inline", "-q")
  T.eq(st, 0, "grid: " .. tostring(err))
  local text = T.read(outdir .. "/manifest.jsonl")
  T.ok(text and utf8.len(text), "the manifest is valid UTF-8")
  local n = 0
  for line in text:gmatch("[^\n]+") do
    n = n + 1
    T.ok(json.decode(line), "editflow reads line " .. n)
  end
  T.eq(n, 2, "two jobs")
  local py = "import json,sys\nfor line in open(sys.argv[1], encoding='utf-8'):\n    json.loads(line)\nprint('ok')"
  local pst, pout, perr = T.sh("python3 -c " .. T.quote(py) .. " " .. T.quote(outdir .. "/manifest.jsonl"))
  T.eq(pst, 0, "python reads every line: " .. tostring(perr))
  T.eq(pout, "ok\n", "python")
end)

T.case("price says truly why fal's pricing API was not asked", function()
  local home = planted("test/hostile", HOSTILE)  -- an endpoint editflow ships no price for
  local base = env(home, { EDITFLOW_API_URL = "" })
  local st, _, err = run(base, "price", "test/hostile")
  T.eq(st, 1, "no price")
  T.ok(not err:find("takes only a fal key", 1, true), "a key is set: " .. err)
  T.contains(err, "not fal's own here, so the key is not sent there", "the queue is not fal's")
  base.EDITFLOW_AUTH = "bearer"
  st, _, err = run(base, "price", "test/hostile")
  T.ok(not err:find("takes only a fal key", 1, true), "a bearer credential is set: " .. err)
  T.contains(err, "sent as a bearer token", "said as it is")
  base.EDITFLOW_AUTH, base.FAL_KEY = nil, ""
  st, _, err = run(base, "price", "test/hostile")
  T.contains(err, "none is set (FAL_KEY)", "no key at all")
end)

T.run()
