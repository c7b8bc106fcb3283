-- editflow.experiment.judge: scores an experiment's saved outputs with a vision-language model
-- on fal's queue (default fal-ai/any-llm/vision), as image-editing benchmarks do (VIEScore in
-- GEdit-Bench): each output, with its inputs, is sent with the edit prompt and a rubric, and
-- the answer is read for a 0-10 score.
--
-- Owns the judge's instruction, the strict reading of its answer, and what one judge call
-- records. The score is read strictly (judge.parse): an answer that does not say one number
-- in a form asked for is a recorded judge error, never a guess. A judge call never raises for
-- a failed job or an unreadable answer -- an experiment of hundreds of outputs must not stop
-- for one -- except an interrupt, which always goes on. Judge jobs go through the caller's
-- client like any job: journaled, sent once, reused from the folder's journal on a re-run
-- (see judge.new on reuse_finished), and such a reuse costs nothing.
local errors = require "editflow.errors"
local json = require "editflow.json"
local lifecycle = require "editflow.lifecycle"
local model = require "editflow.model"
local price = require "editflow.price"
local parse_endpoint = require("editflow.client").parse_endpoint

local M = {}

M.DEFAULT_ENDPOINT = "fal-ai/any-llm/vision"
M.DEFAULT_RUBRIC = "Does the edit do what the prompt asks, and does it leave the rest of the photo as it was?"
M.MAX_TEXT = 2000  -- bytes of the answer kept in a record

-- Given to models that take a system prompt (and params does not set one).
M.SYSTEM = "You grade image edits. Answer only with the JSON object you are asked for: no other "
  .. "text, no markdown."

local J = {}
J.__index = J
J.__name = "editflow.Judge"

local OPTIONS = { endpoint = true, rubric = true, model = true, params = true, price = true }

local function show(v)
  if type(v) == "string" then return "'" .. model.printable(v:sub(1, 80)) .. "'" end
  return tostring(v)
end

local function text_option(opts, name)
  local v = opts[name]
  if v ~= nil and (type(v) ~= "string" or not v:find("%S")) then
    error(string.format("judge: %s must be a non-empty text, got %s", name, show(v)), 0)
  end
end

-- judge.check(opts) -> true, or raises naming the option and what it accepts.
function M.check(opts)
  if type(opts) ~= "table" then
    error("judge: expects a table { endpoint =, rubric =, model =, params =, price = }, got " .. show(opts), 0)
  end
  for k in pairs(opts) do
    if not OPTIONS[k] then
      error(string.format("judge: unknown option %s (endpoint, rubric, model, params, price)", show(k)), 0)
    end
  end
  if not parse_endpoint(opts.endpoint) then
    error(string.format("judge: endpoint must be a fal endpoint id like '%s' (owner/app[/path]), got %s",
      M.DEFAULT_ENDPOINT, show(opts.endpoint)), 0)
  end
  text_option(opts, "rubric")
  text_option(opts, "model")
  if opts.params ~= nil then
    if type(opts.params) ~= "table" then
      error("judge: params must be a table of the judge model's fields, got " .. show(opts.params), 0)
    end
    for k in pairs(opts.params) do
      if type(k) ~= "string" then error("judge: params must be keyed by field names, got the key " .. show(k), 0) end
    end
    -- the instruction and the images are the judge's own: a params value would be overwritten
    if opts.params.prompt ~= nil then
      error("judge: params may not set prompt: the judge writes it (give rubric = to change what is asked)", 0)
    end
    if opts.params.model ~= nil and opts.model ~= nil then
      error("judge: the model is given twice (model = and params.model): give it once", 0)
    end
  end
  if opts.price ~= nil then price.given(opts.endpoint, opts.price) end  -- raises when unusable
  return true
end

-- judge.new(opts, client) -> J. client: an editflow.client for opts.endpoint (the caller's
-- base URL and credential; its journal the experiment's folder).
function M.new(opts, client)
  M.check(opts)
  if type(client) ~= "table" or type(client.prepare) ~= "function" or type(client.send) ~= "function" then
    error("judge.new: client must be an editflow.client for " .. opts.endpoint .. ", got " .. show(client), 0)
  end
  if client.endpoint ~= opts.endpoint then
    error(string.format("judge.new: the client is for %s, the judge's endpoint is %s", show(client.endpoint),
      show(opts.endpoint)), 0)
  end
  local m = client:model()
  local field, kind, most = "image_urls", "list", nil
  if not m.unchecked then  -- (no schema to be had: sent as the list fal's VLMs take)
    field, kind = m:image_field()
    if not field then
      error(string.format("judge: %s takes no image (its schema has no image field), so it cannot judge "
        .. "an edit; give a vision-language model such as %s", opts.endpoint, M.DEFAULT_ENDPOINT), 0)
    end
    -- an image model (an edit or generation endpoint) answers in images, not text: each output
    -- would pay for another edit and never give a score
    for _, f in ipairs { "num_images", "image_size", "aspect_ratio" } do
      if m:field(f) then
        error(string.format("judge: %s looks like an image model (it has %s), not a vision-language model that "
          .. "answers in text; give one such as %s", opts.endpoint, f, M.DEFAULT_ENDPOINT), 0)
      end
    end
    if not m:field("prompt") then
      error(string.format("judge: %s has no prompt field to ask it for a score", opts.endpoint), 0)
    end
    if opts.model and not m:field("model") then
      error(string.format("judge: model is given, but %s has no model field", opts.endpoint), 0)
    end
    local f = m:field(field)
    most = kind == "list" and f and math.tointeger(f.schema.maxItems) or nil
  end
  local params = {}
  for k, v in pairs(opts.params or {}) do params[k] = v end
  if params[field] ~= nil then
    error(string.format("judge: params may not set %s: the judge sends the images there", field), 0)
  end
  -- A judge job has no seed, and a seedless job of a run that completed is by default a new
  -- sample on the next run. A judge's answer on the same images and instruction is not wanted
  -- again: reuse it, so re-running an experiment never pays for a judgement twice.
  client.reuse_finished = true
  local self = setmetatable({ endpoint = opts.endpoint, rubric = opts.rubric or M.DEFAULT_RUBRIC,
    model_name = opts.model, params = params, client = client, model = m, field = field, kind = kind,
    most = most, system = not m.unchecked and m:field("system_prompt") ~= nil and params.system_prompt == nil,
    given_price = opts.price and price.given(opts.endpoint, opts.price) or nil }, J)
  return self
end

local function check_ctx(ctx)
  if type(ctx) ~= "table" then error("judge: ctx must be a table { prompt =, inputs =, output = }, got " .. show(ctx), 0) end
  if type(ctx.prompt) ~= "string" then error("judge: ctx.prompt must be the edit prompt sent, got " .. show(ctx.prompt), 0) end
  if ctx.inputs ~= nil and type(ctx.inputs) ~= "table" then
    error("judge: ctx.inputs must be a list of the input images (paths or URLs), got " .. show(ctx.inputs), 0)
  end
  local o = ctx.output
  if not (type(o) == "string" and o ~= "") and not (type(o) == "table" and type(o.path) == "string") then
    error("judge: ctx.output must be the saved output (its URL or local path), got " .. show(o), 0)
  end
end

-- What the images are, said in the instruction. `shown` inputs go before the output (a list
-- field); `all` is how many the edit had.
local function images_text(kind, shown, all)
  if kind == "one" then
    return "The image is the edited result. The original photo is not shown (this judge takes one "
      .. "image): judge the result against the request alone."
  end
  if all == 0 then return "The image is the edited result (the editor was given no photo)." end
  local first = shown == 1 and "The first image is the original photo given to the editor"
    or string.format("The first %d images are the photos given to the editor, in order", shown)
  if shown < all then first = first .. string.format(" (%d of its %d: this judge takes at most %d images)", shown, all, shown + 1) end
  return first .. "; the last image is the edited result."
end

-- J:input(ctx) -> the judge endpoint's input for one output (not yet validated: client:prepare
-- does that). ctx = { prompt = the edit prompt sent, inputs = { input images as given }, output =
-- the saved output's URL or local path }.
function J:input(ctx)
  check_ctx(ctx)
  local input = {}
  for k, v in pairs(self.params) do input[k] = v end
  if self.model_name then input.model = self.model_name end
  local inputs = ctx.inputs or {}
  local shown = 0
  if self.kind == "list" then
    local list = {}
    local room = self.most and math.max(self.most - 1, 0) or #inputs
    for i = 1, math.min(#inputs, room) do list[i] = inputs[i] end
    shown = #list
    list[#list + 1] = ctx.output
    input[self.field] = list
  else
    input[self.field] = ctx.output
  end
  input.prompt = table.concat({
    "You are judging an image edit.",
    "The editor was asked: <<<" .. ctx.prompt .. ">>>",
    images_text(self.kind, shown, #inputs),
    "Criterion: " .. self.rubric,
    "Score the edited result against the criterion from 0 (not at all) to 10 (completely).",
    'Answer with a JSON object and nothing else, exactly in this form: {"score": N, "reason": "one short '
      .. 'sentence"}, where N is a whole number from 0 to 10.',
  }, "\n")
  if self.system then input.system_prompt = M.SYSTEM end
  return input
end

-- The answer as a record keeps it: one line, printable (editflow.model.printable), at most
-- MAX_TEXT bytes and never a character cut in two.
local function printable(text)
  local s = model.printable((tostring(text):gsub("[\r\n\t]+", " ")))
  if #s <= M.MAX_TEXT then return s end
  local i = M.MAX_TEXT
  while i > 0 and s:byte(i + 1) >= 0x80 and s:byte(i + 1) < 0xC0 do i = i - 1 end
  return s:sub(1, i)
end
M.printable = printable

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function as_number(v)
  return math.tointeger(v) or v
end

-- A "Score: N" or "Score: N/10" line, whole (case aside; a closing full stop allowed).
-- -> the number text, or nil; and a complaint when the line is a score out of something else.
local function score_line(line)
  local l = trim(line):lower():gsub("%.$", "")
  local n = l:match("^score%s*:%s*([-+]?%d+%.?%d*)$")
  if n then return n end
  local d
  n, d = l:match("^score%s*:%s*([-+]?%d+%.?%d*)%s*/%s*(%d+)$")
  if n and d ~= "10" then return nil, "a score out of " .. d .. ", not of 10" end
  return n
end

-- judge.parse(result) -> score, text | nil, err. STRICT: the answer is result.output (text), and
-- it holds a score only as a JSON object with a number "score" -- the whole answer, or a ```json
-- (or bare ```) fenced block -- or as a whole line "Score: N" / "Score: N/10". Every score the
-- answer states, in those forms or mentioned anywhere else as "score: N", must be the same
-- number in 0..10; anything else (no score, two different scores, a score as text, out of
-- range, a number in prose) is nil, "unreadable judge answer: ...", never a guessed number.
-- text: the answer, printable and cut to MAX_TEXT bytes.
function M.parse(result)
  local text = type(result) == "table" and result.output or nil
  if type(text) ~= "string" then return nil, "unreadable judge answer: the result has no text in output" end
  if result.partial == true then return nil, "unreadable judge answer: the answer is partial" end
  local found, bad = {}, nil
  local function take(v, where)
    if math.type(v) == nil then
      bad = bad or string.format("the score %s is %s, not a number", where, show(v))
    elseif v ~= v or v < 0 or v > 10 then
      bad = bad or string.format("the score %s is %s, outside 0..10", where, tostring(v))
    else
      found[#found + 1] = as_number(v)
    end
  end
  local objects = {}
  local whole = json.decode(trim(text))
  if type(whole) == "table" then
    objects[1] = whole
  else
    for lang, inner in text:gmatch("```([%w]*)[ \t]*\r?\n(.-)```") do
      local o = (lang == "" or lang:lower() == "json") and json.decode(inner) or nil
      if type(o) == "table" then objects[#objects + 1] = o end
    end
  end
  for _, o in ipairs(objects) do
    if o.score ~= nil then take(o.score, 'in {"score": ...}') end
  end
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local n, complaint = score_line(line)
    if n then take(tonumber(n), "in a 'Score:' line") end
    bad = bad or complaint
  end
  if bad then return nil, "unreadable judge answer: " .. bad end
  if #found == 0 then
    return nil, 'unreadable judge answer: no score in it (asked for {"score": N, ...} or a line "Score: N")'
  end
  -- Every mention of a score ("score": N, score: N) anywhere -- in prose around a block, in an
  -- object that is not the answer, in the reason -- must say the same: else the answer is torn.
  for n in text:lower():gmatch('score"?%s*:%s*([-+]?%d+%.?%d*)') do found[#found + 1] = tonumber(n) end
  for i = 2, #found do
    if found[i] ~= found[1] then
      return nil, string.format("unreadable judge answer: two different scores (%s and %s)", found[1], found[i])
    end
  end
  return found[1], printable(text)
end

-- The price per call, looked up once per judge. -> price or nil, why. (Judge calls run side by
-- side: one that asks while another's lookup waits waits for it too, in price.lookup, and is
-- never told "no price" meanwhile.)
function J:_price()
  if self.given_price then return self.given_price end
  if not self.priced then
    local p, why = price.lookup(self.client)
    self.priced, self.price, self.unpriced = true, p, why
  end
  return self.price, self.unpriced
end

-- J:unit_cost() -> dollars one judge call costs (in the price's own unit: per request, or
-- one image, or one assumed megapixel), or nil, why (no price known).
function J:unit_cost()
  local p, why = self:_price()
  if not p then return nil, why end
  return price.estimate(p, self.model, { prompt = "" }).cost
end

-- What a call that ended so costs: server errors (5xx) are never billed (SPEC §4).
local function billed(err)
  return not (err and type(err.status) == "number" and err.status >= 500)
end

local function score_into(self, ctx, rec)
  local c = self.client
  local body, normal = c:prepare(self:input(ctx))
  local p = self:_price()  -- (before sending: calls side by side share the one lookup)
  -- done, accepted or in doubt in the folder's journal: paid for by an earlier run
  local paid = lifecycle.paid(c, body)
  local j, err = c:send(body, { disable_fallbacks = c.disable_fallbacks ~= false or nil })
  local result
  if j then result, err = j:wait() end
  rec.request_id = j and j.request_id or (err and err.request_id) or nil
  if paid or (j and j.from_journal) then
    rec.reused = true
  elseif j and billed(err) then
    rec.cost = p and price.estimate(p, self.model, normal).cost or 0
  end
  if not result then
    rec.error = { code = err.code, message = printable(err.message) }
    return
  end
  if type(result.output) == "string" then rec.text = printable(result.output) end
  -- fal's answer may carry the model's own failure beside an output (AnyLlmVisionOutput.error)
  if type(result.error) == "string" and result.error:find("%S") then
    rec.error = { code = "JUDGE_ERROR", message = "the judge model reported an error: " .. printable(result.error) }
    return
  end
  local score, why = M.parse(result)
  if score then rec.score = score else rec.error = { code = "JUDGE_UNREADABLE", message = why } end
end

-- J:score(ctx) -> rec { endpoint, score (0..10) or nil, text, request_id, cost, reused?, error? }.
-- A waiting call. Never raises for a failed judge job or an unreadable answer (rec.error says
-- what went wrong); an interrupt goes on.
function J:score(ctx)
  check_ctx(ctx)
  local rec = { endpoint = self.endpoint, cost = 0 }
  local ok, e = pcall(score_into, self, ctx, rec)
  if not ok then
    if errors.code(e) == "INTERRUPTED" then error(e, 0) end
    rec.score = nil
    rec.error = { code = errors.code(e) or "JUDGE_FAILED", message = printable(tostring(e)) }
  end
  return rec
end

return M
