-- The authors' checkpoints: .pth converts to exactly the safetensors
-- weights, loads wherever weights are accepted, and a pre-training
-- checkpoint loads into the fine-tuning model as the original's script does.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local W = require "dferc.weights"
local cli = require "dferc.cli"
local S = require "mae_dfer"

for _, case in ipairs {"finetune_tiny", "pretrain_tiny"} do
  T.test("convert_" .. case, function()
    local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
    local out = os.tmpname()
    assert(cli.convert {"convert", dir .. "/" .. case .. ".ckpt.pth", out} == 0)
    local got = assert(df.load(out))
    os.remove(out)
    local want = assert(df.load(dir .. "/" .. case .. ".weights.safetensors"))
    T.eq(#got.names, #want.names, "tensor count")
    for _, n in ipairs(want.names) do
      local a, b = got.tensors[n], want.tensors[n]
      T.ok(a, "tensor " .. n)
      T.eq(a.dtype, b.dtype, n .. " dtype")
      T.eq(a.shape, b.shape, n .. " shape")
      local _, d = df.compare(a, b)
      T.eq(d, 0.0, n .. " values")
    end
  end)
end

T.test("run_io_accepts_pth_weights", function()
  local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
  local base = dir .. "/finetune_tiny"
  local out = os.tmpname()
  assert(cli.run_io {"run-io", "--config", base .. ".config.json", "--weights", base .. ".ckpt.pth",
                     "--inputs", base .. ".io.safetensors", "--out", out} == 0)
  local got = assert(df.load(out))
  os.remove(out)
  local want = assert(df.load(base .. ".io.safetensors"))
  T.ok(df.compare(got.tensors.logits, want.tensors.logits) <= 1e-5, "logits")
end)

T.test("pretrain_checkpoint_into_finetune_model", function()
  local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
  local model = S.build {kind = "finetune", img = 64, frames = 8, region = {2, 2, 4}, dim = 64, heads = 4, depth = 2}
  local fresh = {}
  for i, p in ipairs(model.params) do fresh[p.name] = cli.init_param(p, i) end
  local loaded = assert(W.load(dir .. "/pretrain_tiny.ckpt.pth"))
  T.eq(loaded.extra.epoch, 49, "epoch")
  local values, report = W.for_finetune(model, loaded, fresh)
  T.eq(#report.loaded, 67, "loaded")
  T.eq(#report.dropped, 21, "dropped")
  T.eq(report.missing, {"fc_norm.weight", "fc_norm.bias", "head.weight", "head.bias"}, "missing")
  T.ok(values["fc_norm.weight"] == fresh["fc_norm.weight"], "fc_norm keeps its fresh initialisation")
  local src = loaded.tensors["encoder.blocks.1.mlp.fc2.weight"]
  local _, d = df.compare(values["blocks.1.mlp.fc2.weight"], src)
  T.eq(d, 0.0, "encoder. prefix stripped")
  T.ok(values["lg_region_tokens"], "region tokens loaded")
end)

T.test("pth_refuses_code", function()
  -- a pickle that would call os.system: refused by name, and nothing runs
  local dir = os.tmpname()
  os.remove(dir)
  local witness = dir .. ".ran"
  local pkl = "\128\2cos\nsystem\nq\0X" .. string.pack("<I4", #("touch " .. witness)) .. "touch " .. witness .. "\133R."
  -- build a stored zip with archive/data.pkl
  local name = "archive/data.pkl"
  local function crc32(s)
    local crc = 0xffffffff
    for i = 1, #s do
      crc = crc ~ s:byte(i)
      for _ = 1, 8 do crc = (crc >> 1) ~ (0xedb88320 & -(crc & 1)) end
    end
    return (~crc) & 0xffffffff
  end
  local c = crc32(pkl)
  local lh = string.pack("<I4I2I2I2I2I2I4I4I4I2I2", 0x04034b50, 20, 0, 0, 0, 0, c, #pkl, #pkl, #name, 0) .. name .. pkl
  local cd = string.pack("<I4I2I2I2I2I2I2I4I4I4I2I2I2I2I2I4I4", 0x02014b50, 20, 20, 0, 0, 0, 0, c, #pkl, #pkl,
                         #name, 0, 0, 0, 0, 0, 0) .. name
  local eocd = string.pack("<I4I2I2I2I2I4I4I2", 0x06054b50, 0, 0, 1, 1, #cd, #lh, 0)
  local path = dir .. ".pth"
  local f = assert(io.open(path, "wb"))
  f:write(lh .. cd .. eocd)
  f:close()
  local ok, err = W.load(path)
  os.remove(path)
  T.ok(not ok and err:find("os.system", 1, true), tostring(err))
  T.ok(io.open(witness) == nil, "the command did not run")
end)

os.exit(T.done(), true)
