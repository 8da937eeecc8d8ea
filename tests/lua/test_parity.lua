-- Parity with the original PyTorch implementation: `dferc run-io --grads`
-- on the public fixtures reproduces every stored output on every device
-- (ref, cpu, and cuda where it can run; $DFERC_TEST_DEVICES picks) within
-- 1e-5 and every parameter's gradient within 1e-4 (relative error
-- ||out - ref|| / ||ref||).
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local cli = require "dferc.cli"

local outputs = {
  finetune_tiny = {"features", "logits", "loss"},
  pretrain_tiny = {"encoder_out", "decoder_out", "targets", "loss"},
}

local runs = {}
for _, device in ipairs(T.devices {"ref", "cpu", "cuda"}) do
  for _, case in ipairs {"finetune_tiny", "pretrain_tiny"} do runs[#runs + 1] = {case, device} end
end
for _, run in ipairs(runs) do
  local case, device = run[1], run[2]
  T.test("parity_" .. case .. "_" .. device, function()
    local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
    if device == "cpu" and not T.has_cpu() then T.skip("no cpu device in this build") end
    if device == "cuda" then
      local usable, why = T.device_usable("cuda")
      if not usable then T.skip(why) end
    end
    local out = os.tmpname()
    local base = dir .. "/" .. case
    local ok, rc = pcall(cli.run_io, {"run-io", "--config", base .. ".config.json",
      "--weights", base .. ".weights.safetensors", "--inputs", base .. ".io.safetensors",
      "--out", out, "--device", device, "--grads"})
    if not ok then os.remove(out) error(rc) end
    local got = assert(df.load(out))
    os.remove(out)
    local want = assert(df.load(base .. ".io.safetensors"))
    for _, name in ipairs(outputs[case]) do
      local a, b = got.tensors[name], want.tensors[name]
      T.ok(a, "output " .. name .. " written")
      T.eq(a.shape, b.shape, name .. " shape")
      local rel = df.compare(a, b)
      T.ok(rel <= 1e-5, string.format("%s: relative error %.3g > 1e-5", name, rel))
    end
    -- every parameter's gradient, and no other
    local n = 0
    for _, name in ipairs(want.names) do
      if name:sub(1, 5) == "grad." then
        n = n + 1
        local a = got.tensors[name]
        T.ok(a, name .. " written")
        local rel = df.compare(a, want.tensors[name])
        T.ok(rel <= 1e-4, string.format("%s: relative error %.3g > 1e-4", name, rel))
      end
    end
    local m = 0
    for _, name in ipairs(got.names) do if name:sub(1, 5) == "grad." then m = m + 1 end end
    T.eq(m, n, "number of gradients")
    T.ok(n > 50, "the fixture holds gradients")
  end)
end

os.exit(T.done(), true)
