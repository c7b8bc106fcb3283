-- editflow.http: one HTTP exchange on the engine, as `resp` or `nil, err`; waiting for it
-- yields inside a task and drives the loop outside one (editflow.runtime).
-- Owns the translation from the binding's transport results to editflow errors and the
-- release of each transfer's C memory as soon as its answer is read. Judging HTTP statuses
-- is the caller's business: any answer that arrived is a `resp` here.
local runtime = require "editflow.runtime"
local errors = require "editflow.errors"

local M = {}

-- Starts a request without waiting; returns the transfer or nil, err.
function M.start(loop, req)
  local t, msg, code = loop:request(req)
  if not t then return nil, errors.from_transport(req.what or "request", msg, code) end
  return t
end

-- Waits for a started transfer and returns its response. The transfer is closed, unless
-- keep is set (a file download the caller still has to commit), in which case it comes second.
function M.finish(loop, t, what, keep, want_headers)
  runtime.await(t)
  local resp, msg, code = t:response()
  if resp and (want_headers or resp.status < 200 or resp.status > 299) then
    resp.headers = t:headers()  -- error answers carry their type and retry hints in headers
  end
  if not (keep and resp) then t:close() end
  if not resp then return nil, errors.from_transport(what or "request", msg, code) end
  return resp, keep and t or nil
end

-- req.want_headers: parse the headers of a success too (a submit's x-fal-request-id).
function M.request(loop, req)
  local want = req.want_headers
  req.want_headers = nil
  local t, err = M.start(loop, req)
  if not t then return nil, err end
  return M.finish(loop, t, req.what, req.file ~= nil, want)
end

return M
