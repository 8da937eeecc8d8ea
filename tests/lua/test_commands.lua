-- The pretrain / finetune / eval commands end to end on a tiny generated
-- dataset: JPEG and PNG frame folders, plus one folder that is broken.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local data = require "dferc.data"
local cli = require "dferc.cli"

local dir = os.tmpname()
os.remove(dir)
os.execute("mkdir -p " .. dir .. "/clips")
local function make_clip(i, label, ext)
  local d = string.format("%s/clips/%03d", dir, i)
  os.execute("mkdir -p " .. d)
  for f = 1, 12 do
    local img = df.host("u8", {72, 80, 3})
    local vals = df.rand("f32", {72, 80, 3}, i * 100 + f)
    for k = 1, img.numel do
      -- the class shows as a moving bar, so there is something to learn
      local pix = (k - 1) // 3
      local x = pix % 80
      local v = vals:get(k) * 60
      if label == 1 and math.abs(x - 5 * f) < 6 then v = v + 150 end
      img:set(k, math.floor(v))
    end
    local path = string.format("%s/%05d.%s", d, f, ext)
    assert(ext == "png" and data.write_png(path, img) or data.write_jpeg(path, img, 90))
  end
  return string.format("clips/%03d %d", i, label)
end
-- a clip as a video file (mp4, mpeg4) instead of a frame folder
local function make_video(i, label)
  local frames = df.host("u8", {16, 72, 80, 3})
  local vals = df.rand("f32", {16, 72, 80, 3}, i)
  for k = 1, frames.numel do frames:set(k, math.floor(vals:get(k) * 200)) end
  local path = string.format("%s/clips/v%03d.mp4", dir, i)
  assert(data.write_video(path, frames, 25, "mpeg4"))
  return string.format("clips/v%03d.mp4 %d", i, label)
end
local lines = {}
for i = 1, 8 do lines[#lines + 1] = make_clip(i, i % 2, i % 3 == 0 and "png" or "jpg") end
lines[#lines + 1] = make_video(9, 1)
lines[#lines + 1] = make_video(10, 0)
lines[#lines + 1] = "clips/missing 0" -- a clip that is not there: skipped with a warning
local function write(name, rows)
  local f = assert(io.open(dir .. "/" .. name, "w"))
  f:write(table.concat(rows, "\n"), "\n")
  f:close()
end
write("train.csv", lines)
write("val.csv", {lines[1], lines[2]})
write("test.csv", {lines[3], lines[4], lines[9], lines[10]})

local function run(cmd, extra)
  local args = {cmd, "--data_path", dir, "--input_size", "64", "--num_frames", "8", "--lg_region_size", "2,2,4",
                "--device", T.has_cpu() and "cpu" or "ref", "--quiet"}
  for _, a in ipairs(extra) do args[#args + 1] = a end
  local ok, r = pcall(require("dferc.cmd." .. cmd).main, args)
  if not ok then error(type(r) == "table" and r.msg or tostring(r), 0) end
  return r
end

T.test("pretrain_command", function()
  local rc = run("pretrain", {"--batch_size", "2", "--epochs", "2", "--warmup_epochs", "1", "--mask_ratio", "0.75",
    "--output_dir", dir .. "/pt", "--save_ckpt_freq", "1", "enc_dim=32", "enc_heads=2", "enc_depth=1",
    "dec_dim=24", "dec_heads=2", "dec_depth=1"})
  T.eq(rc, 0, "exit status")
  T.ok(io.open(dir .. "/pt/checkpoint-1.safetensors"), "checkpoint written")
  local log = assert(io.open(dir .. "/pt/log.jsonl")):read("a")
  local n = select(2, log:gsub("\n", ""))
  T.eq(n, 10, "logged steps (2 epochs of 5 batches)")
  -- resume continues from the saved epoch
  rc = run("pretrain", {"--batch_size", "2", "--epochs", "3", "--warmup_epochs", "1", "--mask_ratio", "0.75",
    "--output_dir", dir .. "/pt", "--resume", dir .. "/pt/checkpoint-1.safetensors", "enc_dim=32", "enc_heads=2",
    "enc_depth=1", "dec_dim=24", "dec_heads=2", "dec_depth=1"})
  T.eq(rc, 0, "resume exit status")
  T.ok(io.open(dir .. "/pt/checkpoint-2.safetensors"), "resumed run saved epoch 2")
end)

T.test("finetune_and_eval_commands", function()
  local rc = run("finetune", {"--nb_classes", "2", "--batch_size", "2", "--epochs", "1", "--warmup_epochs", "0",
    "--output_dir", dir .. "/ft", "--finetune", dir .. "/pt/checkpoint-1.safetensors", "dim=32", "heads=2",
    "depth=1"})
  T.eq(rc, 0, "exit status")
  local rep = df.json_decode(assert(io.open(dir .. "/ft/eval.json")):read("a"))
  T.eq(rep.videos, 4, "test videos evaluated")
  T.ok(rep.uar >= 0 and rep.uar <= 100 and rep.war >= 0, "metrics in range")
  rc = run("eval", {"--nb_classes", "2", "--finetune", dir .. "/ft/checkpoint-0.safetensors", "--split", "val",
    "--output_dir", dir .. "/ev", "dim=32", "heads=2", "depth=1"})
  T.eq(rc, 0, "eval exit status")
  rep = df.json_decode(assert(io.open(dir .. "/ev/eval.json")):read("a"))
  T.eq(rep.videos, 2, "val videos")
  T.eq(#rep.confusion, 2, "confusion matrix")
end)

T.test("bad_inputs_are_clear_errors", function()
  T.raises(function() run("pretrain", {"--batch_size", "2", "--bogus", "1"}) end, "unknown option --bogus")
  T.raises(function() run("finetune", {"--nb_classes", "1", "dim=32", "heads=2", "depth=1"}) end,
    "label 1 of")
  local f = assert(io.open(dir .. "/bad.csv", "w"))
  f:write("clips/001 x\n")
  f:close()
  T.raises(function() require("dferc.cmd.common").split(dir, "bad") end, "bad.csv:1")
end)

os.execute("rm -rf " .. dir)
os.exit(T.done(), true)
