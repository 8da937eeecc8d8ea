--[[
models/mae_dfer.lua -- MAE-DFER (Sun et al., ACM MM 2023) as a dferc model
script: the fine-tuning VisionTransformer and the pre-training
PretrainVisionTransformer, LGI-Former or joint (VideoMAE) attention, every
variant of the original (see shared/MAE-DFER.md for the exact computation).

The model-script contract (what `--model SCRIPT.lua` and `dferc graph`
load): the script returns a table S with
  S.defaults(kind)          -> the default config of a kind ("finetune",
                               "pretrain")
  S.check_config(cfg, src)  -> a complete, validated copy of cfg (defaults
                               filled in); raises "src: ..." naming the bad
                               key or value
  S.build(cfg, opts)        -> a model:
     model.graph    the graph (dferc.Graph)
     model.params   ordered list of {name, tensor, shape, init}, names are
                    the original state_dict keys
     model.resolve_alias(name) -> the param a shared module's other
                    state_dict name refers to, or nil
     model.n_params number of scalar parameters
     model.inputs   name -> input tensor ("videos", "mask", "labels")
     model.outputs  name -> output tensor (pre-training: encoder_out,
                    decoder_out, targets, loss; fine-tuning: features,
                    logits, loss)
     model.config   the checked config; model.geometry its derived sizes
opts.num_visible (pre-training) overrides the visible-token count that the
config's mask generator implies; opts.dtype ("f32" by default, "f64" for
gradient checks) is the dtype of the parameters and the video;
opts.fused_loss = false builds the pre-training loss from the targets
(gather, subtract, square, mean) instead of one recon_loss op.
opts.fused_attention = false builds attention from products and a softmax
(for a device without the attention op: see df.core.supports);
opts.training builds the training-time graph, with opts.drop_path (the
last block's rate; linear from 0 at the first block, as the original) and
opts.dropout drawing from the "rng.seed" input.
]]
local df = require "dferc"
local nn = require "dferc.nn"

local S = {}

local IMAGENET_MEAN = {0.485, 0.456, 0.406}
local IMAGENET_STD = {0.229, 0.224, 0.225}

-- -------------------------------------------------------------- config

local function enum(...) return {kind = "enum", values = {...}} end
local INT, BOOL, NUM = {kind = "int"}, {kind = "bool"}, {kind = "number"}
local function ints(n) return {kind = "ints", n = n} end

-- Every key a config may carry (the fixtures README's list).
S.keys = {
  kind = enum("finetune", "pretrain"),
  B = INT, img = INT, frames = INT,
  enc_dim = INT, enc_heads = INT, enc_depth = INT,
  dec_dim = INT, dec_heads = INT, dec_depth = INT,
  dim = INT, heads = INT, depth = INT, classes = INT,
  attn = enum("local_global", "joint"),
  region = ints(3),
  first = enum("self", "cross"), third = enum("self", "cross"),
  no_second = BOOL, no_third = BOOL, share_first_third = BOOL, share_all = BOOL,
  token = enum("region", "org", "all"),
  mask = enum("part_window", "tube"),
  win = ints(2), mask_ratio = NUM,
  nograd = BOOL, seed = INT, num_patches = INT,
  -- dferc's own (not in the fixtures): which position each encoder row
  -- gets in the decoder; see build_pretrain
  decoder_pos = enum("original", "corrected"),
}

local COMMON = {
  B = 1, img = 160, frames = 16, attn = "local_global", region = {2, 5, 10},
  first = "self", third = "cross", no_second = false, no_third = false,
  share_first_third = false, share_all = false, nograd = false, seed = 0,
}

function S.defaults(kind)
  local d = {}
  for k, v in pairs(COMMON) do d[k] = v end
  d.kind = kind or "finetune"
  if d.kind == "pretrain" then
    d.enc_dim, d.enc_heads, d.enc_depth = 512, 8, 16
    d.dec_dim, d.dec_heads, d.dec_depth = 384, 6, 4
    d.mask, d.win, d.mask_ratio = "part_window", {5, 10}, 0.9
    d.decoder_pos = "original"
  else
    d.dim, d.heads, d.depth, d.classes = 512, 8, 16, 7
    d.token = "region"
  end
  return d
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

local function describe(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  if type(v) == "string" then return "'" .. v .. "'" end
  return tostring(v)
end

local function check_value(key, spec, v, src)
  local function bad(why)
    error(string.format("%s: key '%s': %s %s", src, key, describe(v), why), 0)
  end
  if spec.kind == "int" then
    if math.type(v) ~= "integer" then bad("is not an integer") end
    if v < 0 then bad("must not be negative") end
  elseif spec.kind == "number" then
    if type(v) ~= "number" then bad("is not a number") end
  elseif spec.kind == "bool" then
    if type(v) ~= "boolean" then bad("is not true or false") end
  elseif spec.kind == "enum" then
    for _, ok in ipairs(spec.values) do
      if v == ok then return end
    end
    bad("is not one of " .. table.concat(spec.values, ", "))
  elseif spec.kind == "ints" then
    if type(v) ~= "table" or #v ~= spec.n then bad(string.format("is not a list of %d integers", spec.n)) end
    for _, x in ipairs(v) do
      if math.type(x) ~= "integer" or x < 1 then bad(string.format("is not a list of %d positive integers", spec.n)) end
    end
  end
end

function S.check_config(cfg, src)
  src = src or "config"
  if type(cfg) ~= "table" then error(src .. ": config must be a JSON object", 0) end
  for _, k in ipairs(sorted_keys(cfg)) do
    local spec = S.keys[k]
    if not spec then
      error(string.format("%s: unknown key '%s' (known keys: %s)", src, tostring(k),
        table.concat(sorted_keys(S.keys), ", ")), 0)
    end
    check_value(k, spec, cfg[k], src)
  end
  local out = S.defaults(cfg.kind or "finetune")
  for k, v in pairs(cfg) do out[k] = v end
  -- derived checks, each naming its keys
  local function need(cond, fmt, ...)
    if not cond then error(src .. ": " .. string.format(fmt, ...), 0) end
  end
  need(out.img > 0 and out.img % 16 == 0, "img %d is not a positive multiple of the patch size 16", out.img)
  need(out.frames > 0 and out.frames % 2 == 0, "frames %d is not a positive multiple of the tubelet size 2", out.frames)
  need(out.B >= 1, "B must be at least 1")
  local function heads_ok(dim_key, heads_key)
    need(out[dim_key] > 0 and out[heads_key] > 0 and out[dim_key] % out[heads_key] == 0,
      "%s %d is not divisible by %s %d", dim_key, out[dim_key], heads_key, out[heads_key])
  end
  if out.kind == "pretrain" then
    heads_ok("enc_dim", "enc_heads")
    heads_ok("dec_dim", "dec_heads")
    need(out.mask_ratio > 0 and out.mask_ratio < 1, "mask_ratio %s must be in (0, 1)", tostring(out.mask_ratio))
  else
    heads_ok("dim", "heads")
    need(out.classes >= 1, "classes must be at least 1")
  end
  local t, h = out.frames // 2, out.img // 16
  if out.attn == "local_global" then
    local r = out.region
    need(t % r[1] == 0 and h % r[2] == 0 and h % r[3] == 0,
      "region %s does not tile the token grid [%d, %d, %d]", describe(r), t, h, h)
  end
  if out.kind == "pretrain" and out.mask == "part_window" then
    need(h % out.win[1] == 0 and h % out.win[2] == 0,
      "win %s does not tile the %dx%d frame", describe(out.win), h, h)
  end
  if out.num_patches then
    need(out.num_patches == t * h * h, "num_patches %d but the input gives %d tokens",
      out.num_patches, t * h * h)
  end
  return out
end

-- Sizes that follow from a checked config.
function S.geometry(cfg)
  local g = {t = cfg.frames // 2, h = cfg.img // 16, w = cfg.img // 16}
  g.N = g.t * g.h * g.w
  if cfg.attn == "local_global" then
    local r = cfg.region
    g.rt, g.rh, g.rw = r[1], r[2], r[3]
    g.nt, g.nh, g.nw = g.t // r[1], g.h // r[2], g.w // r[3]
    g.R = g.nt * g.nh * g.nw
    g.L = r[1] * r[2] * r[3]
  end
  if cfg.kind == "pretrain" then
    -- visible tokens the mask generator leaves (int() as the original)
    if cfg.mask == "tube" then
      local per = g.h * g.w
      g.Nv = g.t * (per - math.floor(cfg.mask_ratio * per))
    else
      local wh, ww = cfg.win[1], cfg.win[2]
      local per = wh * ww
      g.Nv = g.t * (g.h // wh) * (g.w // ww) * (per - math.floor(cfg.mask_ratio * per))
    end
  end
  return g
end

-- -------------------------------------------------------------- pieces

-- Block options of block i of `depth`: drop path grows linearly from 0.
local function block_opts(cfg, opts, i, depth)
  local dp = opts.drop_path or 0
  return {first = cfg.first, third = cfg.third, no_second = cfg.no_second,
          no_third = cfg.no_third, share_first_third = cfg.share_first_third,
          share_all = cfg.share_all, dropout = opts.dropout,
          drop_path = depth > 1 and dp * i / (depth - 1) or 0}
end

-- [B, N, C] tokens in (t, h, w) order -> [B*R, L, C] regions.
local function partition(x, g, nb, C)
  x = df.reshape(x, {nb, g.nt, g.rt, g.nh, g.rh, g.nw, g.rw, C})
  x = df.permute(x, {0, 1, 3, 5, 2, 4, 6, 7})
  return df.reshape(x, {nb * g.R, g.L, C})
end

-- Prepend the region tokens [R, C]: [B*R, L, C] -> [B*R, 1+L, C].
local function add_region_tokens(x, tokens, nb, R, C)
  local t = df.expand(df.reshape(tokens, {1, R, 1, C}), {nb, R, 1, C})
  return df.concat({df.reshape(t, {nb * R, 1, C}), x}, 1)
end

-- Normalised video -> the pixels (ImageNet mean and std undone).
local function unnormalise(Bd, videos)
  local c = videos.shape[2]
  local mean_t, std_t = {}, {}
  for i = 1, c do
    mean_t[i] = Bd:fill(IMAGENET_MEAN[i] or 0, {1, 1, 1, 1, 1})
    std_t[i] = Bd:fill(IMAGENET_STD[i] or 1, {1, 1, 1, 1, 1})
  end
  return videos * df.concat(std_t, 1) + df.concat(mean_t, 1)
end

-- Pixels (unnormalise) -> reconstruction targets [B, N, 1536] (all
-- tokens): per-tubelet per-channel normalisation with unbiased variance
-- (eps on the std), then frame difference inside each tubelet.  (The loss
-- uses df.recon_loss, which computes the same values for the masked
-- tokens only, unless opts.fused_loss is false.)
local function targets_all(pix)
  local s = pix.shape
  local nb, c = s[1], s[2]
  local p = nn.patchify(pix, 2, 16, true)                 -- [B, N, (2,16,16,c)]
  local n = p.shape[2]
  p = df.reshape(p, {nb, n, 2 * 16 * 16, c})
  local mu = df.mean(p, 2, true)
  local sd = df.sqrt(df.var(p, 2, true, 1))
  p = (p - mu) / (sd + 1e-6)
  p = df.reshape(p, {nb, n, 2, 256 * c})
  local f0 = df.slice(p, 2, 0, 1)
  local f1 = df.slice(p, 2, 1, 2)
  return df.reshape(df.concat({f0, f1 - f0}, 2), {nb, n, 2 * 256 * c})
end

-- -------------------------------------------------------------- fine-tuning

local function build_finetune(cfg, opts)
  local g = S.geometry(cfg)
  local Bd = nn.builder {dtype = opts.dtype, training = opts.training, fused_attention = opts.fused_attention,
                         linear_init = {kind = "trunc_normal", std = 0.02, bound = 2.0}}
  local nb, C = cfg.B, cfg.dim
  local lgi = cfg.attn == "local_global"
  local model = {builder = Bd, graph = Bd.g, config = cfg, geometry = g, inputs = {}, outputs = {}}

  local region_tokens = lgi and Bd:param("lg_region_tokens", {g.R, C},
    {kind = "trunc_normal", std = 0.02, bound = 2.0}) or nil
  local patch_embed = nn.PatchEmbed(Bd, "patch_embed", C)
  local blocks = {}
  for i = 0, cfg.depth - 1 do
    local p = "blocks." .. i
    local bo = block_opts(cfg, opts, i, cfg.depth)
    blocks[#blocks + 1] = lgi and nn.LGBlock(Bd, p, C, cfg.heads, bo) or nn.Block(Bd, p, C, cfg.heads, bo)
  end
  local fc_norm = nn.LayerNorm(Bd, "fc_norm", C)
  local head = nn.Linear(Bd, "head", C, cfg.classes)
  -- head.weight and head.bias are scaled by init_scale (0.001) after init
  Bd.by_name["head.weight"].init = {kind = "trunc_normal", std = 0.02, bound = 2.0, scale = 0.001}

  local videos = Bd:input("videos", Bd.dtype, {nb, 3, cfg.frames, cfg.img, cfg.img})
  local labels = Bd:input("labels", "i64", {nb})
  model.inputs.videos, model.inputs.labels = videos, labels

  local x = patch_embed(videos) + df.reshape(df.sinusoid(Bd.g, g.N, C, Bd.dtype), {1, g.N, C})
  local feat
  if lgi then
    x = add_region_tokens(partition(x, g, nb, C), region_tokens, nb, g.R, C)
    for _, blk in ipairs(blocks) do x = blk(x, nb, g.R) end
    x = df.reshape(x, {nb, g.R, 1 + g.L, C})
    if cfg.token == "region" then
      feat = df.mean(df.slice(x, 2, 0, 1), {1, 2})
    elseif cfg.token == "org" then
      feat = df.mean(df.slice(x, 2, 1), {1, 2})
    else
      feat = df.mean(x, {1, 2})
    end
  else
    for _, blk in ipairs(blocks) do x = blk(x) end
    feat = df.mean(x, 1)
  end
  local features = fc_norm(feat)
  local logits = head(features)
  local logp = df.log_softmax(logits, -1)
  local picked = df.gather(logp, df.reshape(labels, {nb, 1}), 1)
  local loss = df.reshape(-df.mean(picked), {1})
  model.outputs = {features = features, logits = logits, loss = loss}
  return model
end

-- -------------------------------------------------------------- pre-training

local function build_pretrain(cfg, opts)
  local g = S.geometry(cfg)
  local Nv = opts.num_visible or g.Nv
  local Nm = g.N - Nv
  local lgi = cfg.attn == "local_global"
  local Bd = nn.builder {dtype = opts.dtype, training = opts.training, fused_attention = opts.fused_attention,
                         linear_init = {kind = "xavier_uniform"}}
  local nb, C, Cd = cfg.B, cfg.enc_dim, cfg.dec_dim
  local model = {builder = Bd, graph = Bd.g, config = cfg, geometry = g, inputs = {}, outputs = {}}
  if Nv < 1 or Nm < 1 then
    error(string.format("pretrain: %d visible and %d masked tokens of %d: both must be at least 1",
      Nv, Nm, g.N), 0)
  end
  local k
  if lgi then
    -- every region keeps rt * k visible tokens, k = int(rh * rw * Nv / N)
    k = (g.rh * g.rw * Nv) // g.N
    if k * g.t * g.nh * g.nw ~= Nv then
      error(string.format("pretrain: %d visible tokens cannot be split evenly over the %d x %d "
        .. "windows of %d frames (LGI regions need a part-window mask with window [%d, %d])",
        Nv, g.nh, g.nw, g.t, g.rh, g.rw), 0)
    end
  end
  local trunc = {kind = "trunc_normal", std = 0.02, bound = 0.02}

  local mask_token = Bd:param("mask_token", {1, 1, Cd}, trunc)
  local region_tokens = lgi and Bd:param("encoder.lg_region_tokens", {g.R, C}, trunc) or nil
  local patch_embed = nn.PatchEmbed(Bd, "encoder.patch_embed", C)
  local enc_blocks = {}
  for i = 0, cfg.enc_depth - 1 do
    local p = "encoder.blocks." .. i
    local bo = block_opts(cfg, opts, i, cfg.enc_depth)
    enc_blocks[#enc_blocks + 1] = lgi and nn.LGBlock(Bd, p, C, cfg.enc_heads, bo)
      or nn.Block(Bd, p, C, cfg.enc_heads, bo)
  end
  local enc_norm = nn.LayerNorm(Bd, "encoder.norm", C)
  local dec_blocks = {}
  for i = 0, cfg.dec_depth - 1 do
    dec_blocks[#dec_blocks + 1] = nn.Block(Bd, "decoder.blocks." .. i, Cd, cfg.dec_heads,
      {dropout = opts.dropout})
  end
  local dec_norm = nn.LayerNorm(Bd, "decoder.norm", Cd)
  local dec_head = nn.Linear(Bd, "decoder.head", Cd, 2 * 16 * 16 * 3)
  local enc_to_dec = nn.Linear(Bd, "encoder_to_decoder", C, Cd, false)

  local videos = Bd:input("videos", Bd.dtype, {nb, 3, cfg.frames, cfg.img, cfg.img})
  local mask = Bd:input("mask", "bool", {nb, g.N})
  model.inputs.videos, model.inputs.mask = videos, mask

  -- visible / masked positions, in token order, from the mask (in the graph)
  local vis_idx = df.mask_index(mask, false, Nv, lgi and {g.t, g.h, g.w, g.rh, g.rw} or nil)
  local msk_idx = df.mask_index(mask, true, Nm)

  -- encoder over the visible tokens
  local x = patch_embed(videos) + df.reshape(df.sinusoid(Bd.g, g.N, C, Bd.dtype), {1, g.N, C})
  x = df.gather(x, vis_idx, 1)                                   -- [B, Nv, C]
  if lgi then
    -- (nt rt nhw k) -> regions (nt nhw) of (rt k) tokens
    local nhw = g.nh * g.nw
    x = df.reshape(x, {nb, g.nt, g.rt, nhw, k, C})
    x = df.permute(x, {0, 1, 3, 2, 4, 5})
    x = df.reshape(x, {nb * g.R, g.rt * k, C})
    x = add_region_tokens(x, region_tokens, nb, g.R, C)
    for _, blk in ipairs(enc_blocks) do x = blk(x, nb, g.R) end
    -- drop the region tokens; rows stay in region order (a reshape, not a permute)
    x = df.reshape(df.slice(x, 1, 1), {nb, Nv, C})
  else
    for _, blk in ipairs(enc_blocks) do x = blk(x) end
  end
  local encoder_out = enc_norm(x)

  -- decoder: as the original, the i-th encoder row gets the i-th visible
  -- position in token order, which is not its own position when the LGI
  -- regrouping reordered the rows (rt > 1 and nh*nw > 1); decoder_pos =
  -- "corrected" pairs each row with its own position (an ablation)
  local pos = df.reshape(df.sinusoid(Bd.g, g.N, Cd, Bd.dtype), {1, g.N, Cd})
  local dec_idx = vis_idx
  if lgi and cfg.decoder_pos == "corrected" then
    dec_idx = df.reshape(vis_idx, {nb, g.nt, g.rt, g.nh * g.nw, k})
    dec_idx = df.reshape(df.permute(dec_idx, {0, 1, 3, 2, 4}), {nb, Nv})
  end
  local y = enc_to_dec(encoder_out) + df.gather(pos, dec_idx, 1)
  local m = df.expand(mask_token, {nb, Nm, Cd}) + df.gather(pos, msk_idx, 1)
  y = df.concat({y, m}, 1)
  for _, blk in ipairs(dec_blocks) do y = blk(y) end
  local decoder_out = dec_head(dec_norm(df.slice(y, 1, Nv)))

  local pix = unnormalise(Bd, videos)
  local targets = df.gather(targets_all(pix), msk_idx, 1)
  local loss
  if opts.fused_loss == false then
    local d = decoder_out - targets
    loss = df.reshape(df.mean(d * d), {1})
  else
    loss = df.recon_loss(decoder_out, pix, msk_idx, 2, 16, 1e-6)
  end
  model.outputs = {encoder_out = encoder_out, decoder_out = decoder_out,
                   targets = targets, loss = loss}
  model.num_visible = Nv
  return model
end

function S.build(cfg, opts)
  cfg = S.check_config(cfg, "config")
  opts = opts or {}
  local model
  if cfg.kind == "pretrain" then model = build_pretrain(cfg, opts)
  else model = build_finetune(cfg, opts) end
  model.params = model.builder.params
  model.n_params = model.builder:count()
  model.resolve_alias = function(name) return model.builder:resolve_alias(name) end
  return model
end

return S
