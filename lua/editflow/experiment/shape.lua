-- editflow.experiment.shape: one experiment's input in each model's own shape. Models differ
-- in their fields: the images go to a list (image_urls) or to exactly one (image_url); the
-- output's size is an image_size (fal's size names, WxH names, or {width, height}) or an
-- aspect_ratio enum ("16:9"). An experiment names the size once -- an aspect W:H or a size
-- WxH -- and each model gets it in its own field, or an error names the model when none of
-- its values fits. A parameter goes to every model that has the field: an error only when
-- none of them has it.
local model = require "editflow.model"

local M = {}

-- How close two ratios must be to count as the same (1%: 1920x1080 is 16:9; 683x1024 is 2:3).
local RATIO_SLACK = 0.01

local function same_ratio(a, b) return math.abs(a / b - 1) <= RATIO_SLACK end

-- "W:H" (aspect) or "WxH" (size) -> w, h (positive integers), or nil.
local function pair(text, sep)
  if type(text) ~= "string" then return nil end
  local w, h = text:match("^%s*(%d+)%s*" .. sep .. "%s*(%d+)%s*$")
  w, h = tonumber(w), tonumber(h)
  if w and h and w > 0 and h > 0 then return math.tointeger(w), math.tointeger(h) end
end

-- shape.size_request(spec) -> nil, or { aspect = {w, h} } / { size = {w, h} } with the text as
-- given; raises naming the option and what it accepts.
function M.size_request(spec)
  if spec.aspect ~= nil and spec.size ~= nil then
    error("experiment: give aspect or size, not both (size WxH sets the aspect too)", 0)
  end
  if spec.aspect ~= nil then
    local w, h = pair(spec.aspect, ":")
    if not w then error(string.format("experiment: aspect must be W:H (like 16:9 or 1:1), got %s", tostring(spec.aspect)), 0) end
    return { aspect = { w, h }, text = spec.aspect }
  end
  if spec.size ~= nil then
    local w, h
    if type(spec.size) == "table" then w, h = math.tointeger(spec.size.width), math.tointeger(spec.size.height)
    else w, h = pair(spec.size, "[xX]") end
    if not (w and h and w > 0 and h > 0) then
      error(string.format("experiment: size must be WxH in pixels (like 1024x768) or {width=, height=}, got %s",
        type(spec.size) == "table" and "a table" or tostring(spec.size)), 0)
    end
    return { size = { w, h }, text = w .. "x" .. h }
  end
end

-- The values a field's schema lists (its enum, or its alternatives' enums), and whether it
-- takes an object (fal's ImageSize).
local function choices(m, name)
  local f = m:field(name)
  if not f then return nil end
  local list, object = {}, false
  local function walk(s, depth)
    s = m:deref(s)
    if depth > 8 or type(s) ~= "table" then return end
    if type(s.enum) == "table" then
      for _, v in ipairs(s.enum) do if type(v) == "string" then list[#list + 1] = v end end
    end
    if s.type == "object" or type(s.properties) == "table" then object = true end
    for _, a in ipairs(s.anyOf or s.oneOf or {}) do walk(a, depth + 1) end
  end
  walk(f.schema, 0)
  return list, object
end

-- A value's width/height ratio: a size name fal documents, "WxH", "W:H"; nil for "auto".
local function ratio_of(v)
  local dims = model.SIZES[v] or model.SIZES[model.SIZE_ALIASES[v] or ""]
  if dims then return dims[1] / dims[2], dims[1] * dims[2] end
  local w, h = pair(v, "[xX]")
  if w then return w / h, w * h end
  w, h = pair(v, ":")
  if w then return w / h, nil end
end

-- The listed value with this ratio (the largest, when several: square_hd before square).
local function pick(list, want)
  local best, best_area
  for _, v in ipairs(list) do
    local r, area = ratio_of(v)
    if r and same_ratio(r, want) and (not best or (area or 0) > (best_area or 0)) then best, best_area = v, area end
  end
  return best
end

-- The exact listed value for w x h pixels (a size name or a "WxH" name), if any.
local function exact(list, w, h)
  for _, v in ipairs(list) do
    local dims = model.SIZES[v]
    if (dims and dims[1] == w and dims[2] == h) or v == (w .. "x" .. h) then return v end
  end
end

-- Pixels for an aspect on a model that takes {width, height}: the long side 1024 like fal's
-- named sizes, the short one rounded to a multiple of 16.
local function pixels(w, h)
  if w >= h then return 1024, math.max(16, math.floor(1024 * h / w / 16 + 0.5) * 16) end
  return math.max(16, math.floor(1024 * w / h / 16 + 0.5) * 16), 1024
end

local function listed(list)
  local shown = {}
  for _, v in ipairs(list) do shown[#shown + 1] = model.printable(v) end
  return table.concat(shown, ", ")
end

-- shape.size_for(m, request) -> field, value (what this model gets), or nil, message naming the
-- model. request: shape.size_request's.
function M.size_for(m, request)
  local id = m.endpoint
  local want = request.aspect and request.aspect[1] / request.aspect[2] or request.size[1] / request.size[2]
  local what = request.aspect and ("aspect " .. request.text) or ("size " .. request.text)
  if m.unchecked then
    return nil, string.format("%s has no schema here, so editflow cannot tell its size field: give it with --set", id)
  end
  local list, object = choices(m, "image_size")
  local why
  if list then
    if request.size then
      local w, h = request.size[1], request.size[2]
      if object then return "image_size", { width = w, height = h } end
      local v = exact(list, w, h)
      if v then return "image_size", v end
      why = string.format("%s: no image_size is %dx%d (it takes %s)", id, w, h, listed(list))
    else
      local v = pick(list, want)
      if v then return "image_size", v end
      if object then
        local w, h = pixels(request.aspect[1], request.aspect[2])
        return "image_size", { width = w, height = h }
      end
      why = string.format("%s: no image_size has the %s (it takes %s)", id, what, listed(list))
    end
  end
  -- (a model with both fields gets its aspect_ratio when no image_size fits)
  local ratios = choices(m, "aspect_ratio")
  if ratios then
    local v = pick(ratios, want)
    if v then return "aspect_ratio", v end
    return nil, (why and (why .. "; ") or (id .. ": ")) .. string.format("no aspect_ratio fits the %s (it takes %s)", what, listed(ratios))
  end
  if why then return nil, why end
  return nil, string.format("%s has no image_size or aspect_ratio field: the %s cannot be given to it", id, what)
end

-- shape.has(m, field) -> whether the model takes the field (a model without a schema takes any).
function M.has(m, field)
  return m.unchecked or (m.input and m.input.properties and m.input.properties[field] ~= nil) or false
end

-- shape.images(m, imgs) -> field, value: a list model gets them all, a one-image model exactly
-- one (more or fewer: an error naming the model); nil when there are none.
function M.images(m, imgs)
  if #imgs == 0 then return nil end
  local field, kind = m:image_field()
  if m.unchecked then field, kind = "image_urls", "list" end
  if not field then
    error(string.format("%s takes no input image, but the experiment gives %d", m.endpoint, #imgs), 0)
  end
  if kind == "one" then
    if #imgs ~= 1 then
      error(string.format("%s takes exactly one image (%s), but the experiment gives %d", m.endpoint, field, #imgs), 0)
    end
    return field, imgs[1]
  end
  return field, imgs
end

-- shape.text(value) -> how a size value reads in a plan: "landscape_16_9", "1024x576".
function M.text(v)
  if type(v) == "table" then return string.format("%sx%s", tostring(v.width), tostring(v.height)) end
  return tostring(v)
end

return M
