-- models/mae_dfer.lua: sizes, parameter names, variants, config checking.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local S = require "mae_dfer"

local function names_of(model)
  local set = {}
  for _, p in ipairs(model.params) do set[p.name] = table.concat(p.shape, "x") end
  return set
end

T.test("full_size_parameter_counts", function()
  local ft = S.build {kind = "finetune"}
  T.eq(ft.n_params, 84878343, "fine-tuning model parameters")
  local pt = S.build {kind = "pretrain"}
  T.eq(pt.n_params, 92760192, "pre-training model parameters")
  T.eq(ft.outputs.logits.shape, {1, 7})
  T.eq(pt.outputs.decoder_out.shape, {1, 720, 1536})
  T.eq(pt.outputs.encoder_out.shape, {1, 80, 512})
end)

-- Parameter names and shapes are exactly the fixture state_dict's.
for _, case in ipairs {"finetune_tiny", "pretrain_tiny"} do
  T.test("parameter_names_match_" .. case, function()
    local dir = T.fixtures() or T.skip("no fixtures (set DFERC_FIXTURES)")
    local cfg = df.json_decode(io.open(dir .. "/" .. case .. ".config.json"):read("a"))
    local w = assert(df.load(dir .. "/" .. case .. ".weights.safetensors"))
    local model = S.build(cfg)
    local have = names_of(model)
    for _, n in ipairs(w.names) do
      T.eq(have[n], table.concat(w.tensors[n].shape, "x"), "parameter " .. n)
      have[n] = nil
    end
    T.eq(next(have), nil, "parameter the file lacks")
  end)
end

local tiny = T.tiny_config

T.test("lgi_variants_parameters", function()
  local function has(model, name) return names_of(model)[name] ~= nil end
  local m = S.build(tiny("finetune", {first = "cross"}))
  T.ok(has(m, "blocks.0.first_attn_norm1.weight"), "cross first has first_attn_norm1")
  m = S.build(tiny("finetune", {third = "self"}))
  T.ok(not has(m, "blocks.0.third_attn_norm1.weight"), "self third has no third_attn_norm1")
  m = S.build(tiny("finetune", {no_second = true}))
  T.ok(not has(m, "blocks.0.second_attn.q.weight") and not has(m, "blocks.0.second_attn_norm0.weight"), "no_second")
  m = S.build(tiny("finetune", {no_third = true}))
  T.ok(not has(m, "blocks.0.third_attn.q.weight") and not has(m, "blocks.0.third_attn_norm0.bias"), "no_third")
  m = S.build(tiny("finetune", {share_first_third = true}))
  T.ok(not has(m, "blocks.0.third_attn.q.weight") and has(m, "blocks.0.second_attn.q.weight")
    and has(m, "blocks.0.third_attn_norm0.weight"), "share_first_third keeps norms, drops third_attn")
  T.eq(m.resolve_alias("blocks.0.third_attn.kv.weight").name, "blocks.0.first_attn.kv.weight", "alias")
  m = S.build(tiny("finetune", {share_all = true}))
  T.ok(not has(m, "blocks.0.second_attn.proj.bias") and not has(m, "blocks.0.third_attn.proj.bias"), "share_all")
  T.eq(m.resolve_alias("blocks.0.second_attn.proj.bias").name, "blocks.0.first_attn.proj.bias", "alias")
  m = S.build(tiny("finetune", {attn = "joint"}))
  T.ok(has(m, "blocks.0.attn.qkv.weight") and not has(m, "lg_region_tokens"), "joint fine-tuning")
  m = S.build(tiny("pretrain", {attn = "joint"}))
  T.ok(has(m, "encoder.blocks.0.attn.qkv.weight") and not has(m, "encoder.lg_region_tokens"), "joint pre-training")
end)

T.test("every_variant_builds_and_runs", function()
  local variants = {
    {"finetune", {}}, {"finetune", {token = "org"}}, {"finetune", {token = "all"}},
    {"finetune", {first = "cross", third = "self"}}, {"finetune", {no_second = true, no_third = true}},
    {"finetune", {share_all = true, first = "cross"}}, {"finetune", {attn = "joint"}},
    {"pretrain", {}}, {"pretrain", {first = "cross"}}, {"pretrain", {third = "self", share_first_third = true}},
    {"pretrain", {attn = "joint", mask = "tube"}}, {"pretrain", {no_second = true}},
  }
  local cli = require "dferc.cli"
  for i, v in ipairs(variants) do
    local m = S.build(tiny(v[1], v[2]))
    local feeds = T.tiny_feeds(m, i)
    local c = assert(df.compile {outputs = m.outputs})
    local r, err = c:run(feeds)
    T.ok(r, "variant " .. i .. ": " .. tostring(err))
    local loss = r.loss:get(1)
    T.ok(loss == loss and loss > 0, "variant " .. i .. " loss " .. tostring(loss))
  end
end)

T.test("lgi_encoder_refuses_an_unbalanced_mask", function()
  local m = S.build(tiny("pretrain"))
  local feeds = {}
  local cli = require "dferc.cli"
  for k, p in ipairs(m.params) do feeds[p.name] = cli.init_param(p, k) end
  feeds.videos = df.randn("f32", m.inputs.videos.shape, 1)
  -- 16 visible tokens per sample, but all in the first window of each frame
  local vals = {}
  for b = 1, 2 do
    for t = 1, 4 do
      for pos = 0, 15 do vals[#vals + 1] = pos >= 4 end
    end
  end
  feeds.mask = df.host("bool", {2, 64}, vals)
  local c = assert(df.compile {outputs = m.outputs})
  local r, err = c:run(feeds)
  T.ok(not r and err:find("LGI encoder needs 2 in every 2x4 window", 1, true), tostring(err))
end)

T.test("decoder_pos_corrected_is_an_ablation", function()
  local cli = require "dferc.cli"
  local function run(extra)
    local m = S.build(tiny("pretrain", extra))
    local feeds = {}
    for k, p in ipairs(m.params) do feeds[p.name] = cli.init_param(p, k) end
    feeds.videos = df.randn("f32", m.inputs.videos.shape, 3)
    local vals = {}
    for _ = 1, 2 * 4 do
      for pos = 0, 15 do vals[#vals + 1] = not (pos % 8 == 1 or pos % 8 == 6) end
    end
    feeds.mask = df.host("bool", {2, 64}, vals)
    local c = assert(df.compile {outputs = {m.outputs.decoder_out}})
    return assert(c:run(feeds))[1]
  end
  -- regions of (2, 2, 4) tokens: rt = 2 and nh*nw = 2, so rows are reordered
  local _, d = df.compare(run {}, run {decoder_pos = "corrected"})
  T.ok(d > 0, "corrected pairing changes the reconstruction")
  _, d = df.compare(run {decoder_pos = "original"}, run {})
  T.eq(d, 0.0, "original is the default")
  -- joint attention keeps token order: both pairings agree
  _, d = df.compare(run {attn = "joint"}, run {attn = "joint", decoder_pos = "corrected"})
  T.eq(d, 0.0, "joint attention")
end)

T.test("config_errors_are_clear", function()
  T.raises(function() S.check_config({kind = "finetune", colour = 3}, "case.json") end,
    "case.json: unknown key 'colour'")
  T.raises(function() S.check_config({attn = "sparse"}, "case.json") end,
    "case.json: key 'attn': 'sparse' is not one of local_global, joint")
  T.raises(function() S.check_config({kind = "train"}, "c.json") end, "key 'kind': 'train' is not one of")
  T.raises(function() S.check_config({region = {2, 5}}, "c.json") end, "key 'region': [2, 5] is not a list of 3")
  T.raises(function() S.check_config({region = {3, 5, 10}}, "c.json") end, "region [3, 5, 10] does not tile")
  T.raises(function() S.check_config({no_second = "yes"}, "c.json") end, "key 'no_second': 'yes' is not true or false")
  T.raises(function() S.check_config({dim = 100, heads = 8}, "c.json") end, "dim 100 is not divisible by heads 8")
  T.raises(function() S.check_config({depth = 1.5}, "c.json") end, "key 'depth': 1.5 is not an integer")
  T.raises(function() S.check_config({img = 100}, "c.json") end, "img 100 is not a positive multiple")
end)

os.exit(T.done(), true)
