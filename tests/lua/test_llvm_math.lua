-- The cpu device's inline exp and erf (compiler/llvm_math.c) element by
-- element against ref (float64 libm, rounded to float32): the largest
-- error in float32 ulps over a dense sweep and the special values, and
-- softmax rows with the same per-element check.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"

if not T.has_cpu() then
  print("skip llvm_math: the cpu device is not available in this build")
  os.exit(0)
end

local function bits(v) return string.unpack("<i4", string.pack("<f", v)) end

-- distance in float32 ulps; NaN only matches NaN; equal infinities match
local function ulps(a, b)
  if a ~= a or b ~= b then return (a ~= a and b ~= b) and 0 or math.huge end
  if a == b then return 0 end
  if a == math.huge or a == -math.huge or b == math.huge or b == -math.huge then return math.huge end
  local ia, ib = bits(a), bits(b)
  if ia < 0 then ia = -2147483648 - ia end -- order the negative floats below the positive
  if ib < 0 then ib = -2147483648 - ib end
  return math.abs(ia - ib)
end

local function run(vals, f)
  local n = #vals
  local g = df.graph()
  local x = df.input(g, "x", "f32", {n})
  local y = f(x)
  local feeds = {x = df.core.host("f32", {n}, vals)}
  local out = {}
  for _, dev in ipairs {"ref", "cpu"} do
    local plan = assert(df.core.compile(g, {y}, dev))
    out[dev] = assert(plan:run(feeds))[1]:totable()
  end
  return out.ref, out.cpu
end

local function sweep(lo, hi, n, specials)
  local v = {}
  for i = 0, n - 1 do v[#v + 1] = lo + (hi - lo) * i / (n - 1) end
  for _, s in ipairs(specials) do v[#v + 1] = s end
  return v
end

local specials = {0.0, -0.0, 1e-38, -1e-38, 1e-45, math.huge, -math.huge, 0 / 0, 88.72, 88.73, -87.33, -103.9, -104.5}

local function worst(vals, ref, cpu, floor)
  local w, at = 0, nil
  for i = 1, #vals do
    if math.abs(ref[i]) >= floor or ref[i] ~= ref[i] or ref[i] == 0 then
      local u = ulps(cpu[i], ref[i])
      if u > w then w, at = u, vals[i] end
    end
  end
  return w, at
end

T.test("exp float32 within 2 ulps, specials as libm", function()
  local vals = sweep(-110, 90, 200003, specials)
  local ref, cpu = run(vals, df.exp)
  -- subnormal results carry fewer significant bits: compare them absolutely
  local w, at = worst(vals, ref, cpu, 1.2e-38)
  T.ok(w <= 2, string.format("exp: %s ulps at x = %s", w, at))
  for i = #vals - #specials + 1, #vals do
    local r, c = ref[i], cpu[i]
    T.ok((r ~= r and c ~= c) or c == r or math.abs(c - r) <= 1e-45 + 2.4e-7 * math.abs(r),
      string.format("exp(%s) = %s, libm %s", vals[i], c, r))
  end
end)

T.test("erf float32 within 8 ulps, specials as libm", function()
  local vals = sweep(-6, 6, 200003, specials)
  local ref, cpu = run(vals, df.erf)
  local w, at = worst(vals, ref, cpu, 1e-30)
  T.ok(w <= 8, string.format("erf: %s ulps at x = %s", w, at))
  for i = #vals - #specials + 1, #vals do
    local r, c = ref[i], cpu[i]
    T.ok((r ~= r and c ~= c) or c == r or math.abs(c - r) <= 1e-45 + 1e-6 * math.abs(r),
      string.format("erf(%s) = %s, libm %s", vals[i], c, r))
  end
end)

T.test("gelu over a wide range, elementwise", function()
  local vals = sweep(-12, 12, 50001, {})
  local ref, cpu = run(vals, df.gelu)
  for i = 1, #vals do
    local r, c = ref[i], cpu[i]
    if math.abs(c - r) > 1e-6 * math.max(math.abs(r), 1) then
      T.ok(false, string.format("gelu(%s) = %s, ref %s", vals[i], c, r))
    end
  end
end)

-- x - max rounds in float32 (as in PyTorch): exp's argument carries an
-- error of |x - max| 2^-24, a few ulps of the result for rows of randn
T.test("softmax rows elementwise within 8 ulps (odd row lengths)", function()
  for _, L in ipairs {1, 7, 17, 101, 800} do
    local rows = 3
    local g = df.graph()
    local x = df.input(g, "x", "f32", {rows, L})
    local y = df.softmax(x, -1)
    local feeds = {x = df.core.randn("f32", {rows, L}, L)}
    local out = {}
    for _, dev in ipairs {"ref", "cpu"} do
      out[dev] = assert(assert(df.core.compile(g, {y}, dev)):run(feeds))[1]:totable()
    end
    local w = 0
    for i = 1, rows * L do w = math.max(w, ulps(out.cpu[i], out.ref[i])) end
    T.ok(w <= 8, string.format("softmax rows of %d: %d ulps", L, w))
  end
end)

T.done()
