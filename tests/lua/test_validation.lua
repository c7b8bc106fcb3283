-- test_validation.lua: every field of SPEC §3 is checked before anything is sent, and the
-- message names the field and what it accepts. A sandbox counts requests to prove nothing
-- left the client.
local T = require "testlib"
local editflow = require "editflow"
local json = require "editflow.json"

local sb = T.sandbox()
local client = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key" }
local IMG = T.source_dir .. "/tests/fixtures/a.png"

local function input(extra)
  local t = { prompt = "p", image_urls = { "https://cdn.example/a.png" } }
  for k, v in pairs(extra) do t[k] = v end
  return t
end

local function rejects(extra, want)
  return T.raises(function() client:submit(input(extra)) end, want)
end

local BAD = {
  { { prompt = false }, "prompt must be a non-empty string, got false" },
  { { prompt = "   " }, "prompt must be a non-empty string" },
  { { image_urls = {} }, "image_urls must be a list of 1 to 3 images, got an empty table" },
  { { image_urls = { "a", "b", "c", "d" } }, "image_urls must be a list of 1 to 3 images, got a list of 4" },
  { { seed = -1 }, "seed must be an integer >= 0, got -1" },
  { { image_urls = { 42 } }, "image_urls[1] must be an image URL, a local path or editflow.file(path), got 42" },
  { { image_urls = { T.source_dir .. "/tests/fixtures/missing.png" } }, "image_urls[1]: cannot read image" },
  { { image_urls = { T.source_dir .. "/tests/fixtures/not-an-image.png" } }, "is not a PNG, JPEG, GIF or WebP image" },
  { { image_urls = { T.source_dir .. "/tests/fixtures" } }, "image_urls[1]: cannot read image" },
  -- the shapes and ranges of fal's schema (the shipped copy, as fal publishes it)
  { { image_size = "huge" }, "image_size must be a table {height=, width=} or one of square_hd, square, portrait_4_3" },
  { { image_size = { width = 0, height = 10 } }, "image_size.width must be an integer > 0 and <= 14142, got 0" },
  { { image_size = { width = 512, height = 20000 } }, "image_size.height must be an integer > 0 and <= 14142, got 20000" },
  { { image_size = { width = 512, height = 512, depth = 3 } }, "image_size.depth is not a field of image_size (accepted: height, width)" },
  { { num_inference_steps = 1 }, "num_inference_steps must be an integer 2..100, got 1" },
  { { num_inference_steps = 101 }, "num_inference_steps must be an integer 2..100, got 101" },
  { { num_inference_steps = 2.5 }, "num_inference_steps must be an integer 2..100, got 2.5" },
  { { guidance_scale = 21 }, "guidance_scale must be a number 0..20, got 21" },
  { { guidance_scale = "4" }, "guidance_scale must be a number 0..20, got '4'" },
  { { num_images = 7 }, "num_images must be an integer 1..4, got 7" },
  { { num_images = 0 }, "num_images must be an integer 1..4, got 0" },
  { { seed = 2.5 }, "seed must be an integer >= 0, got 2.5" },
  { { seed = "1" }, "seed must be an integer >= 0, got '1'" },
  { { sync_mode = "yes" }, "sync_mode must be true or false, got 'yes'" },
  { { enable_safety_checker = 1 }, "enable_safety_checker must be true or false, got 1" },
  { { output_format = "gif" }, "output_format must be one of jpeg, png, got 'gif'" },
  { { negative_prompt = 3 }, "negative_prompt must be a string, got 3" },
  { { acceleration = "fast" }, "acceleration must be one of none, regular, got 'fast'" },
  { { prompt = "caf\233" }, "prompt must be valid UTF-8 text" },
  { { num_image = 2 }, "unknown field 'num_image' for fal-ai/qwen-image-edit-plus (accepted: prompt, image_urls," },
}

T.case("each invalid field is named with what it accepts", function()
  for _, c in ipairs(BAD) do rejects(c[1], c[2]) end
end)

T.case("required fields", function()
  T.raises(function() client:submit { image_urls = { "https://x/a.png" } } end, "prompt is required")
  T.raises(function() client:submit { prompt = "p" } end, "image_urls is required")
  T.raises(function() client:submit "p" end, "input must be a table")
end)

T.case("nothing reached the server while validating", function()
  local s = sb.stats()
  T.eq(s.by_route.submit, 0, "submits seen by the sandbox")
  T.eq(s.requests, 0, "requests seen by the sandbox")
end)

T.case("valid inputs normalise: portrait spellings, integers, local files by their content", function()
  local body = json.decode(client:prepare(input {
    image_size = "portrait_3_4", num_images = 2.0, image_urls = { IMG, editflow.file(IMG) },
  }))
  T.eq(body.image_size, "portrait_4_3", "the proxy's portrait_3_4 is sent as fal's name")
  T.eq(json.decode(client:prepare(input { image_size = "portrait_9_16" })).image_size, "portrait_16_9", "9:16")
  T.eq(math.type(body.num_images), "integer", "2.0 becomes 2")
  -- until it is sent, a local file is named by its SHA-256 (the journal's identity of the job)
  local sha = (require("editflow.core").sha256(T.read(IMG)):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
  T.eq(body.image_urls[1], "editflow-file:sha256:" .. sha, "a path is named by its content")
  T.eq(body.image_urls[1], body.image_urls[2], "editflow.file(path) is the same image")
  local sized = json.decode(client:prepare(input { image_size = { width = 640, height = 480 } }))
  T.eq(sized.image_size.width, 640, "custom size")
end)

-- The body the client would send for these fields (the field values, decoded), or the raise.
local function sent(extra) return json.decode(client:prepare(input(extra))) end

T.case("values exactly at fal's limits are accepted, and sent as given", function()
  local at = {
    { "num_inference_steps", 2 }, { "num_inference_steps", 100 },   -- integer 2..100
    { "num_images", 1 }, { "num_images", 4 },                       -- integer 1..4
    { "guidance_scale", 0 }, { "guidance_scale", 20 }, { "guidance_scale", 20.0 }, { "guidance_scale", 2.5 },
    { "seed", 0 }, { "seed", math.maxinteger },                      -- integer >= 0
  }
  for _, c in ipairs(at) do
    local name, v = c[1], c[2]
    T.eq(sent({ [name] = v })[name], v, name .. " = " .. tostring(v) .. " is accepted")
  end
  -- image_size.width and height: exclusiveMinimum 0, maximum 14142
  local size = sent({ image_size = { width = 14142, height = 1 } }).image_size
  T.eq(size.width .. "x" .. size.height, "14142x1", "14142 and 1 are accepted")
  rejects({ image_size = { width = 14143, height = 1 } }, "image_size.width must be an integer > 0 and <= 14142, got 14143")
  -- image_urls: 1 to 3
  T.eq(#sent({ image_urls = { "https://cdn.example/1.png" } }).image_urls, 1, "one image")
  T.eq(#sent({ image_urls = { "https://cdn.example/1.png", "https://cdn.example/2.png",
    "https://cdn.example/3.png" } }).image_urls, 3, "three images")
  -- integers: an integral float is the integer; a seed above 2^53 goes out exactly
  T.eq(math.type(sent({ num_images = 4.0 }).num_images), "integer", "4.0 is the integer 4")
  local big = 9007199254740993  -- 2^53 + 1: no double holds it
  T.contains(client:prepare(input { seed = big }), '"seed":9007199254740993', "2^53 + 1, exactly")
  rejects({ guidance_scale = 20.000001 }, "guidance_scale must be a number 0..20, got 20.000001")
  rejects({ num_images = 4.5 }, "num_images must be an integer 1..4, got 4.5")
  T.eq(sb.stats().requests, 0, "nothing was sent")
end)

T.case("a schema's limits: inclusive ones accept the limit, exclusive ones refuse it (both OpenAPI forms)", function()
  local model = require "editflow.model"
  local doc = { openapi = "3.1.0", paths = { ["/x/limits"] = { post = { requestBody = { content = {
    ["application/json"] = { schema = { ["$ref"] = "#/components/schemas/In" } } } } } } },
    components = { schemas = { In = { type = "object", properties = {
      steps = { type = "integer", minimum = -3, maximum = 7 },
      weight = { type = "number", minimum = 0.5, maximum = 1.5 },
      open31 = { type = "number", exclusiveMinimum = 0, exclusiveMaximum = 1 },       -- 3.1: numbers
      open30 = { type = "integer", minimum = 0, maximum = 10, exclusiveMinimum = true,  -- 3.0: flags
        exclusiveMaximum = true },
      code = { type = "string", minLength = 2, maxLength = 4 },
      tags = { type = "array", items = { type = "integer" }, minItems = 1, maxItems = 2 },
      n = { type = "integer" },
    } } } } }
  local m = assert(model.compile(doc, "x/limits"))
  local function accepted(field, v, want)
    local got = m:validate({ [field] = v })[field]
    if want == nil then want = v end
    if type(want) == "table" then got, want = json.encode(got), json.encode(want) end
    T.eq(got, want, field .. " = " .. json.encode(v) .. " is accepted")
  end
  local function refused(field, v, msg)
    T.raises(function() m:validate { [field] = v } end, field .. " must " .. msg .. ", got ")
  end
  accepted("steps", -3) accepted("steps", 7)
  refused("steps", -4, "be an integer -3..7") refused("steps", 8, "be an integer -3..7")
  accepted("weight", 0.5) accepted("weight", 1.5)
  refused("weight", 0.49, "be a number 0.5..1.5") refused("weight", 1.51, "be a number 0.5..1.5")
  accepted("open31", 0.001) accepted("open31", 0.999)
  refused("open31", 0, "be a number > 0 and < 1") refused("open31", 1, "be a number > 0 and < 1")
  accepted("open30", 1) accepted("open30", 9)
  refused("open30", 0, "be an integer > 0 and < 10") refused("open30", 10, "be an integer > 0 and < 10")
  accepted("code", "ab") accepted("code", "abcd") accepted("code", "\u{e9}\u{20ac}\u{1f600}\u{e9}")
  refused("code", "a", "have at least 2 characters") refused("code", "abcde", "have at most 4 characters")
  accepted("tags", { 1 }) accepted("tags", { 1, 2 })
  refused("tags", json.array {}, "have at least 1 item") refused("tags", { 1, 2, 3 }, "have at most 2 items")
  -- integer or number
  accepted("n", 2.0, 2)
  T.eq(math.type(m:validate({ n = 2.0 }).n), "integer", "2.0 becomes the integer 2")
  accepted("n", 2.0 ^ 60, 1 << 60)
  accepted("n", 9007199254740993)
  refused("n", 2.5, "be an integer") refused("n", "2", "be an integer") refused("n", 1e300, "be an integer")
end)

T.case("client options are checked", function()
  T.raises(function() editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "k", auth = "basic" } end,
    "auth must be 'key' (fal) or 'bearer' (proxies), got 'basic'")
  T.raises(function() editflow.client { base_url = "ftp://x", key = "k" } end, "base_url: unsupported URL scheme 'ftp'")
  T.raises(function() editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "k", endpoint = "../x" } end, "endpoint must look like")
  T.raises(function() editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "k", timeuot = 3 } end, "unknown option 'timeuot'")
  T.raises(function() editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "a\nb" } end, "key must be a string without CR, LF or NUL")
  T.raises(function() editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url } end, "no credential: set FAL_KEY")
  T.raises(function() client:job("../../etc") end, "request_id must be")
end)

T.case("unknown endpoints pass fields through but still check images", function()
  local other = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "k", endpoint = "someone/else" }
  local body = json.decode(other:prepare { anything = 1, image_urls = { IMG } })
  T.eq(body.anything, 1, "extra field passed")
  T.match(body.image_urls[1], "^editflow%-file:sha256:%x+$", "file read and named")
  T.raises(function() other:prepare { image_url = T.source_dir .. "/nope.png" } end, "image_url: cannot read image")
end)

T.case("a prompt over 50,000 bytes is refused before anything is sent", function()
  local before = sb.stats().requests
  T.raises(function() client:prepare { prompt = ("x"):rep(50001), image_urls = { "https://cdn.example/a.png" } } end,
    "prompt must be at most 50000 bytes, got 50001")
  T.eq(sb.stats().requests, before, "nothing sent")
end)

T.run()
