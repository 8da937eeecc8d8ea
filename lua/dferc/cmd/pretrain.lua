--[[
dferc pretrain -- MAE-DFER self-supervised pre-training, as the original's
run_mae_pretraining.py: clips from DATA_PATH/train.csv (labels unused),
16 frames at stride 4, multi-scale crop to INPUT_SIZE, ImageNet
normalisation, a part-window (or tube) mask per clip, reconstruction of
the masked tubelets (appearance + frame difference), AdamW with the
cosine schedule, checkpoints every --save_ckpt_freq epochs.

  dferc pretrain --data_path DIR [--batch_size 32] [--epochs 100] [--lr 3e-4]
                 [--min_lr 1e-5] [--warmup_epochs 5] [--weight_decay 0.05]
                 [--mask_type part_window|tube] [--mask_ratio 0.9]
                 [--lg_region_size 2,5,10] [--output_dir DIR] [--device D]
                 [--model SCRIPT.lua] [--resume CKPT] [KEY=VALUE ...]
KEY=VALUE sets model config keys (enc_dim=256 enc_depth=4 ...).
]]
local df = require "dferc"
local core = df.core
local train = require "dferc.train"
local T = require "dferc.transform"
local C = require "dferc.cmd.common"
local cli = require "dferc.cli"

local M = {}

M.flags = {
  data_path = "", batch_size = 32, epochs = 100, lr = 3e-4, min_lr = 1e-5, warmup_epochs = 5,
  warmup_steps = -1, weight_decay = 0.05, weight_decay_end = -1, opt_betas = "0.9,0.95", clip_grad = 0,
  mask_type = "part_window", mask_ratio = 0.9, win_size = "", lg_region_size = "2,5,10",
  num_frames = 16, sampling_rate = 4, input_size = 160, output_dir = "pretrain-out", device = "",
  model = "", seed = 0, save_ckpt_freq = 20, resume = "", num_workers = 2, max_steps = 0, quiet = false,
}

--[[
The input geometry and model keys a checkpoint was trained with, as JSON
in its metadata (user.geometry), so that `dferc reconstruct` rebuilds the
same model: input_size, num_frames, sampling_rate, lg_region_size,
mask_type, mask_ratio, win_size, model (the script, "" for the default)
and sets (the KEY=VALUE config keys).
]]
function M.geometry_json(o, sets)
  local keys = {}
  for _, kv in ipairs(sets) do keys[kv[1]] = kv[2] end
  return require("dferc.bench").json({input_size = o.input_size, num_frames = o.num_frames,
    sampling_rate = o.sampling_rate, lg_region_size = o.lg_region_size, mask_type = o.mask_type,
    mask_ratio = o.mask_ratio, win_size = o.win_size, model = o.model, sets = next(keys) and keys or nil})
end

function M.main(args)
  local o, sets = C.parse(args, M.flags)
  if o.data_path == "" then C.fail("pretrain: --data_path is required") end
  local device = o.device ~= "" and o.device or cli.fastest_device()
  local region = C.ints(o.lg_region_size, 3, "--lg_region_size")
  local win = o.win_size ~= "" and C.ints(o.win_size, 2, "--win_size") or {region[2], region[3]}
  local cfg = {kind = "pretrain", B = o.batch_size, img = o.input_size, frames = o.num_frames, region = region,
               mask = o.mask_type, win = win, mask_ratio = o.mask_ratio}
  for _, kv in ipairs(sets) do cfg[kv[1]] = kv[2] end
  local script = C.script(o.model)
  local model = C.build(script, cfg, {training = true, device = device})
  local g = model.geometry
  local items = C.split(o.data_path, "train")
  local steps_per_epoch = #items // o.batch_size
  if steps_per_epoch < 1 then
    C.fail("pretrain: %d clips in train.csv, fewer than one batch of %d", #items, o.batch_size)
  end
  C.mkdir(o.output_dir)

  -- the original scales the learning rates by the total batch / 256
  local scale = o.batch_size / 256
  local betas = C.betas(o.opt_betas)
  local opt = train.adamw {lr = o.lr * scale, betas = betas, weight_decay = o.weight_decay,
                           groups = train.mae_dfer_groups(model), clip_grad = o.clip_grad > 0 and o.clip_grad or nil}
  local step, err = train.compile {model = model, loss = model.outputs.loss, optimizer = opt, device = device,
                                   seed = o.seed}
  if not step then C.fail("%s", err) end
  local lr_sched = train.cosine_schedule {base = o.lr * scale, final = o.min_lr * scale, epochs = o.epochs,
    steps_per_epoch = steps_per_epoch, warmup_epochs = math.min(o.warmup_epochs, o.epochs), warmup_steps = o.warmup_steps}
  local wd_end = o.weight_decay_end >= 0 and o.weight_decay_end or o.weight_decay
  local wd_sched = train.cosine_schedule {base = o.weight_decay, final = wd_end, epochs = o.epochs,
    steps_per_epoch = steps_per_epoch, warmup_epochs = 0}

  local start_epoch = C.start(step, model, o)
  local log = C.log(o.output_dir, "log.jsonl")
  print(string.format("pre-training %s on %s: %d clips, %d steps per epoch, %d epochs, batch %d, %s mask %.2f, %d parameters",
    o.model ~= "" and o.model or "MAE-DFER", device, #items, steps_per_epoch, o.epochs, o.batch_size, o.mask_type,
    o.mask_ratio, model.n_params))
  local wh, ww = win[1], win[2]
  local t_start, it, last_loss = core.clock(), 0, nil
  for epoch = start_epoch, o.epochs - 1 do
    local order = C.permutation(#items, o.seed * 7919 + epoch)
    local batches = C.batches(items, order, o.batch_size,
      {workers = o.num_workers, sample = "pretrain", seed = o.seed * 1000 + epoch, clip_len = o.num_frames,
       rate = o.sampling_rate, quiet = o.quiet},
      function(frames, item, pos)
        local s = T.stream(o.seed, epoch * 1000003 + pos)
        local video = T.pretrain(frames, s, o.input_size)
        local mask = T.mask(o.mask_type, g.t, g.h, g.w, o.mask_ratio, wh, ww, s + 1)
        return {video = video, mask = mask}
      end)
    local t_epoch, waited0 = core.clock(), 0
    for b = 1, steps_per_epoch do
      local samples = batches.next()
      if not samples then break end
      local vids, masks = {}, {}
      for i, s in ipairs(samples) do vids[i], masks[i] = s.video, s.mask end
      local gi = epoch * steps_per_epoch + b
      step:set_lr(lr_sched[gi] or lr_sched[#lr_sched], wd_sched[gi] or o.weight_decay)
      local ts = core.clock()
      local loss = step {videos = df.stack(vids), mask = df.stack(masks)}
      local te = core.clock()
      last_loss, it = loss, it + 1
      local st = batches.loader:stats()
      local elapsed = te - t_start
      local remaining = (o.epochs - epoch) * steps_per_epoch - b
      log {epoch = epoch, step = step.t, loss = loss, lr = step.lr, wd = step.wd, step_seconds = te - ts,
           data_wait = st.waited_s - waited0}
      C.progress("epoch %d/%d step %d/%d loss %.4f lr %.2e  %.1f clips/s  data-wait %.0f%%  ETA %s", epoch + 1,
        o.epochs, b, steps_per_epoch, loss, step.lr, it * o.batch_size / elapsed,
        100 * st.waited_s / math.max(te - t_epoch, 1e-9), C.fmt_time(elapsed / it * remaining))
      if o.max_steps > 0 and it >= o.max_steps then break end
    end
    C.progress_end()
    local st = batches.loader:stats()
    batches.loader:close()
    if st.skipped > 0 then print(string.format("epoch %d: %d clips skipped (see the warnings)", epoch + 1, st.skipped)) end
    if (epoch + 1) % o.save_ckpt_freq == 0 or epoch + 1 == o.epochs or (o.max_steps > 0 and it >= o.max_steps) then
      C.save(step, o, epoch, "pretrain", {geometry = M.geometry_json(o, sets)})
    end
    if o.max_steps > 0 and it >= o.max_steps then break end
  end
  print(string.format("done: %d steps in %.1f s, last loss %.4f", it, core.clock() - t_start, last_loss or 0 / 0))
  return 0
end

return M
