--[[
dferc.bench -- `dferc bench`: time the workloads that matter, each in a
process of its own (so its peak memory is its own), against the machine's
ceiling measured in the same run (the best OpenBLAS sgemm), and write the
records as JSON.

  dferc bench [--device cpu] [--out FILE.json] [--workloads a,b,...]
              [--repeats N] [--quick] [--gemm auto|blas|generated|bf16]

--gemm picks the cpu device's products (the tuner's stored choice per
shape, else OpenBLAS; OpenBLAS; the generated GEMM; the bf16 mode); each
record says which (`gemm`).  Pre-training records say whether activations
were recomputed in the backward (`recompute`; DFERC_RECOMPUTE=0 keeps them).

On cuda the ceiling is cuBLAS's float32 product rate (bench.cuda_sgemm_gflops)
and each record also holds `kernel_times`: the last run's time on the GPU by
kernel family, from CUDA events.

Workloads: finetune_infer_b1, finetune_infer_b4 (full-size fine-tuning
forward), pretrain_step_b2 (full-size pre-training step: forward, backward,
AdamW; 90% part-window mask), compile_pretrain_step (wall time to build
and compile that step from the Lua script, cold).  --quick uses a tiny
model (for tests).  FLOPs per clip are the issue's reference counts at
full size (99.3 G fine-tuning forward, 82.9 G pre-training forward +
backward, 2 per multiply-add); `graph_gflop` counts the products of the
compiled graph itself (matmuls and the products inside attention, a
backward attention counting its recomputed scores).
]]
local df = require "dferc"
local core = df.core
local train = require "dferc.train"
local S = require "mae_dfer"

local bench = {}

local WORKLOADS = {
  finetune_infer_b1 = {kind = "finetune", batch = 1, ref_gflop = 99.3},
  finetune_infer_b4 = {kind = "finetune", batch = 4, ref_gflop = 99.3},
  pretrain_step_b2 = {kind = "pretrain", batch = 2, ref_gflop = 82.9, step = true},
  -- the GPU's workload: the batch of the speed goal (one H100, <= 12 ms)
  pretrain_step_b32 = {kind = "pretrain", batch = 32, ref_gflop = 82.9, step = true},
  compile_pretrain_step = {kind = "pretrain", batch = 2, compile_only = true},
  -- the model's products (fine-tuning, batch 1: 1568 tokens of width 512;
  -- the backward's transposed products), OpenBLAS against the generated
  -- GEMM and the bf16 mode, in one process (cpu only)
  gemm_shapes = {kind = "gemm", batch = 1},
}
local GEMM_SHAPES = {
  {"qkv", {1568, 512}, {512, 1536}},
  {"proj", {1568, 512}, {512, 512}},
  {"fc1", {1568, 512}, {512, 2048}},
  {"fc2", {1568, 2048}, {2048, 512}},
  {"fc1_grad_w", {1568, 512}, {1568, 2048}, {ta = true}},
  {"fc1_grad_x", {1568, 2048}, {512, 2048}, {tb = true}},
}
local ORDER = {"finetune_infer_b1", "finetune_infer_b4", "pretrain_step_b2", "compile_pretrain_step", "gemm_shapes"}
local ORDER_CUDA = {"finetune_infer_b1", "finetune_infer_b4", "pretrain_step_b2", "pretrain_step_b32",
                    "compile_pretrain_step"}

local function quick_config(kind, batch)
  local c = {kind = kind, B = batch, img = 64, frames = 8, region = {2, 2, 4}}
  if kind == "pretrain" then
    c.enc_dim, c.enc_heads, c.enc_depth, c.dec_dim, c.dec_heads, c.dec_depth = 64, 4, 2, 48, 3, 1
    c.win, c.mask_ratio = {2, 4}, 0.75
  else
    c.dim, c.heads, c.depth = 64, 4, 2
  end
  return c
end

-- FLOPs of the products of a graph (2 per multiply-add), reachable or not.
local function graph_flops(g)
  local total = 0
  for i = 0, g:count() - 1 do
    local n = g:node(i)
    if n.op == "matmul" then
      local a = g:node(n.inputs[1])
      local out = 1
      for _, d in ipairs(n.shape) do out = out * d end
      -- K is the contracted size: the product's inner dimension
      local K = (a.shape[#a.shape] == n.shape[#n.shape - 1] and #a.shape >= 2) and a.shape[#a.shape - 1] or a.shape[#a.shape]
      total = total + 2 * out * K
    elseif n.op == "attention" or n.op == "attention_grad" then
      -- q [..., N, d], k [..., M, d]: two products forward (q k^T, P v);
      -- five backward (q k^T again, P^T do, do v^T, dS k, dS^T q)
      local q, k = g:node(n.inputs[1]), g:node(n.inputs[2])
      local items = 1
      for j = 1, #q.shape - 2 do items = items * q.shape[j] end
      local N, M, d = q.shape[#q.shape - 1], k.shape[#k.shape - 1], q.shape[#q.shape]
      total = total + (n.op == "attention" and 2 or 5) * 2 * items * N * M * d
    end
  end
  return total
end

local function median(t)
  table.sort(t)
  local n = #t
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function part_window_mask(cfg, g, seed)
  local cli = require "dferc.cli"
  return cli.random_mask(cfg, g, seed)
end

-- The gemm_shapes record: per shape, the best rate of each mode over
-- `repeats` rounds that alternate the modes (a busy machine slows all).
local function gemm_shapes(quick, repeats)
  local modes = {"blas", "generated"}
  if pcall(core.set_gemm, "bf16") then modes[3] = "bf16" end
  local before = core.set_gemm("blas")
  local rec = {workload = "gemm_shapes", batch = 1, device = "cpu", quick = quick or nil, shapes = {}}
  for _, s in ipairs(GEMM_SHAPES) do
    local a, b = s[2], s[3]
    if quick then a, b = {a[1] // 8, a[2] // 8}, {b[1] // 8, b[2] // 8} end
    local g = df.graph()
    local y = df.matmul(df.input(g, "a", "f32", a), df.input(g, "b", "f32", b), s[4])
    local feeds = {a = df.randn("f32", a, 1), b = df.randn("f32", b, 2)}
    local K = (s[4] and s[4].ta) and a[1] or a[2]
    local flop = 2 * y.shape[1] * y.shape[2] * K
    local plans, best = {}, {}
    for _, m in ipairs(modes) do
      core.set_gemm(m)
      plans[m] = assert(core.compile(g, {y}, "cpu"))
      best[m] = math.huge
    end
    for _ = 1, math.max(repeats, 2) do
      for _, m in ipairs(modes) do
        local out = {assert(plans[m]:run(feeds))[1]}
        for _ = 1, 3 do
          local t = core.clock()
          plans[m]:run(feeds, out)
          best[m] = math.min(best[m], core.clock() - t)
        end
      end
    end
    local r = {name = s[1], m = y.shape[1], n = y.shape[2], k = K,
               transpose = s[4] and ((s[4].ta and "a" or "") .. (s[4].tb and "b" or "")) or ""}
    for _, m in ipairs(modes) do r[m .. "_gflops"] = flop / best[m] / 1e9 end
    r.generated_vs_blas = r.generated_gflops / r.blas_gflops
    if r.bf16_gflops then r.bf16_vs_blas = r.bf16_gflops / r.blas_gflops end
    rec.shapes[#rec.shapes + 1] = r
  end
  core.set_gemm(before)
  local worst, all = math.huge, 0
  for _, r in ipairs(rec.shapes) do
    worst = math.min(worst, r.generated_vs_blas)
    all = all + r.generated_vs_blas
  end
  rec.generated_vs_blas_worst = worst
  rec.generated_vs_blas_mean = all / #rec.shapes
  rec.seconds = 0
  rec.peak_rss_mb = core.peak_rss_mb()
  return rec
end

-- Run one workload in this process; returns its record.
function bench.run_one(name, device, quick, repeats)
  local w = WORKLOADS[name]
  if not w then error({msg = "bench: unknown workload '" .. tostring(name) .. "'"}, 0) end
  if w.kind == "gemm" then
    if device ~= "cpu" then error({msg = "bench: gemm_shapes runs on the cpu device only"}, 0) end
    return gemm_shapes(quick, repeats)
  end
  local cli = require "dferc.cli"
  local cfg = quick and quick_config(w.kind, w.batch) or {kind = w.kind, B = w.batch}
  local t0 = core.clock()
  local model = S.build(cfg, {fused_attention = core.supports(device, "attention")})
  local rec = {workload = name, batch = w.batch, device = device, quick = quick or nil,
               gemm = device == "cpu" and core.set_gemm() or nil}
  if w.kind == "pretrain" then rec.recompute = core.set_recompute() end -- DFERC_RECOMPUTE
  local init = {}
  for i, p in ipairs(model.params) do init[p.name] = cli.init_param(p, i) end
  local feeds = {videos = df.randn("f32", model.inputs.videos.shape, 7)}
  if model.inputs.mask then feeds.mask = part_window_mask(model.config, model.geometry, 11) end
  if model.inputs.labels then
    local l = {}
    for i = 1, w.batch do l[i] = (i - 1) % 7 end
    feeds.labels = df.host("i64", {w.batch}, l)
  end
  local run
  if w.kind == "pretrain" then
    local tc = core.clock()
    local opt = train.adamw {lr = 1e-4, betas = {0.9, 0.95}, weight_decay = 0.05,
                             groups = train.mae_dfer_groups(model)}
    local step = assert(train.compile {model = model, loss = model.outputs.loss, optimizer = opt, device = device})
    rec.compile_seconds = core.clock() - tc
    if w.compile_only then
      rec.seconds = core.clock() - t0
      rec.peak_rss_mb = core.peak_rss_mb()
      return rec
    end
    step:set_params(init)
    init = nil
    collectgarbage() -- the initial values now live in the step's arena
    run = function() step:run(feeds) end
    rec.graph_gflop = graph_flops(model.graph) / 1e9
  else
    local tc = core.clock()
    local c = assert(df.compile {outputs = {logits = model.outputs.logits}, device = device})
    rec.compile_seconds = core.clock() - tc
    local weights = {}
    for k, v in pairs(init) do feeds[k], weights[#weights + 1] = v, v end
    assert(c:keep(weights)) -- the weights stay on the device (cuda)
    run = function() assert(c:run(feeds)) end
    rec.graph_gflop = graph_flops(model.graph) / 1e9
  end
  run() -- warm-up
  local times = {}
  for i = 1, repeats do
    local s = core.clock()
    run()
    times[i] = core.clock() - s
  end
  rec.seconds = median(times)
  -- the device's time by kernel family in the last run, which it wrote to
  -- $DFERC_PROFILE_OUT (set by bench.main)
  local pf = os.getenv("DFERC_PROFILE_OUT")
  local f = pf and pf ~= "" and io.open(pf)
  if f then
    local prof = core.json_decode(f:read("a"))
    f:close()
    os.remove(pf)
    if type(prof) == "table" then rec.kernel_times = prof end
  end
  if not quick then rec.gflops = w.ref_gflop * w.batch / rec.seconds end
  rec.graph_gflops = rec.graph_gflop / rec.seconds
  rec.peak_rss_mb = core.peak_rss_mb()
  return rec
end

-- A JSON string literal: quotes, backslashes and control bytes escaped.
local function jstr(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

-- A minimal JSON writer for records (numbers, strings, booleans, tables).
local function json(v, indent)
  indent = indent or ""
  if type(v) == "table" then
    if #v > 0 or next(v) == nil then
      local parts = {}
      for i, x in ipairs(v) do parts[i] = indent .. "  " .. json(x, indent .. "  ") end
      return "[\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = jstr(tostring(k)) .. ": " .. json(v[k], indent) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  if type(v) == "string" then return jstr(v) end
  if type(v) == "number" then
    if v ~= v or v == math.huge or v == -math.huge then return "null" end
    return math.type(v) == "integer" and tostring(v) or string.format("%.6g", v)
  end
  return tostring(v)
end
bench.json = json

-- The GPU's float32 product rate through the cuda device: a chain of
-- products in one plan (so the copies in and out are a small share),
-- the best of a few runs.
function bench.cuda_sgemm_gflops(quick)
  local n, chain = quick and 256 or 4096, quick and 4 or 32
  local g = df.graph()
  local x = df.input(g, "x", "f32", {n, n})
  local w = df.input(g, "w", "f32", {n, n})
  local y = x
  for _ = 1, chain do y = df.matmul(y, w) end
  local c = assert(df.compile {outputs = {y = y}, device = "cuda"})
  -- w scaled so that the chain neither overflows nor vanishes
  local feeds = {x = df.randn("f32", {n, n}, 1), w = df.randn("f32", {n, n}, 2)}
  for i = 1, n * n do feeds.w:set(i, feeds.w:get(i) / math.sqrt(n)) end
  assert(c:run(feeds))
  local best = math.huge
  for _ = 1, 3 do
    local s = core.clock()
    assert(c:run(feeds))
    best = math.min(best, core.clock() - s)
  end
  return 2 * n * n * n * chain / best / 1e9
end

function bench.main(opts)
  local device = opts.device or require("dferc.cli").fastest_device()
  local quick = opts.quick and true or false
  local repeats = tonumber(opts.repeats or (quick and "2" or "3"))
  if opts.one then
    -- a child: one workload, its record on stdout as JSON
    local ok, rec = pcall(bench.run_one, opts.one, device, quick, repeats)
    if not ok then
      io.stdout:write(json({workload = opts.one, error = type(rec) == "table" and rec.msg or tostring(rec)}), "\n")
      return 1
    end
    io.stdout:write(json(rec), "\n")
    return 0
  end
  local names = {}
  if opts.workloads then
    for n in opts.workloads:gmatch("[^,]+") do names[#names + 1] = n end
  else
    for _, n in ipairs(device == "cuda" and ORDER_CUDA or ORDER) do
      if n ~= "gemm_shapes" or device == "cpu" then names[#names + 1] = n end -- the cpu device's products
    end
  end
  local blas = core.blas()
  local measure = function() return core.sgemm_gflops(quick and 512 or 2048, quick and 2 or 5) end
  if device == "cuda" then measure = function() return bench.cuda_sgemm_gflops(quick) end end
  local ceiling = measure()
  if device == "cuda" then
    print(string.format("ceiling: cuBLAS sgemm (float32, no TF32) %.1f GFLOP/s", ceiling))
  else
    print(string.format("ceiling: OpenBLAS sgemm %.1f GFLOP/s (%s, %d threads)", ceiling, blas.core, blas.threads))
  end
  local exe = core.exe()
  local records = {}
  for _, n in ipairs(names) do
    if not WORKLOADS[n] then error({msg = "bench: unknown workload '" .. n .. "'"}, 0) end
    -- the child also records its time by kernel family (CUDA events on cuda)
    local prof = device ~= "ref" and os.tmpname() or nil
    local cmd = string.format("%s'%s' bench --one %s --device %s --repeats %d%s --gemm %s 2>&1",
      prof and ("DFERC_PROFILE_OUT='" .. prof .. "' ") or "", exe, n, device, repeats, quick and " --quick" or "",
      core.set_gemm())
    local p = io.popen(cmd)
    local out = p:read("a")
    p:close()
    local line = out:match("(%b{})%s*$")
    if prof then os.remove(prof) end
    local rec = line and core.json_decode(line)
    if type(rec) ~= "table" then rec = {workload = n, error = out:sub(-300)} end
    rec.ceiling_gflops = ceiling
    rec.blas_core = device == "cuda" and "cuBLAS" or blas.core
    records[#records + 1] = rec
    if opts.out then
      -- written after every workload: a run cut short keeps what it measured
      local f = assert(io.open(opts.out, "w"))
      f:write(json(records), "\n")
      f:close()
    end
    if rec.error then
      print(string.format("%-24s error: %s", n, rec.error))
    elseif rec.shapes then
      for _, r in ipairs(rec.shapes) do
        print(string.format("%-24s %-11s %5d x %5d x %5d%-3s  OpenBLAS %6.1f  generated %6.1f (%3.0f%%)%s", n, r.name,
          r.m, r.n, r.k, r.transpose ~= "" and (" t" .. r.transpose) or "", r.blas_gflops, r.generated_gflops,
          100 * r.generated_vs_blas,
          r.bf16_gflops and string.format("  bf16 %6.1f (%3.0f%%)", r.bf16_gflops, 100 * r.bf16_vs_blas) or ""))
      end
    else
      print(string.format("%-24s batch %d  %8.3f s  %s  peak %6.0f MB%s", n, rec.batch, rec.seconds,
        rec.gflops and string.format("%6.1f GFLOP/s (%4.1f%% of ceiling)", rec.gflops, 100 * rec.gflops / ceiling)
          or string.format("compile %.2f s", rec.compile_seconds or 0),
        rec.peak_rss_mb, rec.quick and "  (quick)" or ""))
    end
  end
  -- the ceiling again after the workloads: a busy machine lowers either
  -- measurement, so the best of the two stands for the machine
  local after = measure()
  if after > ceiling then
    print(string.format("ceiling measured again: %.1f GFLOP/s (the best of both is used)", after))
    for _, rec in ipairs(records) do rec.ceiling_gflops = after end
  end
  if opts.out then
    local f = assert(io.open(opts.out, "w"))
    f:write(json(records), "\n")
    f:close()
    print("wrote " .. opts.out)
  end
  return 0
end

return bench
