-- editflow.cli.fields: command-line options made from an endpoint's schema, so `edit -m ID`
-- and `grid -m ID` take every field of that model (--aspect-ratio, --safety-tolerance, ...:
-- the field's name with '-' for '_'), and `editflow schema ID` lists them.
-- Values are read by the field's type: integers and numbers as numbers (text that is not one
-- stays text, so validation names the field), booleans as --x / --no-x / --x=true|false,
-- lists as repeated options, anything else given as JSON ('{"width":800,"height":600}') or,
-- for image_size, WxH.
local json = require "editflow.json"

local M = {}

-- Short and familiar names of the qwen fields, kept for the fields that exist in a schema.
local ALIASES = {
  num_images = { "n", "num-images" }, image_size = { "s", "image-size" },
  num_inference_steps = { nil, "steps" }, guidance_scale = { "g", "guidance" },
  output_format = { "f", "format" }, seed = { nil, "seed" }, negative_prompt = { nil, "negative-prompt" },
  sync_mode = { nil, "sync" }, enable_safety_checker = { nil, "safety-checker" },
}

function M.flag_name(field) return (field:gsub("_", "-")) end

local function short(text, n)
  text = tostring(text or ""):gsub("%s+", " ")
  return #text > n and (text:sub(1, n - 3) .. "...") or text
end

local function default_text(d)
  if d == nil then return nil end
  if type(d) == "table" or (type(d) == "string" and not d:find("^[%w_.:-]+$")) then
    return json.encode(d)  -- so a blank or odd default shows: " "
  end
  return tostring(d)
end

-- What a field accepts, in command-line words (JSON objects, no editflow.file).
local function cli_words(text)
  return (tostring(text):gsub("a table {([^}]*)}", function(names) return "a JSON object with " .. names:gsub("=", "") end):gsub("a table$", "a JSON object")
    :gsub(", a local path or editflow%.file%(path%)", " or a local path"))
end

local METAVAR = { integer = "N", number = "X", string = "TEXT", array = "VALUE", object = "JSON", any = "VALUE" }

local function metavar(f)
  local e = f.schema and f.schema.enum
  if type(e) == "table" and #e <= 4 then
    local names = {}
    for i, v in ipairs(e) do names[i] = tostring(v) end
    local text = table.concat(names, "|")
    if #text <= 14 then return text end
  end
  if f.name == "image_size" then return "SIZE" end
  return METAVAR[f.type] or "VALUE"
end

-- The option specs (editflow.cli.args) for a model's fields, minus the ones the command owns
-- (the prompt and the images: -p and -i). -> specs, and option name -> field.
function M.options(m, skip)
  local specs, field_of = {}, {}
  for _, f in ipairs(m:fields()) do
    if not (skip and skip[f.name]) and not f.file then
      local a = ALIASES[f.name] or {}
      local long = a[2] or M.flag_name(f.name)
      local help = short(cli_words(f.accepts), 70)
      local d = default_text(f.default)
      if d then help = help .. " (default " .. short(d, 30) .. ")" end
      if f.required then help = help .. " (required)" end
      local spec = { a[1], long, arg = f.type ~= "boolean", multi = f.type == "array", metavar = metavar(f),
        help = help, field = f.name, ftype = f.type, boolean = f.type == "boolean" }
      if f.type == "boolean" then
        spec.help = "send " .. f.name .. "=true" .. (d and (" (default " .. d .. ")") or "")
        specs[#specs + 1] = spec
        specs[#specs + 1] = { nil, "no-" .. long, help = "send " .. f.name .. "=false", field = f.name, negate = true }
        field_of["no-" .. long] = f
      else
        specs[#specs + 1] = spec
      end
      field_of[long] = f
      if a[2] and a[2] ~= M.flag_name(f.name) then  -- the field's own name works too
        specs[#specs + 1] = { nil, M.flag_name(f.name), arg = spec.arg, multi = spec.multi,
          metavar = spec.metavar, help = "same as --" .. a[2], field = f.name, ftype = f.type }
        field_of[M.flag_name(f.name)] = f
      end
    end
  end
  return specs, field_of
end

-- A number as people write it in decimal; anything else (0x10, "inf") stays text, so the
-- model's check names the field.
local function decimal(v)
  if type(v) ~= "string" or not v:match("^%s*[-+]?%d*%.?%d+[eE]?[-+]?%d*%s*$") then return nil end
  return tonumber(v)
end

local function scalar(f, v)
  local t = f.type
  if t == "integer" then local n = decimal(v) return n and (math.tointeger(n) or n) or v end
  if t == "number" then return decimal(v) or v end
  if t == "boolean" then
    if v == true or v == "true" then return true end
    if v == "false" then return false end
    return v
  end
  if type(v) == "string" and v:find("^%s*[%[{]") then
    local doc = json.decode(v)
    if doc ~= nil then return doc end
  end
  if f.name == "image_size" and type(v) == "string" then
    local w, h = v:match("^(%d+)[xX](%d+)$")
    if w then return { width = tonumber(w), height = tonumber(h) } end
  end
  return v
end

-- The input fields the parsed options set: field name -> value.
function M.values(opts, specs)
  local out = {}
  for _, spec in ipairs(specs) do
    local v = opts[spec[2]]
    if v ~= nil and spec.field then
      local f = { name = spec.field, type = spec.ftype or "boolean" }
      if spec.negate then
        out[spec.field] = false
      elseif spec.multi then
        local list = {}
        local item = { name = spec.field, type = "string" }
        for i, x in ipairs(v) do list[i] = scalar(item, x) end
        -- a JSON list given once is the list; a JSON object given once is one item
        if #list == 1 and type(list[1]) == "table" and getmetatable(list[1]) == getmetatable(json.array {}) then
          list = list[1]
        end
        out[spec.field] = list
      else
        out[spec.field] = scalar(f, v)
      end
    end
  end
  return out
end

-- `editflow schema ID`: one block a field.
function M.describe(m)
  local lines = {}
  for _, f in ipairs(m:fields()) do
    local head = f.name .. "  " .. f.type .. (f.required and ", required" or "")
    local d = default_text(f.default)
    if d then head = head .. ", default " .. short(d, 60) end
    lines[#lines + 1] = head
    lines[#lines + 1] = "    accepts: " .. short(cli_words(f.accepts), 200)
    local opt = f.file and "-i" or ("--" .. ((ALIASES[f.name] or {})[2] or M.flag_name(f.name)))
    if f.name == "prompt" then opt = "-p" end
    lines[#lines + 1] = "    option:  " .. opt
    if f.description and f.description ~= "" then lines[#lines + 1] = "    " .. short(f.description, 200) end
  end
  return table.concat(lines, "\n")
end

return M
