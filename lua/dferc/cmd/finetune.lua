--[[
dferc finetune -- supervised fine-tuning, as the original's
run_class_finetuning.py: clips from DATA_PATH/train.csv, RandAugment,
random resized crop, flip and random erasing; mixup / cutmix with
soft-target cross-entropy (label-smoothed cross-entropy without them);
drop path; AdamW with layer-wise lr decay and the cosine schedule;
checkpoints; then the test protocol of `dferc eval` on test.csv (val.csv
when there is no test split).

  dferc finetune --data_path DIR --nb_classes 7 [--finetune PRETRAINED]
                 [--batch_size 32] [--epochs 100] [--lr 1e-3] [--min_lr 1e-6]
                 [--warmup_epochs 5] [--layer_decay 0.75] [--drop_path 0.1]
                 [--smoothing 0.1] [--mixup 0.8] [--cutmix 1.0] [--reprob 0.25]
                 [--aa rand-m7-n4-mstd0.5-inc1] [--train_crop_scale 0.08,1]
                 [--output_dir DIR] [--device D] [--model SCRIPT.lua] [KEY=VALUE ...]
]]
local df = require "dferc"
local core = df.core
local train = require "dferc.train"
local T = require "dferc.transform"
local C = require "dferc.cmd.common"
local W = require "dferc.weights"
local cli = require "dferc.cli"

local M = {}

M.flags = {
  data_path = "", nb_classes = 7, finetune = "", batch_size = 32, epochs = 100, lr = 1e-3, min_lr = 1e-6,
  warmup_epochs = 5, weight_decay = 0.05, opt_betas = "0.9,0.999", layer_decay = 0.75, drop_path = 0.1,
  smoothing = 0.1, mixup = 0.8, cutmix = 1.0, mixup_prob = 1.0, mixup_switch_prob = 0.5, reprob = 0.25,
  aa = "rand-m7-n4-mstd0.5-inc1", lg_region_size = "2,5,10", lg_classify_token_type = "region",
  num_frames = 16, sampling_rate = 4, input_size = 160, test_num_segment = 2, test_num_crop = 2,
  output_dir = "finetune-out", device = "", model = "", seed = 0, save_ckpt_freq = 20, resume = "",
  num_workers = 2, max_steps = 0, no_eval = false, quiet = false, clip_grad = 0,
  train_crop_scale = "0.08,1",
}

function M.main(args)
  local o, sets = C.parse(args, M.flags)
  if o.data_path == "" then C.fail("finetune: --data_path is required") end
  local device = o.device ~= "" and o.device or cli.fastest_device()
  local K = math.tointeger(o.nb_classes) or C.fail("--nb_classes must be an integer")
  local cfg = {kind = "finetune", B = o.batch_size, img = o.input_size, frames = o.num_frames,
               region = C.ints(o.lg_region_size, 3, "--lg_region_size"), classes = K,
               token = o.lg_classify_token_type}
  for _, kv in ipairs(sets) do cfg[kv[1]] = kv[2] end
  local script = C.script(o.model)
  local model = C.build(script, cfg, {training = true, drop_path = o.drop_path, device = device})
  local items = C.split(o.data_path, "train")
  for _, it in ipairs(items) do
    if it.label >= K then C.fail("%s: label %d of %s is outside 0..%d (--nb_classes %d)", o.data_path .. "/train.csv",
      it.label, it.path, K - 1, K) end
  end
  local steps_per_epoch = #items // o.batch_size
  if steps_per_epoch < 1 then C.fail("finetune: %d clips in train.csv, fewer than one batch of %d", #items, o.batch_size) end
  C.mkdir(o.output_dir)

  local mixing = o.mixup > 0 or o.cutmix > 0
  local crop_scale = {}
  for x in o.train_crop_scale:gmatch("[^,]+") do crop_scale[#crop_scale + 1] = tonumber(x) end
  if #crop_scale ~= 2 or not crop_scale[1] or not crop_scale[2] then
    C.fail("finetune: --train_crop_scale wants two numbers, as 0.08,1")
  end
  local loss
  if mixing then
    local targets = model.builder:input("targets", "f32", {o.batch_size, K})
    loss = train.soft_target_cross_entropy(model.outputs.logits, targets)
  else
    loss = train.cross_entropy(model.outputs.logits, model.inputs.labels, o.smoothing)
  end
  local scale = o.batch_size / 256
  local betas = C.betas(o.opt_betas)
  local opt = train.adamw {lr = o.lr * scale, betas = betas, weight_decay = o.weight_decay,
                           groups = train.mae_dfer_groups(model, {layer_decay = o.layer_decay}),
                           clip_grad = o.clip_grad > 0 and o.clip_grad or nil}
  local step, err = train.compile {model = model, loss = loss, optimizer = opt, device = device, seed = o.seed}
  if not step then C.fail("%s", err) end
  local lr_sched = train.cosine_schedule {base = o.lr * scale, final = o.min_lr * scale, epochs = o.epochs,
    steps_per_epoch = steps_per_epoch, warmup_epochs = math.min(o.warmup_epochs, o.epochs)}

  local start_epoch = C.start(step, model, o, function(init)
    if o.finetune == "" then return init end
    local loaded, lerr = W.load(o.finetune)
    if not loaded then C.fail("%s", lerr) end
    local values, report = W.for_finetune(model, loaded, init)
    print(W.describe(report, o.finetune))
    return values
  end)
  local log = C.log(o.output_dir, "log.jsonl")
  print(string.format("fine-tuning on %s: %d clips, %d classes, %d steps per epoch, %d epochs, batch %d, %d parameters",
    device, #items, K, steps_per_epoch, o.epochs, o.batch_size, model.n_params))
  local t_start, it = core.clock(), 0
  for epoch = start_epoch, o.epochs - 1 do
    local order = C.permutation(#items, o.seed * 7919 + epoch)
    local batches = C.batches(items, order, o.batch_size,
      {workers = o.num_workers, sample = "train", seed = o.seed * 1000 + epoch, clip_len = o.num_frames,
       rate = o.sampling_rate, quiet = o.quiet},
      function(frames, item, pos)
        local s = T.stream(o.seed, epoch * 1000003 + pos)
        return {video = T.finetune_train(frames, s, {size = o.input_size, randaug = o.aa ~= "" and o.aa or false,
                                                       erase = o.reprob, scale = crop_scale}), label = item.label}
      end)
    local t_epoch = core.clock()
    for b = 1, steps_per_epoch do
      local samples = batches.next()
      if not samples then break end
      local vids, labels = {}, {}
      for i, s in ipairs(samples) do vids[i], labels[i] = s.video, s.label end
      local videos = df.stack(vids)
      local feeds = {videos = videos, labels = df.host("i64", {o.batch_size}, labels)}
      if mixing then
        local _, _, targets = T.mixup(labels, K, T.stream(o.seed, 7 * 1000003 + epoch * steps_per_epoch + b),
          {videos = videos, mixup_alpha = o.mixup, cutmix_alpha = o.cutmix, prob = o.mixup_prob,
           switch_prob = o.mixup_switch_prob, smoothing = o.smoothing})
        feeds.targets = targets
      end
      local gi = epoch * steps_per_epoch + b
      step:set_lr(lr_sched[gi] or lr_sched[#lr_sched], o.weight_decay)
      local ts = core.clock()
      local l = step(feeds)
      local te = core.clock()
      it = it + 1
      local st = batches.loader:stats()
      local remaining = (o.epochs - epoch) * steps_per_epoch - b
      log {epoch = epoch, step = step.t, loss = l, lr = step.lr, step_seconds = te - ts}
      C.progress("epoch %d/%d step %d/%d loss %.4f lr %.2e  %.1f clips/s  data-wait %.0f%%  ETA %s", epoch + 1,
        o.epochs, b, steps_per_epoch, l, step.lr, it * o.batch_size / (te - t_start),
        100 * st.waited_s / math.max(te - t_epoch, 1e-9), C.fmt_time((te - t_start) / it * remaining))
      if o.max_steps > 0 and it >= o.max_steps then break end
    end
    C.progress_end()
    batches.loader:close()
    local last = epoch + 1 == o.epochs or (o.max_steps > 0 and it >= o.max_steps)
    if (epoch + 1) % o.save_ckpt_freq == 0 or last then C.save(step, o, epoch, "finetune") end
    if o.max_steps > 0 and it >= o.max_steps then break end
  end
  print(string.format("done: %d steps in %.1f s", it, core.clock() - t_start))
  if not o.no_eval then
    local E = require "dferc.cmd.eval"
    return E.run {data_path = o.data_path, nb_classes = K, cfg = cfg, script = script, params = step.params,
                  device = device, output_dir = o.output_dir, test_num_segment = o.test_num_segment,
                  test_num_crop = o.test_num_crop, input_size = o.input_size, num_frames = o.num_frames,
                  sampling_rate = o.sampling_rate, num_workers = o.num_workers, quiet = o.quiet}
  end
  return 0
end

return M
