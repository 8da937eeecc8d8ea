--[[
dferc.nn -- layers written on top of the dferc graph front end.

A Builder owns one graph and the ordered list of named parameters; layer
constructors take the builder and a name prefix, create their parameters
under the original implementation's state_dict names, and return a
forward function.  A module that is shared (the LGI-Former's parameter
sharing) is simply the same forward function used twice: its parameters
exist once, under the name it was created with.

Each parameter records how the original initialises it (`init`), for
training from scratch:
  {kind = "xavier_uniform"}            Linear weights in pre-training
  {kind = "trunc_normal", std, bound}  Linear weights in fine-tuning, tokens
  {kind = "zeros"} / {kind = "ones"}   biases, LayerNorm
]]
local df = require "dferc"

local nn = {}

-- -------------------------------------------------------------- builder

local Builder = {}
Builder.__index = Builder

-- nn.builder{dtype = "f32", linear_init = {...}, training = false}
-- training: build the training-time graph (drop path and dropout active,
-- drawing from the "rng.seed" input).
function nn.builder(opts)
  opts = opts or {}
  return setmetatable({
    g = df.graph(),
    dtype = opts.dtype or "f32",
    training = opts.training or false,
    salt = 0,
    params = {},           -- ordered {name, tensor, shape, init}
    by_name = {},
    aliases = {},          -- ordered {alias = prefix, target = prefix}
    linear_init = opts.linear_init or {kind = "trunc_normal", std = 0.02, bound = 2.0},
    -- attention as one op (df.attention), for devices that have it
    fused_attention = opts.fused_attention ~= false,
  }, Builder)
end

function Builder:param(name, shape, init)
  if self.by_name[name] then
    error(string.format("parameter '%s' defined twice", name), 2)
  end
  local t = df.param(self.g, name, shape, self.dtype)
  local p = {name = name, tensor = t, shape = shape, init = init or {kind = "zeros"}}
  self.params[#self.params + 1] = p
  self.by_name[name] = p
  return t
end

function Builder:input(name, dtype, shape) return df.input(self.g, name, dtype, shape) end

-- The step's seed: an input "rng.seed" [] i64, made on first use.
function Builder:seed()
  if not self.seed_input then self.seed_input = df.input(self.g, "rng.seed", "i64", {}) end
  return self.seed_input
end

-- Uniform [0, 1) of `shape`, a stream of its own (a new salt per call).
function Builder:random(shape)
  self.salt = self.salt + 1
  return df.random(self:seed(), shape, self.salt, self.dtype)
end
function Builder:fill(v, shape, dtype) return df.fill(self.g, v, shape, dtype or self.dtype) end

--[[
Record that the module under `alias` is the one under `target` (a shared
module).  It has no parameters of its own; a state_dict nevertheless lists
its parameters under both prefixes, with equal values.
]]
function Builder:alias(alias, target)
  self.aliases[#self.aliases + 1] = {alias = alias, target = target}
end

-- The parameter a state_dict name refers to through an alias, or nil.
function Builder:resolve_alias(name)
  for _, a in ipairs(self.aliases) do
    if name:sub(1, #a.alias + 1) == a.alias .. "." then
      local p = self.by_name[a.target .. name:sub(#a.alias + 1)]
      if p then return p end
    end
  end
  return nil
end

-- Number of scalar parameters.
function Builder:count()
  local n = 0
  for _, p in ipairs(self.params) do
    local k = 1
    for _, d in ipairs(p.shape) do k = k * d end
    n = n + k
  end
  return n
end

local function join(prefix, name)
  if prefix == nil or prefix == "" then return name end
  return prefix .. "." .. name
end
nn.join = join

-- -------------------------------------------------------------- layers

-- -------------------------------------------------------------- regularisers

--[[
Drop path (stochastic depth) on a residual branch x, as timm's drop_path:
each row of the first dim is kept with probability 1 - rate and scaled by
1 / (1 - rate), or zeroed.  Identity unless the builder is training.
]]
function nn.drop_path(B, x, rate)
  if not B.training or not rate or rate <= 0 then return x end
  local shape = {x.shape[1]}
  for i = 2, x.ndim do shape[i] = 1 end
  local keep = df.cast(df.ge(B:random(shape), rate), B.dtype)
  return x * (1 / (1 - rate)) * keep
end

-- Dropout: each element zeroed with probability rate, the rest scaled.
function nn.dropout(B, x, rate)
  if not B.training or not rate or rate <= 0 then return x end
  local keep = df.cast(df.ge(B:random(x.shape), rate), B.dtype)
  return x * (1 / (1 - rate)) * keep
end

-- Linear: weight [out, in], optional bias [out].
function nn.Linear(B, prefix, n_in, n_out, bias)
  local w = B:param(join(prefix, "weight"), {n_out, n_in}, B.linear_init)
  local b = bias ~= false and B:param(join(prefix, "bias"), {n_out}, {kind = "zeros"}) or nil
  return function(x) return df.linear(x, w, b) end
end

-- LayerNorm over the last dim, eps 1e-6, biased variance.
function nn.LayerNorm(B, prefix, dim, eps)
  local w = B:param(join(prefix, "weight"), {dim}, {kind = "ones"})
  local b = B:param(join(prefix, "bias"), {dim}, {kind = "zeros"})
  return function(x) return df.layernorm(x, w, b, eps or 1e-6) end
end

nn.gelu = df.gelu

-- MLP: fc1 [4C, C], exact GELU, fc2 [C, 4C]; dropout after each (rate 0
-- in the original's scripts).
function nn.Mlp(B, prefix, dim, hidden, drop)
  local fc1 = nn.Linear(B, join(prefix, "fc1"), dim, hidden)
  local fc2 = nn.Linear(B, join(prefix, "fc2"), hidden, dim)
  return function(x) return nn.dropout(B, fc2(nn.dropout(B, df.gelu(fc1(x)), drop)), drop) end
end

-- Split [B, N, H*d] into heads [B, H, N, d].
local function heads(x, h)
  local s = x.shape
  return df.permute(df.reshape(x, {s[1], s[2], h, s[3] // h}), {0, 2, 1, 3})
end

-- softmax(q k^T) v over heads; q already scaled.  [B, H, Nq, d] -> [B, Nq, H*d]
-- fused: as one attention op (the same values; the scores never stored).
function nn.sdpa(q, k, v, fused)
  local o
  if fused then
    o = df.permute(df.attention(q, k, v, 1.0), {0, 2, 1, 3})
  else
    o = df.permute(df.matmul(df.softmax(df.matmul(q, k, {tb = true}), -1), v), {0, 2, 1, 3})
  end
  local s = o.shape
  return df.reshape(o, {s[1], s[2], s[3] * s[4]})
end

-- Attention (plain ViT blocks, the decoder, 'joint'): qkv.weight [3C, C]
-- without bias of its own, q_bias and v_bias [C] (keys get no bias),
-- outputs laid out (3, H, d); proj [C, C] + bias.
function nn.Attention(B, prefix, dim, nheads)
  local qkv_w = B:param(join(prefix, "qkv.weight"), {3 * dim, dim}, B.linear_init)
  local q_bias = B:param(join(prefix, "q_bias"), {dim}, {kind = "zeros"})
  local v_bias = B:param(join(prefix, "v_bias"), {dim}, {kind = "zeros"})
  local proj = nn.Linear(B, join(prefix, "proj"), dim, dim)
  local scale = (dim // nheads) ^ -0.5
  return function(x)
    local qkv = df.linear(x, qkv_w)
    local q = df.slice(qkv, -1, 0, dim) + q_bias
    local k = df.slice(qkv, -1, dim, 2 * dim)
    local v = df.slice(qkv, -1, 2 * dim, 3 * dim) + v_bias
    return proj(nn.sdpa(heads(q, nheads) * scale, heads(k, nheads), heads(v, nheads), B.fused_attention))
  end
end

-- GeneralAttention (LGI blocks): q [C, C] from the queries, kv [2C, C]
-- from the context (the queries themselves when none is given), laid out
-- (2, H, d); q_bias, v_bias; proj.  Query and key counts may differ.
function nn.GeneralAttention(B, prefix, dim, nheads)
  local q_w = B:param(join(prefix, "q.weight"), {dim, dim}, B.linear_init)
  local kv_w = B:param(join(prefix, "kv.weight"), {2 * dim, dim}, B.linear_init)
  local q_bias = B:param(join(prefix, "q_bias"), {dim}, {kind = "zeros"})
  local v_bias = B:param(join(prefix, "v_bias"), {dim}, {kind = "zeros"})
  local proj = nn.Linear(B, join(prefix, "proj"), dim, dim)
  local scale = (dim // nheads) ^ -0.5
  return function(x, context)
    context = context or x
    local q = df.linear(x, q_w, q_bias)
    local kv = df.linear(context, kv_w)
    local k = df.slice(kv, -1, 0, dim)
    local v = df.slice(kv, -1, dim, 2 * dim) + v_bias
    return proj(nn.sdpa(heads(q, nheads) * scale, heads(k, nheads), heads(v, nheads), B.fused_attention))
  end
end

-- Block: x + attn(norm1(x)); x + mlp(norm2(x)).
-- opts: mlp_ratio (4), drop_path (this block's rate), dropout.
function nn.Block(B, prefix, dim, nheads, opts)
  opts = opts or {}
  local norm1 = nn.LayerNorm(B, join(prefix, "norm1"), dim)
  local attn = nn.Attention(B, join(prefix, "attn"), dim, nheads)
  local norm2 = nn.LayerNorm(B, join(prefix, "norm2"), dim)
  local mlp = nn.Mlp(B, join(prefix, "mlp"), dim, dim * (opts.mlp_ratio or 4), opts.dropout)
  local dp = opts.drop_path
  return function(x)
    x = x + nn.drop_path(B, nn.dropout(B, attn(norm1(x)), opts.dropout), dp)
    return x + nn.drop_path(B, mlp(norm2(x)), dp)
  end
end

--[[
LGBlock, the LGI-Former block.  Input [B*R, 1 + L, C]: R regions of a
sample, each its region token followed by L local tokens.
opts: first = "self" | "cross", third = "cross" | "self", no_second,
no_third, share_first_third, share_all, mlp_ratio (4), drop_path (this
block's rate, on each of the four residual branches), dropout.
Forward takes (x, nb, R): nb samples of R regions.
]]
function nn.LGBlock(B, prefix, dim, nheads, opts)
  local first_t, third_t = opts.first or "self", opts.third or "cross"
  local first_norm0 = nn.LayerNorm(B, join(prefix, "first_attn_norm0"), dim)
  local first_norm1 = first_t == "cross" and nn.LayerNorm(B, join(prefix, "first_attn_norm1"), dim)
  local first_attn = nn.GeneralAttention(B, join(prefix, "first_attn"), dim, nheads)
  local second_norm0, second_attn
  if not opts.no_second then
    second_norm0 = nn.LayerNorm(B, join(prefix, "second_attn_norm0"), dim)
    if opts.share_all then
      second_attn = first_attn
      B:alias(join(prefix, "second_attn"), join(prefix, "first_attn"))
    else
      second_attn = nn.GeneralAttention(B, join(prefix, "second_attn"), dim, nheads)
    end
  end
  local third_norm0, third_norm1, third_attn
  if not opts.no_third then
    third_norm0 = nn.LayerNorm(B, join(prefix, "third_attn_norm0"), dim)
    third_norm1 = third_t == "cross" and nn.LayerNorm(B, join(prefix, "third_attn_norm1"), dim)
    if opts.share_all or opts.share_first_third then
      third_attn = first_attn
      B:alias(join(prefix, "third_attn"), join(prefix, "first_attn"))
    else
      third_attn = nn.GeneralAttention(B, join(prefix, "third_attn"), dim, nheads)
    end
  end
  local norm2 = nn.LayerNorm(B, join(prefix, "norm2"), dim)
  local mlp = nn.Mlp(B, join(prefix, "mlp"), dim, dim * (opts.mlp_ratio or 4), opts.dropout)
  local function branch(t) return nn.drop_path(B, nn.dropout(B, t, opts.dropout), opts.drop_path) end

  return function(x, nb, R)
    local s = x.shape
    local L = s[2] - 1
    local function region_tokens(t) return df.slice(t, 1, 0, 1) end
    local function local_tokens(t) return df.slice(t, 1, 1) end
    -- 1. first attention, inside each region
    if first_t == "self" then
      x = x + branch(first_attn(first_norm0(x)))
    else
      -- only the region token is updated, from its L local tokens
      local m, l = region_tokens(x), local_tokens(x)
      m = m + branch(first_attn(first_norm0(m), first_norm1(l)))
      x = df.concat({m, l}, 1)
    end
    -- 2. second attention, among the R region tokens of a sample
    local m = df.reshape(region_tokens(x), {nb, R, dim})
    if second_attn then
      m = m + branch(second_attn(second_norm0(m)))
      x = df.concat({df.reshape(m, {nb * R, 1, dim}), local_tokens(x)}, 1)
    end
    -- 3. third attention
    if third_attn then
      if third_t == "cross" then
        -- local tokens of all regions of a sample attend to its region tokens
        local l = df.reshape(local_tokens(x), {nb, R * L, dim})
        l = l + branch(third_attn(third_norm0(l), third_norm1(m)))
        x = df.concat({region_tokens(x), df.reshape(l, {nb * R, L, dim})}, 1)
      else
        x = x + branch(third_attn(third_norm0(x)))
      end
    end
    -- 4. feed-forward
    return x + nn.drop_path(B, mlp(norm2(x)), opts.drop_path)
  end
end

-- PatchEmbed: Conv3d with kernel = stride = (2, 16, 16) as patchify +
-- matmul.  Weight [C, 3, 2, 16, 16], bias [C].  [B, 3, T, S, S] ->
-- [B, N, C], tokens t-major, then h, then w.
function nn.PatchEmbed(B, prefix, dim, in_chans, tubelet, patch)
  in_chans, tubelet, patch = in_chans or 3, tubelet or 2, patch or 16
  local k = in_chans * tubelet * patch * patch
  -- PyTorch's Conv3d default: uniform within 1/sqrt(fan_in), bias too
  local conv_init = {kind = "uniform", bound = 1 / math.sqrt(k)}
  local w = B:param(join(prefix, "proj.weight"), {dim, in_chans, tubelet, patch, patch}, conv_init)
  local b = B:param(join(prefix, "proj.bias"), {dim}, conv_init)
  return function(video)
    local p = nn.patchify(video, tubelet, patch, false)
    return df.linear(p, df.reshape(w, {dim, k}), b)
  end
end

-- patchify(video [B, c, T, H, W]) -> [B, N, c*t*p*p] flattened as
-- (channel, frame, row, col), or as (frame, row, col, channel) when
-- channels_last (the reconstruction target's layout).
function nn.patchify(video, tubelet, patch, channels_last)
  local s = video.shape
  local b, c, T, H, W = s[1], s[2], s[3], s[4], s[5]
  local t, h, w = T // tubelet, H // patch, W // patch
  local x = df.reshape(video, {b, c, t, tubelet, h, patch, w, patch})
  if channels_last then
    x = df.permute(x, {0, 2, 4, 6, 3, 5, 7, 1})
  else
    x = df.permute(x, {0, 2, 4, 6, 1, 3, 5, 7})
  end
  return df.reshape(x, {b, t * h * w, c * tubelet * patch * patch})
end

return nn
