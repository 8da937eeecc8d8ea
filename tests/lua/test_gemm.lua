-- The generated GEMM (compiler/gemm.c, TILE_DOT) against ref: float32
-- products of awkward shapes, every transpose, broadcast batch dims, an
-- empty depth, and the tile edges (rows and columns that do not fill a
-- register tile, depths that do not fill a packed panel).
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local core = df.core

local ok_dev, why = core.compile(df.graph(), {}, "cpu")
if not ok_dev then
  print("skip gemm: " .. tostring(why))
  os.exit(0)
end

local function product(ashape, bshape, o)
  local g = df.graph()
  local a = df.input(g, "a", "f32", ashape)
  local b = df.input(g, "b", "f32", bshape)
  return g, df.matmul(a, b, o), {a = df.randn("f32", ashape, 1), b = df.randn("f32", bshape, 2)}
end

local CASES = {
  {{5, 7}, {7, 9}},
  {{1, 1}, {1, 1}},
  {{37, 300}, {300, 45}},          -- depth 256 + 44, 3 row tiles + 1
  {{13, 513}, {513, 47}},          -- depth 2 * 256 + 1
  {{2, 3, 29, 70}, {70, 33}},      -- a shared weight: one product of 174 rows
  {{3, 17, 19}, {3, 19, 50}},
  {{2, 1, 7, 5}, {3, 5, 11}},      -- broadcast batch dims on both sides
  {{1, 3, 4, 5}, {2, 1, 5, 6}},
  {{3, 5, 4}, {5, 6}, {ta = true}},
  {{3, 4, 5}, {6, 5}, {tb = true}},
  {{2, 3, 5, 40}, {2, 3, 70, 5}, {ta = true, tb = true}},
  {{300, 37}, {300, 65}, {ta = true}},
  {{100, 600}, {600, 130}},
  {{200, 64}, {64, 800}},          -- more columns than one block
  {{4, 0}, {0, 5}},                -- an empty depth: zeros
}

-- Case c on cpu with the products in `mode`, against ref: relative and
-- absolute error, the case's name.
local function against_ref(c, mode)
  local g, y, feeds = product(c[1], c[2], c[3])
  local want = assert(assert(core.compile(g, {y}, "ref")):run(feeds))[1]
  local prev = core.set_gemm(mode)
  local plan, err = core.compile(g, {y}, "cpu")
  core.set_gemm(prev)
  T.ok(plan, err)
  local rel, abs = df.compare(assert(plan:run(feeds))[1], want)
  local name = table.concat(c[1], "x") .. " . " .. table.concat(c[2], "x") ..
    (c[3] and ((c[3].ta and " ta" or "") .. (c[3].tb and " tb" or "")) or "")
  return rel, abs, name
end

T.test("generated_gemm_matches_ref", function()
  for _, c in ipairs(CASES) do
    local rel, abs, name = against_ref(c, "generated")
    T.ok(rel < 2e-6 or (abs == 0), name .. ": relative error " .. rel)
  end
end)

T.test("generated_gemm_runs_twice_and_with_gradients", function()
  -- a product with its backward (the transposed products) in one plan
  local g = df.graph()
  local x = df.input(g, "x", "f32", {3, 41, 67})
  local w = df.input(g, "w", "f32", {67, 35})
  local loss = df.sum(df.gelu(df.matmul(x, w)) * df.matmul(x, w))
  local gx, gw = table.unpack(df.grad(loss, {x, w}))
  local feeds = {x = df.randn("f32", {3, 41, 67}, 3), w = df.randn("f32", {67, 35}, 4)}
  local want = assert(assert(core.compile(g, {loss, gx, gw}, "ref")):run(feeds))
  local prev = core.set_gemm("generated")
  local plan = assert(core.compile(g, {loss, gx, gw}, "cpu"))
  core.set_gemm(prev)
  for run = 1, 2 do
    local got = assert(plan:run(feeds))
    for i = 1, 3 do
      local rel = df.compare(got[i], want[i])
      T.ok(rel < 1e-5, string.format("run %d output %d: relative error %g", run, i, rel))
    end
  end
end)

T.test("bf16_mode_products_to_bfloat16_precision", function()
  -- bfloat16 operands (8 significant bits), float32 sums: relative error
  -- of a few 1e-3 on random data -- and not zero, which would mean the
  -- float32 path ran instead
  local ok = pcall(core.set_gemm, "bf16")
  if not ok then
    T.skip("this CPU has no AVX512-BF16")
    return
  end
  core.set_gemm("blas")
  for _, c in ipairs(CASES) do
    local rel, abs, name = against_ref(c, "bf16")
    local depth = (c[3] and c[3].ta) and c[1][#c[1] - 1] or c[1][#c[1]]
    if depth == 0 then
      T.ok(abs == 0, name .. ": an empty depth gives zeros")
    else
      T.ok(rel < 1e-2 and rel > 1e-5, name .. ": relative error " .. rel)
    end
  end
end)

T.test("set_gemm_reports_and_checks_the_mode", function()
  local prev = core.set_gemm()
  T.ok(prev == "auto" or prev == "blas" or prev == "generated", tostring(prev))
  T.eq(core.set_gemm(prev), prev)
  T.ok(not pcall(core.set_gemm, "fast"), "an unknown mode is an error")
end)

T.done()
