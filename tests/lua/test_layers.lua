-- test_layers.lua: the arrows between lua/editflow's layers point one way (STYLE, "A layout
-- that shows the layers"): the library core requires only core modules; the experiment layer
-- requires core and its own; the public face (editflow/init.lua) assembles both; the host-only
-- cli/ may require anything. Also: nothing below the host prints -- the library tells through
-- editflow.events and the host shows.
local T = require "testlib"

-- 1 core, 2 experiment, 3 the public face, 4 the host's command line.
local function layer(mod)
  if mod == "editflow" then return 3 end
  if mod == "editflow.cli" or mod:find("^editflow%.cli%.") then return 4 end
  if mod == "editflow.experiment" or mod:find("^editflow%.experiment%.") then return 2 end
  return 1
end

local modules = T.modules

local function requires(text)
  local out = {}
  for dep in text:gmatch("require%s*%(?%s*[\"']([%w_.]+)[\"']") do out[#out + 1] = dep end
  return out
end

T.case("every module requires only modules of its layer or below", function()
  local list = modules()
  T.ok(#list >= 20, "found the modules (" .. #list .. ")")
  local checked = 0
  for _, m in ipairs(list) do
    local text = T.read(m.path)
    for _, dep in ipairs(requires(text)) do
      if dep:find("^editflow") and dep ~= "editflow.core" then
        checked = checked + 1
        if layer(dep) > layer(m.mod) then
          error(string.format("%s (layer %d) requires %s (layer %d): an arrow pointing up",
            m.mod, layer(m.mod), dep, layer(dep)))
        end
      end
    end
  end
  T.ok(checked > 40, "requires were read (" .. checked .. ")")
end)

T.case("the check itself catches an upward arrow", function()
  T.eq(layer("editflow.cli.progress"), 4, "cli layer")
  T.ok(layer("editflow.cli.progress") > layer("editflow.job"), "a core module requiring the cli is refused")
  T.ok(layer("editflow") > layer("editflow.experiment"), "the experiment layer may not require the public face")
  T.eq(requires('local x = require("editflow.cli.args")\nlocal y = require "editflow.job"')[1], "editflow.cli.args", "parsed")
end)

T.case("the library never prints: no io.stdout, print or io.stderr below the host", function()
  for _, m in ipairs(modules()) do
    if layer(m.mod) < 4 then
      local n = 0
      for line in T.read(m.path):gmatch("[^\n]+") do
        n = n + 1
        local code = line:gsub("%-%-.*$", "")
        local allowed = code:find("verbose", 1, true)  -- verbose = true asks for stderr lines
        if (code:find("io%.stdout") or code:find("[^%w_.:]print%(") or code:find("io%.stderr")) and not allowed then
          error(string.format("%s:%d writes to the terminal: %s", m.path, n, line))
        end
      end
    end
  end
end)

T.run()
