-- test_judge.lua: the experiment judge (editflow.experiment.judge): its strict reading of an
-- answer, the input it builds for a list-field and a one-image-field model (real submits the
-- sandbox validates), and whole judge calls against the sandbox's deterministic judge: the
-- predicted score, recorded errors that never raise, the price, and no second submit for an
-- output already judged in the folder (a re-run, before or after its run completed).
local T = require "testlib"
local editflow = require "editflow"
local judge = require "editflow.experiment.judge"
local core = require "editflow.core"
local json = require "editflow.json"
local errors = require "editflow.errors"

local A = T.source_dir .. "/tests/fixtures/a.png"
local B = T.source_dir .. "/tests/fixtures/b.png"
local VLM = judge.DEFAULT_ENDPOINT
local sb = T.sandbox { "--job-time", "0.01", "--workers", "4" }
local DOC_URL = sb.url .. "/api/openapi/queue/openapi.json"

local function client(opts)
  local o = { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key", endpoint = VLM,
    schema_url = false }
  for k, v in pairs(opts or {}) do o[k] = v end
  return editflow.client(o)
end

local function submits(endpoint) return sb.stats().submits_by_endpoint[endpoint] or 0 end

local function job_input(request_id)
  local list = sb.jobs()
  for _, j in ipairs(list.jobs or list) do
    if j.request_id == request_id then return j.input, j end
  end
end

T.case("parse: the forms asked for are read, whole", function()
  local ok = {
    { '{"score": 7, "reason": "follows the prompt"}', 7 },
    { '  {"score": 7.5}\n', 7.5 },
    { '{"score": 0, "reason": "nothing changed"}', 0 },
    { '{"score": 10}', 10 },
    { '{"score": 7.0}', 7 },
    { '```json\n{"score": 8, "reason": "x"}\n```', 8 },
    { 'Here is my grade.\n```json\n{"score": 3}\n```\nThanks.', 3 },
    { '```\n{"score": 4}\n```', 4 },
    { 'Score: 6', 6 },
    { 'score: 6/10', 6 },
    { 'Score: 6 / 10.', 6 },
    { 'The sky is blue now.\nScore: 9\nReason: clean edit', 9 },
    { 'Score: 7/10\n```json\n{"score": 7}\n```', 7 },
  }
  for _, c in ipairs(ok) do
    local score, text = judge.parse { output = c[1] }
    T.eq(score, c[2], "score of " .. c[1])
    T.ok(type(text) == "string" and not text:find("\n"), "the text is kept, on one line: " .. c[1])
  end
  local int = judge.parse { output = '{"score": 7.0}' }
  T.eq(math.type(int), "integer", "a whole score is an integer")
  local long = "Score: 5\nReason: \27[2Jx" .. ("\u{e9}"):rep(1500)  -- (a character at byte 2000)
  local score, text = judge.parse { output = long }
  T.eq(score, 5, "a long answer is read")
  T.ok(#text <= judge.MAX_TEXT and #text > judge.MAX_TEXT - 4, "and kept cut to 2000 bytes: " .. #text)
  T.ok(utf8.len(text) ~= nil, "never inside a character")
  T.ok(not text:find("\27", 1, true) and text:find("\\x1B", 1, false), "an escape shown, not obeyed")
end)

T.case("parse: anything else is unreadable, never a guessed number", function()
  local refused = {
    { "The edit deserves 8 out of 10.", "no score" },
    { "I would rate it 7.", "no score" },
    { "", "no score" },
    { "7", "no score" },
    { '[{"score": 7}]', "no score" },
    { '{"reason": "no score given"}', "no score" },
    { 'Sure! {"score": 7, "reason": "inline, not the whole answer"}', "no score" },
    { "**Score:** 8", "no score" },
    { "Score: 7 because it follows the prompt", "no score" },
    { '{"score": "7"}', "not a number" },
    { '{"score": true}', "not a number" },
    { '{"score": 11}', "outside 0..10" },
    { '{"score": -1}', "outside 0..10" },
    { '{"score": 1e999}', "" },
    { "Score: 12", "outside 0..10" },
    { "Score: 8/5", "not of 10" },
    { "Score: 7\nScore: 8", "two different scores" },
    { '```json\n{"score": 7}\n```\n```json\n{"score": 8}\n```', "two different scores" },
    { '{"score": 7}\nScore: 8', "two different scores" },
    { '{"score": 7, "reason": "a score: 3 would be unfair"}', "two different scores" },
    { '{"score": 7, "score": 8}', "two different scores" },
  }
  for _, c in ipairs(refused) do
    local score, err = judge.parse { output = c[1] }
    T.eq(score, nil, "no score from " .. c[1])
    T.contains(err, "unreadable judge answer: ", c[1])
    T.contains(err, c[2], c[1])
  end
  for _, r in ipairs { {}, { output = 7 }, { images = {} }, "text" } do
    local score, err = judge.parse(r)
    T.eq(score, nil, "no text in output")
    T.contains(err, "no text in output", "says where it looked")
  end
  local score, err = judge.parse { output = '{"score": 7}', partial = true }
  T.eq(score, nil, "a partial answer")
  T.contains(err, "partial", "is not read")
end)

T.case("check and new refuse what cannot work, naming the option", function()
  T.ok(judge.check { endpoint = VLM }, "the default endpoint")
  T.raises(function() judge.check { endpoint = "no-slash" } end, "judge: endpoint must be")
  T.raises(function() judge.check {} end, "judge: endpoint must be")
  T.raises(function() judge.check { endpoint = VLM, rubric = "  " } end, "rubric must be a non-empty text")
  T.raises(function() judge.check { endpoint = VLM, model = 5 } end, "model must be a non-empty text")
  T.raises(function() judge.check { endpoint = VLM, params = { prompt = "x" } } end, "may not set prompt")
  T.raises(function() judge.check { endpoint = VLM, endpint = VLM } end, "unknown option 'endpint'")
  T.raises(function() judge.check { endpoint = VLM, price = "cheap" } end, "price must be dollars")
  T.raises(function() judge.new({ endpoint = VLM }, client { endpoint = "fal-ai/nano-banana/edit" }) end,
    "the client is for 'fal-ai/nano-banana/edit'")
  T.raises(function() judge.new({ endpoint = VLM, params = { image_urls = {} } }, client()) end,
    "may not set image_urls")
  local J = judge.new({ endpoint = VLM }, client())
  T.raises(function() J:input { prompt = "p", inputs = { A } } end, "ctx.output must be")
  T.raises(function() J:score { output = A } end, "ctx.prompt must be")
end)

-- A one-image VLM and a list VLM taking at most two images: documents the sandbox serves and
-- validates submits against.
local function vlm_doc(id, field, schema)
  return { openapi = "3.0.4", info = { title = id, version = "1", ["x-fal-metadata"] = { endpointId = id } },
    components = { schemas = { In = { type = "object", title = "In",
      ["x-fal-order-properties"] = { "prompt", field },
      properties = { prompt = { type = "string", title = "Prompt" }, [field] = schema },
      required = { "prompt", field }, additionalProperties = false } } },
    paths = { ["/" .. id] = { post = { requestBody = { required = true, content = { ["application/json"] = {
      schema = { ["$ref"] = "#/components/schemas/In" } } } } } } } }
end

T.case("input: a list field gets the inputs then the output; a one-image field the output only", function()
  local d = T.tmpdir()
  local out = T.new_photo(d, "out")
  local J = judge.new({ endpoint = VLM, model = "google/gemini-2.5-flash", rubric = "Is the sky blue?" }, client())
  local input = J:input { prompt = "make the sky blue", inputs = { A, "https://example.invalid/b.png" }, output = out }
  T.eq(#input.image_urls, 3, "two inputs and the output")
  T.eq(input.image_urls[1], A, "inputs first, in order")
  T.eq(input.image_urls[2], "https://example.invalid/b.png", "a URL as given")
  T.eq(input.image_urls[3], out, "the output last")
  T.eq(input.model, "google/gemini-2.5-flash", "the VLM's own model field")
  T.contains(input.prompt, "<<<make the sky blue>>>", "the edit prompt, quoted")
  T.contains(input.prompt, "The first 2 images are the photos given to the editor", "which image is which")
  T.contains(input.prompt, "Criterion: Is the sky blue?", "the rubric")
  T.contains(input.prompt, '{"score": N, "reason"', "how to answer")
  T.eq(input.system_prompt, judge.SYSTEM, "a model with a system prompt is told to answer only JSON")
  local default = judge.new({ endpoint = VLM }, client()):input { prompt = "p", output = out }
  T.contains(default.prompt, judge.DEFAULT_RUBRIC, "the default rubric")
  T.eq(default.model, nil, "no model given: the endpoint's default")
  T.eq(#default.image_urls, 1, "no inputs: the output alone")

  sb.control { schema = { endpoint_id = "sandbox/vlm-one", doc = vlm_doc("sandbox/vlm-one", "image_url",
    { type = "string", title = "Image Url" }) } }
  sb.control { schema = { endpoint_id = "sandbox/vlm-two", doc = vlm_doc("sandbox/vlm-two", "image_urls",
    { type = "array", items = { type = "string" }, maxItems = 2 }) } }
  local one = judge.new({ endpoint = "sandbox/vlm-one" }, client { endpoint = "sandbox/vlm-one", schema_url = DOC_URL })
  local ctx = { prompt = "make it blue [judge-score:4]", inputs = { A, B }, output = out }
  local i1 = one:input(ctx)
  T.eq(i1.image_url, out, "one image: the output")
  T.eq(i1.image_urls, nil, "and no list")
  T.contains(i1.prompt, "The image is the edited result. The original photo is not shown", "says so")
  T.eq(i1.system_prompt, nil, "no system_prompt field: none sent")
  local r1 = one:score(ctx)  -- a real submit: the sandbox validates the body against the document
  T.eq(r1.error, nil, "accepted and answered: " .. json.encode(r1.error or {}))
  T.eq(r1.score, 4, "the sandbox's score")
  T.contains(r1.text, "sandbox judge, 1 image", "one image reached the judge")
  local sent = job_input(r1.request_id)
  T.ok(type(sent.image_url) == "string" and sent.image_url ~= "", "sent as one image_url")

  local two = judge.new({ endpoint = "sandbox/vlm-two" }, client { endpoint = "sandbox/vlm-two", schema_url = DOC_URL })
  local i2 = two:input(ctx)
  T.eq(#i2.image_urls, 2, "at most two images: the first input and the output")
  T.eq(i2.image_urls[1], A, "the first input")
  T.eq(i2.image_urls[2], out, "the output")
  T.contains(i2.prompt, "(1 of its 2: this judge takes at most 2 images)", "says what was left out")
  local r2 = two:score(ctx)
  T.eq(r2.score, 4, "validated and answered")
  T.contains(r2.text, "sandbox judge, 2 images", "two images reached the judge")
  os.execute("rm -rf " .. T.quote(d))
end)

-- The sandbox's own score of a body: sha256 of the prompt and each URL, joined by newlines, its
-- first 8 bytes big-endian, mod 11 (tests/sandbox/judge.py).
local function predicted(prompt, urls)
  local digest = core.sha256(table.concat({ prompt, table.unpack(urls) }, "\n"))  -- 32 raw bytes
  local v = 0
  for i = 1, 8 do v = (v * 256 + digest:byte(i)) % 11 end
  return v
end

T.case("score: the sandbox's predicted score, its request id and price; errors recorded, never raised", function()
  local d = T.tmpdir()
  local c = client { journal = d }
  local J = judge.new({ endpoint = VLM }, c)
  T.eq(J:unit_cost(), 0.001, "the sandbox's price per request")
  local before = submits(VLM)
  local urls = { "https://example.invalid/in.png", "https://example.invalid/out.png" }
  local ctx = { prompt = "turn the car red", inputs = { urls[1] }, output = urls[2] }
  local rec = J:score(ctx)
  T.eq(rec.error, nil, "no error")
  T.eq(rec.score, predicted(J:input(ctx).prompt, urls), "the score the sandbox gives this body")
  T.eq(rec.endpoint, VLM, "the endpoint")
  T.ok(type(rec.request_id) == "string" and job_input(rec.request_id) ~= nil, "its request id")
  T.eq(rec.cost, 0.001, "priced: one request")
  T.contains(rec.text, '"score": ' .. rec.score, "the answer kept")
  T.eq(submits(VLM), before + 1, "one submit")
  local _, job = job_input(rec.request_id)
  T.eq(job.headers["x-fal-disable-fallbacks"], "true", "a fallback model would judge differently: none")

  local function scored(prompt)
    return J:score { prompt = prompt, inputs = { A }, output = T.new_photo(d, prompt) }
  end
  local r = scored("keep the dog [judge:unreadable]")
  T.eq(r.score, nil, "an unreadable answer has no score")
  T.eq(r.error.code, "JUDGE_UNREADABLE", "it is a recorded judge error")
  T.contains(r.error.message, "no score", "saying why")
  T.contains(r.text, "The edit looks fine", "the answer is kept to read")
  T.eq(r.cost, 0.001, "it was paid for all the same")
  r = scored("keep the dog [judge-score:12]")
  T.eq(r.score, nil, "out of range")
  T.contains(r.error.message, "outside 0..10", "refused, not clamped")
  r = scored("keep the dog [judge:fail]")
  T.eq(r.score, nil, "a failed judge job")
  T.eq(r.error.code, "HTTP_500", "its error recorded")
  T.ok(type(r.request_id) == "string", "with its request id")
  T.eq(r.cost, 0, "a server error is not billed")
  r = scored("keep the dog [judge:error]")
  T.eq(r.error.code, "JUDGE_ERROR", "the model's own error in its answer")
  T.eq(scored("keep the cat [judge-score:3] [judge:line]").score, 3, "a Score: N/10 line")
  T.eq(scored("keep the cat [judge-score:9] [judge:fenced]").score, 9, "a fenced JSON block")
  T.eq(scored("keep the cat [judge-score:6.5]").score, 6.5, "a fractional score")
  r = J:score { prompt = "p", inputs = { T.source_dir .. "/tests/fixtures/none.png" }, output = A }
  T.eq(r.score, nil, "an input that cannot be read")
  T.ok(r.error and r.error.message:find("none.png", 1, true), "is a recorded error too: " .. tostring(r.error and r.error.message))
  -- whatever else a call raises is recorded; an interrupt goes on
  local raising = client()
  local RJ = judge.new({ endpoint = VLM }, raising)
  raising.send = function() error("boom in send", 0) end
  r = RJ:score { prompt = "p", output = A }
  T.eq(r.error.code, "JUDGE_FAILED", "a raised error is recorded")
  T.contains(r.error.message, "boom in send", "with its message")
  raising.send = function() error(errors.INTERRUPT_TEXT, 0) end
  T.raises(function() RJ:score { prompt = "p", output = A } end, errors.INTERRUPT_TEXT)
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("score: judge calls side by side are each priced, while the first one looks the price up", function()
  local d = T.tmpdir()
  -- a pricing API never asked before (none of its answers cached): the first call waits for it
  local sb2 = T.sandbox { "--job-time", "0.01", "--workers", "4" }
  local J = judge.new({ endpoint = VLM }, client { journal = d, base_url = sb2.url, storage_url = sb2.url,
    api_url = sb2.url })
  local ctxs = {}
  for i = 1, 4 do ctxs[i] = { prompt = "side by side [judge-score:" .. i .. "]", output = "https://example.invalid/" .. i .. ".png" } end
  local recs = require("editflow.tasks").map(ctxs, function(ctx) return J:score(ctx) end, { concurrency = 4 })
  for i = 1, 4 do
    T.eq(recs[i].score, i, "judged " .. i)
    T.eq(recs[i].cost, 0.001, "priced " .. i)
  end
  T.eq(sb2.stats().pricing_calls, 1, "one lookup")
  sb2.stop()
  os.execute("rm -rf " .. T.quote(d))
end)

T.case("score: an output judged in this folder is never sent again (re-run, before and after completing)", function()
  local d = T.tmpdir()
  local ctx = { prompt = "make the sky blue [judge-score:8]", inputs = { A }, output = T.new_photo(d, "o") }
  local first = judge.new({ endpoint = VLM }, client { journal = d }):score(ctx)
  T.eq(first.score, 8, "judged")
  local before = submits(VLM)
  -- a re-run: a new client on the folder's journal (the experiment run did not complete)
  local again = judge.new({ endpoint = VLM }, client { journal = d }):score(ctx)
  T.eq(submits(VLM), before, "no second submit")
  T.eq(again.request_id, first.request_id, "the same request")
  T.eq(again.score, 8, "the same score")
  T.eq(again.cost, 0, "not paid again")
  T.eq(again.reused, true, "and says it was reused")
  -- the run completed (the experiment's client says so in the same journal), then a re-run
  local c = client { journal = d }
  c:complete()
  local third = judge.new({ endpoint = VLM }, client { journal = d }):score(ctx)
  T.eq(submits(VLM), before, "still no second submit")
  T.eq(third.request_id, first.request_id, "the same request")
  T.eq(third.cost, 0, "not paid again")
  -- another output is another judgement
  local other = judge.new({ endpoint = VLM }, client { journal = d }):score {
    prompt = ctx.prompt, inputs = ctx.inputs, output = T.new_photo(d, "o2") }
  T.eq(submits(VLM), before + 1, "a new output is judged")
  T.ok(other.request_id ~= first.request_id, "in its own request")
  os.execute("rm -rf " .. T.quote(d))
end)

T.run()
