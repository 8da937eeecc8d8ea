--[[
dferc.train -- losses, the original's optimiser recipe, and the compiled
training step.

  local train = require "dferc.train"
  local opt = train.adamw{lr = 1e-3, betas = {0.9, 0.999}, weight_decay = 0.05,
                          groups = train.mae_dfer_groups(model, {layer_decay = 0.75})}
  local step = train.compile{model = model, loss = loss, optimizer = opt}
  step:set_lr(lr, wd) ... local l = step:run{videos = ..., labels = ...}

The step is one graph: forward, loss, backward (autodiff) and the AdamW
update of every parameter.  The host only feeds the batch and the
per-step scalars (learning rate, weight decay, bias corrections) and
keeps the parameters and optimiser state between steps.
]]
local df = require "dferc"

local train = {}

-- -------------------------------------------------------------- losses

-- Cross-entropy with label smoothing s (mean over the batch):
-- (1 - s) nll + s mean_k(-log p_k).  logits [B, K], labels [B] (i64).
function train.cross_entropy(logits, labels, smoothing)
  local s = smoothing or 0
  local B = logits.shape[1]
  local logp = df.log_softmax(logits, -1)
  local nll = -df.gather(logp, df.reshape(labels, {B, 1}), 1)       -- [B, 1]
  local per = nll
  if s > 0 then
    per = nll * (1 - s) + (-df.mean(logp, -1, true)) * s
  end
  return df.reshape(df.mean(per), {1})
end

-- Soft-target cross-entropy: mean_b sum_k -target[b, k] log p[b, k]
-- (the loss mixup and cutmix need).  targets [B, K] float.
function train.soft_target_cross_entropy(logits, targets)
  local logp = df.log_softmax(logits, -1)
  return df.reshape(df.mean(df.sum(-targets * logp, -1)), {1})
end

-- Smoothed one-hot targets mixed by lam with the flipped batch (the
-- original's mixup target): off = s / K, on = 1 - s + s / K.
-- Host helper: labels is a Lua list of class ids (0-based).
function train.mixup_targets(labels, K, lam, smoothing)
  local s = smoothing or 0
  local off, on = s / K, 1 - s + s / K
  local B, vals = #labels, {}
  for b = 1, B do
    local partner = labels[B - b + 1]
    for k = 0, K - 1 do
      local a = (labels[b] == k) and on or off
      local c = (partner == k) and on or off
      vals[#vals + 1] = lam * a + (1 - lam) * c
    end
  end
  return df.host("f32", {B, K}, vals)
end

-- -------------------------------------------------------------- schedules

--[[
The original's cosine_scheduler: warm-up from start_warmup_value to base
over W = warmup_epochs * steps_per_epoch steps (or warmup_steps), both end
points included; then a cosine from base to final over the remaining
steps.  Returns a Lua list with epochs * steps_per_epoch values.
]]
function train.cosine_schedule(a)
  local total = a.epochs * a.steps_per_epoch
  local W = (a.warmup_steps and a.warmup_steps > 0) and a.warmup_steps
    or (a.warmup_epochs or 0) * a.steps_per_epoch
  local start = a.start_warmup_value or 0
  local out = {}
  if W > 0 and (a.warmup_epochs or 0) > 0 or (a.warmup_steps and a.warmup_steps > 0) then
    for i = 0, W - 1 do
      out[#out + 1] = W == 1 and start or start + (a.base - start) * i / (W - 1)
    end
  else
    W = 0
  end
  local n = total - W
  for i = 0, n - 1 do
    out[#out + 1] = a.final + 0.5 * (a.base - a.final) * (1 + math.cos(math.pi * i / n))
  end
  return out
end

-- -------------------------------------------------------------- parameter groups

local SKIP = {
  finetune = {pos_embed = true, cls_token = true, part_tokens = true, lg_region_tokens = true},
  pretrain = {pos_embed = true, cls_token = true, mask_token = true, lg_region_tokens = true},
}

--[[
The original's parameter groups for a MAE-DFER model: no weight decay for
1-D parameters, names ending in ".bias" and full names in the model's skip
list; with layer_decay (fine-tuning), layer ids as get_num_layer_for_vit
assigns them (cls_token / mask_token / pos_embed / patch_embed.* -> 0,
blocks.i.* -> i + 1, everything else -> depth + 1) and lr scale
layer_decay ^ (depth + 1 - id).  Returns name -> {weight_decay = bool,
lr_scale = number, layer = id}.
]]
function train.mae_dfer_groups(model, opts)
  opts = opts or {}
  local cfg = model.config
  local skip = SKIP[cfg.kind] or SKIP.finetune
  local depth = cfg.depth or cfg.enc_depth
  local groups = {}
  for _, p in ipairs(model.params) do
    local name = p.name
    local decay = not (#p.shape == 1 or name:sub(-5) == ".bias" or skip[name])
    local g = {weight_decay = decay, lr_scale = 1.0}
    if opts.layer_decay then
      local id
      if name == "cls_token" or name == "mask_token" or name == "pos_embed"
          or name:sub(1, 11) == "patch_embed" then
        id = 0
      elseif name:sub(1, 7) == "blocks." then
        id = tonumber(name:match("^blocks%.(%d+)%.")) + 1
      else
        id = depth + 1
      end
      g.layer = id
      g.lr_scale = opts.layer_decay ^ (depth + 1 - id)
    end
    groups[name] = g
  end
  return groups
end

-- -------------------------------------------------------------- AdamW

--[[
train.adamw{lr, betas = {b1, b2}, eps = 1e-8, weight_decay, groups,
            clip_grad, compensated = true, compensation = "bf16"}
groups: name -> {weight_decay = bool, lr_scale = number}; a parameter not
listed is decayed with scale 1.  lr and weight_decay here are the
defaults; a schedule sets them per step with step:set_lr(lr, wd).
compensated: keep each parameter's float32 rounding error in a second
buffer (Kahan summation), so that many tiny updates (lr ~ 1e-6, weight
decay alone) add up as they do in float64 instead of being rounded away.
compensation: the buffer's dtype for float32 parameters: "bf16" (the
default: the error of a float32 value needs only its leading bits; half
the memory of "f32") or "f32".
]]
function train.adamw(a)
  return {
    kind = "adamw",
    lr = a.lr or 1e-3,
    betas = a.betas or {0.9, 0.999},
    eps = a.eps or 1e-8,
    weight_decay = a.weight_decay or 0,
    groups = a.groups or {},
    clip_grad = a.clip_grad,
    compensated = a.compensated ~= false,
    compensation = a.compensation or "bf16",
  }
end

-- The dtype of the compensation buffers of parameters of dtype dt.
local function comp_dtype(opt, dt)
  return dt == "f32" and opt.compensation or dt
end

--[[
AdamW update of one parameter, as torch.optim.AdamW computes it:
  p <- p (1 - lr wd);  m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2
  p <- p - (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps)
lr, wd, bc1 = 1 - b1^t, sqrt(bc2) are scalar inputs fed per step.  With a
compensation buffer c (the part of p that float32 could not hold), the
update u is applied as y = u + c; p' = round(p + y); c' = y - (p' - p):
the parameter's exact value is p + c.  (The cast is the float32 rounding
a real float32 device does anyway; ref computes in float64 and needs it
spelled out.)
]]
local function adamw_update(p, g, m, v, c, s, opt, group)
  local b1, b2 = opt.betas[1], opt.betas[2]
  local lr = s.lr * group.lr_scale
  local cdt = c and c.dtype
  if c and cdt ~= p.dtype then c = df.cast(c, p.dtype) end
  local x = c and p + c or p     -- the exact value
  local m1 = m * b1 + g * (1 - b1)
  local v1 = v * b2 + g * g * (1 - b2)
  local denom = df.sqrt(v1) / s.sqrt_bc2 + opt.eps
  local u = -(m1 / denom) * (lr / s.bc1)
  if group.weight_decay then u = u - x * (lr * s.wd) end
  if not c then return p + u, m1, v1 end
  local y = u + c
  local p2 = df.cast(p + y, p.dtype)
  local c2 = y - (p2 - p)
  return p2, m1, v1, cdt ~= p.dtype and df.cast(c2, cdt) or c2
end

-- -------------------------------------------------------------- the step

local Step = {}
Step.__index = Step

-- The rng.seed of step t of a run seeded with `seed` (kept below 2^53,
-- which every backend holds exactly).
function train.step_seed(seed, t)
  return (seed * 1000003 + t * 7919) % (1 << 53)
end

-- A read-only table of the step's tensors (name -> Host) that first
-- brings the device's newer values down and lets the host write them.
local function host_view(step, raw)
  local function sync()
    local ok, err = step.plan:sync(true)
    if not ok then error("step: " .. tostring(err), 3) end
  end
  return setmetatable({}, {
    __index = function(_, k) sync(); return raw[k] end,
    __pairs = function() sync(); return next, raw, nil end,
    __newindex = function() error("step tensors are set with step:set_params or step:load", 2) end,
  })
end

--[[
train.compile{model = model, loss = tensor, optimizer = opt,
              device = "ref", outputs = {name = tensor, ...}, seed = 0}
Builds forward + backward + update as one graph and compiles it.  The
parameter values must be set with step:set_params(weights) before the
first step.  A model built for training (drop path, dropout) draws from
its "rng.seed" input: step t feeds a value derived from (seed, t), so a
run is the same for the same seed, and resuming continues the stream.
]]
function train.compile(a)
  local g, outputs, keys = train.step_graph(a)
  local model, opt = a.model, a.optimizer
  local dt = model.params[1] and model.params[1].tensor.dtype or "f32"
  local plan, err = df.core.compile(g, outputs, a.device or "ref")
  if not plan then return nil, err end
  local step = setmetatable({
    plan = plan, keys = keys, model = model, opt = opt, dtype = dt, device = a.device or "ref",
    _params = {}, _m = {}, _v = {}, _c = opt.compensated and {} or nil, t = 0, lr = opt.lr,
    wd = opt.weight_decay, seed = a.seed or 0,
    uses_rng = model.builder and model.builder.seed_input ~= nil,
  }, Step)
  -- the weights and all optimiser state: one allocation, a view per tensor
  local sets = {{step._params, dt}, {step._m, dt}, {step._v, dt}}
  if step._c then sets[4] = {step._c, comp_dtype(opt, dt)} end
  local size = {f64 = 8, f32 = 4, bf16 = 2, f16 = 2}
  local total = 0
  for _, set in ipairs(sets) do
    for _, p in ipairs(model.params) do
      local n = 1
      for _, d in ipairs(p.shape) do n = n * d end
      total = total + (n * (size[set[2]] or 4) + 63) // 64 * 64
    end
  end
  step.arena = df.host("u8", {math.max(total, 1)})
  local off = 0
  for _, set in ipairs(sets) do
    for _, p in ipairs(model.params) do
      local n = 1
      for _, d in ipairs(p.shape) do n = n * d end
      set[1][p.name] = df.core.view(step.arena, off, set[2], p.shape)
      off = off + (n * (size[set[2]] or 4) + 63) // 64 * 64
    end
  end
  -- on a device with memory of its own, the weights and optimiser state
  -- stay there between steps; step.params, .m, .v and .c bring them down
  -- when read (and have them copied up again before the next step, since
  -- the caller may write them)
  local kept = {}
  for _, set in ipairs(sets) do
    for _, p in ipairs(model.params) do kept[#kept + 1] = set[1][p.name] end
  end
  assert(plan:keep(kept))
  step.params, step.m, step.v = host_view(step, step._params), host_view(step, step._m), host_view(step, step._v)
  step.c = step._c and host_view(step, step._c)
  return step
end

--[[
train.step_graph{model, loss, optimizer, outputs} -> graph, outputs, keys:
the nodes of one training step (forward, loss, backward, AdamW update)
added to the model's graph, without compiling them (train.compile does;
so can a code-generation check).
]]
function train.step_graph(a)
  local model, loss, opt = a.model, a.loss, a.optimizer
  local g = model.graph
  local ps = {}
  for i, p in ipairs(model.params) do ps[i] = p.tensor end
  -- a non-finite loss leaves every parameter and all optimiser state as
  -- they were: the update is selected by the loss being finite (so the
  -- step can write its results in place).  Built before the backward, so
  -- that it runs before it and each update can run as soon as its
  -- gradient is ready.
  local finite = df.eq(df.sum(loss - loss), 0)
  local grads = df.grad(loss, ps)
  local dt = model.params[1] and model.params[1].tensor.dtype or "f32"
  local s = {
    lr = df.input(g, "opt.lr", dt, {}),
    wd = df.input(g, "opt.wd", dt, {}),
    bc1 = df.input(g, "opt.bc1", dt, {}),
    sqrt_bc2 = df.input(g, "opt.sqrt_bc2", dt, {}),
  }
  if opt.clip_grad then
    -- clip the global gradient norm to clip_grad (torch's clip_grad_norm_)
    local total
    for _, gr in ipairs(grads) do
      local sq = df.sum(gr * gr)
      total = total and total + sq or sq
    end
    local norm = df.sqrt(total)
    local coef = df.min(df.fill(g, opt.clip_grad, {}, dt) / (norm + 1e-6), 1.0)
    for i, gr in ipairs(grads) do grads[i] = gr * coef end
  end
  local outputs, keys = {}, {}
  local function out(name, t)
    outputs[#outputs + 1] = t
    keys[#keys + 1] = name
  end
  out("loss", loss)
  for k, t in pairs(a.outputs or {}) do out("out." .. k, t) end
  for i, p in ipairs(model.params) do
    local m = df.input(g, "opt.m." .. p.name, dt, p.shape)
    local v = df.input(g, "opt.v." .. p.name, dt, p.shape)
    local c = opt.compensated and df.input(g, "opt.c." .. p.name, comp_dtype(opt, dt), p.shape) or nil
    local group = opt.groups[p.name] or {weight_decay = true, lr_scale = 1.0}
    local p2, m2, v2, c2 = adamw_update(p.tensor, grads[i], m, v, c, s, opt, group)
    out("param." .. p.name, df.where(finite, p2, p.tensor))
    out("opt.m." .. p.name, df.where(finite, m2, m))
    out("opt.v." .. p.name, df.where(finite, v2, v))
    if c2 then out("opt.c." .. p.name, df.where(finite, c2, c)) end
  end
  return g, outputs, keys
end

-- step:set_params{name = Host}: copy the parameter values in (converting
-- the dtype); the compensation starts at zero.
function Step:set_params(values)
  self:sync(true)
  for _, p in ipairs(self.model.params) do
    local h = values[p.name]
    if not h then error("set_params: no value for parameter '" .. p.name .. "'", 2) end
    if h.numel ~= self._params[p.name].numel then
      error(string.format("set_params: '%s' has %d elements, the parameter %d", p.name, h.numel,
        self._params[p.name].numel), 2)
    end
    self._params[p.name]:copy_from(h)
    if self._c then df.core.init(self._c[p.name], "fill", 0) end
  end
end

-- step:sync(host_writes): the weights and optimiser state the device
-- holds, down into the step's host tensors; with host_writes, they go up
-- again before the next step.
function Step:sync(host_writes)
  local ok, err = self.plan:sync(host_writes)
  if not ok then error("step: " .. tostring(err), 2) end
end

-- step:value(name) -> the parameter's exact value as f64 (with its
-- compensation, when the optimiser keeps one).
function Step:value(name)
  self:sync(false)
  local p = self._params[name]:cast("f64")
  if self._c then
    local c = self._c[name]
    for k = 1, p.numel do p:set(k, p:get(k) + c:get(k)) end
  end
  return p
end

-- The learning rate and weight decay of the next step.
function Step:set_lr(lr, wd)
  self.lr = lr
  if wd then self.wd = wd end
end

--[[
step:run(batch) -> loss (a number), extra outputs (name -> Host)
Runs one step on the batch (name -> Host: videos, mask, labels, ...),
updates the parameters and optimiser state.  A non-finite loss raises
"step N: loss is nan" and leaves the parameters as they were.
]]
function Step:run(batch)
  local t = self.t + 1
  local b1, b2 = self.opt.betas[1], self.opt.betas[2]
  local feeds = {}
  for k, v in pairs(batch) do feeds[k] = v end
  for name, h in pairs(self._params) do feeds[name] = h end
  for name, h in pairs(self._m) do feeds["opt.m." .. name] = h end
  for name, h in pairs(self._v) do feeds["opt.v." .. name] = h end
  for name, h in pairs(self._c or {}) do feeds["opt.c." .. name] = h end
  local dt = self.dtype
  feeds["opt.lr"] = df.host(dt, {}, self.lr)
  feeds["opt.wd"] = df.host(dt, {}, self.wd)
  feeds["opt.bc1"] = df.host(dt, {}, 1 - b1 ^ t)
  feeds["opt.sqrt_bc2"] = df.host(dt, {}, math.sqrt(1 - b2 ^ t))
  if self.uses_rng then feeds["rng.seed"] = df.host("i64", {}, train.step_seed(self.seed, t)) end
  -- parameters and optimiser state are updated in place
  if not self.into then
    self.into = {}
    for i, k in ipairs(self.keys) do
      if k:sub(1, 6) == "param." then self.into[i] = self._params[k:sub(7)]
      elseif k:sub(1, 6) == "opt.m." then self.into[i] = self._m[k:sub(7)]
      elseif k:sub(1, 6) == "opt.v." then self.into[i] = self._v[k:sub(7)]
      elseif k:sub(1, 6) == "opt.c." then self.into[i] = self._c[k:sub(7)] end
    end
  end
  local res, err = self.plan:run(feeds, self.into)
  if not res then error(string.format("step %d: %s", t, err), 2) end
  local loss = res[1]:get(1)
  if loss ~= loss or loss == math.huge or loss == -math.huge then
    -- run the step again, checked, to name the first tensor that went bad
    local where = ""
    if pcall(self.plan.check_finite, self.plan, true) then
      local _, e = self.plan:run(feeds)
      self.plan:check_finite(false)
      if e then where = "; " .. e end
    end
    error(string.format("step %d: loss is %s; parameters left as before this step%s", t,
      tostring(loss), where), 2)
  end
  local extra = {}
  for i, k in ipairs(self.keys) do
    local kind, name = k:match("^(%a+)%.(.*)$")
    if kind == "out" then extra[name] = res[i] end
  end
  self.t = t
  return loss, extra
end

-- step(batch) is step:run(batch).
Step.__call = function(self, batch) return self:run(batch) end

-- -------------------------------------------------------------- checkpoints

--[[
step:save(path, meta): one safetensors file with the parameters (their
state_dict names), the AdamW state ("opt.m.<name>", "opt.v.<name>") and,
in the metadata, the step count, lr, wd and `meta` (strings; e.g. the
config as JSON and the RNG state).  Written to a temporary file, fsynced
and renamed: a crash mid-save leaves the previous checkpoint intact.
]]
function Step:save(path, meta)
  self:sync(false)
  local entries = {}
  for _, p in ipairs(self.model.params) do entries[#entries + 1] = {p.name, self._params[p.name]} end
  for _, p in ipairs(self.model.params) do entries[#entries + 1] = {"opt.m." .. p.name, self._m[p.name]} end
  for _, p in ipairs(self.model.params) do entries[#entries + 1] = {"opt.v." .. p.name, self._v[p.name]} end
  if self._c then
    for _, p in ipairs(self.model.params) do entries[#entries + 1] = {"opt.c." .. p.name, self._c[p.name]} end
  end
  local md = {format = "dferc-checkpoint", step = string.format("%d", self.t),
              seed = string.format("%d", self.seed),
              lr = string.format("%.17g", self.lr), wd = string.format("%.17g", self.wd)}
  for k, v in pairs(meta or {}) do md["user." .. k] = tostring(v) end
  return df.save(path, entries, md)
end

-- step:load(path) -> meta | nil, message.  Restores parameters, AdamW
-- state and the step count exactly.
function Step:load(path)
  local f, err = df.load(path)
  if not f then return nil, err end
  local function need(name, shape)
    local h = f.tensors[name]
    if not h then return nil, string.format("%s: checkpoint lacks '%s'", path, name) end
    if table.concat(h.shape, ",") ~= table.concat(shape, ",") or h.dtype ~= self.dtype then
      return nil, string.format("%s: '%s' is [%s] %s, expected [%s] %s", path, name,
        table.concat(h.shape, ", "), h.dtype, table.concat(shape, ", "), self.dtype)
    end
    return h
  end
  -- check everything first: a bad file changes nothing
  local found = {}
  for _, p in ipairs(self.model.params) do
    for _, name in ipairs {p.name, "opt.m." .. p.name, "opt.v." .. p.name} do
      local h, e = need(name, p.shape)
      if not h then return nil, e end
      found[name] = h
    end
    local ch = self._c and f.tensors["opt.c." .. p.name]
    if ch then
      -- any float dtype: converted to this optimiser's compensation dtype
      if table.concat(ch.shape, ",") ~= table.concat(p.shape, ",") or
          not ({f64 = 1, f32 = 1, bf16 = 1, f16 = 1})[ch.dtype] then
        return nil, string.format("%s: 'opt.c.%s' is [%s] %s, expected [%s] floats", path, p.name,
          table.concat(ch.shape, ", "), ch.dtype, table.concat(p.shape, ", "))
      end
      found["opt.c." .. p.name] = ch
    end
  end
  local md = f.metadata or {}
  local t = tonumber(md.step)
  if md.format ~= "dferc-checkpoint" or not t then
    return nil, path .. ": not a dferc training checkpoint (no step in its metadata)"
  end
  self:sync(true)
  for _, p in ipairs(self.model.params) do
    self._params[p.name]:copy_from(found[p.name])
    self._m[p.name]:copy_from(found["opt.m." .. p.name])
    self._v[p.name]:copy_from(found["opt.v." .. p.name])
    if self._c then
      -- a checkpoint written without compensation resumes with none
      local c = found["opt.c." .. p.name]
      if c then self._c[p.name]:copy_from(c) else df.core.init(self._c[p.name], "fill", 0) end
    end
  end
  self.t = math.tointeger(t) or t
  self.lr, self.wd = tonumber(md.lr) or self.lr, tonumber(md.wd) or self.wd
  self.seed = math.tointeger(tonumber(md.seed)) or self.seed
  local user = {}
  for k, val in pairs(md) do
    if k:sub(1, 5) == "user." then user[k:sub(6)] = val end
  end
  return user
end

return train
