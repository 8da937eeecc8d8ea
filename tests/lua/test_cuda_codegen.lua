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
    local model = S.build({kind = kind, B = 2}, {training = kind == "finetune", drop_path = 0.1})
    local loss = model.outputs.loss
    local opt = train.adamw {lr = 1e-4, groups = train.mae_dfer_groups(model, {layer_decay = kind == "finetune" and 0.75 or nil})}
    local g, outputs = train.step_graph {model = model, loss = loss, optimizer = opt}
    local r, err = df.core.cuda_check(g, outputs, 90)
    T.ok(r, tostring(err))
    T.ok(r.kernels > 100, "kernels: " .. r.kernels)
    T.ok(r.cubin_bytes > 0, "a cubin")
    print(string.format("# %s step: %d kernels (%d distinct), cubin %d bytes, NVRTC %.1f s (%s)", kind, r.kernels,
      r.distinct, r.cubin_bytes, r.seconds, r.nvrtc))
  end)
end

T.test("nvrtc_reports_errors_with_the_log", function()
  -- a kernel set that compiles is the common case; an unknown architecture shows the error path
  local g = df.graph()
  local x = df.input(g, "x", "f32", {4})
  local r, err = df.core.cuda_check(g, {df.exp(x) + 1}, 1)
  T.ok(not r and err:find("dferc_kernels.cu", 1, true), tostring(err))
end)

os.exit(T.done(), true)
