-- test_package.lua: editflow as users install it.
--   * `luarocks make` of editflow-dev-1.rockspec, from a copy of the source tree, into a private
--     tree (no network: --deps-mode=none; editflow needs no other rock); then a stock lua5.4
--     with `luarocks path` runs an edit against the sandbox and saves a PNG, and the tree's
--     bin/editflow runs;
--   * `cmake --install` into a temporary prefix: the man page renders with `man -l` and names
--     every long option of the command line's option tables; bash completion defines its
--     function and offers each command's options; the ready scripts run from another folder;
--   * docs/api.md names everything `require "editflow"` exports, and every method of a client
--     and of a job.
local T = require "testlib"
local core = require "editflow.core"

local sb = T.sandbox { "--job-time", "0.05" }
local SRC, BUILD = T.source_dir, T.build_dir
local q = T.quote

-- The long options of the command line's option tables (COMMON, EDIT, GRID, JOB_COMMON, RUN,
-- ...), read from the sources of lua/editflow/cli/: the tables are local to their modules. An
-- entry reads `{ "p", "prompt", ...}` or `{ nil, "endpoint", ... }`.
local function cli_options()
  local parts = {}
  for _, name in ipairs(T.list_dir(SRC .. "/lua/editflow/cli")) do
    if name:match("%.lua$") then parts[#parts + 1] = assert(T.read(SRC .. "/lua/editflow/cli/" .. name)) end
  end
  local text = table.concat(parts, "\n")
  local tables, current, n = {}, nil, 0
  for line in text:gmatch("[^\n]*") do
    local name = line:match("^local ([%u_]+) = with_[%w_]+ {") or line:match("^local ([%u_]+) = {%s*$")
    if name then
      current = {}
      tables[name] = current
    elseif line:match("^}") then
      current = nil
    elseif current then
      local long = line:match('^%s*{%s*[%w"]+%s*,%s*"(%a[%w%-]*)"')
      if long then
        current[#current + 1] = long
        n = n + 1
      end
    end
  end
  for _, t in ipairs { "COMMON", "EDIT", "GRID", "MODEL_COMMON", "JOB_COMMON", "STATUS", "RESULT", "WAIT", "ABOUT", "RUN" } do
    T.ok(tables[t] and #tables[t] > 0, "option table " .. t .. " found in cli/init.lua")
  end
  T.ok(n >= 35, "the option tables were read (" .. n .. " entries)")
  return tables
end

-- Copies a file into a folder that may not exist yet (one level).
local function core_copy(from, to)
  core.mkdir(to:match("^(.*)/"))
  local data = T.read(from)
  local f = data and io.open(to, "wb")
  if not f then return false end
  f:write(data)
  f:close()
  return true
end

local function is_png(path)
  local f = io.open(path, "rb")
  if not f then return false end
  local head = f:read(8)
  f:close()
  return head == "\137PNG\r\n\26\n"
end

-- Every name written `name`, `x.name(...)`, `x:name(...)` or `name(...)` in a code span.
local function documented_names(md)
  local names = {}
  for span in md:gmatch("`([^`\n]+)`") do
    local head = span:match("^[%a_][%w_]*[.:]([%a_][%w_]*)") or span:match("^([%a_][%w_]*)")
    if head then names[head] = true end
  end
  return names
end

T.case("docs/api.md documents every export, client method and job method", function()
  local md = assert(T.read(SRC .. "/docs/api.md"), "docs/api.md exists")
  local names = documented_names(md)
  local editflow = require "editflow"
  T.ok(package.searchpath("editflow", package.path):find(SRC, 1, true), "editflow loaded from the source tree")
  local missing = {}
  local function check(what, t)
    local count = 0
    for k, v in pairs(t) do
      if type(k) == "string" and not k:match("^__") and (what == "editflow" or type(v) == "function") then
        count = count + 1
        if not names[k] then missing[#missing + 1] = what .. "." .. k end
      end
    end
    T.ok(count > 0, what .. " has names to check")
  end
  check("editflow", editflow)
  local c = editflow.client { key = "k", base_url = "http://127.0.0.1:9" }
  check("client", getmetatable(c).__index)
  check("job", require("editflow.job")._methods)
  table.sort(missing)
  T.eq(table.concat(missing, ", "), "", "names missing from docs/api.md")
end)

T.case("luarocks make installs the module and the host into a private tree", function()
  local work = T.tmpdir()
  local copy, tree, home = work .. "/src", work .. "/tree", work .. "/home"
  -- A copy of the source without build folders, so the rock is built from scratch and
  -- nothing is left in the checkout (luarocks builds in ./build.luarocks).
  local st, out, err = T.sh(string.format("mkdir -p %s %s && tar -C %s --exclude=./.git --exclude='./build*' -cf - . "
    .. "| tar -C %s -xf -", q(copy), q(home), q(SRC), q(copy)))
  T.eq(st, 0, "copy of the source tree: " .. tostring(err))
  T.ok(T.exists(copy .. "/editflow-dev-1.rockspec"), "the rockspec is at the top")
  T.ok(T.exists(copy .. "/LICENSE"), "LICENSE is at the top")
  T.contains(T.read(copy .. "/LICENSE"), "Copyright (c) 2026 the editflow authors", "LICENSE")

  -- HOME apart: no user configuration (servers, trees) can take part. The only rocks server
  -- named is a closed loopback port: `make` must need none (offline, next to Debian's
  -- lua-argparse, which is no rock).
  local conf = work .. "/config-5.4.lua"
  local cf = assert(io.open(conf, "w"))
  cf:write('rocks_servers = { "http://127.0.0.1:9/rocks" }\n')
  cf:close()
  local rocks = "env HOME=" .. q(home) .. " LUAROCKS_CONFIG=" .. q(conf) .. " luarocks --lua-version 5.4 --tree " .. q(tree)
  st, out, err = T.sh("cd " .. q(copy) .. " && " .. rocks .. " lint editflow-dev-1.rockspec")
  T.eq(st, 0, "luarocks lint: " .. tostring(out) .. tostring(err))
  st, out, err = T.sh("cd " .. q(copy) .. " && CMAKE_BUILD_PARALLEL_LEVEL=4 timeout 600 " .. rocks
    .. " make editflow-dev-1.rockspec")
  T.eq(st, 0, "luarocks make, offline and with no --deps-mode: " .. tostring(out) .. tostring(err))
  T.contains(out, "editflow dev-1 is now installed in " .. tree, "luarocks make")
  T.ok(not (out .. err):lower():find("warning", 1, true), "luarocks make warns of nothing: " .. out .. err)
  T.ok(not (out .. err):find("127.0.0.1:9", 1, true), "no rocks server was asked: " .. out .. err)
  T.contains(out, "argparse.lua for the host: /", "the host's build found argparse.lua")
  local cache = T.read(copy .. "/build.luarocks/CMakeCache.txt") or ""
  T.contains(cache, "BUILD_TESTING:BOOL=OFF", "tests off in the rock's build")
  T.ok(not T.exists(copy .. "/build.luarocks/tests/test_engine"), "no test built")

  local lmod, cmod = tree .. "/share/lua/5.4/editflow", tree .. "/lib/lua/5.4/editflow"
  T.ok(T.exists(cmod .. "/core.so"), "editflow.core in lib/lua/5.4/editflow/")
  for _, f in ipairs { "init.lua", "client.lua", "job.lua", "runtime.lua", "experiment/init.lua",
                       "experiment/template.lua", "experiment/gallery.lua" } do
    T.ok(T.exists(lmod .. "/" .. f), f .. " in share/lua/5.4/editflow/")
  end
  T.ok(not T.exists(lmod .. "/cli/init.lua"), "editflow/cli is not installed (it lives in the host)")

  -- A stock lua5.4 that knows only the tree, from another folder.
  local run_dir = work .. "/run"
  local script = work .. "/try.lua"
  local f = assert(io.open(script, "w"))
  f:write(string.format([[
local editflow = require "editflow"
assert(package.searchpath("editflow", package.path):find(%q, 1, true), "editflow from the tree")
assert(package.searchpath("editflow.core", package.cpath):find(%q, 1, true), "editflow.core from the tree")
local c = editflow.client{}
local result, job = assert(c:edit{ prompt = "from a rock", image_urls = { %q } })
for _, p in ipairs(assert(job:save("out"))) do print(p) end
]], tree, tree, SRC .. "/tests/fixtures/a.png"))
  f:close()
  st, out, err = T.sh(string.format("mkdir -p %s && cd %s && eval \"$(%s path)\" && "
    .. "env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 -u EDITFLOW_AUTH -u EDITFLOW_ENDPOINT FAL_KEY=test-key EDITFLOW_BASE_URL=%s EDITFLOW_STORAGE_URL=%s EDITFLOW_API_URL=%s "
    .. "timeout 120 lua5.4 %s", q(run_dir), q(run_dir), rocks, q(sb.url), q(sb.url), q(sb.url), q(script)))
  T.eq(st, 0, "stock lua5.4 ran an edit from the tree: " .. tostring(err))
  local saved = out:match("^(out/[%w-]+%-1%.png)\n$")
  T.ok(saved, "one saved path, relative to the current folder: " .. tostring(out))
  T.ok(is_png(run_dir .. "/" .. saved), "the saved file is a PNG")

  st, out, err = T.sh(q(tree .. "/bin/editflow") .. " --version")
  T.eq(st, 0, "the tree's editflow --version: " .. tostring(err))
  T.match(out, "^editflow %d+%.%d+%.%d+ %(libcurl/", "--version")
  os.execute("rm -rf " .. q(work))
end)

T.case("the host's build takes argparse.lua from where lua5.4 finds it (LUA_PATH first)", function()
  local work = T.tmpdir()
  local mine = work .. "/lua"
  T.sh("mkdir -p " .. q(mine) .. " && cp /usr/share/lua/5.4/argparse.lua " .. q(mine) .. "/argparse.lua")
  local st, out, err = T.sh(string.format("env LUA_PATH_5_4=%s cmake -S %s -B %s -DBUILD_TESTING=OFF",
    q(mine .. "/?.lua;;"), q(SRC), q(work .. "/b")))
  T.eq(st, 0, "cmake configure: " .. tostring(out) .. tostring(err))
  T.contains(out, "argparse.lua for the host: " .. mine .. "/argparse.lua", "the copy on LUA_PATH_5_4 is used")
  -- with argparse nowhere, the host is left out with a warning and the module is built
  st, out, err = T.sh(string.format("env LUA_PATH_5_4=%s cmake -S %s -B %s -DBUILD_TESTING=OFF "
    .. "-DEDITFLOW_ARGPARSE_DIRS=%s && cmake --build %s -j2",
    q(work .. "/none/?.lua"), q(SRC), q(work .. "/a"), q(work .. "/none"), q(work .. "/a")))
  T.eq(st, 0, "configure and build without argparse: " .. tostring(out) .. tostring(err))
  T.contains(err, "the editflow host is not built", "CMake says the host is left out")
  T.ok(T.exists(work .. "/a/lib/editflow/core.so"), "the module is built")
  T.ok(not T.exists(work .. "/a/bin/editflow"), "no host")
  -- with the host off, argparse is not looked for at all: the module alone needs none
  st, out, err = T.sh(string.format("cmake -S %s -B %s -DBUILD_TESTING=OFF -DEDITFLOW_HOST=OFF -DARGPARSE_LUA=/nonexistent",
    q(SRC), q(work .. "/m")))
  T.eq(st, 0, "cmake configure without the host: " .. tostring(out) .. tostring(err))
  T.ok(not out:find("argparse.lua for the host", 1, true), "no argparse asked for: " .. out)
  os.execute("rm -rf " .. q(work))
end)

-- One `cmake --install` shared by the cases below.
local prefix
local function installed()
  if prefix then return prefix end
  prefix = T.tmpdir()
  local st, out, err = T.sh("cmake --install " .. q(BUILD) .. " --prefix " .. q(prefix))
  T.eq(st, 0, "cmake --install: " .. tostring(err) .. tostring(out))
  return prefix
end

T.case("cmake --install: man page editflow(1) renders and covers the command line", function()
  local p = installed()
  local page = p .. "/share/man/man1/editflow.1"
  T.ok(T.exists(page), "share/man/man1/editflow.1")
  -- C locale: ASCII hyphens; wide lines and no hyphenation (.nh), so options stay whole.
  local st, out, err = T.sh("LC_ALL=C MANWIDTH=200 MANPAGER=cat PAGER=cat man -l " .. q(page))
  T.eq(st, 0, "man -l: " .. tostring(err))
  T.contains(out, "EXIT STATUS", "man page")
  T.contains(out, "edit", "man page")
  for _, s in ipairs { "SYNOPSIS", "ENVIRONMENT", "FILES", "editflow edit", "editflow grid",
      "editflow status", "editflow result", "editflow cancel", "editflow run", "--help", "--version",
      "FAL_KEY", "FAL_KEY_ID", "FAL_KEY_SECRET", "EDITFLOW_BASE_URL", "EDITFLOW_AUTH",
      "EDITFLOW_ENDPOINT", "EDITFLOW_FOLLOW", "128 + signal", "130", "143", "129",
      ".editflow-journal.jsonl", ".editflow.lock", ".editflow-blobs/", "manifest.jsonl", "index.html" } do
    T.contains(out, s, "man page mentions")
  end
  T.match(out, "\n       0%s", "exit status 0")
  T.match(out, "\n       1%s", "exit status 1")
  T.match(out, "\n       2%s", "exit status 2")
  local missing = {}
  for _, list in pairs(cli_options()) do
    for _, long in ipairs(list) do
      if not out:find("--" .. long, 1, true) then missing[#missing + 1] = "--" .. long end
    end
  end
  T.eq(table.concat(missing, " "), "", "long options missing from the man page")
end)

T.case("cmake --install: bash completion offers the commands, then each command's options", function()
  local p = installed()
  local comp = p .. "/share/bash-completion/completions/editflow"
  T.ok(T.exists(comp), "share/bash-completion/completions/editflow")
  local st, out, err = T.sh("bash -c " .. q("source " .. q(comp) .. "; complete -p editflow"))
  T.eq(st, 0, "complete -p editflow: " .. tostring(err))
  T.match(out, "%-F _editflow editflow", "a completion function")
  -- What <TAB> offers after `editflow WORDS...`.
  local function offers(...)
    local words = { "editflow", ... }
    for i, w in ipairs(words) do words[i] = q(w) end
    local script = "source " .. q(comp) .. "; COMP_WORDS=(" .. table.concat(words, " ") .. "); "
      .. "COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _editflow; printf '%s\\n' \"${COMPREPLY[@]}\""
    local s, o, e = T.sh("bash -c " .. q(script))
    T.eq(s, 0, "completion: " .. tostring(e))
    local set = {}
    for w in o:gmatch("[^\n]+") do set[w] = true end
    return set
  end
  local cmds = offers("")
  for _, c in ipairs { "edit", "grid", "report", "rate", "schema", "price", "status", "result", "cancel", "wait",
      "run", "help", "completion" } do
    T.ok(cmds[c], "command " .. c .. " offered")
  end
  local top = offers("-")
  T.ok(top["--help"] and top["--version"], "--help and --version offered")
  local opts = cli_options()
  local function expect(cmd, list, got)
    for _, long in ipairs(list) do T.ok(got["--" .. long], cmd .. ": --" .. long .. " offered") end
  end
  local edit, grid = offers("edit", "--"), offers("grid", "--")
  expect("edit", opts.EDIT, edit)
  expect("edit", opts.COMMON, edit)
  expect("grid", opts.GRID, grid)
  expect("grid", opts.COMMON, grid)
  expect("report", opts.REPORT, offers("report", "--"))
  expect("rate", opts.RATE, offers("rate", "--"))
  expect("edit", opts.MODEL_COMMON, edit)
  expect("grid", opts.MODEL_COMMON, grid)
  expect("schema", opts.ABOUT, offers("schema", "--"))
  T.ok(not edit["--var"] and not grid["--no-journal"], "options are per command")
  local status, result = offers("status", "--"), offers("result", "--")
  expect("status", opts.STATUS, status)
  expect("result", opts.RESULT, result)
  expect("wait", opts.WAIT, offers("wait", "--"))
  expect("cancel", opts.JOB_COMMON, offers("cancel", "--"))
  T.ok(not status["--output"] and not result["--no-logs"], "each job command its own options")
  expect("run", opts.RUN, offers("run", "--"))
  T.ok(offers("edit", "--format", "")["jpeg"], "values of --format offered")
end)

T.case("cmake --install: the ready scripts run from any folder", function()
  local p = installed()
  local dir = p .. "/share/editflow/scripts"
  for _, f in ipairs { "style_grid.lua", "batch_folder.lua", "combine_refs.lua", "edit_pair.lua",
                       "assets/portrait.png", "assets/street.png" } do
    T.ok(T.exists(dir .. "/" .. f), "share/editflow/scripts/" .. f)
  end
  local elsewhere = T.tmpdir()  -- neither the source tree nor the prefix
  local env = "env -u EDITFLOW_AUTH -u EDITFLOW_ENDPOINT FAL_KEY=test-key EDITFLOW_BASE_URL=" .. q(sb.url)
    .. " EDITFLOW_STORAGE_URL=" .. q(sb.url) .. " EDITFLOW_API_URL=" .. q(sb.url) .. " "
  local bin = q(p .. "/bin/editflow")

  -- edit_pair.lua: its two photos from its own assets/, the output relative to the current folder.
  local st, out, err = T.sh("cd " .. q(elsewhere) .. " && " .. env .. "timeout 120 " .. bin .. " run -q "
    .. q(dir .. "/edit_pair.lua") .. " pair-out")
  T.eq(st, 0, "edit_pair.lua from another folder: " .. tostring(err))
  local n = 0
  for line in out:gmatch("[^\n]+") do
    T.match(line, "^pair%-out/edit[12]%-1%.png$", "saved path")
    T.ok(is_png(elsewhere .. "/" .. line), line .. " is a PNG in the current folder")
    n = n + 1
  end
  T.eq(n, 2, "two edits saved")

  -- style_grid.lua, dry run: its photo found next to it, nothing sent.
  st, out, err = T.sh("cd " .. q(elsewhere) .. " && " .. env .. "EDITFLOW_DRY_RUN=1 timeout 60 " .. bin
    .. " run -q " .. q(dir .. "/style_grid.lua"))
  T.eq(st, 0, "style_grid.lua dry run from another folder: " .. tostring(err))
  T.match(out, "^plan: 16 jobs", "style_grid plan")

  -- batch_folder.lua: the user's folder and output are relative to the current folder.
  T.ok(core_copy(SRC .. "/tests/fixtures/a.png", elsewhere .. "/photos/a.png"), "a photo to edit")
  st, out, err = T.sh("cd " .. q(elsewhere) .. " && " .. env .. "timeout 120 " .. bin .. " run -q "
    .. q(dir .. "/batch_folder.lua") .. " photos 'make it blue' exp")
  T.eq(st, 0, "batch_folder.lua from another folder: " .. tostring(err))
  T.eq(out, "exp/batch/index.html\n", "gallery path, relative to the current folder")
  T.ok(T.exists(elsewhere .. "/exp/batch/manifest.jsonl"), "the manifest in the current folder")
  os.execute("rm -rf " .. q(elsewhere))
end)

T.case("cmake --install: LICENSE and the API reference under share/doc/editflow", function()
  local p = installed()
  T.ok(T.exists(p .. "/share/doc/editflow/LICENSE"), "LICENSE installed")
  T.ok(T.exists(p .. "/share/doc/editflow/api.md"), "docs/api.md installed")
  os.execute("rm -rf " .. q(p))
end)

T.run()
