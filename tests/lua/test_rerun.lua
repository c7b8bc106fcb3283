-- test_rerun.lua: `editflow edit` run again on the folder of an earlier run, as a user does:
-- after editing one of the images, after deleting one, with `-o` spelled another way, once
-- the result's URLs are gone. What must hold: a file editflow did not write (or no longer
-- holds what it wrote) is never replaced; images still on disk as saved are reused however
-- the folder is named, with no download; a missing one is fetched again alone, or the
-- failure names it. Runs the binary against the sandbox on loopback; every run is bounded
-- by `timeout` (a hang limit, not a timing check).
local T = require "testlib"
local json = require "editflow.json"

local BIN = assert(os.getenv("EDITFLOW_BIN"), "EDITFLOW_BIN is not set")
local KEY = "test-key-rerun-5d2b"
local q = T.quote

local sb = T.sandbox { "--key", KEY, "--job-time", "0.05" }
local A = sb.url .. "/files/input.png"  -- an input by URL: nothing to upload

-- Runs `editflow ARGS...` in folder `cwd`. -> status, stdout, stderr
local function run(cwd, ...)
  local parts = { "cd", q(cwd), "&&", "exec timeout -k 5 120 env", "FAL_KEY=" .. q(KEY),
    "EDITFLOW_BASE_URL=" .. q(sb.url), "EDITFLOW_STORAGE_URL=" .. q(sb.url),
    "EDITFLOW_API_URL=" .. q(sb.url), "EDITFLOW_AUTH=key", q(BIN) }
  for _, a in ipairs { ... } do parts[#parts + 1] = q(a) end
  return T.sh(table.concat(parts, " "))
end

local function edit(cwd, out, prompt, ...)
  return run(cwd, "edit", "-p", prompt, "-i", A, "--seed", "5", "-n", "2", "-o", out, ...)
end

local function lines(s)
  local list = {}
  for l in (s or ""):gmatch("[^\n]+") do list[#list + 1] = l end
  return list
end

local function write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
end

-- The images in a folder (names, sorted) and their bytes.
local function images(dir)
  local names, bytes = {}, {}
  for _, n in ipairs(T.list_dir(dir)) do
    if n:sub(1, 1) ~= "." then
      names[#names + 1] = n
      bytes[n] = T.read(dir .. "/" .. n)
    end
  end
  return names, bytes
end

-- The file at path holds exactly these bytes (a failure shows sizes, not the bytes).
local function same(path, bytes, what)
  local got = T.read(path)
  if got ~= bytes then
    error(string.format("%s: %s holds %s bytes, expected the %d bytes it had", what, path,
      got and #got or "no", #bytes), 2)
  end
end

local function files_fetched() return sb.stats().by_route.files end

local function gone(on)  -- the CDN forgets every result (404), or remembers again
  sb.control { outage = on and { seconds = 600, routes = { "files" }, status = 404 } or json.null }
end

-- A first run into cwd/out: -> the folder, its two paths as printed (relative to cwd).
local function first_run(cwd, prompt, ...)
  local st, out, err = edit(cwd, "out", prompt, ...)
  T.eq(st, 0, "first run: " .. err)
  local paths = lines(out)
  T.eq(#paths, 2, "two images")
  return cwd .. "/out", paths
end

T.case("a re-run never replaces an image the user edited (downloaded images)", function()
  local cwd = T.tmpdir()
  local dir, paths = first_run(cwd, "edit me")
  local mine = T.read(cwd .. "/" .. paths[1]) .. "the user's own edit"
  write(cwd .. "/" .. paths[1], mine)
  local st, out, err = edit(cwd, "out", "edit me")
  T.eq(st, 0, "re-run: " .. err)
  same(cwd .. "/" .. paths[1], mine, "the user's file, byte for byte")
  local now = lines(out)
  T.eq(#now, 2, "two paths")
  T.ok(now[1] ~= paths[1], "the edited file is not reported as editflow's image")
  T.ok(T.read(cwd .. "/" .. now[1]) ~= mine, "editflow's image is in a file of its own")
  T.eq(now[2], paths[2], "the untouched image is reused")
  T.contains(err, "was changed since editflow saved it", "says so")
  T.eq(#(images(dir)), 3, "the user's file, editflow's image 1 and image 2")
end)

T.case("a re-run never replaces an image the user edited (inline images, one deleted)", function()
  local cwd = T.tmpdir()
  local _, paths = first_run(cwd, "inline edit me", "--sync")
  local mine = T.read(cwd .. "/" .. paths[1]):sub(1, -10) .. "edited"
  write(cwd .. "/" .. paths[1], mine)
  os.remove(cwd .. "/" .. paths[2])
  local st, out, err = edit(cwd, "out", "inline edit me", "--sync")
  T.eq(st, 0, "re-run: " .. err)
  same(cwd .. "/" .. paths[1], mine, "the user's file, byte for byte")
  local now = lines(out)
  T.eq(#now, 2, "two paths")
  T.ok(now[1] ~= paths[1] and T.read(cwd .. "/" .. now[1]) ~= mine, "image 1 saved beside it")
  T.eq(now[2], paths[2], "image 2 saved again under its name")
  T.ok(T.exists(cwd .. "/" .. paths[2]), "image 2 is back")
end)

T.case("reuse does not depend on how -o is spelled, nor on the result's URLs", function()
  local cwd = T.tmpdir()
  local dir, paths = first_run(cwd, "spell the folder")
  local names, before = images(dir)
  T.eq(#names, 2, "the first run's two images, to compare with")
  T.ok(os.execute("ln -s out " .. q(cwd .. "/link")), "symlink")
  gone(true)
  local ok, why = pcall(function()
    local fetched = files_fetched()
    for _, spelling in ipairs { "./out/", dir, dir .. "/", "link", cwd .. "/link/" } do
      local st, out, err = edit(cwd, spelling, "spell the folder")
      T.eq(st, 0, spelling .. ": " .. err)
      T.contains(err, "reused", spelling .. ": reused")
      local now = lines(out)
      T.eq(#now, 2, spelling .. ": two paths")
      for i = 1, 2 do
        T.eq(now[i]:match("[^/]+$"), paths[i]:match("[^/]+$"), spelling .. ": the same file")
      end
    end
    T.eq(files_fetched(), fetched, "no image downloaded")
    local after_names, after = images(dir)
    T.eq(#after_names, #names, "no new file")
    for _, n in ipairs(names) do same(dir .. "/" .. n, before[n], "unchanged") end
    -- a journal from before sizes and digests were recorded: the files' being there is enough
    local jpath = dir .. "/.editflow-journal.jsonl"
    local text = T.read(jpath):gsub('"files":%b[],', "")
    T.ok(not text:find('"files"', 1, true), "digests gone")
    write(jpath, text)
    local st, _, err = edit(cwd, "./out", "spell the folder")
    T.eq(st, 0, "older journal: " .. err)
    T.eq(files_fetched(), fetched, "no image downloaded for an older journal either")
  end)
  gone(false)
  if not ok then error(why, 0) end
end)

T.case("a re-run after one of two images was deleted fetches that one alone, or names it", function()
  local cwd = T.tmpdir()
  local dir, paths = first_run(cwd, "delete one")
  local keep, lost = T.read(cwd .. "/" .. paths[1]), T.read(cwd .. "/" .. paths[2])
  os.remove(cwd .. "/" .. paths[2])
  local fetched = files_fetched()
  local st, out, err = edit(cwd, "out", "delete one")
  T.eq(st, 0, "re-run: " .. err)
  T.eq(out, paths[1] .. "\n" .. paths[2] .. "\n", "both paths, as before")
  T.eq(files_fetched(), fetched + 1, "only the missing image downloaded")
  same(cwd .. "/" .. paths[2], lost, "the same image back")
  same(cwd .. "/" .. paths[1], keep, "the other untouched")
  T.eq(#(images(dir)), 2, "no other file")
  -- once the result's URLs are gone, the failure names the image and says why
  os.remove(cwd .. "/" .. paths[2])
  gone(true)
  local ok, why = pcall(function()
    st, out, err = edit(cwd, "./out", "delete one")
    T.eq(st, 1, "an operational failure")
    T.ok(not err:find("attempt to index", 1, true) and not err:find("traceback", 1, true), "no Lua error: " .. err)
    T.contains(err, "image 2", "names the image")
    T.contains(err, paths[2]:match("[^/]+$"), "and its file")
    T.contains(err, "no longer there", "says why it was not kept")
    T.contains(err, "404", "and why it could not be fetched")
    T.contains(out, paths[1]:match("[^/]+$"), "the image still there is listed")
    same(cwd .. "/" .. paths[1], keep, "and untouched")
  end)
  gone(false)
  if not ok then error(why, 0) end
end)

T.case("--resubmit-unknown follows a job the journal has accepted, never sends it again", function()
  local cwd = T.tmpdir()
  local dir, paths = first_run(cwd, "accepted then killed")
  -- what a run killed after the queue took the job leaves: the journal up to its 'accepted'
  local jpath = dir .. "/.editflow-journal.jsonl"
  local kept = {}
  for line in T.read(jpath):gmatch("[^\n]+") do
    local t = json.decode(line).t
    if t ~= "done" and t ~= "saved" and t ~= "complete" then kept[#kept + 1] = line end
  end
  T.ok(T.read(jpath):find('"t":"accepted"', 1, true), "the first run journaled the job accepted")
  write(jpath, table.concat(kept, "\n") .. "\n")
  for _, p in ipairs(paths) do os.remove(cwd .. "/" .. p) end
  local submits = sb.stats().by_route.submit
  local st, out, err = edit(cwd, "out", "accepted then killed", "--resubmit-unknown")
  T.eq(st, 0, "re-run: " .. err)
  T.eq(sb.stats().by_route.submit, submits, "nothing sent: the accepted job was followed by its id")
  T.eq(#lines(out), 2, "its two images saved")
end)

-- Saves job's result into a new folder while `hook` (durable's commit or write: a downloaded
-- or an inline image) first puts someone else's file at the very name editflow chose, as
-- another process could between the look and the commit. -> the folder, the planted path,
-- the paths saved.
local function raced(hook, input)
  local editflow = require "editflow"
  local durable = require "editflow.durable"
  local c = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = KEY,
    poll_interval = 0.02 }
  local _, job = assert(c:edit(input))
  local d = T.tmpdir()
  local real, planted = durable[hook], nil
  durable[hook] = function(...)
    local path = select(hook == "commit" and 2 or 1, ...)  -- commit(transfer, path), write(path, bytes)
    if not planted and type(path) == "string" and path:find("^" .. d:gsub("%p", "%%%0") .. "/") then
      planted = path
      write(path, "someone else's file")
    end
    return real(...)
  end
  local ok, paths, serr = pcall(job.save, job, d, { name = "race" })
  durable[hook] = real
  if not ok then error(paths, 0) end
  T.ok(planted, hook .. ": the name was taken just before the " .. hook)
  T.ok(paths, hook .. ": saved: " .. tostring(serr))
  return d, planted, paths
end

T.case("a file put at an image's name just before its commit is never replaced (downloaded, inline)", function()
  for _, case in ipairs {
    { "commit", { prompt = "race download", image_urls = { A }, seed = 8 } },
    { "write", { prompt = "race inline", image_urls = { A }, seed = 8, sync_mode = true } },
  } do
    local hook, input = case[1], case[2]
    local d, planted, paths = raced(hook, input)
    same(planted, "someone else's file", hook .. ": the other file")
    T.eq(#paths, 1, hook .. ": one image")
    T.ok(paths[1] ~= planted, hook .. ": the image under another name")
    T.eq(require("editflow.core").sniff(T.read(paths[1]) or ""), "png", hook .. ": holding the image")
    T.eq(#T.list_dir(d), 2, hook .. ": both files, nothing else")
  end
end)

T.run()
