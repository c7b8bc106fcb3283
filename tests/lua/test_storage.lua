-- test_storage.lua: local images go to fal storage once per content (the sandbox's upload
-- flow), the credential never goes to an upload URL, proxies and --inline send data: URIs,
-- and the journal's identity of a job is the file's hash, not its upload URL.
local T = require "testlib"
local editflow = require "editflow"
local json = require "editflow.json"
local core = require "editflow.core"
local storage = require "editflow.storage"

local sb = T.sandbox { "--job-time", "0.01", "--workers", "8" }
local A = T.source_dir .. "/tests/fixtures/a.png"
local work = T.tmpdir()
local n = 0

-- A copy of a.png with a tail of its own: a new content, so no earlier upload is remembered.
local function photo() return T.new_photo(work, "editflow-test") end

-- The bytes at a URL, fetched by Python's standard library (a test's own look at the sandbox).
local function get(u)
  local _, body = T.sh("python3 -c 'import sys, urllib.request; "
    .. "sys.stdout.buffer.write(urllib.request.urlopen(sys.argv[1]).read())' " .. T.quote(u))
  return body
end

local function client(extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function inputs_of(ids)
  local want, out = {}, {}
  for _, id in ipairs(ids) do want[id] = true end
  for _, j in ipairs(sb.jobs()) do
    if want[j.request_id] then out[#out + 1] = j.input end
  end
  return out
end

T.case("a 20-job grid over one photo uploads it once; every job sends its file_url", function()
  local before = sb.stats()
  local p = photo()
  local d = T.tmpdir()
  local s = editflow.experiment { name = "one-photo", out = d, client = client(), prompt = "a ${n}",
    vars = { n = { "1", "2", "3", "4", "5", "6", "7", "8", "9", "10" } }, seeds = { 1, 2 },
    images = { p }, params = { image_size = "square" }, concurrency = 20 }
  T.eq(s.done, 20, "20 jobs done")
  local after = sb.stats()
  T.eq(after.uploads - before.uploads, 1, "one upload")
  T.eq(after.upload_initiates - before.upload_initiates, 1, "one initiate")
  T.eq(after.upload_credential_leaks, 0, "the credential never went with the bytes")
  local ids = {}
  for line in io.lines(d .. "/one-photo/manifest.jsonl") do ids[#ids + 1] = json.decode(line).request_id end
  local urls = {}
  for _, input in ipairs(inputs_of(ids)) do urls[input.image_urls[1]] = true end
  local list = {}
  for u in pairs(urls) do list[#list + 1] = u end
  T.eq(#list, 1, "one URL in every job")
  T.match(list[1], "^http://127%.0%.0%.1:%d+/media/", "the storage file_url")
  T.eq(get(list[1]), T.read(p), "the uploaded bytes are the photo's")
end)

T.case("a re-run finds its jobs by the file's hash and its upload in the journal", function()
  local p = photo()
  local d = T.tmpdir()
  local spec = { name = "rerun", out = d, prompt = "x ${v}", vars = { v = { "a", "b" } }, seeds = { 3 },
    images = { p }, params = { image_size = "square" } }
  spec.client = client()
  T.eq(editflow.experiment(spec).done, 2, "first run")
  local before = sb.stats()
  storage.forget()  -- a new process: nothing in memory
  os.execute("rm -rf " .. T.quote(os.getenv("XDG_CACHE_HOME") .. "/editflow/uploads"))  -- nor in the cache
  spec.client = client()
  local again = editflow.experiment(spec)
  T.eq(again.reused, 2, "both jobs reused")
  local after = sb.stats()
  T.eq(after.by_route.submit, before.by_route.submit, "nothing submitted")
  T.eq(after.upload_initiates, before.upload_initiates, "nothing uploaded")
  -- a new job over the same photo in that folder: its upload comes from the journal
  spec.vars = { v = { "a", "b", "c" } }
  spec.client = client()
  storage.forget()
  local third = editflow.experiment(spec)
  T.eq(third.done, 3, "three done")
  T.eq(sb.stats().upload_initiates, before.upload_initiates, "the journal's upload was reused")
end)

T.case("a proxy token, or inline = true, sends data: URIs and never uses fal storage", function()
  local before = sb.stats()
  local p = photo()
  for _, c in ipairs { client { auth = "bearer", key = "test-token" }, client { inline = true } } do
    local job = assert(c:submit { prompt = "p", image_urls = { p } })
    assert(job:wait())
    local input = inputs_of { job.request_id }[1]
    T.match(input.image_urls[1], "^data:image/png;base64,", "inline")
  end
  T.eq(sb.stats().upload_initiates, before.upload_initiates, "no upload")
end)

T.case("large files go up in parts, as fal's client does", function()
  local before = sb.stats()
  local p = photo()
  local size = #T.read(p)
  local c = client { multipart_bytes = 100, part_bytes = 128 }
  local job = assert(c:submit { prompt = "p", image_urls = { p } })
  assert(job:wait())
  local after = sb.stats()
  T.eq(after.multipart_parts - before.multipart_parts, (size + 127) // 128, "one PUT a part")
  T.eq(after.uploads - before.uploads, 1, "one upload completed")
  T.eq(after.upload_credential_leaks, 0, "no credential on parts or completion")
  local u = inputs_of { job.request_id }[1].image_urls[1]
  T.eq(get(u), T.read(p), "the parts make the file")
end)

T.case("a failing upload is retried; one that keeps failing sends nothing", function()
  sb.control { fail_next = { route = "initiate", status = 503, count = 1 } }
  local c = client { retry = { base = 0.01 } }
  local job = assert(c:submit { prompt = "p", image_urls = { photo() } })
  assert(job:wait())
  local before = sb.stats()
  sb.control { fail_next = { route = "upload", status = 500, count = 50 } }
  local j, err = client { retry = { base = 0.01, attempts = 2 } }:submit { prompt = "p", image_urls = { photo() } }
  T.eq(j, nil, "no job")
  T.eq(err.code, "UPLOAD_FAILED", "the upload failed")
  T.contains(err.message, "HTTP 500", "saying why")
  T.eq(sb.stats().by_route.submit, before.by_route.submit, "nothing submitted")
  sb.control { reset_faults = true }
end)

T.case("only file fields are resolved: a prompt that reads like a file name is sent as written", function()
  local p = photo()
  local c = client { inline = true }
  local body = c:prepare { prompt = "x", image_urls = { p } }
  local name = json.decode(body).image_urls[1]
  local job = assert(c:submit { prompt = name, image_urls = { p } })
  assert(job:wait())
  local input = inputs_of { job.request_id }[1]
  T.eq(input.prompt, name, "the prompt untouched")
  T.match(input.image_urls[1], "^data:image/png;base64,", "the image resolved")
end)

T.case("a file changed after it was planned is not sent", function()
  local p = photo()
  local c = client { inline = true }
  local body = c:prepare { prompt = "p", image_urls = { p } }
  assert(core.write_file(p, T.read(A) .. "changed"))
  local before = sb.stats().by_route.submit
  local j, err = c:send(body)
  T.eq(j, nil, "not sent")
  T.contains(err.message, "changed since the job was planned", "says why")
  T.eq(sb.stats().by_route.submit, before, "nothing submitted")
end)

T.case("the key goes to fal storage only when it is a fal key for it", function()
  local before = sb.stats()
  -- a queue that is not fal's, no storage or API URL given (a process without the test's
  -- EDITFLOW_*_URL): fal's default origins never get this key; the file goes inline
  local script = work .. "/keyed.lua"
  assert(core.write_file(script, string.format([[
local editflow = require "editflow"
local c = editflow.client { base_url = %q, key = "test-key", poll_interval = 0.02 }
local job = assert(c:submit { prompt = "p", image_urls = { %q } })
assert(job:wait())
print(c:platform_ok("storage"), c:platform_ok("api"), job.request_id, (c:price()) and "priced" or "unpriced")
]], sb.url, photo())))
  -- (LD_PRELOAD: the ASan runtime, in the sanitizer build only; T.sh would drop it)
  local st, out, err = T.sh("env -u EDITFLOW_STORAGE_URL -u EDITFLOW_API_URL LD_PRELOAD="
    .. T.quote(os.getenv("LD_PRELOAD") or "") .. " ASAN_OPTIONS=" .. T.quote(os.getenv("ASAN_OPTIONS") or "")
    .. " lua5.4 " .. T.quote(script))
  T.eq(st, 0, "ran: " .. tostring(err))
  local storage_ok, api_ok, id, priced = out:match("^(%S+)%s+(%S+)%s+(%S+)%s+(%S+)")
  T.eq(storage_ok, "false", "not keyed for fal storage")
  T.eq(api_ok, "false", "nor for fal's pricing API")
  T.match(inputs_of { id }[1].image_urls[1], "^data:", "sent inline")
  T.eq(priced, "priced", "priced from the shipped table")
  local after = sb.stats()
  T.eq(after.upload_initiates, before.upload_initiates, "no upload")
  T.eq(after.pricing_calls, before.pricing_calls, "no pricing call")
end)

T.case("--verbose never shows a signed upload URL's query", function()
  local lines = {}
  local c = client { verbose = function(line) lines[#lines + 1] = line end }
  local job = assert(c:submit { prompt = "p", image_urls = { photo() } })
  assert(job:wait())
  local text = table.concat(lines, "\n")
  T.contains(text, "PUT ", "the upload was traced")
  T.ok(not text:find("signature=", 1, true) and not text:find("sig=", 1, true), "no signature: " .. text)
end)

T.case("a file replaced in the same process is read and uploaded anew", function()
  local p = photo()
  local c = client()
  local j1 = assert(c:submit { prompt = "p", image_urls = { p } })
  assert(j1:wait())
  assert(core.write_file(p, T.read(A) .. "\0another content"))
  local j2 = assert(c:submit { prompt = "p", image_urls = { p } })
  assert(j2:wait())
  local u1 = inputs_of { j1.request_id }[1].image_urls[1]
  local u2 = inputs_of { j2.request_id }[1].image_urls[1]
  T.ok(u1 ~= u2, "another URL for another content")
  T.eq(get(u2), T.read(p), "the new bytes")
end)

T.case("a body prepared by another client is refused, not sent with a file name in it", function()
  local p = photo()
  local body = client():prepare { prompt = "p", image_urls = { p } }
  local before = sb.stats().by_route.submit
  local j, err = client():send(body)
  T.eq(j, nil, "not sent")
  T.eq(err.code, "NOT_SENT", "refused")
  T.eq(sb.stats().by_route.submit, before, "nothing submitted")
end)

T.case("jobs waiting for a failing upload share its failure", function()
  sb.control { fail_next = { route = "initiate", status = 500, count = 1000 } }
  local before = sb.stats().upload_initiates
  local c = client { retry = { base = 0.01, attempts = 2 } }
  local p = photo()
  local results = editflow.map({ 1, 2, 3, 4, 5, 6, 7, 8 }, function()
    local j, err = c:submit { prompt = "p", image_urls = { p } }
    return j and "sent" or err.code
  end)
  for i = 1, 8 do T.eq(results[i], "UPLOAD_FAILED", "job " .. i .. " failed") end
  T.eq(sb.stats().upload_initiates - before, 2, "one upload's tries, not eight")
  sb.control { reset_faults = true }
end)

-- ---- files nested in the input (fal-js's transformInput walks objects and lists) ----

local LORA = "fal-ai/qwen-image-edit-plus-lora"

-- A stand-in for a LoRA's weights: bytes of no image format, a content of its own.
local function weights()
  n = n + 1
  local path = string.format("%s/style-%d-%d.safetensors", work, n, os.time())
  assert(core.write_file(path, "\24\0\0\0\0\0\0\0{\"__metadata__\":{}}editflow-test-" .. n .. "-" .. tostring(os.clock())))
  return path
end

-- The Content-Type a URL is served with (the one its upload declared).
local function served_type(u)
  local _, out = T.sh("python3 -c 'import sys, urllib.request; "
    .. "print(urllib.request.urlopen(sys.argv[1]).headers.get(\"Content-Type\"))' " .. T.quote(u))
  return (out:gsub("%s+$", ""))
end

T.case("a LoRA model's loras[].path: a local file goes to fal storage once, as octet-stream", function()
  local before = sb.stats()
  local w, p = weights(), photo()
  local c = client { endpoint = LORA }
  local jobs = {}
  for i = 1, 2 do
    jobs[i] = assert(c:submit { prompt = "style " .. i, image_urls = { p }, loras = { { path = w, scale = 0.8 } } })
  end
  for i = 1, 2 do assert(jobs[i]:wait()) end
  local after = sb.stats()
  T.eq(after.upload_initiates - before.upload_initiates, 2, "one upload for the photo, one for the weights")
  T.eq(after.upload_credential_leaks, 0, "no credential with the bytes")
  local got = inputs_of { jobs[1].request_id, jobs[2].request_id }
  T.eq(#got, 2, "both jobs in the sandbox")
  local u = got[1].loras[1].path
  T.match(u, "^http://127%.0%.0%.1:%d+/media/", "loras[1].path is the file_url")
  T.eq(got[2].loras[1].path, u, "the same file_url in both jobs")
  T.eq(got[1].loras[1].scale, 0.8, "the scale as given")
  T.match(got[1].image_urls[1], "^http://127%.0%.0%.1:%d+/media/", "the photo uploaded too")
  T.ok(got[1].image_urls[1] ~= u, "each file its own URL")
  T.eq(get(u), T.read(w), "the uploaded bytes are the weights'")
  T.eq(served_type(u), "application/octet-stream", "no image type for weights")
  -- an image field still takes only images
  T.raises(function() c:prepare { prompt = "p", image_urls = { w } } end, "image_urls[1]: '" .. w .. "' is not a PNG")
end)

T.case("inline: a nested file becomes a data: URI; editflow.file works nested too", function()
  local before = sb.stats()
  local w1, w2 = weights(), weights()
  local c = client { endpoint = LORA, inline = true }
  local job = assert(c:submit { prompt = "p", image_urls = { photo() },
    loras = { { path = w1, scale = 0.8 }, { path = editflow.file(w2) } } })
  assert(job:wait())
  local input = inputs_of { job.request_id }[1]
  for i, w in ipairs { w1, w2 } do  -- (the sandbox's listing shows a data: URI's size)
    T.eq(input.loras[i].path, string.format("data:application/octet-stream;base64,<%d bytes>", #T.read(w)),
      "loras[" .. i .. "].path inline, with the file's bytes")
  end
  -- the data: URI itself, as prepared
  local body = c:prepare { prompt = "p", image_urls = { photo() }, loras = { { path = w1 } } }
  local wire = assert(storage.materialize(c, body))
  T.eq(require("editflow.inputs").decode_data_uri(json.decode(wire).loras[1].path), T.read(w1), "the bytes")
  T.eq(sb.stats().upload_initiates, before.upload_initiates, "no upload")
end)

T.case("nested: a prompt that reads like a file, and a path that names no file, are sent as written", function()
  local w = weights()
  local c = client { endpoint = LORA, inline = true }
  local body = c:prepare { prompt = "x", image_urls = { photo() }, loras = { { path = w } } }
  local name = json.decode(body).loras[1].path
  T.match(name, "^editflow%-file:sha256:%x+$", "planned under the file's content")
  local job = assert(c:submit { prompt = name, negative_prompt = w, image_urls = { photo() },
    loras = { { path = w }, { path = "some-user/some-style-lora", scale = 0.5 } } })
  assert(job:wait())
  local input = inputs_of { job.request_id }[1]
  T.eq(input.prompt, name, "the prompt untouched")
  T.eq(input.negative_prompt, w, "a text field naming a real file untouched")
  T.match(input.loras[1].path, "^data:application/octet%-stream;base64,", "the weights resolved")
  T.eq(input.loras[2].path, "some-user/some-style-lora", "a Hugging Face name as written")
end)

T.case("nested files respect max_file_bytes and name the field", function()
  local w = weights()
  local c = client { endpoint = LORA, max_file_bytes = 8 }
  local before = sb.stats().by_route.submit
  T.raises(function() c:submit { prompt = "p", image_urls = { "https://cdn.example/a.png" }, loras = { { path = w } } } end,
    "loras[1].path: cannot read file")
  T.raises(function() c:submit { prompt = "p", image_urls = { "https://cdn.example/a.png" },
    loras = { { path = editflow.file(work .. "/no-such.safetensors") } } } end, "loras[1].path: cannot read file")
  T.eq(sb.stats().by_route.submit, before, "nothing submitted")
end)

T.case("a re-run knows a LoRA job by the weights' content, not their path or upload URL", function()
  local w, p = weights(), photo()
  local d = T.tmpdir()
  local input = { prompt = "rerun", image_urls = { p }, loras = { { path = w, scale = 0.8 } }, seed = 11 }
  local _, j1 = assert(client { endpoint = LORA, journal = d }:edit(input))
  local u1 = inputs_of { j1.request_id }[1].loras[1].path
  T.match(u1, "^http://127%.0%.0%.1:%d+/media/", "first run uploaded the weights")
  local before = sb.stats()
  storage.forget()  -- a new process: nothing in memory
  os.execute("rm -rf " .. T.quote(os.getenv("XDG_CACHE_HOME") .. "/editflow/uploads"))  -- nor in the cache
  local _, j2 = assert(client { endpoint = LORA, journal = d }:edit(input))
  T.eq(j2.request_id, j1.request_id, "the same job, reused")
  local after = sb.stats()
  T.eq(after.by_route.submit, before.by_route.submit, "nothing submitted")
  T.eq(after.upload_initiates, before.upload_initiates, "nothing uploaded")
  -- other bytes at the same path: another job
  assert(core.write_file(w, T.read(w) .. "retrained"))
  storage.forget()
  local _, j3 = assert(client { endpoint = LORA, journal = d }:edit(input))
  T.ok(j3.request_id ~= j1.request_id, "new weights, a new job")
  T.eq(sb.stats().by_route.submit, before.by_route.submit + 1, "sent once")
  local u3 = inputs_of { j3.request_id }[1].loras[1].path
  T.ok(u3 ~= u1, "a new upload")
  T.eq(get(u3), T.read(w), "of the new bytes")
end)

T.case("file slots are found at any depth, by name or by the schema's file marks, never in text", function()
  local model = require "editflow.model"
  local str = { type = "string" }
  local doc = { paths = { ["/x/nested"] = { post = { requestBody = { content = { ["application/json"] = {
    schema = { ["$ref"] = "#/components/schemas/In" } } } } } } },
    components = { schemas = {
      Ref = { type = "object", properties = { image_url = { type = "string" }, weight = { type = "number" } } },
      In = { type = "object", required = { "prompt" }, properties = {
        prompt = str, style_path = { type = "string", enum = { "a.png", "b.png" } },
        refs = { type = "array", items = { ["$ref"] = "#/components/schemas/Ref" } },
        control = { anyOf = { { ["$ref"] = "#/components/schemas/Ref" }, { type = "null" } } },
        masks = { type = "object", additionalProperties = { type = "array", items = { type = "string" } } },
        mask_urls_by_name = { type = "object", additionalProperties = { type = "string", format = "uri" } },
        extra = { type = "object", properties = { blob = { type = "string", ["x-fal-file-input"] = true },
          caption = str } },
      } },
    } } }
  local m = assert(model.compile(doc, "x/nested"))
  T.eq(m:image_field(), nil, "no top-level image field")
  local c = client { inline = true }
  c._model = m  -- (the client's model, as editflow.schema would give it)
  local p, w = photo(), weights()
  local body = json.decode(c:prepare {
    prompt = p, style_path = "a.png",
    refs = { { image_url = p, weight = 1 }, { image_url = "https://cdn.example/r.png" } },
    control = { image_url = editflow.file(p) },
    masks = { any = { p } },
    mask_urls_by_name = { face = p },
    extra = { blob = w, caption = w } })
  local name = "^editflow%-file:sha256:%x+$"
  T.eq(body.prompt, p, "the prompt as written")
  T.eq(body.style_path, "a.png", "an enum is no file")
  T.match(body.refs[1].image_url, name, "refs[1].image_url (array of $ref objects)")
  T.eq(body.refs[2].image_url, "https://cdn.example/r.png", "a URL as it is")
  T.match(body.control.image_url, name, "control.image_url (anyOf)")
  T.eq(body.masks.any[1], p, "a list under a name that says no file: as written")
  T.match(body.mask_urls_by_name.face, name, "format uri under additionalProperties")
  T.match(body.extra.blob, name, "x-fal-file-input")
  T.eq(body.extra.caption, w, "a text field naming a file: as written")
  -- image slots keep their image check, by the name holding them
  T.raises(function() c:prepare { prompt = "p", refs = { { image_url = w } } } end,
    "refs[1].image_url: '" .. w .. "' is not a PNG")
  T.raises(function() c:prepare { prompt = "p", extra = { caption = editflow.file(p) } } end, "extra.caption")
end)

T.run()
