-- editflow.model: the input schemas of the models editflow knows, and their validation.
-- validate() checks every field before anything is sent and returns a normalised copy
-- (fal's spellings, integers as integers); a bad field raises a message naming the field
-- and what it accepts. Unknown endpoints pass through unchecked apart from their images.
local M = {}

M.SIZES = {
  square_hd = { 1024, 1024 }, square = { 512, 512 },
  portrait_4_3 = { 768, 1024 }, portrait_16_9 = { 576, 1024 },
  landscape_4_3 = { 1024, 768 }, landscape_16_9 = { 1024, 576 },
}
-- The seed proxy's names for fal's two portrait sizes (SPEC §3); fal's name is what is sent.
M.SIZE_ALIASES = { portrait_3_4 = "portrait_4_3", portrait_9_16 = "portrait_16_9" }
local SIZE_LIST = "square_hd, square, portrait_4_3, portrait_16_9, landscape_4_3, "
  .. "landscape_16_9 (or portrait_3_4, portrait_9_16)"

local function show(v)
  if type(v) == "string" then return "'" .. v .. "'" end
  if type(v) == "table" then
    if #v > 0 then return string.format("a list of %d", #v) end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = tostring(k) end
    table.sort(keys)
    return #keys > 0 and ("a table with " .. table.concat(keys, ", ")) or "an empty table"
  end
  return tostring(v)
end

local function bad(name, what, v)
  error(string.format("%s must be %s, got %s", name, what, show(v)), 0)
end

local function toint(v)
  return type(v) == "number" and math.tointeger(v) or nil
end

local function integer(lo, hi)
  return function(name, v)
    local i = toint(v)
    if not i or i < lo or (hi and i > hi) then
      bad(name, hi and ("an integer " .. lo .. ".." .. hi) or ("an integer >= " .. lo), v)
    end
    return i
  end
end

local function number(lo, hi)
  return function(name, v)
    if type(v) ~= "number" or v ~= v or v < lo or v > hi then
      bad(name, "a number " .. lo .. ".." .. hi, v)
    end
    return math.tointeger(v) or v
  end
end

local function boolean(name, v)
  if type(v) ~= "boolean" then bad(name, "true or false", v) end
  return v
end

M.MAX_TEXT = 50000   -- bytes of a prompt: far beyond any model's context, short of abuse

local function text(nonempty)
  return function(name, v)
    if type(v) ~= "string" or (nonempty and not v:find("%S")) then
      bad(name, nonempty and "a non-empty string" or "a string", v)
    end
    if #v > M.MAX_TEXT then
      error(string.format("%s must be at most %d bytes, got %d", name, M.MAX_TEXT, #v), 0)
    end
    if not utf8.len(v) then error(name .. " must be valid UTF-8 text", 0) end
    return v
  end
end

local function enum(...)
  local set, list = {}, table.concat({ ... }, ", ")
  for _, s in ipairs({ ... }) do set[s] = true end
  return function(name, v)
    if not set[v] then bad(name, "one of " .. list, v) end
    return v
  end
end

local function image_size(name, v)
  if type(v) == "string" then
    v = M.SIZE_ALIASES[v] or v
    if M.SIZES[v] then return v end
  elseif type(v) == "table" then
    local w, h = toint(v.width), toint(v.height)
    local only = true
    for k in pairs(v) do
      if k ~= "width" and k ~= "height" then only = false end
    end
    if only and w and h and w >= 64 and w <= 4096 and h >= 64 and h <= 4096 then
      return { width = w, height = h }
    end
    bad(name, "{width=, height=} with integers 64..4096", v)
  end
  bad(name, "one of " .. SIZE_LIST .. " or {width=, height=}", v)
end

-- An image reference: a URL or local path (string) or editflow.file(path); resolved later.
local function image_ref(name, v)
  if type(v) == "string" and v ~= "" then return v end
  if type(v) == "table" and v.__editflow_file then return v end
  bad(name, "an image URL, a local path or editflow.file(path)", v)
end

local function image_list(lo, hi)
  return function(name, v)
    if type(v) == "string" or (type(v) == "table" and v.__editflow_file) then v = { v } end
    if type(v) ~= "table" or #v < lo or #v > hi or next(v, #v) ~= nil then
      bad(name, string.format("a list of %d to %d images", lo, hi), v)
    end
    local out = {}
    for i = 1, #v do out[i] = image_ref(string.format("%s[%d]", name, i), v[i]) end
    return out
  end
end

local function loras(name, v)
  if type(v) ~= "table" or #v > 3 or next(v, #v) ~= nil then
    bad(name, "a list of up to 3 {path=, scale=} tables", v)
  end
  local out = {}
  for i, l in ipairs(v) do
    local at = string.format("%s[%d]", name, i)
    if type(l) ~= "table" then bad(at, "a {path=, scale=} table", l) end
    out[i] = { path = text(true)(at .. ".path", l.path) }
    if l.scale ~= nil then out[i].scale = number(0, 4)(at .. ".scale", l.scale) end
  end
  return out
end

local COMMON = {
  prompt = text(true),
  image_size = image_size,
  num_inference_steps = integer(2, 100),
  guidance_scale = number(0, 20),
  num_images = integer(1, 4),
  seed = integer(0),
  sync_mode = boolean,
  enable_safety_checker = boolean,
  output_format = enum("png", "jpeg"),
  negative_prompt = text(false),
  acceleration = enum("none", "regular"),
}

local function schema(extra, required)
  local fields = {}
  for k, f in pairs(COMMON) do fields[k] = f end
  for k, f in pairs(extra) do fields[k] = f end
  local names = {}
  for k in pairs(fields) do names[#names + 1] = k end
  table.sort(names)
  return { fields = fields, required = required, names = table.concat(names, ", ") }
end

local PLUS = schema({ image_urls = image_list(1, 3) }, { "prompt", "image_urls" })
local PLUS_LORA = schema({ image_urls = image_list(1, 3), loras = loras }, { "prompt", "image_urls" })
local SINGLE = schema({ image_url = image_ref }, { "prompt", "image_url" })

M.schemas = {
  ["fal-ai/qwen-image-edit-plus"] = PLUS,
  ["fal-ai/qwen-image-edit-2509"] = PLUS,
  ["fal-ai/qwen-image-edit-plus-lora"] = PLUS_LORA,
  ["fal-ai/qwen-image-edit-2509-lora"] = PLUS_LORA,
  ["fal-ai/qwen-image-edit"] = SINGLE,
}

-- model.validate(endpoint, input) -> normalised copy; raises naming the first bad field.
function M.validate(endpoint, input)
  if type(input) ~= "table" then bad("input", "a table", input) end
  local s = M.schemas[endpoint]
  local out = {}
  if not s then
    for k, v in pairs(input) do out[k] = v end
    if out.image_urls ~= nil then out.image_urls = image_list(1, math.maxinteger)("image_urls", out.image_urls) end
    if out.image_url ~= nil then out.image_url = image_ref("image_url", out.image_url) end
    return out
  end
  for _, k in ipairs(s.required) do
    if input[k] == nil then error(k .. " is required", 0) end
  end
  for k, v in pairs(input) do
    local check = s.fields[k]
    if not check then
      error(string.format("unknown field %s for %s (accepted: %s)", show(k), endpoint, s.names), 0)
    end
    out[k] = check(k, v)
  end
  return out
end

-- Output pixels one job will produce (for cost estimates); nil when unknown.
function M.output_pixels(input)
  local size = input.image_size or "square_hd"
  local w, h
  if type(size) == "table" then w, h = size.width, size.height
  elseif M.SIZES[size] then w, h = M.SIZES[size][1], M.SIZES[size][2] end
  if not w then return nil end
  return w * h * (input.num_images or 1)
end

return M
