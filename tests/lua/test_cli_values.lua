-- test_cli_values.lua: the command line's values, through the editflow binary (EDITFLOW_BIN):
--   * a single-value option given twice (or two options that set one thing) is refused with
--     exit 2, naming the option and both values, before anything reaches the queue;
--   * a flag given twice is accepted (it says the same thing twice);
--   * -s/--image-size's help lists every size name with its pixels, whole;
--   * messages from the library speak the command line's words (FAL_KEY, --base-url, --auth);
--   * bash completion offers the shipped model ids and the chosen model's field values,
--     asking the host offline (a schema URL that answers is never asked).
local T = require "testlib"
local model = require "editflow.model"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local A = T.source_dir .. "/tests/fixtures/a.png"
local KEY = "test-key-values-5c1e"
local NANO, QWEN = "fal-ai/nano-banana/edit", "fal-ai/qwen-image-edit-plus"

local sb = T.sandbox { "--key", KEY, "--job-time", "0.05" }

-- Runs the binary with an environment (names -> values; false unsets) and arguments.
local function run(env, ...)
  local parts, set = { "env" }, {}
  for k, v in pairs(env) do
    if v == false then parts[#parts + 1] = "-u " .. k else set[#set + 1] = k .. "=" .. T.quote(v) end
  end
  table.move(set, 1, #set, #parts + 1, parts)
  parts[#parts + 1] = T.quote(BIN)
  for _, a in ipairs { ... } do parts[#parts + 1] = T.quote(a) end
  return T.sh(table.concat(parts, " ") .. " </dev/null")
end

local function env(extra)
  local e = { FAL_KEY = KEY, EDITFLOW_BASE_URL = sb.url, EDITFLOW_STORAGE_URL = sb.url,
    EDITFLOW_API_URL = sb.url, EDITFLOW_AUTH = "key" }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

T.case("a single-value option given twice: exit 2, the option and both values named, nothing sent", function()
  local d = T.tmpdir()
  local before = sb.stats().requests
  local edit = { "edit", "-p", "x", "-i", A, "-o", d }
  local function with(base, ...)
    local t = table.move(base, 1, #base, 1, {})
    for _, a in ipairs { ... } do t[#t + 1] = a end
    return t
  end
  local cases = {
    { { "edit", "-p", "one", "-p", "two", "-i", A, "-o", d }, "option '-p' given twice ('one' and 'two'): it takes one value" },
    { with(edit, "--seed", "1", "--seed", "2"), "option '--seed' given twice ('1' and '2'): it takes one value" },
    { with(edit, "--seed=1", "--seed", "2"), "option '--seed' given twice ('1' and '2')" },
    { with(edit, "-m", NANO, "-m", QWEN), "option '-m' given twice ('" .. NANO .. "' and '" .. QWEN .. "')" },
    { with(edit, "--model", QWEN, "--model", QWEN), "option '--model' given twice" },
    { with(edit, "-o", d .. "/2"), "option '-o' given twice ('" .. d .. "' and '" .. d .. "/2')" },
    { with(edit, "-n", "1", "-n2"), "option '-n' given twice ('1' and '2')" },
    { with(edit, "--timeout", "5", "--timeout", "6"), "option '--timeout' given twice" },
    { with(edit, "--prompt", "-p"), "option '--prompt' given twice ('x' and '-p')" },
    -- two names of one thing
    { with(edit, "--model", QWEN, "--endpoint", QWEN), "options '--model' and '--endpoint' both set model" },
    { with(edit, "--steps", "3", "--num-inference-steps", "4"), "options '--steps' and '--num-inference-steps' both set num_inference_steps" },
    { with(edit, "--sync", "--no-sync"), "options '--sync' and '--no-sync' both set sync_mode" },
    { { "status", "req-1", "-m", NANO, "-m", QWEN }, "option '-m' given twice" },
    { { "status", "req-1", "--timeout", "1", "--timeout", "2" }, "option '--timeout' given twice ('1' and '2')" },
    { { "result", "req-1", "-o", d, "-o", d .. "/2" }, "option '-o' given twice" },
    { { "wait", "req-1", "--name", "a", "--name", "b" }, "option '--name' given twice ('a' and 'b')" },
    { { "cancel", "req-1", "--base-url", sb.url, "--base-url", sb.url }, "option '--base-url' given twice" },
    { { "grid", "-p", "a ${v}", "--var", "v=1,2", "-i", A, "-o", d, "--seeds", "1,2", "--seeds", "3" },
      "option '--seeds' given twice ('1,2' and '3'): it takes one value" },
    { { "grid", "-p", "a ${v}", "--var", "v=1,2", "-i", A, "-o", d, "--output", d .. "/2" }, "option '--output' given twice" },
    { { "grid", "-p", "a ${v}", "--var", "v=1,2", "-i", A, "-o", d, "--max-cost", "1", "--max-cost", "2" },
      "option '--max-cost' given twice ('1' and '2')" },
    { { "schema", "-m", NANO, "-m", QWEN }, "option '-m' given twice" },
    { with(edit, "--seed", "1", "--set", "seed=2"), "seed is given twice (--seed and --set seed=2)" },
    { with(edit, "--set", "prompt=y"), "prompt is given twice (-p and --set prompt=y)" },
    { { "run", "--progress", "plain", "--progress", "none", "x.lua" }, "option '--progress' given twice ('plain' and 'none')" },
    { { "run", "--on-interrupt=finish", "--on-interrupt", "cancel", "x.lua" }, "option '--on-interrupt' given twice" },
  }
  for _, c in ipairs(cases) do
    local st, out, err = run(env(), table.unpack(c[1]))
    local what = table.concat(c[1], " ")
    T.eq(st, 2, what .. ": exit; stderr: " .. tostring(err))
    T.contains(err, c[2], what)
    T.eq(out, "", what .. ": nothing on stdout")
  end
  T.eq(sb.stats().requests, before, "not one request reached the queue")
  T.eq(T.read(d .. "/journal.jsonl"), nil, "no journal written")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("a flag given twice says it twice: accepted, the job runs once", function()
  local d = T.tmpdir()
  local before = sb.stats().by_route.submit or 0
  local st, out, err = run(env(), "edit", "-p", "x", "-i", A, "-o", d, "-q", "-q", "--inline", "--inline")
  T.eq(st, 0, "exit; stderr: " .. tostring(err))
  T.match(out, "^" .. d:gsub("%p", "%%%0") .. "/[^\n]+%.png\n$", "one saved path")
  T.eq((sb.stats().by_route.submit or 0) - before, 1, "one submit")
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("-s/--image-size's help lists every size name with its pixels, whole", function()
  local st, out = run({}, "edit", "--help")
  T.eq(st, 0, "edit --help")
  local line = out:match("\n([^\n]*%-%-image%-size[^\n]*)")
  T.ok(line, "an --image-size line")
  for name, dims in pairs(model.SIZES) do
    T.contains(line, string.format("%s %dx%d", name, dims[1], dims[2]), "the size " .. name)
  end
  T.contains(line, "WxH", "WxH too")
  T.ok(not line:find("...", 1, true), "not cut: " .. line)
  st, out = run({}, "grid", "-m", "fal-ai/bytedance/seedream/v4/edit", "--help")
  T.eq(st, 0, "grid --help (seedream)")
  line = out:match("\n([^\n]*%-%-image%-size[^\n]*)") or ""
  for _, name in ipairs { "square_hd 1024x1024", "landscape_16_9 1024x576", "auto", "auto_2K", "auto_4K" } do
    T.contains(line, name, "seedream's " .. name)
  end
end)

T.case("library messages in the command line's words: FAL_KEY, --base-url, --auth, -m", function()
  for _, cmd in ipairs { { "edit", "-p", "x", "-i", A }, { "status", "req-1" }, { "wait", "req-1" } } do
    local st, _, err = run(env { FAL_KEY = false, FAL_KEY_ID = false, FAL_KEY_SECRET = false }, table.unpack(cmd))
    T.eq(st, 2, cmd[1] .. ": exit")
    T.contains(err, "set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET)", cmd[1] .. ": names the variables")
    T.ok(not err:find("key=", 1, true), cmd[1] .. ": no Lua option word: " .. err)
  end
  local st, _, err = run(env(), "edit", "-p", "x", "-i", A, "--base-url", "ftp://x")
  T.eq(st, 2, "--base-url ftp")
  T.contains(err, "--base-url (or EDITFLOW_BASE_URL): ", "names --base-url")
  T.ok(not err:find("base_url", 1, true), "no base_url: " .. err)
  st, _, err = run(env(), "status", "req-1", "--auth", "token")
  T.eq(st, 2, "--auth token")
  T.contains(err, "--auth (or EDITFLOW_AUTH) must be 'key'", "names --auth")
  st, _, err = run(env(), "status", "req-1", "-m", "nope")
  T.eq(st, 2, "-m nope")
  T.contains(err, "the model (-m) must look like", "names -m")
  st, _, err = run(env(), "status", "req-1", "--base-url", "http://u:p@127.0.0.1:9/")
  T.eq(st, 2, "a credential in the URL")
  T.contains(err, "(the credential goes in FAL_KEY)", "names FAL_KEY")
  T.ok(not err:find("key=", 1, true), "no key=: " .. err)
end)

-- ---- completion in a real bash ----

local bindir = BIN:match("^(.*)/[^/]+$")
local cache = T.tmpdir()
local script = cache .. "/editflow.bash"
do
  local st, out, err = run({}, "completion", "bash")
  assert(st == 0, "completion bash: " .. tostring(err))
  local f = assert(io.open(script, "w"))
  f:write(out)
  f:close()
end

-- The words bash makes of a line: blanks separate, and ':' and '=' (in COMP_WORDBREAKS) are
-- words of their own.
local function comp_words(line)
  local words = {}
  for w in line:gmatch("%S+") do
    for piece, brk in w:gmatch("([^:=]*)([:=]?)") do
      if piece ~= "" then words[#words + 1] = piece end
      if brk ~= "" then words[#words + 1] = brk end
    end
  end
  if line:match("%s$") then words[#words + 1] = "" end
  return words
end

-- What <TAB> offers at the end of `line` (COMP_LINE set as bash sets it, unless `bare`, as
-- older callers such as test_package's do). A schema URL that answers is set: completion
-- must not ask it.
local function offers(line, bare)
  local words = comp_words(line)
  for i, w in ipairs(words) do words[i] = T.quote(w) end
  local sh = "source " .. T.quote(script) .. "; "
    .. (bare and "" or ("COMP_LINE=" .. T.quote(line) .. "; COMP_POINT=${#COMP_LINE}; "))
    .. "COMP_WORDS=(" .. table.concat(words, " ") .. "); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); "
    .. "_editflow; printf '%s\\n' \"${COMPREPLY[@]}\""
  local st, out, err = T.sh("env PATH=" .. T.quote(bindir .. ":" .. os.getenv("PATH"))
    .. " EDITFLOW_SCHEMA_URL=" .. T.quote(sb.url .. "/openapi.json") .. " XDG_CACHE_HOME=" .. T.quote(cache)
    .. " bash -c " .. T.quote(sh))
  T.eq(st, 0, "completion of '" .. line .. "': " .. tostring(err))
  local list, set = {}, {}
  for w in out:gmatch("[^\n]+") do list[#list + 1], set[w] = w, true end
  return set, list
end

T.case("bash completes the shipped model ids and the chosen model's values, offline", function()
  local before = sb.stats().requests
  local set = offers("editflow edit -m ")
  for id, entry in pairs(require "editflow.catalog") do
    if entry.output then T.ok(set[id], "model id " .. id) end
  end
  T.ok(not set["fal-ai/any-llm/vision"], "edit: no model that makes no image")
  local _, list = offers("editflow edit -m fal-ai/nano")
  T.eq(table.concat(list, " "), NANO, "the ids that start with the word")
  set = offers("editflow schema ")
  T.ok(set[NANO] and set["fal-ai/any-llm/vision"], "schema: every shipped id")
  set = offers("editflow status req-1 --model ")
  T.ok(set[QWEN], "status --model")

  -- nano-banana's aspect_ratio enum, all of it, in the schema's order
  _, list = offers("editflow edit -p 'a -m b' -m " .. NANO .. " --aspect-ratio ")
  T.eq(table.concat(list, " "), "auto 21:9 16:9 3:2 4:3 5:4 1:1 4:5 3:4 2:3 9:16", "--aspect-ratio of " .. NANO)
  -- the default model's image_size names (an anyOf of an object and the names)
  _, list = offers("editflow edit --image-size ")
  T.eq(table.concat(list, " "), "square_hd square portrait_4_3 portrait_16_9 landscape_4_3 landscape_16_9",
    "--image-size of the default model")
  _, list = offers("editflow grid -m fal-ai/bytedance/seedream/v4/edit -s a")
  T.eq(table.concat(list, " "), "auto auto_2K auto_4K", "seedream's -s, filtered by the word")
  -- grid -m A -m B: the options of both, each field's values from every model that has it
  _, list = offers("editflow grid -m " .. NANO .. " -m fal-ai/bytedance/seedream/v4/edit -s ")
  T.eq(table.concat(list, " "), "square_hd square portrait_4_3 portrait_16_9 landscape_4_3 landscape_16_9 auto auto_2K auto_4K",
    "grid: seedream's -s beside nano-banana")
  set = offers("editflow grid -m " .. NANO .. " -m fal-ai/bytedance/seedream/v4/edit --aspect-ratio ")
  T.ok(set["21:9"] and set.auto, "grid: nano-banana's --aspect-ratio beside seedream")
  -- bash replaces only its current word, cut at ':' and '='
  _, list = offers("editflow edit -m " .. NANO .. " --aspect-ratio 16:")
  T.eq(table.concat(list, " "), ":9", "after '16:' the rest of 16:9")
  _, list = offers("editflow edit --model=fal-ai/nano")
  T.eq(table.concat(list, " "), NANO, "--model=ID: the id")
  set = offers("editflow edit --on-interrupt ")
  T.ok(set.cancel and set.finish and set.detach, "an option's choices")
  -- the chosen model's own options, which the script's static list (the default model's) lacks
  set = offers("editflow edit -m " .. NANO .. " --asp")
  T.ok(set["--aspect-ratio"], "nano-banana's --aspect-ratio offered")
  set = offers("editflow edit --asp")
  T.ok(not set["--aspect-ratio"], "not the default model's")
  -- what has no values falls back to the script's own completion (files, options)
  set = offers("editflow edit --format ", true)
  T.ok(set.jpeg and set.png, "without COMP_LINE: the script's own values")
  set = offers("editflow ed")
  T.ok(set.edit, "commands as before")
  T.eq(sb.stats().requests, before, "no schema fetched: completion is offline")
end)

T.case("completion --values: the shell-neutral form, one candidate a line", function()
  local st, out = run({}, "completion", "--values", "edit", "-m", NANO, "--aspect-ratio", "2")
  T.eq(st, 0, "exit")
  T.eq(out, "21:9\n2:3\n", "the values that start with the word")
  st, out = run({}, "completion", "--values", "edit", "-p", "")
  T.eq(st, 0, "exit")
  T.eq(out, "", "a prompt has no values")
  st, out = run({}, "completion", "--values", "edit", "-m", "not a model", "-s", "")
  T.eq(st, 0, "a bad model id: exit 0")
  T.eq(out, "", "and nothing offered")
end)

T.run()
