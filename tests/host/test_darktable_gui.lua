-- tests/host/test_darktable_gui.lua: the darktable plugin under its GUI, on Xvfb. darktable
-- starts with a luarc that enables the plugin (tests/fixtures/darktable/luarc_gui.lua), two
-- photos selected; the test finds the panel's "edit selected" button on the screen (the
-- config's user.css paints it magenta; the screen is Xvfb's frame buffer file) and clicks it
-- with xdotool, a real pointer click. While the jobs run (the sandbox holds each 2 s) a
-- heartbeat Lua job ticking every 100 ms must never be held 0.5 s or more: the plugin waits on
-- editflow.pollfile() through darktable.control.read, which frees darktable's Lua lock. Both
-- results must be imported, grouped with their sources and tagged. Xvfb, darktable and the
-- sandbox are stopped by their PIDs on every way out; every wait is bounded, all of them
-- together by BUDGET. A second click while the edit runs must not start a second edit. darktable, Xvfb or xdotool missing
-- is a failure, never a skip. EDITFLOW_DT_SHOTS=DIR keeps the screen (XWD) at the click, while
-- the jobs run and at the end, for docs/img (convert them with ImageMagick).
local T = require "testlib"
local core = require "editflow.core"

local SRC = T.source_dir
for _, tool in ipairs { "darktable", "Xvfb", "xdotool" } do
  assert(T.sh("command -v " .. tool) == 0, tool .. " is not installed (apt: darktable xvfb xdotool); "
    .. "the darktable GUI test needs it")
end

local work = T.tmpdir()
local pids = {}  -- name -> PID of everything started here, stopped by PID at the end

-- TERM, up to 5 s for it to go, then KILL: never an unbounded wait. The processes run in the
-- background of a shell that has already exited (no pipe to close, so nothing here waits on
-- them but this bounded loop).
local function stop(name)
  local pid = pids[name]
  if not pid then return end
  pids[name] = nil
  os.execute(string.format("sh -c 'kill %d 2>/dev/null; i=0; while [ $i -lt 50 ]; do "
    .. "kill -0 %d 2>/dev/null || break; sleep 0.1; i=$((i+1)); done; kill -9 %d 2>/dev/null'",
    pid, pid, pid))
end

-- Runs cmd in the background; returns its PID (read from a file the shell writes).
local function start(name, cmd)
  local pidfile = work .. "/" .. name .. ".pid"
  os.execute("sh -c " .. T.quote(cmd .. " & echo $! >" .. T.quote(pidfile)))
  pids[name] = T.ok(tonumber(T.read(pidfile)), "the PID of " .. name)
  return pids[name]
end

-- Whatever ends the run (a failed check, a raised error), the processes are stopped: the case
-- stops them itself on every way out (see the end), and this is the last resort.
local function stop_all()
  for _, name in ipairs { "darktable", "xvfb" } do stop(name) end
end
local guard = setmetatable({}, { __gc = stop_all })
_G.__dt_gui_guard = guard

-- Every wait is bounded by its own limit and by one budget for them all: the waits together
-- stay under BUDGET seconds, well inside CTest's TIMEOUT of 300 (the stops after them take at
-- most 5 s each).
local BUDGET = 200
local budget_end = core.monotime() + BUDGET

local function wait_for(what, seconds, fn)
  local deadline = math.min(core.monotime() + seconds, budget_end)
  while core.monotime() < deadline do
    local v = fn()
    if v then return v end
    os.execute("sleep 0.1")
  end
  error("timed out after " .. seconds .. " s waiting for " .. (type(what) == "function" and what() or what), 2)
end

local function read_state(path)
  local s = {}
  for line in (T.read(path) or ""):gmatch("[^\n]+") do
    local k, v = line:match("^([^=]+)=(.*)$")
    if k then s[k] = v end
  end
  return s
end

-- Xvfb's frame buffer file (-fbdir) is an XWD image of the screen, kept current: the box of
-- the pixels of exactly this colour, as { x0, y0, x1, y1 }, or nil.
local function find_colour(path, r, g, b)
  local data = T.read(path)
  if not data or #data < 100 then return nil end
  local f = { string.unpack(">" .. string.rep("I4", 25), data) }
  local header, width, height, bpp, stride, ncolors = f[1], f[5], f[6], f[12], f[13], f[20]
  if bpp ~= 32 then error("frame buffer: " .. bpp .. " bits a pixel, expected 32") end
  local base = header + ncolors * 12
  local want = string.char(b, g, r)  -- 32-bit little-endian pixels: blue, green, red, pad
  local x0, y0, x1, y1
  for y = 0, height - 1 do
    local row = base + y * stride
    local at = row + 1
    while true do
      local i = data:find(want, at, true)
      if not i or i > row + width * 4 then break end
      if (i - row - 1) % 4 == 0 then
        local x = (i - row - 1) // 4
        x0, x1 = math.min(x0 or x, x), math.max(x1 or x, x)
        y0, y1 = math.min(y0 or y, y), math.max(y1 or y, y)
      end
      at = i + 1
    end
  end
  if x0 then return { x0, y0, x1, y1 } end
  return nil
end

local sb = T.sandbox { "--job-time", "2" }

local function case()
  local photos = work .. "/photos"
  assert(core.mkdir(photos))
  assert(core.write_file(photos .. "/a-photo.png", T.read(SRC .. "/tests/fixtures/a.png")))
  assert(core.write_file(photos .. "/b-photo.png", T.read(SRC .. "/tests/fixtures/b.png")))
  local config = work .. "/config"
  assert(core.mkdir(config))
  assert(core.mkdir(work .. "/fb"))
  assert(core.write_file(config .. "/darktablerc", table.concat({
    "lua/_scripts_install/dont_show=TRUE", "lua/_scripts_install/initialized=TRUE",
    "opencl=FALSE", "run_crawler_on_start=FALSE", "themes/usercss=TRUE",
    "ui_last/window_x=0", "ui_last/window_y=0", "ui_last/window_w=1280", "ui_last/window_h=800",
    "ui_last/maximized=TRUE", "" }, "\n")))
  assert(core.write_file(config .. "/user.css",
    "#editflow_edit_selected { background-color: #ff00ff; background-image: none; }\n"))
  assert(core.write_file(config .. "/luarc",
    'dofile("' .. SRC .. '/tests/fixtures/darktable/luarc_gui.lua")\n'))

  -- Xvfb picks a free display and names it on the descriptor -displayfd gives it
  start("xvfb", "exec Xvfb -displayfd 3 -screen 0 1280x800x24 -fbdir " .. T.quote(work .. "/fb")
    .. " -nolisten tcp 3>" .. T.quote(work .. "/display") .. " 2>" .. T.quote(work .. "/xvfb.log"))
  local display = wait_for("Xvfb's display number", 30, function()
    return (T.read(work .. "/display") or ""):match("^(%d+)\n")
  end)
  local fb = work .. "/fb/Xvfb_screen0"
  local state_file = work .. "/state"
  local vars = {
    DISPLAY = ":" .. display, HOME = work .. "/home", XDG_CONFIG_HOME = work .. "/home/.config",
    XDG_CACHE_HOME = work .. "/home/.cache", FAL_KEY = "test-key", EDITFLOW_BASE_URL = sb.url,
    EDITFLOW_STORAGE_URL = sb.url, EDITFLOW_DT_PLUGIN = SRC .. "/hosts/darktable",
    EDITFLOW_DT_PHOTOS = photos, EDITFLOW_DT_STATE = state_file,
    EDITFLOW_DT_PROMPT = "make it snow", EDITFLOW_DT_SEED = "11",
  }
  local assign = {}
  for k, v in pairs(vars) do assign[#assign + 1] = k .. "=" .. T.quote(v) end
  local asan = os.getenv("LD_PRELOAD")  -- the sanitizer build's module needs the ASan runtime first
  if asan then assign[#assign + 1] = "LD_PRELOAD=" .. T.quote(asan) .. " ASAN_OPTIONS=detect_leaks=0" end
  start("darktable", "exec env -u LD_PRELOAD " .. table.concat(assign, " ") .. " darktable --configdir "
    .. T.quote(config) .. " --library :memory: --cachedir " .. T.quote(work .. "/cache")
    .. " >" .. T.quote(work .. "/darktable.log") .. " 2>&1")

  local function log(what)
    return function()
      return what .. "\n-- state: " .. tostring(T.read(state_file)) .. "\n-- darktable's log:\n"
        .. tostring(T.read(work .. "/darktable.log"))
    end
  end
  wait_for(log("the plugin's heartbeat"), 90, function() return read_state(state_file).ready == "true" end)
  -- the button where it stays: the same box on two looks half a second apart (the lighttable
  -- is still laying itself out for a moment after the panel first shows)
  local last
  local box = wait_for("the magenta 'edit selected' button, settled on the screen", 60, function()
    local b = find_colour(fb, 255, 0, 255)
    local same = b and last and table.concat(b, ",") == table.concat(last, ",")
    last = b
    if not same then os.execute("sleep 0.4") end
    return same and b
  end)
  local x0, y0, x1, y1 = table.unpack(box)
  T.ok(x1 - x0 > 20 and y1 - y0 > 8, "a button-sized box: " .. x0 .. "," .. y0 .. " " .. x1 .. "," .. y1)
  local shots = os.getenv("EDITFLOW_DT_SHOTS")
  local before = sb.stats().by_route.submit
  -- the click: the pointer onto the button's centre, then button 1
  local function click()
    local st, out, err = T.sh(string.format("DISPLAY=:%s xdotool mousemove %d %d click 1", display,
      (x0 + x1) // 2, (y0 + y1) // 2))
    T.eq(st, 0, "xdotool: " .. tostring(out) .. tostring(err))
  end
  click()
  wait_for(log("the edit to start"), 30, function() return read_state(state_file).edits == "1" end)
  -- a second click while the edit runs: the button is insensitive, the plugin edits once
  os.execute("sleep 0.3")
  click()
  if shots then
    wait_for("both jobs submitted", 30, function() return sb.stats().by_route.submit - before >= 2 end)
    os.execute("sleep 1")
    os.execute("cp " .. T.quote(fb) .. " " .. T.quote(shots .. "/panel.xwd"))
  end
  local s = wait_for(log("the edit to end"), 90, function()
    local s = read_state(state_file)
    return s.done == "true" and s
  end)
  T.eq(s.error, nil, "the edit raised")
  T.eq(s.edits, "1", "one edit for two clicks")
  T.eq(s.hide, "false,true", "script_manager's destroy hides the panel, restart shows it")
  T.eq(sb.stats().by_route.submit - before, 2, "two submits for two photos, clicked twice")
  local results = {}
  for item in s.imported:gmatch("[^;]+") do results[#results + 1] = item end
  T.eq(#results, 2, "two results: " .. s.imported)
  for i, item in ipairs(results) do
    local n, name, grouped, tags, why = item:match("^(%d+):([^:]*):([^:]*):([^:]*):(.*)$")
    T.eq(tonumber(n), i, "result order")
    T.match(name, "_editflow%-1%.png$", "result " .. i .. " imported (" .. s.imported .. ")")
    T.eq(grouped, "true", "result " .. i .. " grouped with its source")
    T.contains(tags, "editflow|fal-ai/qwen-image-edit-plus", "result " .. i .. " tagged")
    T.eq(why, "nil", "result " .. i .. " error")
  end
  local gap, ticks = tonumber(s.max_gap), tonumber(s.run_ticks)
  T.ok(ticks >= 10, "the heartbeat ticked while the jobs ran (" .. ticks .. " ticks)")
  T.ok(gap < 0.5, string.format("the heartbeat's longest gap while the jobs ran: %.3f s", gap))
  print(string.format("# heartbeat: %d ticks during the edit, longest gap %.3f s", ticks, gap))
  if shots then
    os.execute("sleep 2")  -- the results' thumbnails
    os.execute("cp " .. T.quote(fb) .. " " .. T.quote(shots .. "/results.xwd"))
  end
  -- darktable's own way out first (ctrl+q), so it closes its library; then by PID regardless
  T.sh(string.format("DISPLAY=:%s xdotool key ctrl+q", display))
  local pid = pids.darktable
  pcall(wait_for, "darktable to quit", 15, function() return T.sh("kill -0 " .. pid) ~= 0 end)
end

T.case("darktable GUI: a real click on 'edit selected' edits two photos; the heartbeat never stalls", function()
  local ok, err = pcall(case)
  stop_all()  -- by PID, on every way out of the case
  if not ok then error(err, 0) end
end)

T.run()
