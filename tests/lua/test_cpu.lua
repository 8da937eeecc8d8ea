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
  -- outer dims reduced, the innermost kept: blocks of 16, 8, 4, 2 columns
  {"sum_cols", {{{7, 48}}}, function(x) return df.sum(x, {0}) end},
  {"sum_cols_w2", {{{5, 6}}}, function(x) return df.sum(x * x, {0}) end},
  {"sum_cols_3d", {{{3, 5, 12}}}, function(x) return df.sum(df.exp(x), {0, 1}, true) end},
  {"mean_cols", {{{13, 24}}}, function(x) return df.mean(x, {0}) end},
  {"amax_cols", {{{9, 32}}}, function(x) return df.amax(x, {0}) end},
  {"sum_mid", {{{4, 6, 16}}}, function(x) return df.sum(x, {1}) end},
  -- fused attention over several blocks of query rows, more keys than a block
  {"attention_blocks", {{{2, 130, 24}}, {{2, 77, 24}}, {{2, 77, 24}}},
   function(q, k, v) return df.attention(q, k, v, 0.2) end},
  {"attention_long", {{{1, 3, 67, 16}}, {{1, 3, 201, 16}}, {{1, 3, 201, 16}}},
   function(q, k, v) return df.attention(q, k, v, 0.25) end},
  {"chain", {{{4, 31}}, {{31}}}, function(x, w) return df.gelu(df.layernorm(x, w, w, 1e-6)) * df.exp(x * 0.1) end},
  {"permute_reshape", {{{2, 3, 5, 7}}}, function(x) return df.reshape(df.permute(x, {0, 2, 1, 3}), {10, 21}) * 2 end},
}

local function run_case(...) return C.run_case(T, "cpu", ...) end

local all = {}
for _, c in ipairs(C.cases) do all[#all + 1] = c end
for _, c in ipairs(extra) do all[#all + 1] = c end
for ci, case in ipairs(all) do
  T.test(string.format("cpu_vs_ref_%s_%d_f32", case[1], ci), function() run_case(ci, case, "f32", 1e-5, 1e-4) end)
  T.test(string.format("cpu_vs_ref_%s_%d_f64", case[1], ci), function() run_case(ci, case, "f64", 1e-12, 1e-11) end)
end

-- the 16-bit floats: stored as 16 bits, computed on as float32, rounded
-- where ref rounds (casts, stores), forward and backward
local narrow = {
  {"chain16", {{{5, 37}}, {{37}}}, function(x, w) return df.gelu(df.layernorm(x, w, w, 1e-6)) * df.exp(x * 0.1) end},
  {"softmax16", {{{3, 29}}}, function(x) return df.softmax(x, -1) end},
  {"sum16", {{{7, 48}}}, function(x) return df.sum(x * x, {0}) end},
  {"matmul16", {{{2, 7, 5}}, {{5, 11}}}, df.matmul},
  {"attention16", {{{2, 9, 8}}, {{2, 13, 8}}, {{2, 13, 8}}}, function(q, k, v) return df.attention(q, k, v, 0.3) end},
  {"cast16", {{{4, 9}}}, function(x) return df.cast(df.cast(x, "f32") * 3.3, x.dtype) end},
}
for ci, case in ipairs(narrow) do
  T.test(string.format("cpu_vs_ref_%s_bf16", case[1]), function() run_case(100 + ci, case, "bf16", 2e-2, 5e-2) end)
  T.test(string.format("cpu_vs_ref_%s_f16", case[1]), function() run_case(200 + ci, case, "f16", 3e-3, 1e-2) end)
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
  local y = df.sum(df.log(e), -1) + df.sum(df.sqrt(e), -1) -- two reduction kernels read e
  local v = df.reshape(x, {32}) -- a view: cheap, never materialised for sharing
  local z = v * v
  local w = df.exp(x * 2)       -- read twice, but only inside one output's kernel
  local u = df.log(w) + df.sqrt(w)
  local s = schedule(g, {y, z, u})
  T.eq(s.reasons[e.id], "shared")
  T.eq(s.reasons[w.id], nil, "computed once inside u's kernel")
  T.eq(s.reasons[v.id], nil, "views stay fused")
end)

T.test("rule_library_operand_through_reshape", function()
  -- the product reads exp(x) in its own memory, reshaped: no copy kernel
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4, 6})
  local w = df.input(g, "w", "f32", {3, 5})
  local e = df.exp(x)
  local r = df.reshape(e, {8, 3})
  local y = df.matmul(r, w)
  local s = schedule(g, {y})
  T.eq(s.reasons[e.id], "library_operand")
  T.eq(s.reasons[r.id], nil, "the reshape is a view")
  T.eq(#s.steps, 2, "exp, then the product: " .. table.concat(s.steps, ", "))
  local feeds = {x = df.randn("f32", {4, 6}, 1), w = df.randn("f32", {3, 5}, 2)}
  local want = assert(assert(df.core.compile(g, {y}, "ref")):run(feeds))
  local got = assert(assert(df.core.compile(g, {y}, "cpu")):run(feeds))
  T.ok(df.compare(got[1], want[1]) <= 1e-6, "values")
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

T.test("rule_sibling_outputs_share_one_kernel", function()
  -- an AdamW-like update: four outputs of one shape, nothing reads them,
  -- the shared intermediates computed once in registers
  local g = df.graph()
  local p = df.input(g, "p", "f32", {5, 37})
  local gr = df.input(g, "g", "f32", {5, 37})
  local m = df.input(g, "m", "f32", {5, 37})
  local v = df.input(g, "v", "f32", {5, 37})
  local lr = df.input(g, "lr", "f32", {})
  local ok = df.input(g, "ok", "bool", {})
  local m1 = m * 0.9 + gr * 0.1
  local v1 = v * 0.99 + gr * gr * 0.01
  local u = m1 / (df.sqrt(v1) + 1e-8) * lr
  local outs = {df.where(ok, p - u, p), df.where(ok, m1, m), df.where(ok, v1, v), df.where(ok, u * 0, u)}
  local s = schedule(g, outs)
  T.eq(#s.steps, 1, "one kernel: " .. table.concat(s.steps, ", "))
  T.eq(s.nout[1], 4, "four outputs")
  T.eq(s.reasons[m1.id], nil, "m1 stays in registers")
  table.sort(s.in_place)
  T.eq(table.concat(s.in_place, ","), "1,2,3,4", "p, m, v in place (and the fourth over g, read by none after)")
  local feeds = {p = df.randn("f32", {5, 37}, 1), g = df.randn("f32", {5, 37}, 2), m = df.randn("f32", {5, 37}, 3),
                 v = df.rand("f32", {5, 37}, 4), lr = df.host("f32", {}, 0.01), ok = df.host("bool", {}, {true})}
  local want = assert(assert(df.core.compile(g, outs, "ref")):run(feeds))
  local got = assert(assert(df.core.compile(g, outs, "cpu")):run(feeds, {feeds.p, feeds.m, feeds.v}))
  for k = 1, 4 do T.ok(df.compare(got[k], want[k]) <= 1e-6, "output " .. k) end
  T.ok(df.compare(feeds.v, want[3]) <= 1e-6, "v updated in place")
end)

T.test("outputs_in_place_into_their_feeds", function()
  local g = df.graph()
  local p = df.input(g, "p", "f32", {3, 17})
  local m = df.input(g, "m", "f32", {3, 17})
  local gr = df.input(g, "g", "f32", {3, 17})
  local b = df.input(g, "b", "f32", {17})
  local e = df.sum(p * gr)                 -- p read before the update
  local m1 = m * 0.5 + gr
  local p1 = p - m1 * 0.1
  local pb = df.expand(df.reshape(b, {1, 17}), {3, 17}) + p   -- b broadcast: never in place
  local s = schedule(g, {e, p1, m1, pb})
  table.sort(s.in_place)
  T.eq(table.concat(s.in_place, ","), "2,3", "p1 into p, m1 into m")
  local function feeds()
    return {p = df.randn("f32", {3, 17}, 1), m = df.randn("f32", {3, 17}, 2), g = df.randn("f32", {3, 17}, 3),
            b = df.randn("f32", {17}, 4)}
  end
  local want = assert(assert(df.core.compile(g, {e, p1, m1, pb}, "ref")):run(feeds()))
  local plan = assert(df.core.compile(g, {e, p1, m1, pb}, "cpu"))
  for round = 1, 2 do
    -- outputs given as the feeds themselves: written in place
    local f = feeds()
    local res = assert(plan:run(f, {nil, f.p, f.m, nil}))
    T.ok(rawequal(res[2], f.p) or df.compare(res[2], f.p) == 0, "p1 is p")
    for k = 1, 4 do T.ok(df.compare(res[k], want[k]) <= 1e-6, string.format("in place, output %d", k)) end
    T.ok(df.compare(f.p, want[2]) <= 1e-6, "p holds p1")
    -- no outputs given: the feeds keep their values
    local f2 = feeds()
    local res2 = assert(plan:run(f2))
    for k = 1, 4 do T.ok(df.compare(res2[k], want[k]) <= 1e-6, string.format("copied, output %d", k)) end
    T.eq(df.compare(f2.p, feeds().p), 0.0, "p untouched")
    T.eq(df.compare(f2.m, feeds().m), 0.0, "m untouched")
    -- checked runs never write a feed half-way
    plan:check_finite(round == 1)
  end
  plan:check_finite(false)
  -- the feed is also an output: it keeps its value, p1 is not written there
  local s2 = schedule(g, {p1, p})
  T.eq(#s2.in_place, 1, "p1 goes into m, not p")
  local f = feeds()
  local r = assert(assert(df.core.compile(g, {p1, p}, "cpu")):run(f, {f.p, nil}))
  T.ok(df.compare(r[1], want[2]) <= 1e-6, "p1")
  T.ok(df.compare(r[2], feeds().p) == 0, "p as it was fed")
end)

-- cpu against ref, optionally with some outputs given (in place)
local function same_as_ref(g, outs, feeds, given_fn, what)
  local want = assert(assert(df.core.compile(g, outs, "ref")):run(feeds()))
  local f = feeds()
  local got = assert(assert(df.core.compile(g, outs, "cpu")):run(f, given_fn and given_fn(f) or nil))
  for k = 1, #outs do
    local e = df.compare(got[k], want[k])
    T.ok(e <= 1e-5, string.format("%s: output %d relative error %.3g", what, k, e))
  end
end

T.test("in_place_update_waits_for_every_reader_of_the_old_value", function()
  local function feeds() return {p = df.randn("f32", {4, 100}, 1), g = df.randn("f32", {4, 100}, 2)} end
  -- the update's output is read twice later; the old p by a step that stays
  local g = df.graph()
  local p = df.input(g, "p", "f32", {4, 100})
  local gr = df.input(g, "g", "f32", {4, 100})
  local w = gr * 3.0
  local y = p * 2.0
  local p1 = p - gr * 0.5
  local outs = {w, df.sum(w), y, df.sum(y * y), p1, df.sum(p1 * 2.0), df.amax(p1, {0})}
  same_as_ref(g, outs, feeds, nil, "later readers")
  same_as_ref(g, outs, feeds, function(f) return {nil, nil, nil, nil, f.p} end, "later readers, in place")
  -- the last reader of p is small and moves up; an earlier reader stays
  local g2 = df.graph()
  local p2 = df.input(g2, "p", "f32", {4, 100})
  local gr2 = df.input(g2, "g", "f32", {4, 100})
  local w1, w2 = gr2 * 3.0, gr2 * 4.0
  local y2 = p2 * 2.0
  local outs2 = {w1, w2, y2, df.sum(y2 * w1 * w2), df.sum(p2 * p2), p2 - gr2 * 0.5}
  same_as_ref(g2, outs2, feeds, nil, "hoisted reader")
  same_as_ref(g2, outs2, feeds, function(f) return {nil, nil, nil, nil, nil, f.p} end, "hoisted reader, in place")
end)

T.test("in_place_with_aliased_tensors", function()
  -- one tensor bound to two feeds, given as the in-place output
  local g = df.graph()
  local p = df.input(g, "p", "f32", {4, 16})
  local gr = df.input(g, "g", "f32", {4, 16})
  local outs = {p - gr * 0.5, df.sum(gr * gr)}
  local want = assert(assert(df.core.compile(g, outs, "ref")):run({p = df.randn("f32", {4, 16}, 1),
                                                                   g = df.randn("f32", {4, 16}, 1)}))
  local t = df.randn("f32", {4, 16}, 1)
  local got = assert(assert(df.core.compile(g, outs, "cpu")):run({p = t, g = t}, {t, nil}))
  T.ok(df.compare(got[2], want[2]) <= 1e-6, "g read as it was fed")
  T.ok(df.compare(t, want[1]) <= 1e-6, "the update written into the tensor")
  -- outputs {p1, p}: p's tensor given for p1, another for p
  local g2 = df.graph()
  local p2 = df.input(g2, "p", "f32", {3, 17})
  local m2 = df.input(g2, "m", "f32", {3, 17})
  local outs2 = {p2 - m2 * 0.1, p2}
  local function feeds() return {p = df.randn("f32", {3, 17}, 1), m = df.randn("f32", {3, 17}, 2)} end
  local want2 = assert(assert(df.core.compile(g2, outs2, "ref")):run(feeds()))
  local f = feeds()
  local x = df.randn("f32", {3, 17}, 9)
  local got2 = assert(assert(df.core.compile(g2, outs2, "cpu")):run(f, {f.p, x}))
  T.ok(df.compare(got2[1], want2[1]) <= 1e-6, "p1 into p's tensor")
  T.ok(df.compare(x, want2[2]) == 0, "the other tensor gets p as it was fed")
end)

T.test("nan_survives_max_and_empty_attention_is_zero", function()
  local g = df.graph()
  local x = df.input(g, "x", "f32", {5, 16})
  local outs = {df.amax(x, {0}), df.amax(x, {1})}
  local vals = {}
  for i = 1, 80 do vals[i] = (i == 3) and 0 / 0 or i * 0.1 end -- a NaN in row 0, column 2
  local r = assert(assert(df.core.compile(g, outs, "cpu")):run({x = df.host("f32", {5, 16}, vals)}))
  local c = r[1]:get(3)
  T.ok(c ~= c, "column max with a NaN is NaN")
  T.ok(r[2]:get(1) ~= r[2]:get(1), "row max with a NaN is NaN")
  T.ok(r[1]:get(4) == r[1]:get(4), "other columns finite")
  -- attention with no queries: its gradient is zero for k and v
  local g2 = df.graph()
  local q = df.input(g2, "q", "f32", {2, 0, 4})
  local k = df.input(g2, "k", "f32", {2, 3, 4})
  local v = df.input(g2, "v", "f32", {2, 3, 4})
  local gr = df.grad(df.sum(df.attention(q, k, v, 0.5)), {k, v})
  local res = assert(assert(df.core.compile(g2, gr, "cpu")):run({q = df.randn("f32", {2, 0, 4}, 1),
    k = df.randn("f32", {2, 3, 4}, 2), v = df.randn("f32", {2, 3, 4}, 3)}))
  for i = 1, 2 do
    local m = 0
    for j = 1, res[i].numel do m = math.max(m, math.abs(res[i]:get(j))) end
    T.eq(m, 0, "gradient " .. i .. " is zero")
  end
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

-- The largest relative difference, on cpu, between the tiny `kind` model
-- built with build_opts(true) and with build_opts(false): loss and every
-- parameter's gradient.
local function fused_vs_composed(kind, build_opts, seed)
  local S = require "mae_dfer"
  local res = {}
  for _, fused in ipairs {true, false} do
    local m = S.build(T.tiny_config(kind), build_opts(fused))
    local feeds = T.tiny_feeds(m, seed)
    local ps = {}
    for k, p in ipairs(m.params) do ps[k] = p.tensor end
    local outs = {m.outputs.loss}
    for _, gt in ipairs(df.grad(m.outputs.loss, ps)) do outs[#outs + 1] = gt end
    res[fused] = assert(assert(df.core.compile(m.graph, outs, "cpu")):run(feeds))
  end
  local worst = 0
  for k = 1, #res[true] do worst = math.max(worst, df.compare(res[true][k], res[false][k])) end
  return worst
end

-- attention as one op computes what the products and softmax compute
T.test("fused_attention_matches_the_composed_form", function()
  for _, kind in ipairs {"pretrain", "finetune"} do
    local worst = fused_vs_composed(kind, function(fused) return {fused_attention = fused} end, 5)
    T.ok(worst <= 1e-4, string.format("%s: relative difference %.3g", kind, worst))
  end
end)

-- the reconstruction loss as one op computes what the composed targets do,
-- loss and gradients, and names an index outside the tokens
T.test("fused_loss_matches_the_composed_form", function()
  local worst = fused_vs_composed("pretrain", function(fused) return {fused_loss = fused} end, 7)
  T.ok(worst <= 1e-4, string.format("relative difference %.3g", worst))
  -- the model's own geometry (2 x 16 x 16 x 3 tubelets), many tokens, several threads
  local g = df.graph()
  local pred = df.input(g, "pred", "f32", {3, 37, 1536})
  local pix = df.input(g, "pix", "f32", {3, 3, 4, 48, 64})
  local idx = df.input(g, "idx", "i64", {3, 37})
  local loss = df.recon_loss(pred, pix, idx, 2, 16, 1e-6)
  local gp = df.grad(loss, {pred})[1]
  local iv = {}
  for i = 1, 3 * 37 do iv[i] = (i * 7) % 24 end
  local feeds = {pred = df.randn("f32", {3, 37, 1536}, 3), pix = df.rand("f32", {3, 3, 4, 48, 64}, 4),
                 idx = df.host("i64", {3, 37}, iv)}
  local out = {}
  for _, dev in ipairs {"ref", "cpu"} do out[dev] = assert(assert(df.core.compile(g, {loss, gp}, dev)):run(feeds)) end
  T.ok(df.compare(out.cpu[1], out.ref[1]) <= 1e-5 and df.compare(out.cpu[2], out.ref[2]) <= 1e-5,
    string.format("loss %.3g, gradient %.3g", df.compare(out.cpu[1], out.ref[1]), df.compare(out.cpu[2], out.ref[2])))
  iv[40] = 24
  feeds.idx = df.host("i64", {3, 37}, iv)
  for _, dev in ipairs {"ref", "cpu"} do
    local _, err = assert(df.core.compile(g, {loss}, dev)):run(feeds)
    T.ok(err and err:find("recon_loss", 1, true) and err:find("index 24 at [1, 2] out of range [0, 24)", 1, true),
      dev .. ": " .. tostring(err))
  end
end)

-- gelu and layernorm outputs recomputed for the weight gradients: the
-- training step's activation peak drops, and the step computes the same
T.test("recomputed_activations_lower_the_peak_and_change_nothing", function()
  local S = require "mae_dfer"
  local train = require "dferc.train"
  local peak, res = {}, {}
  local before = df.core.set_recompute()
  for _, on in ipairs {true, false} do
    df.core.set_recompute(on)
    local m = S.build(T.tiny_config("pretrain", {enc_depth = 2, dec_depth = 2}), {training = true})
    local opt = train.adamw {lr = 1e-3, weight_decay = 0.05, groups = train.mae_dfer_groups(m)}
    local g, outs = train.step_graph {model = m, loss = m.outputs.loss, optimizer = opt, device = "cpu"}
    peak[on] = df.core.schedule(g, outs).peak.bytes
    local ps = {}
    for k, p in ipairs(m.params) do ps[k] = p.tensor end
    local o = {m.outputs.loss}
    for _, gt in ipairs(df.grad(m.outputs.loss, ps)) do o[#o + 1] = gt end
    res[on] = assert(assert(df.core.compile(m.graph, o, "cpu")):run(T.tiny_feeds(m, 9)))
  end
  df.core.set_recompute(before)
  T.ok(peak[true] < peak[false], string.format("peak %d bytes with recompute, %d without", peak[true], peak[false]))
  local worst = 0
  for k = 1, #res[true] do worst = math.max(worst, df.compare(res[true][k], res[false][k])) end
  T.ok(worst <= 1e-6, string.format("relative difference %.3g", worst))
end)

-- (the fixtures on cpu: tests/lua/test_parity.lua and test_train.lua)

os.exit(T.done(), true)
