-- editflow.cli.fields: command-line options made from an endpoint's schema, so `edit -m ID`
-- and `grid -m ID` take every field of that model (--aspect-ratio, --safety-tolerance, ...:
-- the field's name with '-' for '_'), and `editflow schema ID` lists them.
-- Values are read by the field's type: integers and numbers as numbers (text that is not one
-- stays text, so validation names the field), booleans as --x / --no-x / --x=true|false,
-- lists as repeated options, anything else given as JSON ('{"width":800,"height":600}') or,
-- for image_size, WxH.
-- Two namespaces: editflow's own options and the model's fields. A field whose option would
-- be one of editflow's (a field named timeout, json, set, ...) or another field's gets no
-- option at all: it is given with --set FIELD=VALUE, and help and use say so (M.notes), so
-- neither side silently wins. Schema text shown here (names, enum values, descriptions) is
-- model.printable: a server must not be able to drive the terminal.
local json = require "editflow.json"
local model = require "editflow.model"
local printable = model.printable

local M = {}

-- Short and familiar names of the qwen fields, kept for the fields that exist in a schema.
local ALIASES = {
  num_images = { "n", "num-images" }, image_size = { "s", "image-size" },
  num_inference_steps = { nil, "steps" }, guidance_scale = { "g", "guidance" },
  output_format = { "f", "format" }, seed = { nil, "seed" }, negative_prompt = { nil, "negative-prompt" },
  sync_mode = { nil, "sync" }, enable_safety_checker = { nil, "safety-checker" },
}

function M.flag_name(field) return (field:gsub("_", "-")) end

-- Printable, one line, cut on a character's boundary to about n bytes.
local function short(text, n)
  text = printable(tostring(text or ""):gsub("%s+", " "))
  if #text <= n then return text end
  local cut = n - 3
  while cut > 0 and text:byte(cut + 1) & 0xC0 == 0x80 do cut = cut - 1 end
  return text:sub(1, cut) .. "..."
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

-- The text values a field lists: its enum, or its alternatives' enums (fal's image_size is
-- an object or one of the size names), in the schema's order, once each. For help and for
-- the shell's completion of the option's value.
function M.choices(m, f)
  local list, seen = {}, {}
  local function walk(s, depth)
    s = m:deref(s)
    if depth > 8 or type(s) ~= "table" then return end
    for _, v in ipairs(type(s.enum) == "table" and s.enum or {}) do
      if type(v) == "string" and not seen[v] then seen[v], list[#list + 1] = true, v end
    end
    for _, a in ipairs(s.anyOf or s.oneOf or {}) do walk(a, depth + 1) end
  end
  walk(f.schema, 0)
  return list
end

-- image_size's help: every size name the model lists with its pixels where fal documents
-- them, and WxH; whole, never cut, so a size can be chosen from the help alone.
local function size_help(m, f)
  local names = M.choices(m, f)
  if #names == 0 then return nil end
  local parts = {}
  for i, n in ipairs(names) do
    local dims = model.SIZES[n] or model.SIZES[model.SIZE_ALIASES[n] or ""]
    parts[i] = printable(n) .. (dims and string.format(" %dx%d", dims[1], dims[2]) or "")
  end
  return "WxH or a size name: " .. table.concat(parts, ", ")
end

local METAVAR = { integer = "N", number = "X", string = "TEXT", array = "VALUE", object = "JSON", any = "VALUE" }

local function metavar(f)
  local e = f.schema and f.schema.enum
  if type(e) == "table" and #e <= 4 then
    local names = {}
    for i, v in ipairs(e) do names[i] = printable(v) end
    local text = table.concat(names, "|")
    if #text <= 14 then return text end
  end
  if f.name == "image_size" then return "SIZE" end
  return METAVAR[f.type] or "VALUE"
end

-- The option names a field would take: its long name (an alias or its own), --no-X for a
-- boolean, its own name beside an alias.
local function names_of(f)
  local a = ALIASES[f.name] or {}
  local long = a[2] or M.flag_name(f.name)
  local list = { long }
  if f.type == "boolean" then list[#list + 1] = "no-" .. long end
  if a[2] and a[2] ~= M.flag_name(f.name) then list[#list + 1] = M.flag_name(f.name) end
  return list
end

-- The option specs (editflow.cli.args) for a model's fields, minus the ones the command owns
-- (the prompt and the images: -p and -i). `taken`: the names (long, and short letters) of
-- editflow's own options on this command. -> specs, option name -> field, and the clashes:
-- { field =, option =, owner = } for each field left without an option (M.notes).
function M.options(m, skip, taken)
  taken = taken or {}
  local specs, field_of, clashes, claimed = {}, {}, {}, {}
  for _, f in ipairs(m:fields()) do
    -- a name that is not a plain word has no option (it would print as one): --set, if any
    local wanted = not (skip and skip[f.name]) and not f.file and f.name:match("^%a[%w_]*$")
    local clash
    for _, n in ipairs(wanted and names_of(f) or {}) do
      local owner = taken[n] and "editflow's own" or (claimed[n] and ("the field " .. claimed[n] .. "'s"))
      if owner and not clash then clash = { field = f.name, option = "--" .. n, owner = owner } end
    end
    if clash then clashes[#clashes + 1] = clash end
    if wanted and not clash then
      for _, n in ipairs(names_of(f)) do claimed[n] = f.name end
      local a = ALIASES[f.name] or {}
      local long = a[2] or M.flag_name(f.name)
      local help = f.name == "image_size" and size_help(m, f) or short(cli_words(f.accepts), 70)
      local d = default_text(f.default)
      if d then help = help .. " (default " .. short(d, 30) .. ")" end
      if f.required then help = help .. " (required)" end
      local letter = a[1] and not taken[a[1]] and a[1] or nil  -- editflow's -x stays editflow's
      local spec = { letter, long, arg = f.type ~= "boolean", multi = f.type == "array", metavar = metavar(f),
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
  return specs, field_of, clashes
end

-- What help and use say of the clashes M.options found: one line each, naming both sides.
function M.notes(clashes)
  local lines = {}
  for _, c in ipairs(clashes or {}) do
    lines[#lines + 1] = string.format("the model's field %s has no option: %s is %s; give the field "
      .. "with --set %s=VALUE", c.field, c.option, c.owner, c.field)
  end
  return lines
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

-- `editflow schema ID`: one block a field. `taken`: the option names of editflow's own on the
-- commands that take fields (edit, grid): a field whose option would be one shows --set.
function M.describe(m, taken)
  taken = taken or {}
  local lines = {}
  for _, f in ipairs(m:fields()) do
    local head = printable(f.name) .. "  " .. f.type .. (f.required and ", required" or "")
    local d = default_text(f.default)
    if d then head = head .. ", default " .. short(d, 60) end
    lines[#lines + 1] = head
    lines[#lines + 1] = "    accepts: " .. short(cli_words(f.accepts), 200)
    local opt = f.file and "-i" or ("--" .. ((ALIASES[f.name] or {})[2] or M.flag_name(f.name)))
    if f.name == "prompt" then opt = "-p" end
    if not f.file and not f.name:match("^%a[%w_]*$") then opt = "none (not a name an option can have)" end
    for _, n in ipairs(f.file and {} or names_of(f)) do
      if taken[n] and opt:sub(1, 2) == "--" then opt = "--set " .. f.name .. "=VALUE (--" .. n .. " is editflow's own)" end
    end
    lines[#lines + 1] = "    option:  " .. opt
    if f.description and f.description ~= "" then lines[#lines + 1] = "    " .. short(f.description, 200) end
  end
  return table.concat(lines, "\n")
end

return M
