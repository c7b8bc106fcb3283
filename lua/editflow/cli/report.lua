-- editflow.cli.report: `editflow report DIR` (what an experiment folder's runs came to, per
-- model, prompt, seed and variable value: a table, or --json) and `editflow rate DIR` (ratings
-- merged into DIR/ratings.json: --import FILE from the gallery's export, or one job's from the
-- shell). Host only: the numbers are editflow.experiment.report's, the merge is
-- editflow.experiment.ratings'; this file reads the command line and prints.
-- Exit: 0 done; 1 a file that could not be read or written (no manifest, an import file not
-- there); 2 a usage mistake or invalid input (an unknown run or dimension, a rating out of
-- range), with nothing written.
local core = require "editflow.core"
local json = require "editflow.json"
local report = require "editflow.experiment.report"
local ratings = require "editflow.experiment.ratings"
local c = require "editflow.cli.common"
local env = require("editflow.env").get
local out, usage_error, parse_command = c.out, c.usage_error, c.parse_command

local M = {}

local REPORT = {
  { nil, "run", arg = true, metavar = "ID|all", help = "the run to report (default: the latest); all: every run, each job once (its latest record)" },
  { nil, "by", arg = true, multi = true, metavar = "DIM", help = "only this dimension: model, prompt, seed or a variable's name (repeatable)" },
  { nil, "json", help = "print one JSON object: {\"total\": {...}, \"by\": {\"model\": [...], ...}, \"run\", \"runs\"}" },
  { "h", "help", help = "show this help" },
}

local RATE = {
  { nil, "import", arg = true, metavar = "FILE", help = "merge a ratings file (the gallery's export; - reads standard input)" },
  { nil, "stars", arg = true, metavar = "N", help = "with REQUEST_ID: its stars, 1 to 5 (none removes them)" },
  { nil, "best", help = "with REQUEST_ID: mark it best" },
  { nil, "not-best", help = "with REQUEST_ID: unmark it" },
  { nil, "note", arg = true, metavar = "TEXT", help = "with REQUEST_ID: its note (up to 2000 bytes; '' removes it)" },
  { nil, "json", help = "print what was merged as one JSON object" },
  { "q", "quiet", help = "no warning when the gallery cannot be regenerated" },
  { "h", "help", help = "show this help" },
}

M.REPORT, M.RATE = REPORT, RATE  -- (local tables: tests/host/test_package.lua reads them from here)

local function fail(msg)
  io.stderr:write("editflow: ", msg, "\n")
  return 1
end

-- The terminal's width for the table (cut long values there); a pipe gets every value whole.
local function table_width()
  if not core.isatty(1) then return math.huge end
  return math.tointeger(tonumber(env("COLUMNS") or "")) or 100
end

local function cmd_report(argv)
  local o, pos = parse_command(argv, "report", REPORT, "report DIR [--run ID|all] [--by DIM] [--json]\n\n"
    .. "What an experiment folder's runs came to, per model, prompt, seed and variable value: jobs,\n"
    .. "done, failed, cost, mean stars (DIR/ratings.json), mean judge score, latency p50/p95 (of done\n"
    .. "jobs not reused; nearest rank), best first: more stars, then a higher judge score, then fewer\n"
    .. "failures, then cheaper.")
  if not o then return pos end
  if #pos ~= 1 then
    return usage_error("report: expects one DIR (an experiment's folder)" .. (pos[2] and (", got '" .. pos[2] .. "' too") or ""), "report")
  end
  local s, err, code = report.report(pos[1], { run = o.run })
  if not s then
    if code == "NO_RUN" or code == "USAGE" then return usage_error("report: " .. err, "report") end
    return fail("report: " .. err)
  end
  if o.by then
    local have, dims = {}, {}
    for _, d in ipairs(s.dims) do have[d] = true end
    for _, d in ipairs(o.by) do
      if not have[d] then
        return usage_error(string.format("report: --by %s: no such dimension in this run (dimensions: %s)", d,
          #s.dims > 0 and table.concat(s.dims, ", ") or "none: no jobs"), "report")
      end
      dims[#dims + 1] = d
    end
    local by = {}
    for _, d in ipairs(dims) do by[d] = s.by[d] end
    s.dims, s.by = dims, by
  end
  if s.unreadable > 0 then
    io.stderr:write(string.format("editflow: warning: %d line%s of %s/%s could not be read (left out)\n",
      s.unreadable, s.unreadable == 1 and "" or "s", pos[1], report.MANIFEST))
  end
  if o.json then
    out(json.encode(report.document(s)), "\n")
  else
    out(report.text(s, { width = table_width() }))
  end
  return 0
end

-- The ratings a command line gives: --import's file, or one job's flags. -> doc | nil, status.
local function ratings_given(o, pos, dir)
  local single = o.stars or o.best or o["not-best"] or o.note
  if o.import then
    if single or pos[2] then
      return nil, usage_error("rate: --import FILE or REQUEST_ID with --stars/--best/--note, not both", "rate")
    end
    local text
    if o.import == "-" then
      text = io.stdin:read(ratings.MAX_BYTES + 1)
      if text and #text > ratings.MAX_BYTES then return nil, fail("rate: standard input is over " .. ratings.MAX_BYTES .. " bytes") end
    else
      -- a regular file only, without blocking, bounded (not a FIFO, /dev/zero or a folder)
      local ferr
      text, ferr = core.read_file(o.import, ratings.MAX_BYTES)
      if not text then return nil, fail("rate: cannot read " .. o.import .. ": " .. tostring(ferr)) end
    end
    local doc, perr = ratings.parse(text or "")
    if not doc then
      io.stderr:write("editflow: rate: ", o.import == "-" and "standard input" or o.import, ": ", perr,
        "; nothing merged into ", (dir:gsub("/+$", "")), "/", ratings.FILE, "\n")
      return nil, 2
    end
    return doc
  end
  local id = pos[2]
  if not id then return nil, usage_error("rate: expects --import FILE, or REQUEST_ID with --stars N, --best or --note TEXT", "rate") end
  if pos[3] then return nil, usage_error("rate: expects DIR [REQUEST_ID], got '" .. pos[3] .. "' too", "rate") end
  if not single then return nil, usage_error("rate: REQUEST_ID needs --stars N, --best, --not-best or --note TEXT", "rate") end
  if o.best and o["not-best"] then return nil, usage_error("rate: --best or --not-best, not both", "rate") end
  local e = {}
  if o.stars == "none" then
    e.stars = json.null
  elseif o.stars then
    e.stars = math.tointeger(tonumber(o.stars))
    if not e.stars or e.stars < 1 or e.stars > 5 then
      return nil, usage_error("rate: --stars must be a whole number 1..5 (or none to remove them), got '" .. o.stars .. "'", "rate")
    end
  end
  if o.best then e.best = true elseif o["not-best"] then e.best = false end
  if o.note == "" then e.note = json.null elseif o.note then e.note = o.note end
  return { [id] = e }
end

-- Every request id the folder's manifest holds (any run). -> set | nil, message
local function known_ids(dir)
  local records, err = report.load(dir, { run = "all" })
  if not records then return nil, err end
  local known = {}
  for _, r in ipairs(records) do
    if type(r.request_id) == "string" then known[r.request_id] = true end
  end
  return known
end

local function plural(n, one, many) return n == 1 and one or (many or one .. "s") end

local function cmd_rate(argv)
  local o, pos = parse_command(argv, "rate", RATE, "rate DIR --import FILE\n"
    .. "       editflow rate DIR REQUEST_ID [--stars N] [--best|--not-best] [--note TEXT]\n\n"
    .. "Merges ratings into DIR/ratings.json and regenerates DIR/index.html. FILE: a JSON object\n"
    .. "keyed by request id, {\"<request_id>\": {\"stars\": 1..5, \"best\": true, \"note\": \"...\"}}, as\n"
    .. "the gallery exports it. Each given field replaces that field, the others stay; a field\n"
    .. "given as null removes it, an entry given as null removes the entry. Every entry is checked\n"
    .. "first (each request id must be one of the folder's manifest, any run): one wrong, nothing\n"
    .. "is written.")
  if not o then return pos end
  local dir = pos[1]
  if not dir then return usage_error("rate: expects DIR (an experiment's folder)", "rate") end
  local doc, status = ratings_given(o, pos, dir)
  if not doc then return status end
  local known, kerr = known_ids(dir)
  if not known then return fail("rate: " .. kerr) end
  local ok, _, problems = ratings.check(doc, known)
  if not ok then
    for _, p in ipairs(problems) do io.stderr:write("editflow: rate: ", p, "\n") end
    io.stderr:write(string.format("editflow: rate: nothing merged into %s/%s (%d %s)\n", (dir:gsub("/+$", "")), ratings.FILE,
      #problems, plural(#problems, "problem")))
    return 2
  end
  local merged, merr, mcode = ratings.merge(dir, doc, { known = known })
  if not merged then return mcode == "INVALID" and usage_error("rate: " .. merr, "rate") or fail("rate: " .. merr) end
  local n = merged.new + merged.updated + merged.unchanged + merged.removed
  -- the gallery shows ratings.json: made again now (warned, not failed, when it cannot be)
  local gok, gerr = pcall(require("editflow.experiment.gallery").write, dir)
  if not gok and not o.quiet then
    io.stderr:write("editflow: warning: ", dir, "/index.html was not regenerated: ",
      tostring(gerr):gsub("^[^%s:]+%.lua:%d+: ", ""), "\n")
  end
  if o.json then
    out(json.encode { path = merged.path, merged = n, new = merged.new, updated = merged.updated,
      unchanged = merged.unchanged, removed = merged.removed, entries = merged.entries,
      gallery = gok and gerr or json.null }, "\n")
  else
    local parts = { merged.new .. " new", merged.updated .. " updated" }
    if merged.unchanged > 0 then parts[#parts + 1] = merged.unchanged .. " unchanged" end
    if merged.removed > 0 then parts[#parts + 1] = merged.removed .. " removed" end
    out(string.format("%d %s merged (%s) into %s\n", n, plural(n, "rating"), table.concat(parts, ", "), merged.path))
  end
  return 0
end

function M.run(cmd, argv)
  if cmd == "rate" then return cmd_rate(argv) end
  return cmd_report(argv)
end

return M
