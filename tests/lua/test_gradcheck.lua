-- Every op's gradient rule against central finite differences, in float64
-- on ref, on random shapes with broadcasting, size-1 dims and odd sizes.
-- The loss is sum(op(inputs) * r) for a fixed random r.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"

local C = dofile((arg[0]:match("(.*/)") or "./") .. "opcases.lua")
local cases = C.cases
local seed = 1
local function make_input(spec)
  seed = seed + 1
  return C.make_input(spec, "f64", seed)
end

local covered = {}
for ci, case in ipairs(cases) do
  local name, specs, f = case[1], case[2], case[3]
  covered[name] = true
  T.test(string.format("grad_%s_%d", name, ci), function()
    local g = df.graph()
    local ins, hosts, feeds, float_ix = {}, {}, {}, {}
    for i, spec in ipairs(specs) do
      hosts[i] = make_input(spec)
      ins[i] = df.input(g, "x" .. i, hosts[i].dtype, spec[1])
      feeds["x" .. i] = hosts[i]
      if hosts[i].dtype == "f64" then float_ix[#float_ix + 1] = i end
    end
    local y = f(table.unpack(ins))
    local r = df.input(g, "r", "f64", y.shape)
    feeds.r = df.randn("f64", y.shape, 1000 + ci)
    local loss = df.sum(y * r)
    local wrt = {}
    for k, i in ipairs(float_ix) do wrt[k] = ins[i] end
    local grads = df.grad(loss, wrt)
    local c = assert(df.compile {outputs = {loss = loss, grads = grads[1]}})
    local outs = {loss}
    for _, gt in ipairs(grads) do outs[#outs + 1] = gt end
    local plan = assert(df.core.compile(g, outs, "ref"))
    local res = assert(plan:run(feeds))
    local h = 1e-6
    for k, i in ipairs(float_ix) do
      local x, ga = hosts[i], res[k + 1]
      local num, den = 0, 0
      for e = 1, x.numel do
        local v = x:get(e)
        x:set(e, v + h)
        local lp = assert(plan:run(feeds))[1]:get(1)
        x:set(e, v - h)
        local lm = assert(plan:run(feeds))[1]:get(1)
        x:set(e, v)
        local fd = (lp - lm) / (2 * h)
        num = num + (ga:get(e) - fd) ^ 2
        den = den + fd ^ 2
      end
      local rel = math.sqrt(num) / math.max(math.sqrt(den), 1e-12)
      T.ok(rel < 1e-6, string.format("input %d: relative error %.3g", i, rel))
    end
  end)
end

T.test("every_differentiable_op_is_checked", function()
  for _, o in ipairs(df.core.ops()) do
    if o.differentiable then T.ok(covered[o.name], "no gradient check for " .. o.name) end
  end
end)

-- through the whole model: a 'cross' first attention (the original cannot
-- back-propagate through it) checked by finite differences on a few weights
T.test("grad_through_cross_first_attention", function()
  local S = require "mae_dfer"
  local cli = require "dferc.cli"
  local m = S.build({kind = "finetune", img = 32, frames = 4, region = {2, 2, 2}, dim = 8, heads = 2,
                     depth = 1, classes = 3, B = 2, first = "cross", third = "self"}, {dtype = "f64"})
  local feeds = {}
  for k, p in ipairs(m.params) do feeds[p.name] = cli.init_param(p, k):cast("f64") end
  feeds.videos = df.randn("f64", m.inputs.videos.shape, 5)
  feeds.labels = df.host("i64", {2}, {0, 2})
  local names = {"blocks.0.first_attn.q.weight", "blocks.0.first_attn_norm1.weight", "blocks.0.first_attn.kv.weight"}
  local wrt = {}
  for i, n in ipairs(names) do wrt[i] = m.builder.by_name[n].tensor end
  local grads = df.grad(m.outputs.loss, wrt)
  local outs = {m.outputs.loss}
  for _, gt in ipairs(grads) do outs[#outs + 1] = gt end
  local plan = assert(df.core.compile(m.graph, outs, "ref"))
  local res = assert(plan:run(feeds))
  for i, n in ipairs(names) do
    local x = feeds[n]
    for _, e in ipairs {1, 7, x.numel} do
      local v = x:get(e)
      x:set(e, v + 1e-6)
      local lp = assert(plan:run(feeds))[1]:get(1)
      x:set(e, v - 1e-6)
      local lm = assert(plan:run(feeds))[1]:get(1)
      x:set(e, v)
      local fd = (lp - lm) / 2e-6
      local ga = res[i + 1]:get(e)
      T.ok(math.abs(ga - fd) <= 1e-5 * math.abs(fd) + 1e-9,
        string.format("%s[%d]: analytic %.6g vs finite difference %.6g", n, e, ga, fd))
    end
    T.ok(res[i + 1]:get(1) ~= 0 or res[i + 1]:get(7) ~= 0, n .. " gets a gradient")
  end
end)

os.exit(T.done(), true)
