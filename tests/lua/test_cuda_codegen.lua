-- Every kernel of the full-size pre-training and fine-tuning steps (forward,
-- backward, AdamW), printed as CUDA C, compiles with NVRTC for sm_90.
-- Needs the CUDA toolkit (NVRTC), not a GPU; skips cleanly without it.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local train = require "dferc.train"
local S = require "mae_dfer"

local probe_g = df.graph()
local ok, why = df.core.cuda_check(probe_g, {df.input(probe_g, "x", "f32", {1})})
if not ok and why:find("not found", 1, true) then
  print("skip nvrtc_compile: " .. why)
  os.exit(0)
end

for _, kind in ipairs {"pretrain", "finetune"} do
  T.test("nvrtc_compiles_full_size_" .. kind .. "_step", function()
    -- as a cuda run builds it (attention as one op where cuda has it)
    local model = S.build({kind = kind, B = 2}, {training = kind == "finetune", drop_path = 0.1,
                                                 fused_attention = df.core.supports("cuda", "attention")})
    local loss = model.outputs.loss
    local opt = train.adamw {lr = 1e-4, groups = train.mae_dfer_groups(model, {layer_decay = kind == "finetune" and 0.75 or nil})}
    local g, outputs = train.step_graph {model = model, loss = loss, optimizer = opt}
    local r, err = df.core.cuda_check(g, outputs, 90)
    T.ok(r, tostring(err))
    T.ok(r.kernels > 100, "kernels: " .. r.kernels)
    T.ok(r.cubin_bytes > 0, "a cubin")
    T.ok(r.library_kernels > 0, "library steps (mask_index, scatter_add, rand) have kernels")
    print(string.format("# %s step: %d kernels (%d distinct), %d library kernels, cubin %d bytes, NVRTC %.1f s (%s)",
      kind, r.kernels, r.distinct, r.library_kernels, r.cubin_bytes, r.seconds, r.nvrtc))
  end)
end

-- every library op, in every form the cuda device generates (the kernels
-- the device runs instead of the host reference code), f32 and f64
T.test("nvrtc_compiles_library_kernels", function()
  for _, dt in ipairs {"f32", "f64"} do
    local g = df.graph()
    local seed = df.input(g, "seed", "i64", {})
    local mask = df.input(g, "mask", "bool", {2, 32})
    local src = df.input(g, "src", dt, {2, 8, 3})
    local idx32 = df.input(g, "idx32", "i32", {2, 8})
    local src4 = df.input(g, "src4", dt, {2, 3, 8, 5})
    local idx4 = df.input(g, "idx4", "i64", {2, 3, 8})
    local vis = df.mask_index(mask, false, 8, {2, 4, 4, 2, 2})
    local outs = {
      df.random(seed, {5, 7}, 3, dt),
      vis,
      df.mask_index(mask, true, 24),
      df.scatter_add(vis, src, 1, {2, 32, 3}),
      df.scatter_add(vis, src, 1, {1, 32, 3}), -- a broadcast row: summed
      df.scatter_add(idx32, src, 1, {2, 32, 3}),
      df.scatter_add(idx4, src4, 2, {2, 1, 16, 5}),
    }
    local dump = os.tmpname()
    local r, err = df.core.cuda_check(g, outs, 90, dump)
    local f = io.open(dump)
    local text = f and f:read("a") or ""
    if f then f:close() end
    os.remove(dump)
    T.ok(r, tostring(err))
    T.eq(r.library_kernels, #outs, dt .. " library kernels")
    for _, op in ipairs {"rand", "mask_index", "scatter_add"} do
      T.ok(text:find("_" .. op .. "(", 1, true), op .. " kernel in the source")
    end
  end
end)

T.test("nvrtc_reports_errors_with_the_log", function()
  -- a kernel set that compiles is the common case; an unknown architecture shows the error path
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4})
  local r, err = df.core.cuda_check(g, {df.exp(x) + 1}, 1)
  T.ok(not r and err:find("dferc_kernels.cu", 1, true), tostring(err))
end)

os.exit(T.done(), true)
