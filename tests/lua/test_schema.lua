-- test_schema.lua: every fal edit model by its schema (fetched from the sandbox's OpenAPI
-- route, cached, or shipped), priced in its own unit (the sandbox's pricing API, cached, or
-- the shipped table), exact 64-bit seeds, and fal's per-request preference headers.
local T = require "testlib"
local editflow = require "editflow"
local json = require "editflow.json"
local schema = require "editflow.schema"
local price = require "editflow.price"
local events = require "editflow.events"

local sb = T.sandbox { "--job-time", "0.02" }
local DOC_URL = sb.url .. "/api/openapi/queue/openapi.json"
local URL = "https://cdn.example/a.png"
local A = T.source_dir .. "/tests/fixtures/a.png"

local function client(extra)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", poll_interval = 0.02 }
  for k, v in pairs(extra or {}) do o[k] = v end
  return editflow.client(o)
end

local function warnings_during(fn)
  local seen = {}
  local off = events.subscribe(function(name, _, info)
    if name == "warning" then seen[#seen + 1] = tostring(info) end
  end)
  local ok, err = pcall(fn)
  off()
  if not ok then error(err, 0) end
  return seen
end

T.case("shipped schemas validate other models offline, naming the field, sending nothing", function()
  local before = sb.stats().requests
  local nano = client { endpoint = "fal-ai/nano-banana/edit", schema_url = false }
  T.eq(nano:model().source, "shipped", "the shipped copy")
  T.raises(function() nano:prepare { prompt = "p", image_urls = { URL }, aspect_ratio = "7:5" } end,
    "aspect_ratio must be one of")
  T.raises(function() nano:prepare { prompt = "p", image_urls = { URL }, num_inference_steps = 30 } end,
    "unknown field 'num_inference_steps' for fal-ai/nano-banana/edit")
  local kontext = client { endpoint = "fal-ai/flux-pro/kontext", schema_url = false }
  T.eq(kontext:model():image_field(), "image_url", "Kontext takes one image_url")
  T.raises(function() kontext:prepare { prompt = "p", image_urls = { URL } } end, "image_url is required")
  local orig = client { endpoint = "fal-ai/qwen-image-edit", schema_url = false }
  T.raises(function() orig:prepare { prompt = "p", image_url = URL, num_inference_steps = 60 } end,
    "num_inference_steps must be an integer 2..50, got 60")
  T.eq(json.decode(orig:prepare { prompt = "p", image_url = URL, acceleration = "high" }).acceleration, "high",
    "the original model takes acceleration = high")
  local lora = client { endpoint = "fal-ai/qwen-image-edit-plus-lora", schema_url = false }
  T.raises(function() lora:prepare { prompt = "p", image_urls = { URL }, loras = { { scale = 1 } } } end,
    "loras[1].path is required")
  T.eq(sb.stats().requests, before, "nothing reached the sandbox")
end)

T.case("a schema fetched from fal wins over the shipped one, and is cached on disk", function()
  schema.forget()
  local cache = T.tmpdir()
  local doc = json.decode(require(require("editflow.catalog")["fal-ai/qwen-image-edit-plus"].schema))
  local input = doc.components.schemas[doc.paths["/fal-ai/qwen-image-edit-plus"].post.requestBody
    .content["application/json"].schema["$ref"]:match("[^/]+$")]
  input.properties.num_images.maximum = 2  -- fal changed its mind: the fetched copy says so
  sb.control { schema = { endpoint_id = "fal-ai/qwen-image-edit-plus", doc = doc } }
  local calls = sb.stats().schema_calls
  local c = client { schema_url = DOC_URL }
  local m = schema.model("fal-ai/qwen-image-edit-plus", { schema_url = DOC_URL, cache_dir = cache })
  T.eq(m.source, "fetched", "fetched")
  T.raises(function() m:validate { prompt = "p", image_urls = { URL }, num_images = 3 } end,
    "num_images must be an integer 1..2, got 3")
  T.eq(sb.stats().schema_calls, calls + 1, "one fetch")
  T.ok(T.exists(cache .. "/schemas/fal-ai_2fqwen-image-edit-plus.json"), "cached on disk")
  schema.forget()  -- a new process, as it were
  m = schema.model("fal-ai/qwen-image-edit-plus", { schema_url = DOC_URL, cache_dir = cache })
  T.eq(m.source, "cache", "from the cache")
  T.eq(sb.stats().schema_calls, calls + 1, "no second fetch")
  -- the client's own model comes the same way (its cache is the XDG one)
  T.raises(function() c:prepare { prompt = "p", image_urls = { URL }, num_images = 3 } end, "1..2")
  sb.control { schema = { endpoint_id = "fal-ai/qwen-image-edit-plus", doc = json.null } }
  schema.forget()
end)

T.case("an endpoint only fal knows is validated by its fetched schema", function()
  schema.forget()
  local c = client { endpoint = "sandbox/strict-edit", schema_url = DOC_URL }
  T.eq(c:model().source, "fetched", "fetched")
  T.raises(function() c:prepare { prompt = "p", image_urls = { URL } } end, "strength is required")
  T.raises(function() c:prepare { prompt = "p", image_urls = { URL }, strength = 2 } end,
    "strength must be a number 0..1, got 2")
  local result = assert(c:edit { prompt = "p", image_urls = { URL }, strength = 0.5 })
  T.eq(#result.images, 1, "and runs")
end)

T.case("no schema anywhere: sent unchecked, with one warning", function()
  schema.forget()
  local c = client { endpoint = "someone/unknown-edit", schema_url = DOC_URL }
  local seen = warnings_during(function()
    c:prepare { prompt = "p", image_urls = { URL }, whatever = 1 }
    c:prepare { prompt = "q", image_urls = { URL } }
    client({ endpoint = "someone/unknown-edit", schema_url = DOC_URL }):prepare { prompt = "r" }
  end)
  T.eq(#seen, 1, "one warning: " .. table.concat(seen, " | "))
  T.contains(seen[1], "no schema for someone/unknown-edit", "naming the endpoint")
end)

T.case("fal unreachable: the shipped schema, and no new try for an hour", function()
  schema.forget()
  local cache = T.tmpdir()
  sb.control { fail_next = { route = "schema", status = 500, count = 5 } }
  local calls = sb.stats().schema_calls
  local m
  local seen = warnings_during(function()
    m = schema.model("fal-ai/qwen-image-edit-2511", { schema_url = DOC_URL, cache_dir = cache })
  end)
  T.eq(m.source, "shipped", "fell back to the shipped copy")
  T.eq(#seen, 1, "said so")
  T.eq(sb.stats().schema_calls, calls + 1, "one try")
  schema.forget()
  m = schema.model("fal-ai/qwen-image-edit-2511", { schema_url = DOC_URL, cache_dir = cache })
  T.eq(m.source, "shipped", "still the shipped copy")
  T.eq(sb.stats().schema_calls, calls + 1, "a failed fetch is not repeated at once")
  sb.control { reset_faults = true }
  schema.forget()
end)

T.case("prices: the pricing API (Key only), then its cache, then the shipped table", function()
  price.forget()
  local before = sb.stats().pricing_calls
  local c = client { api_url = sb.url }
  local p = assert(price.lookup(c))
  T.eq(p.source, "pricing API", "from the API")
  T.eq(p.unit_price, 0.03, "its price")
  T.eq(sb.stats().pricing_calls, before + 1, "one call")
  price.forget()
  p = assert(price.lookup(c))
  T.eq(p.source, "pricing API, cached", "then from the cache")
  T.eq(sb.stats().pricing_calls, before + 1, "no second call")
  price.forget()
  -- a proxy token never goes to fal's pricing API: the shipped table
  local bearer = client { auth = "bearer", key = "proxy-token", api_url = sb.url .. "/elsewhere" }
  p = assert(price.lookup(bearer))
  T.eq(p.source, "shipped", "a proxy prices from the shipped table")
  T.eq(sb.stats().pricing_calls, before + 1, "without asking")
  -- unreachable: the shipped table
  local dead = client { api_url = "http://127.0.0.1:9" }
  p = assert(price.lookup(dead))
  T.eq(p.source, "shipped", "the shipped table when the API cannot be reached")
  price.forget()
end)

T.case("each job priced in its endpoint's unit: per image, per megapixel of the real output", function()
  price.forget()
  sb.control { price = { endpoint_id = "fal-ai/nano-banana/edit", unit_price = 0.039, unit = "image" } }
  local nano = client { endpoint = "fal-ai/nano-banana/edit" }
  local p = assert(price.lookup(nano))
  T.eq(p.unit, "image", "per image")
  local est = price.estimate(p, nano:model(), { prompt = "p", image_urls = { URL }, num_images = 3 })
  T.ok(math.abs(est.cost - 3 * 0.039) < 1e-12, "three images")
  -- qwen 2511: the output follows the input's size when image_size is not given
  local q = client { endpoint = "fal-ai/qwen-image-edit-2511" }
  local qp = assert(price.lookup(q))
  local w, h = require("editflow.core").image_size(T.read(A))
  est = price.estimate(qp, q:model(), { prompt = "p", image_urls = { A } })
  T.ok(math.abs(est.megapixels - w * h / 1e6) < 1e-12, "the input image's size")
  T.eq(est.approx, false, "known exactly")
  est = price.estimate(qp, q:model(), { prompt = "p", image_urls = { URL } })
  T.eq(est.approx, true, "an input by URL: an assumed size, and said so")
  est = price.estimate(qp, q:model(), { prompt = "p", image_urls = { A }, image_size = "landscape_4_3", num_images = 2 })
  T.ok(math.abs(est.cost - 2 * 1024 * 768 / 1e6 * qp.unit_price) < 1e-12, "an asked size, two images")
  sb.control { price = { endpoint_id = "fal-ai/nano-banana/edit", unit_price = json.null } }
  price.forget()
end)

T.case("a seed above 2^53 survives exactly: request, result, manifest", function()
  local seed = 196619188014358660
  T.eq(math.type(seed), "integer", "a Lua integer")
  local d = T.tmpdir()
  local s = editflow.experiment { name = "seeds", out = d, client = client(), prompt = "p",
    images = { URL }, seeds = { seed }, params = { image_size = "square" } }
  T.eq(s.done, 1, "done")
  local job = sb.jobs()[#sb.jobs()]
  T.eq(job.input.seed, seed, "the request carried it exactly")
  local manifest = T.read(d .. "/seeds/manifest.jsonl")
  T.contains(manifest, '"seed":196619188014358660', "the manifest too")
  T.eq(json.decode(manifest:match("[^\n]+")).seed, seed, "and reads back exactly")
  -- an explicit seed asks for that image: no fallback model
  T.eq(job.headers["x-fal-disable-fallbacks"], "true", "X-Fal-Disable-Fallbacks sent")
end)

T.case("fal's request preferences are client options", function()
  local c = client { store_io = false, object_lifecycle = 3600, disable_fallbacks = false }
  local job = assert(c:submit { prompt = "p", image_urls = { URL }, seed = 5 })
  assert(job:wait())
  local seen
  for _, j in ipairs(sb.jobs()) do if j.request_id == job.request_id then seen = j end end
  T.eq(seen.headers["x-fal-store-io"], "0", "X-Fal-Store-IO: 0")
  T.eq(seen.headers["x-fal-object-lifecycle-preference"], '{"expiration_duration_seconds":3600}', "output lifetime")
  T.eq(seen.headers["x-fal-disable-fallbacks"], nil, "fallbacks allowed when asked")
  T.raises(function() client { object_lifecycle = 1.5 } end, "object_lifecycle must be a whole number")
end)

T.case("a fetched schema that is broken falls back to the shipped copy, without a traceback", function()
  schema.forget()
  local doc = json.decode(require(require("editflow.catalog")["fal-ai/qwen-image-edit-2511"].schema))
  for _, comp in pairs(doc.components.schemas) do
    if comp.properties and comp.properties.image_size then
      comp.properties.image_size = { ["$ref"] = "#/components/schemas/Nowhere" }
    end
  end
  sb.control { schema = { endpoint_id = "fal-ai/qwen-image-edit-2511", doc = doc } }
  local m
  local seen = warnings_during(function()
    m = schema.model("fal-ai/qwen-image-edit-2511", { schema_url = DOC_URL, cache_dir = T.tmpdir() })
  end)
  T.eq(m.source, "shipped", "the shipped copy")
  T.contains(seen[1] or "", "Nowhere", "the warning says what is broken")
  sb.control { schema = { endpoint_id = "fal-ai/qwen-image-edit-2511", doc = json.null } }
  schema.forget()
end)

T.case("odd but valid schemas: optional fields, numeric enums, both kinds of exclusive bounds", function()
  local doc = { openapi = "3.1.0", paths = { ["/x/y"] = { post = { requestBody = { content = {
    ["application/json"] = { schema = { ["$ref"] = "#/components/schemas/In" } } } } } } },
    components = { schemas = { In = { type = "object", required = { "prompt" }, properties = {
      prompt = { type = "string" },
      seed = { anyOf = { { type = "integer", minimum = 0 }, { type = "null" } } },
      n = { enum = { 1, 2, 4 } },
      strength = { type = "number", minimum = 0.5, exclusiveMinimum = 0 },
      t = { type = "number", maximum = 1, exclusiveMaximum = true },
      mask_urls = { anyOf = { { type = "array", items = { type = "string" } }, { type = "null" } } },
      bad = { type = "integer", minimum = "1" },
    } } } } }
  local m = assert(require("editflow.model").compile(doc, "x/y"))
  T.eq(m:field("seed").type, "integer", "an optional integer is an integer")
  T.eq(m:field("n").type, "integer", "a numeric enum is a number")
  T.eq(m.files.mask_urls, "list", "an optional list of URLs is a file list")
  T.eq(m:validate({ prompt = "p", seed = 5 }).seed, 5, "optional integer accepted")
  T.eq(m:validate({ prompt = "p", seed = json.null }).seed, json.null, "and null")
  T.raises(function() m:validate { prompt = "p", n = 3 } end, "n must be one of 1, 2, 4, got 3")
  T.raises(function() m:validate { prompt = "p", strength = 0.2 } end, "strength must be a number >= 0.5, got 0.2")
  T.raises(function() m:validate { prompt = "p", t = 1 } end, "t must be a number < 1, got 1")
  T.eq(m:validate({ prompt = "p", bad = 0 }).bad, 0, "a bound that is not a number is no bound")
end)

T.case("budgets hold: an upper bound for up-to counts, no budget on a guessed size", function()
  price.forget()
  sb.control { price = { endpoint_id = "fal-ai/bytedance/seedream/v4/edit", unit_price = 0.03, unit = "image" } }
  local sd = client { endpoint = "fal-ai/bytedance/seedream/v4/edit" }
  local est = price.estimate(assert(price.lookup(sd)), sd:model(),
    { prompt = "p", image_urls = { URL }, num_images = 2, max_images = 4 })
  T.eq(est.images, 8, "up to 2 x 4 images")
  T.ok(math.abs(est.cost - 8 * 0.03) < 1e-12, "the most it can cost")
  sb.control { price = { endpoint_id = "fal-ai/bytedance/seedream/v4/edit", unit_price = json.null } }
  local before = sb.stats().by_route.submit
  T.raises(function()
    editflow.experiment { name = "guess", out = T.tmpdir(), client = client { endpoint = "fal-ai/qwen-image-edit-2511" },
      prompt = "p", images = { URL }, max_cost = 10 }
  end, "cannot keep max_cost: the cost is an estimate")
  T.eq(sb.stats().by_route.submit, before, "nothing sent")
  price.forget()
end)

T.run()
