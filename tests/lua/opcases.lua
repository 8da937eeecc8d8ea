-- tests/lua/opcases.lua -- small cases of every differentiable op, shared by
-- the gradient check (ref, float64) and the cross-backend test (cpu vs ref).
-- Each case: {op name, inputs, f}; an input is {shape, kind, values}, kind
-- "rand" (N(0,1)), "pos" (in [0.5, 1.5]), "idx" (i64 values), "mask" (bool
-- values).  make_input(spec, dtype, seed) builds the host tensor.
local df = require "dferc"
local M = {}



M.cases = {
  {"neg", {{{3, 5}}}, df.neg}, {"exp", {{{3, 5}}}, df.exp},
  {"log", {{{3, 5}, "pos"}}, df.log}, {"sqrt", {{{3, 5}, "pos"}}, df.sqrt},
  {"rsqrt", {{{3, 5}, "pos"}}, df.rsqrt}, {"tanh", {{{7}}}, df.tanh},
  {"erf", {{{2, 3}}}, df.erf}, {"gelu", {{{3, 7}}}, df.gelu}, {"abs", {{{3, 5}}}, df.abs},
  {"attention", {{{2, 3, 4}}, {{2, 5, 4}}, {{2, 5, 4}}}, function(q, k, v) return df.attention(q, k, v, 0.7) end},
  {"attention_one_key", {{{1, 2, 3, 2}}, {{1, 2, 1, 2}}, {{1, 2, 1, 2}}}, function(q, k, v) return df.attention(q, k, v, 1.3) end},
  {"recip", {{{3, 5}, "pos"}}, df.recip},
  {"cast", {{{2, 3}}}, function(x) return df.cast(x, "f64") end},
  {"add", {{{3, 1, 5}}, {{4, 1}}}, df.add}, {"sub", {{{2, 3}}, {{3}}}, df.sub},
  {"mul", {{{1}}, {{2, 3}}}, df.mul}, {"div", {{{2, 3}}, {{2, 1}, "pos"}}, df.div},
  {"max", {{{3, 4}}, {{4}}}, df.max}, {"min", {{{3, 1}}, {{3, 4}}}, df.min},
  {"pow", {{{2, 3}, "pos"}, {{3}}}, df.pow},
  {"where", {{{2, 1}, "mask", {true, false}}, {{2, 3}}, {{3}}}, df.where},
  {"matmul", {{{2, 3, 4}}, {{4, 5}}}, df.matmul},
  {"matmul", {{{4, 3}}, {{4, 5}}}, function(a, b) return df.matmul(a, b, {ta = true}) end},
  {"matmul", {{{3, 4}}, {{5, 4}}}, function(a, b) return df.matmul(a, b, {tb = true}) end},
  {"matmul", {{{1, 3, 4}}, {{2, 4, 2}}}, df.matmul},
  {"matmul", {{{2, 4, 3}}, {{2, 5, 4}}}, function(a, b) return df.matmul(a, b, {ta = true, tb = true}) end},
  {"sum", {{{3, 4, 5}}}, function(x) return df.sum(x, {0, 2}) end},
  {"mean", {{{3, 4, 5}}}, function(x) return df.mean(x, 1, true) end},
  {"amax", {{{3, 4}}}, function(x) return df.amax(x, 1) end},
  {"var", {{{3, 5}}}, function(x) return df.var(x, -1) end},
  {"var", {{{3, 5}}}, function(x) return df.var(x, {0, 1}, true, 0) end},
  {"softmax", {{{3, 4}}}, function(x) return df.softmax(x, 0) end},
  {"log_softmax", {{{3, 4}}}, function(x) return df.log_softmax(x, -1) end},
  {"layernorm", {{{3, 7}}, {{7}}, {{7}}}, function(x, w, b) return df.layernorm(x, w, b, 1e-6) end},
  {"reshape", {{{2, 6}}}, function(x) return df.reshape(x, {3, 4}) end},
  {"expand", {{{3, 1}}}, function(x) return df.expand(x, {2, 3, 4}) end},
  {"permute", {{{2, 3, 4}}}, function(x) return df.permute(x, {2, 0, 1}) end},
  {"slice", {{{2, 5, 3}}}, function(x) return df.slice(x, 1, 1, 4) end},
  {"concat", {{{2, 1, 3}}, {{2, 4, 3}}, {{2, 2, 3}}}, function(a, b, c) return df.concat({a, b, c}, 1) end},
  {"pad", {{{2, 3}}}, function(x) return df.pad(x, 1, 2, 1) end},
  {"gather", {{{2, 5, 3}}, {{2, 4}, "idx", {0, 4, 4, 2, 1, 1, 3, 0}}},
   function(x, i) return df.gather(x, i, 1) end},
  {"gather", {{{1, 5, 3}}, {{2, 2}, "idx", {4, 4, 2, 0}}}, function(x, i) return df.gather(x, i, 1) end},
  {"scatter_add", {{{2, 3}, "idx", {0, 2, 2, 1, 1, 1}}, {{2, 3, 2}}},
   function(i, s) return df.scatter_add(i, s, 1, {1, 4, 2}) end},
  -- pixels as integers (an input without a gradient): 12 tokens of 2 x 2 x 2
  -- x 3 values, tubelet 2, patch 2; 3 of them per clip, one twice
  {"recon_loss", {{{2, 3, 24}}, {{2, 3, 4, 4, 6}, "pixels"}, {{2, 3}, "idx", {11, 0, 5, 7, 7, 2}}},
   function(p, x, i) return df.recon_loss(p, df.cast(x, p.dtype), i, 2, 2, 1e-6) end},
  {"recon_loss", {{{1, 2, 24}}, {{1, 2, 6, 4, 4}, "pixels"}, {{1, 2}, "idx", {1, 3}}},
   function(p, x, i) return df.recon_loss(p, df.cast(x, p.dtype), i, 3, 2, 1e-3) end},
}

function M.make_input(spec, dtype, seed)
  local shape, kind, vals = spec[1], spec[2] or "rand", spec[3]
  if kind == "idx" then return df.host("i64", shape, vals) end
  if kind == "mask" then return df.host("bool", shape, vals) end
  if kind == "pixels" then -- i64 in [0, 255], from the seed
    local u = df.rand("f64", shape, seed)
    local h = df.host("i64", shape)
    for i = 1, u.numel do h:set(i, math.floor(u:get(i) * 256)) end
    return h
  end
  local h = df.randn(dtype, shape, seed)
  if kind == "pos" then
    h = df.rand(dtype, shape, seed)
    for i = 1, h.numel do h:set(i, 0.5 + h:get(i)) end
  end
  return h
end

-- Build case `case` (name, input specs, function) in `dtype`, take the
-- gradient of sum(y * r) for a random r, run it on ref and on `device`,
-- and check every result with T.ok: output within tol_f, the loss and the
-- gradients within tol_b (relative).  ci seeds r.
local seed = 100
function M.run_case(T, device, ci, case, dtype, tol_f, tol_b)
  local name, specs, f = case[1], case[2], case[3]
  local g = df.graph()
  local ins, feeds, float_ix = {}, {}, {}
  for i, spec in ipairs(specs) do
    seed = seed + 1
    local h = M.make_input(spec, dtype, seed)
    ins[i] = df.input(g, "x" .. i, h.dtype, spec[1])
    feeds["x" .. i] = h
    if h.dtype == dtype then float_ix[#float_ix + 1] = i end
  end
  local y = f(table.unpack(ins))
  local r = df.input(g, "r", y.dtype, y.shape)
  feeds.r = df.randn(y.dtype, y.shape, 999 + ci)
  local loss = df.sum(y * r)
  local wrt = {}
  for k, i in ipairs(float_ix) do wrt[k] = ins[i] end
  local outs = {y, loss}
  for _, gt in ipairs(df.grad(loss, wrt)) do outs[#outs + 1] = gt end
  local res = {}
  for _, dev in ipairs {"ref", device} do
    local plan = assert(df.core.compile(g, outs, dev))
    res[dev] = assert(plan:run(feeds))
  end
  for k = 1, #outs do
    local rel = df.compare(res[device][k], res.ref[k])
    local tol = k == 1 and tol_f or tol_b
    T.ok(rel <= tol, string.format("%s output %d: relative error %.3g > %g", name, k, rel, tol))
  end
end

return M
