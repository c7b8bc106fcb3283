-- test_price.lua: what a job costs before anything is spent (price.estimate), and the budget's
-- edge: a plan that costs exactly max_cost runs, one a cent over it is refused before a submit.
local T = require "testlib"
local editflow = require "editflow"
local price = require "editflow.price"

local A = T.source_dir .. "/tests/fixtures/a.png"
local MP = 1024 * 1024 / 1e6  -- square_hd

T.case("an estimate counts every image a job asks for, in the price's own unit", function()
  local per_mp = { unit_price = 0.03, unit = "megapixels" }
  local one = price.estimate(per_mp, nil, { image_size = "square_hd", num_images = 1 })
  local three = price.estimate(per_mp, nil, { image_size = "square_hd", num_images = 3 })
  T.eq(one.images, 1, "one image")
  T.eq(three.images, 3, "three images")
  T.ok(math.abs(three.megapixels - 3 * MP) < 1e-9, "three images' megapixels: " .. three.megapixels)
  T.ok(math.abs(three.cost - 3 * one.cost) < 1e-12, "three times the cost of one")
  T.ok(math.abs(one.cost - MP * 0.03) < 1e-12, "megapixels x price")
  local sized = price.estimate(per_mp, nil, { image_size = { width = 800, height = 600 }, num_images = 2 })
  T.ok(math.abs(sized.megapixels - 2 * 0.48) < 1e-9, "a width x height object, twice")
  local per_image = price.estimate({ unit_price = 0.025, unit = "image" }, nil, { image_size = "square_hd", num_images = 4 })
  T.eq(per_image.units, 4, "per image: four units")
  T.ok(math.abs(per_image.cost - 0.1) < 1e-12, "four images at $0.025")
  local per_call = price.estimate({ unit_price = 0.5, unit = "request" }, nil, { num_images = 4 })
  T.eq(per_call.units, 1, "per request: one unit, whatever the images")
  local odd = price.estimate({ unit_price = 0.5, unit = "frames" }, nil, { num_images = 2 })
  T.eq(odd.approx, true, "an unknown unit is an approximation")
  T.contains(odd.cost_note, "counted once per job", "and says how it was counted")
end)

T.case("the budget's edge: exactly max_cost runs, a little over is refused before any submit", function()
  local sb = T.sandbox { "--job-time", "0.01" }
  local function spec(out, max_cost, dry)
    return { name = "edge", out = out, dry_run = dry, prompt = "a ${x}", vars = { x = { "cat", "dog" } }, images = { A },
      seeds = { 1 }, params = { image_size = "square_hd" }, max_cost = max_cost,
      client = editflow.client { base_url = sb.url, storage_url = sb.url, api_url = sb.url, key = "test-key" } }
  end
  local d = T.tmpdir()
  local cost = editflow.experiment(spec(d, nil, true)).cost
  T.ok(type(cost) == "number" and cost > 0, "the plan is priced: " .. tostring(cost))
  local before = sb.stats().by_route.submit or 0
  T.raises(function() editflow.experiment(spec(T.tmpdir(), cost - 0.0001)) end, "over the budget")
  T.eq((sb.stats().by_route.submit or 0) - before, 0, "refused before any submit")
  local s = editflow.experiment(spec(d, cost))
  T.eq(s.done, 2, "a plan costing exactly max_cost runs whole")
  T.eq((sb.stats().by_route.submit or 0) - before, 2, "two submits")
  os.execute("rm -rf " .. T.quote(d))
  sb.stop()
end)

T.run()
