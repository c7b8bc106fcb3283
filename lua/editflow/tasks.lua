-- editflow.tasks: running many things at once, written sequentially.
-- map() runs fn over a list with at most `concurrency` calls in flight, in list order;
-- wait() waits for tasks and jobs. Both work from the main chunk (they drive the loop) and
-- from inside a task (they yield). A failing item is reported with its traceback and recorded;
-- the others go on unless stop_on_error is set.
local runtime = require "editflow.runtime"

local M = {}

-- map(list, fn [, {concurrency=16, stop_on_error=false}]) -> results, errors
-- results[i] = fn(list[i], i) for the items that succeeded; errors[i] = message+traceback.
-- With stop_on_error no new item starts after a failure and map raises the first error once
-- the items already started have ended.
function M.map(list, fn, opts)
  runtime.may_wait(2)
  if type(list) ~= "table" then error("map expects a list", 2) end
  if type(fn) ~= "function" then error("map expects a function", 2) end
  opts = opts or {}
  local conc = opts.concurrency or 16
  if math.tointeger(conc) == nil or conc < 1 then
    error("concurrency must be an integer >= 1, got " .. tostring(conc), 2)
  end
  local n = #list
  local results, errs = {}, {}
  local nexti, first_err = 1, nil
  local function worker()
    while nexti <= n and not (opts.stop_on_error and first_err) do
      local i = nexti
      nexti = nexti + 1
      local ok, v = xpcall(fn, debug.traceback, list[i], i)
      if ok then
        results[i] = v
      else
        errs[i] = tostring(v)
        first_err = first_err or errs[i]
        runtime.on_error({ id = i, name = "map item " .. i }, errs[i])
      end
    end
  end
  local workers = {}
  for w = 1, math.min(conc, n) do workers[w] = runtime.spawn(worker) end
  for _, w in ipairs(workers) do runtime.join(w) end
  if opts.stop_on_error and first_err then error(first_err, 0) end
  return results, errs
end

-- wait(x) for a task, a job or a list of them -> results, errors (by position).
function M.wait(x)
  runtime.may_wait(2)
  local list = (type(x) == "table" and (x.co or x.request_id)) and { x } or x
  local results, errs = {}, {}
  for i, item in ipairs(list) do
    if item.request_id then
      local res, err = item:wait()
      if res then results[i] = res else errs[i] = err end
    else
      local r = table.pack(runtime.join(item))
      if r[1] then results[i] = r[2] else errs[i] = r[2] end
    end
  end
  return results, errs
end

return M
