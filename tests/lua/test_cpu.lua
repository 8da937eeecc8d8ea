-- The cpu device against ref: every op forward and backward on random
-- inputs and awkward shapes (size 1, primes, non-multiples of the vector
-- width); each fusion rule; every model variant.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local C = dofile((arg[0]:match("(.*/)") or "./") .. "opcases.lua")
local df = require "dferc"

local ok_dev, why = df.core.compile(df.graph(), {}, "cpu")
if not ok_dev and why and why:find("not available", 1, true) then
  print("skip cpu: " .. why)
  os.exit(0)
end

-- more awkward shapes, beyond the gradient-check cases
local extra = {
  {"add", {{{13, 17}}, {{17}}}, df.add},
  {"matmul", {{{3, 17, 19}}, {{19, 23}}}, df.matmul},
  {"matmul", {{{2, 1, 7, 5}}, {{3, 5, 11}}}, df.matmul},
  {"softmax", {{{5, 37}}}, function(x) return df.softmax(x, -1) end},
  {"layernorm", {{{7, 33}}, {{33}}, {{33}}}, function(x, w, b) return df.layernorm(x, w, b, 1e-6) end},
  {"sum", {{{3, 1, 29}}}, function(x) return df.sum(x, {0, 2}, true) end},
  {"chain", {{{4, 31}}, {{31}}}, function(x, w) return df.gelu(df.layernorm(x, w, w, 1e-6)) * df.exp(x * 0.1) end},
  {"permute_reshape", {{{2, 3, 5, 7}}}, function(x) return df.reshape(df.permute(x, {0, 2, 1, 3}), {10, 21}) * 2 end},
}

local seed = 100
local function run_case(ci, case, dtype, tol_f, tol_b)
  local name, specs, f = case[1], case[2], case[3]
  local g = df.graph()
  local ins, feeds, float_ix = {}, {}, {}
  for i, spec in ipairs(specs) do
    seed = seed + 1
    local h = C.make_input(spec, dtype, seed)
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
  for _, dev in ipairs {"ref", "cpu"} do
    local plan = assert(df.core.compile(g, outs, dev))
    res[dev] = assert(plan:run(feeds))
  end
  for k = 1, #outs do
    local rel = df.compare(res.cpu[k], res.ref[k])
    local tol = k == 1 and tol_f or tol_b
    T.ok(rel <= tol, string.format("%s output %d: relative error %.3g > %g", name, k, rel, tol))
  end
end

local all = {}
for _, c in ipairs(C.cases) do all[#all + 1] = c end
for _, c in ipairs(extra) do all[#all + 1] = c end
for ci, case in ipairs(all) do
  T.test(string.format("cpu_vs_ref_%s_%d_f32", case[1], ci), function() run_case(ci, case, "f32", 1e-5, 1e-4) end)
  T.test(string.format("cpu_vs_ref_%s_%d_f64", case[1], ci), function() run_case(ci, case, "f64", 1e-12, 1e-11) end)
end

-- ------------------------------------------------------------ fusion rules

local function schedule(g, outs)
  return assert(df.core.schedule(g, outs))
end

T.test("rule_elementwise_chain_is_one_kernel", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4, 8})
  local y = df.tanh(df.exp(x) * 2 + 1)
  local s = schedule(g, {y})
  T.eq(#s.steps, 1, "kernels")
  T.eq(s.reasons[x.id], "feed")
  T.eq(s.reasons[y.id], "output")
  T.ok(s.fused >= 4, "fused nodes " .. s.fused)
end)

T.test("rule_kernel_root_reductions_take_their_prologue", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4, 8})
  local e = df.exp(x - 1)
  local m = df.mean(e, -1)
  local s = schedule(g, {m})
  T.eq(#s.steps, 1, "one reduction kernel with its prologue")
  T.eq(s.reasons[e.id], nil, "the prologue is fused")
end)

T.test("rule_library_operand", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4, 8})
  local w = df.input(g, "w", "f32", {8, 3})
  local a = df.exp(x)
  local y = df.matmul(a, w)
  local s = schedule(g, {y})
  T.eq(s.reasons[a.id], "library_operand")
  T.eq(s.reasons[y.id], "output")
end)

T.test("rule_shared", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4, 8})
  local e = df.exp(x)
  local y = df.log(e) + df.sqrt(e)
  local v = df.reshape(x, {32}) -- a view: cheap, never materialised for sharing
  local z = v * v
  local s = schedule(g, {y, z})
  T.eq(s.reasons[e.id], "shared")
  T.eq(s.reasons[v.id], nil, "views stay fused")
end)

T.test("rule_select_operand", function()
  local g = df.graph()
  local a = df.input(g, "a", "f32", {2, 3})
  local b = df.input(g, "b", "f32", {2, 5})
  local e = df.exp(b)
  local y = df.concat({a, e}, 1)
  local s = schedule(g, {y})
  T.eq(s.reasons[e.id], "select_operand")
end)

T.test("rule_constant_table", function()
  local g = df.graph()
  local p = df.sinusoid(g, 8, 4)
  local x = df.input(g, "x", "f32", {8, 4})
  local s = schedule(g, {x + p})
  T.eq(s.reasons[p.id], "constant_table")
end)

-- ------------------------------------------------------------ model variants

-- every variant the config keys allow, forward and gradients, cpu = ref
T.test("model_variants_cpu_vs_ref", function()
  local S = require "mae_dfer"
  local cli = require "dferc.cli"
  local variants = {
    {"finetune", {token = "org"}}, {"finetune", {token = "all", first = "cross", third = "self"}},
    {"finetune", {no_second = true, share_first_third = true}}, {"finetune", {share_all = true}},
    {"finetune", {attn = "joint"}}, {"pretrain", {}}, {"pretrain", {first = "cross", no_third = true}},
    {"pretrain", {attn = "joint", mask = "tube"}}, {"pretrain", {decoder_pos = "corrected"}},
  }
  for i, v in ipairs(variants) do
    local m = S.build(T.tiny_config(v[1], v[2]))
    local feeds = T.tiny_feeds(m, i)
    local ps = {}
    for k, p in ipairs(m.params) do ps[k] = p.tensor end
    local outs = {m.outputs.loss}
    for _, gt in ipairs(df.grad(m.outputs.loss, ps)) do outs[#outs + 1] = gt end
    local res = {}
    for _, dev in ipairs {"ref", "cpu"} do
      local plan = assert(df.core.compile(m.graph, outs, dev))
      res[dev] = assert(plan:run(feeds))
    end
    local worst = 0
    for k = 1, #outs do worst = math.max(worst, df.compare(res.cpu[k], res.ref[k])) end
    T.ok(worst <= 1e-4, string.format("variant %d: relative error %.3g", i, worst))
  end
end)

-- (the fixtures on cpu: tests/lua/test_parity.lua and test_train.lua)

os.exit(T.done(), true)
