--[[
dferc eval -- the paper's test protocol: every 4th frame of each video,
short side resized to INPUT_SIZE, test_num_segment windows of 16 frames x
test_num_crop crops; each view's softmax probabilities averaged per
video; UAR (mean per-class recall), WAR (accuracy), weighted F1,
per-class recall and the confusion matrix, as OUTPUT_DIR/eval.json and a
table.

  dferc eval --data_path DIR --nb_classes 7 --finetune CKPT [--split test]
             [--test_num_segment 2] [--test_num_crop 2] [--output_dir DIR]
             [--device D] [--model SCRIPT.lua] [KEY=VALUE ...]
]]
local df = require "dferc"
local core = df.core
local data = require "dferc.data"
local T = require "dferc.transform"
local C = require "dferc.cmd.common"
local W = require "dferc.weights"
local cli = require "dferc.cli"

local M = {}

M.flags = {
  data_path = "", nb_classes = 7, finetune = "", split = "", test_num_segment = 2, test_num_crop = 2,
  input_size = 160, num_frames = 16, sampling_rate = 4, lg_region_size = "2,5,10",
  lg_classify_token_type = "region", output_dir = "eval-out", device = "", model = "", num_workers = 2,
  quiet = false,
}

local CLASS_NAMES = {"happy", "sad", "neutral", "angry", "surprise", "disgust", "fear"}

--[[
M.run{data_path, nb_classes, cfg, script, params (name -> Host), device,
      output_dir, test_num_segment, test_num_crop, input_size, num_frames,
      sampling_rate, num_workers, split} -> 0, report
]]
function M.run(a)
  local split = a.split and a.split ~= "" and a.split or nil
  local items = split and C.split(a.data_path, split) or C.split(a.data_path, "test", true)
  if not items then
    split = "val"
    items = C.split(a.data_path, "val")
  end
  split = split or "test"
  local K, V = a.nb_classes, a.test_num_segment * a.test_num_crop
  local cfg = {}
  for k, v in pairs(a.cfg) do cfg[k] = v end
  cfg.B = V
  local model = C.build(a.script, cfg, {device = a.device})
  local compiled, err = df.compile {outputs = {logits = model.outputs.logits}, device = a.device}
  if not compiled then C.fail("%s", err) end
  local feeds = {}
  for _, p in ipairs(model.params) do
    feeds[p.name] = a.params[p.name] or C.fail("eval: the weights lack '%s'", p.name)
  end
  local weights = {}
  for _, p in ipairs(model.params) do weights[#weights + 1] = feeds[p.name] end
  assert(compiled:keep(weights)) -- copied to the device once
  -- every 4th frame of each video (the loader decodes them in the background)
  local list, skipped = {}, 0
  for _, it in ipairs(items) do
    local clip = data.open_clip(it.path)
    if clip then
      local idx = {}
      for i = 0, clip:count() - 1, a.sampling_rate do idx[#idx + 1] = i end
      clip:close()
      list[#list + 1] = {path = it.path, frames = idx, label = it.label}
    else
      skipped = skipped + 1
      if not a.quiet then io.stderr:write("dferc: warning: skipping " .. it.path .. ": cannot open\n") end
    end
  end
  local loader = data.loader(list, {workers = a.num_workers, quiet = a.quiet})
  local preds, labels = {}, {}
  local t0 = core.clock()
  while true do
    local frames, pos = loader:next()
    if not frames then break end
    local views = T.finetune_test_views(frames, a.test_num_segment, a.test_num_crop, a.input_size,
      {clip_len = a.num_frames})
    feeds.videos = df.stack(views)
    local r = assert(compiled:run(feeds))
    local prob = {}
    for k = 1, K do prob[k] = 0 end
    for v = 0, V - 1 do
      local mx, row = -math.huge, {}
      for k = 1, K do
        row[k] = r.logits:get(v * K + k)
        if row[k] > mx then mx = row[k] end
      end
      local s = 0
      for k = 1, K do row[k] = math.exp(row[k] - mx); s = s + row[k] end
      for k = 1, K do prob[k] = prob[k] + row[k] / s / V end
    end
    local best = 1
    for k = 2, K do if prob[k] > prob[best] then best = k end end
    preds[#preds + 1] = best - 1
    labels[#labels + 1] = list[pos].label
    C.progress("eval %s: %d/%d videos", split, #preds, #list)
  end
  C.progress_end()
  skipped = skipped + loader:stats().skipped
  loader:close()
  if #preds == 0 then C.fail("eval: no video of %s/%s.csv could be read", a.data_path, split) end
  local m = T.metrics(preds, labels, K)
  local report = {split = split, videos = #preds, skipped = skipped, uar = 100 * m.uar, war = 100 * m.war,
                  f1 = 100 * m.f1, recall = {}, confusion = m.confusion, seconds = core.clock() - t0,
                  views = V, device = a.device}
  for k = 1, K do report.recall[k] = 100 * m.recall[k] end
  C.mkdir(a.output_dir)
  local f = assert(io.open(a.output_dir .. "/eval.json", "w"))
  f:write(require("dferc.bench").json(report), "\n")
  f:close()
  print(string.format("%s: %d videos (%d views each): UAR %.2f%%  WAR %.2f%%  weighted F1 %.2f%%", split, #preds,
    V, report.uar, report.war, report.f1))
  io.write("  class        recall   confusion (rows: true class)\n")
  for k = 1, K do
    local row = {}
    for j = 1, K do row[j] = string.format("%4d", m.confusion[k][j]) end
    print(string.format("  %-10s %6.1f%%  %s", K == 7 and CLASS_NAMES[k] or tostring(k - 1), report.recall[k],
      table.concat(row, " ")))
  end
  print("wrote " .. a.output_dir .. "/eval.json")
  return 0, report
end

function M.main(args)
  local o, sets = C.parse(args, M.flags)
  if o.data_path == "" then C.fail("eval: --data_path is required") end
  if o.finetune == "" then C.fail("eval: --finetune CKPT (the fine-tuned weights) is required") end
  local K = math.tointeger(o.nb_classes) or C.fail("--nb_classes must be an integer")
  local cfg = {kind = "finetune", B = 1, img = o.input_size, frames = o.num_frames,
               region = C.ints(o.lg_region_size, 3, "--lg_region_size"), classes = K,
               token = o.lg_classify_token_type}
  for _, kv in ipairs(sets) do cfg[kv[1]] = kv[2] end
  local loaded, err = W.load(o.finetune)
  if not loaded then C.fail("%s", err) end
  local params = {}
  for _, n in ipairs(loaded.names) do
    if not n:match("^opt%.") then params[n] = loaded.tensors[n] end
  end
  local _, report = M.run {data_path = o.data_path, nb_classes = K, cfg = cfg, script = C.script(o.model),
    params = params, device = o.device ~= "" and o.device or cli.fastest_device(), output_dir = o.output_dir,
    test_num_segment = o.test_num_segment, test_num_crop = o.test_num_crop, input_size = o.input_size,
    num_frames = o.num_frames, sampling_rate = o.sampling_rate, num_workers = o.num_workers, split = o.split,
    quiet = o.quiet}
  return report and 0 or 1
end

return M
