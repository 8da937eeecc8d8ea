-- Training through the Lua API users use (dferc.train): the original's
-- schedule, parameter groups and AdamW reproduce the training-step
-- fixtures; checkpoints resume exactly; bad checkpoints are clear errors.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local train = require "dferc.train"
local S = require "mae_dfer"

local function read_json(path) return df.json_decode(assert(io.open(path)):read("a")) end

-- Build the case's model, loss, optimiser and compiled step.
local function setup(dir, case, device)
  local base = dir .. "/" .. case
  local cfg = read_json(base .. ".config.json")
  local tj = read_json(base .. ".train.json")
  local io_ = assert(df.load(base .. ".io.safetensors"))
  local w = assert(df.load(base .. ".weights.safetensors"))
  local opts = {}
  if cfg.kind == "pretrain" then
    local n, vals = 0, io_.tensors.mask:totable()
    for i = 1, io_.tensors.mask.shape[2] do if vals[i] == 0 then n = n + 1 end end
    opts.num_visible = n
  end
  local model = S.build(cfg, opts)
  local loss = model.outputs.loss
  if cfg.kind == "finetune" then
    loss = train.cross_entropy(model.outputs.logits, model.inputs.labels, tj.label_smoothing)
  end
  local groups = train.mae_dfer_groups(model, {layer_decay = tj.layer_decay ~= df.null and tj.layer_decay or nil})
  local opt = train.adamw {lr = tj.lr_scaled, betas = tj.betas, eps = tj.eps,
                           weight_decay = tj.weight_decay, groups = groups}
  local step = assert(train.compile {model = model, loss = loss, optimizer = opt, device = device})
  step:set_params(w.tensors)
  local batch = {videos = io_.tensors.videos, mask = io_.tensors.mask, labels = io_.tensors.labels}
  local sched = train.cosine_schedule {base = tj.lr_scaled, final = tj.min_lr * tj.total_batch / 256,
    epochs = tj.epochs, steps_per_epoch = tj.steps_per_epoch, warmup_epochs = tj.warmup_epochs}
  return {model = model, step = step, batch = batch, sched = sched, tj = tj, w = w, groups = groups,
          fixture = assert(df.load(base .. ".train.safetensors"))}
end

local runs = {}
for _, device in ipairs(T.devices {"ref", "cpu", "cuda"}) do
  for _, case in ipairs {"finetune_tiny", "pretrain_tiny"} do runs[#runs + 1] = {case, device} end
end
for _, run in ipairs(runs) do
  local case, device = run[1], run[2]
  T.test("train_steps_" .. case .. "_" .. device, function()
    local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
    if device == "cpu" and not T.has_cpu() then T.skip("no cpu device in this build") end
    if device == "cuda" then
      local usable, why = T.device_usable("cuda")
      if not usable then T.skip(why) end
    end
    local c = setup(dir, case, device)
    local fx = c.fixture.tensors
    -- the schedule
    T.eq(#c.sched, fx.lr_schedule.numel, "schedule length")
    for i, v in ipairs(c.sched) do
      T.near(v, fx.lr_schedule:get(i), 1e-6 * math.abs(fx.lr_schedule:get(i)) + 1e-15, "lr " .. i)
    end
    -- the groups
    for _, g in ipairs(c.tj.groups) do
      for _, name in ipairs(g.params) do
        local mine = c.groups[name]
        T.ok(mine, "group of " .. name)
        T.eq(mine.weight_decay, g.weight_decay, "weight decay of " .. name)
        T.near(mine.lr_scale, g.lr_scale, 1e-12, "lr scale of " .. name)
      end
    end
    -- weights and optimiser state live in one allocation
    local bytes = 0
    for _, p in ipairs(c.model.params) do bytes = bytes + c.step.params[p.name].nbytes end
    -- (the compensation in bf16: half a weight's bytes)
    T.ok(c.step.arena.nbytes >= 3.5 * bytes and c.step.arena.nbytes < 4 * bytes,
      "one arena for weights, m, v and the bf16 compensation")
    -- four steps
    for i = 1, c.tj.steps do
      c.step:set_lr(c.sched[i], c.tj.weight_decay)
      local loss = c.step:run(c.batch)
      local want = fx.loss_per_step:get(i)
      T.ok(math.abs(loss - want) <= 1e-3 * math.abs(want), string.format("loss at step %d: %.8g vs %.8g", i - 1, loss, want))
    end
    local worst, wname = 0, ""
    for _, p in ipairs(c.model.params) do
      local before = c.w.tensors[p.name]:cast("f64")
      local after = c.step:value(p.name)
      local d = df.host("f64", p.shape)
      for k = 1, d.numel do d:set(k, after:get(k) - before:get(k)) end
      local rel = df.compare(d, fx["delta." .. p.name])
      if rel > worst then worst, wname = rel, p.name end
    end
    T.ok(worst <= 1e-3, string.format("weight delta of %s: relative error %.3g > 1e-3", wname, worst))
  end)
end

T.test("resume_is_exact", function()
  local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
  local a = setup(dir, "finetune_tiny")
  for i = 1, 4 do a.step:set_lr(a.sched[i], 0.05); a.step:run(a.batch) end
  local b = setup(dir, "finetune_tiny")
  for i = 1, 2 do b.step:set_lr(b.sched[i], 0.05); b.step:run(b.batch) end
  local path = os.tmpname()
  assert(b.step:save(path, {config = "{}", rng = "42"}))
  local c = setup(dir, "finetune_tiny")
  local meta = assert(c.step:load(path))
  os.remove(path)
  T.eq(meta.rng, "42", "user metadata")
  T.eq(c.step.t, 2, "step count restored")
  for i = 3, 4 do c.step:set_lr(c.sched[i], 0.05); c.step:run(c.batch) end
  for _, p in ipairs(a.model.params) do
    local _, d = df.compare(a.step.params[p.name], c.step.params[p.name])
    T.eq(d, 0.0, "bit-exact " .. p.name)
    local _, dm = df.compare(a.step.m[p.name], c.step.m[p.name])
    T.eq(dm, 0.0, "optimiser state " .. p.name)
  end
end)

T.test("bad_checkpoints_are_clear_errors", function()
  local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
  local a = setup(dir, "finetune_tiny")
  local path = os.tmpname()
  assert(a.step:save(path))
  local data = assert(io.open(path, "rb")):read("a")
  -- truncated
  local f = assert(io.open(path, "wb")); f:write(data:sub(1, #data // 2)); f:close()
  local ok, err = a.step:load(path)
  T.ok(not ok and err:find("truncated", 1, true) and err:find(path, 1, true), tostring(err))
  -- corrupted header
  f = assert(io.open(path, "wb")); f:write(data:sub(1, 12) .. "\0\0\0" .. data:sub(16)); f:close()
  ok, err = a.step:load(path)
  T.ok(not ok and err:find(path, 1, true), tostring(err))
  -- plain weights are not a training checkpoint
  ok, err = a.step:load(dir .. "/finetune_tiny.weights.safetensors")
  T.ok(not ok and err:find("lacks 'opt.m.", 1, true), tostring(err))
  os.remove(path)
end)

T.test("non_finite_loss_stops_training", function()
  local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
  local a = setup(dir, "finetune_tiny")
  local bad = a.batch.videos:cast("f32")
  bad:set(5, 0 / 0)
  a.step:set_lr(1e-3, 0.05)
  local before = a.step.params["head.weight"]:cast("f32") -- a copy
  local before_m = a.step.m["head.weight"]:cast("f32")
  local msg = T.raises(function() a.step:run {videos = bad, labels = a.batch.labels} end, "step 1: loss is")
  T.ok(msg:find("nan", 1, true) or msg:find("inf", 1, true), msg)
  T.ok(msg:find("first non-finite tensor: ", 1, true) and msg:find("input videos", 1, true), msg)
  local _, d = df.compare(a.step.params["head.weight"], before)
  T.eq(d, 0.0, "parameters untouched")
  _, d = df.compare(a.step.m["head.weight"], before_m)
  T.eq(d, 0.0, "optimiser state untouched")
  T.eq(a.step.t, 0, "step count unchanged")
end)

T.test("short_pretraining_lowers_the_loss", function()
  local cfg = {kind = "pretrain", img = 32, frames = 4, region = {2, 2, 2}, win = {2, 2}, mask_ratio = 0.5,
               enc_dim = 16, enc_heads = 2, enc_depth = 1, dec_dim = 16, dec_heads = 2, dec_depth = 1, B = 2}
  local model = S.build(cfg)
  local cli = require "dferc.cli"
  local init = {}
  for k, p in ipairs(model.params) do init[p.name] = cli.init_param(p, k) end
  local opt = train.adamw {lr = 2e-3, betas = {0.9, 0.95}, weight_decay = 0.05,
                           groups = train.mae_dfer_groups(model)}
  local step = assert(train.compile {model = model, loss = model.outputs.loss, optimizer = opt})
  step:set_params(init)
  local vals = {}
  for _ = 1, 2 * 2 do
    for pos = 0, 3 do vals[#vals + 1] = pos % 2 == 0 end
  end
  local batch = {videos = df.randn("f32", model.inputs.videos.shape, 9), mask = df.host("bool", {2, 8}, vals)}
  local first, last
  for i = 1, 30 do
    local l = step:run(batch)
    first = first or l
    last = l
  end
  T.ok(last < 0.8 * first, string.format("loss %.4f -> %.4f", first, last))
end)

T.test("drop_path_is_seeded_and_reproducible", function()
  local cli = require "dferc.cli"
  local cfg = {kind = "finetune", img = 32, frames = 4, region = {2, 2, 2}, dim = 16, heads = 2,
               depth = 3, classes = 3, B = 4}
  local function run(seed, dp)
    local model = S.build(cfg, {training = true, drop_path = dp})
    local init = {}
    for k, p in ipairs(model.params) do init[p.name] = cli.init_param(p, k) end
    local loss = train.cross_entropy(model.outputs.logits, model.inputs.labels, 0.1)
    -- the user-facing form: dferc.compile{loss, params, optimizer}, step(batch)
    local step = assert(df.compile {loss = loss, params = model, seed = seed,
                                    optimizer = train.adamw {lr = 1e-3, weight_decay = 0.05}})
    step:set_params(init)
    local batch = {videos = df.randn("f32", model.inputs.videos.shape, 3), labels = df.host("i64", {4}, {0, 1, 2, 1})}
    local ls = {}
    for i = 1, 3 do ls[i] = step(batch) end
    return ls
  end
  local a, b, c, z = run(1, 0.5), run(1, 0.5), run(2, 0.5), run(1, 0)
  T.eq(a, b, "same seed, same losses")
  T.ok(a[1] ~= c[1] or a[2] ~= c[2], "another seed draws other paths")
  T.ok(a[1] ~= z[1], "drop path changes the loss")
  local model = S.build(cfg, {training = false, drop_path = 0.5})
  T.ok(model.builder.seed_input == nil, "no randomness outside training")
end)

T.test("gradient_clipping_bounds_the_update", function()
  local cli = require "dferc.cli"
  local cfg = {kind = "finetune", img = 32, frames = 4, region = {2, 2, 2}, dim = 16, heads = 2, depth = 1,
               classes = 3, B = 2}
  local function delta(clip)
    local model = S.build(cfg)
    local init = {}
    for k, p in ipairs(model.params) do init[p.name] = cli.init_param(p, k) end
    -- eps = 1 makes AdamW's step proportional to the gradient, so clipping shows
    local opt = train.adamw {lr = 1, eps = 1, weight_decay = 0, clip_grad = clip, compensated = false}
    local step = assert(train.compile {model = model, loss = model.outputs.loss, optimizer = opt})
    step:set_params(init)
    step {videos = df.randn("f32", model.inputs.videos.shape, 4), labels = df.host("i64", {2}, {0, 2})}
    local sq = 0
    for _, p in ipairs(model.params) do
      local after, before = step.params[p.name], init[p.name]
      for k = 1, after.numel do sq = sq + (after:get(k) - before:get(k)) ^ 2 end
    end
    return math.sqrt(sq)
  end
  local free, clipped = delta(nil), delta(1e-4)
  T.ok(clipped < 2e-4 and free > 100 * clipped, string.format("update norm %.3g clipped vs %.3g", clipped, free))
end)

T.test("drop_path_keeps_rows_at_the_rate", function()
  local nn = require "dferc.nn"
  local B = nn.builder {training = true, dtype = "f64"}
  local x = B:input("x", "f64", {4000, 3})
  local y = nn.drop_path(B, x, 0.3)
  local c = assert(df.compile {outputs = {y}})
  local r = assert(c:run {x = df.host("f64", {4000, 3}, 1), ["rng.seed"] = df.host("i64", {}, 17)})[1]
  local kept = 0
  for i = 0, 3999 do
    local v = r:get(i * 3 + 1)
    T.ok(v == 0 or math.abs(v - 1 / 0.7) < 1e-12, "value " .. v)
    T.ok(r:get(i * 3 + 2) == v and r:get(i * 3 + 3) == v, "one draw per row")
    if v ~= 0 then kept = kept + 1 end
  end
  T.ok(math.abs(kept / 4000 - 0.7) < 0.03, "kept fraction " .. kept / 4000)
end)

os.exit(T.done(), true)
