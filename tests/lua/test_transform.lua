-- dferc.transform from Lua: the training / test / pre-training clip
-- transforms, masks, mixup and metrics over Host tensors.  The C tests
-- (tests/test_transform.c) check the arithmetic of each op; these check the
-- binding: shapes, the pipeline's order, determinism and error messages.
local T = dofile((arg[0]:match("(.*/)") or "./") .. "testlib.lua")
local df = require "dferc"
local ok, tr = pcall(require, "dferc.transform")
if not ok then
  print("skip transform: dferc.transform is not built into this program")
  os.exit(0)
end

local MEAN, STD = {0.485, 0.456, 0.406}, {0.229, 0.224, 0.225}
local function f32(x) return string.unpack("f", string.pack("f", x)) end
-- The normalised value of byte v in channel c, in float as the C code has it.
local function norm(v, c) return f32((f32(f32(v) / 255) - f32(MEAN[c])) / f32(STD[c])) end

-- A clip [n, h, w, 3] whose pixel (t, y, x, c) is pix(t, y, x, c).
local function clip(n, h, w, pix)
  local vals = {}
  for t = 0, n - 1 do
    for y = 0, h - 1 do
      for x = 0, w - 1 do
        for c = 1, 3 do vals[#vals + 1] = pix(t, y, x, c) end
      end
    end
  end
  return df.host("u8", {n, h, w, 3}, vals)
end

-- Element [c, t, y, x] (0-based) of a [3, T, S, S] Host.
local function at(h, c, t, y, x)
  local s = h.shape
  return h:get(((c * s[2] + t) * s[3] + y) * s[4] + x + 1)
end

local function pattern(t, y, x, c) return (t * 40 + y * 7 + x * 3 + c * 11) % 256 end

T.test("finetune_train_identity_path", function()
  -- no RandAugment, the whole frame as the crop, no flip, no erasing:
  -- exactly the normalised frames, laid out [3, T, S, S]
  local frames = clip(3, 8, 8, pattern)
  local opts = {size = 8, randaug = false, scale = {1, 1}, ratio = {1, 1}, flip = 0, erase = 0}
  local out, info = tr.finetune_train(frames, 5, opts)
  T.eq(out.shape, {3, 3, 8, 8}, "shape")
  T.eq(out.dtype, "f32", "dtype")
  T.eq({info.crop.x, info.crop.y, info.crop.w, info.crop.h}, {0, 0, 8, 8}, "crop")
  T.eq(info.flipped, false, "flipped")
  T.eq(info.erase, false, "erase")
  for _, p in ipairs {{0, 0, 0, 0}, {1, 2, 3, 4}, {2, 1, 7, 6}, {0, 2, 5, 7}} do
    local c, t, y, x = p[1], p[2], p[3], p[4]
    T.near(at(out, c, t, y, x), norm(pattern(t, y, x, c + 1), c + 1), 1e-6, "value " .. T.show(p))
  end
  -- flip with probability 1 mirrors every row
  opts.flip = 1
  local flipped, finfo = tr.finetune_train(frames, 5, opts)
  T.eq(finfo.flipped, true, "flipped")
  T.near(at(flipped, 1, 2, 3, 0), at(out, 1, 2, 3, 7), 0, "mirrored")
  -- a 2x2 crop of a 4x4 frame resized to 4x4 with torch's bilinear: the
  -- corner samples the crop's corner
  local f4 = clip(1, 4, 4, pattern)
  local o4, i4 = tr.finetune_train(f4, 1, {size = 4, randaug = false, scale = {0.25, 0.25}, ratio = {1, 1}, flip = 0, erase = 0})
  T.eq({i4.crop.w, i4.crop.h}, {2, 2}, "crop size")
  T.near(at(o4, 0, 0, 0, 0), norm(pattern(0, i4.crop.y, i4.crop.x, 1), 1), 1e-5, "corner")
  T.near(at(o4, 0, 0, 3, 3), norm(pattern(0, i4.crop.y + 1, i4.crop.x + 1, 1), 1), 1e-5, "far corner")
end)

T.test("finetune_train_random", function()
  local frames = clip(4, 20, 24, pattern)
  local a, ia = tr.finetune_train(frames, 77, {size = 16})
  local b = tr.finetune_train(frames, 77, {size = 16})
  local c = tr.finetune_train(frames, 78, {size = 16})
  T.eq(a.shape, {3, 4, 16, 16}, "shape")
  local same, diff = true, false
  for i = 1, a.numel, 37 do
    local x = a:get(i)
    T.ok(x == x and math.abs(x) < 10, "finite value")
    same = same and x == b:get(i)
    diff = diff or x ~= c:get(i)
  end
  T.ok(same, "same seed, same clip")
  T.ok(diff, "another seed, another clip")
  T.eq(#ia.ops, 4, "four RandAugment ops")
  for _, op in ipairs(ia.ops) do
    T.ok(type(op.name) == "string" and type(op.applied) == "boolean", "op info")
    T.ok(op.magnitude >= 0 and op.magnitude <= 10, "magnitude")
  end
  local w, h = ia.crop.w, ia.crop.h
  T.ok(w >= 1 and h >= 1 and ia.crop.x + w <= 24 and ia.crop.y + h <= 20, "crop inside the frame")
  -- presize: frames first resized to S x S, so the crop lies in 16 x 16
  for seed = 1, 20 do
    local p, ip = tr.finetune_train(frames, seed, {size = 16, presize = true})
    T.eq(p.shape, {3, 4, 16, 16}, "presized shape")
    T.ok(ip.crop.x + ip.crop.w <= 16 and ip.crop.y + ip.crop.h <= 16, "crop inside the presized frame")
  end
end)

T.test("finetune_train_erasing", function()
  -- the erase box is drawn after the crop and the flip, so with the same
  -- seed only the box differs, and it differs in every frame
  local frames = clip(3, 16, 16, pattern)
  local base = {size = 16, randaug = false, flip = 0, erase = 0}
  local er = {size = 16, randaug = false, flip = 0, erase = 1}
  local a = tr.finetune_train(frames, 3, base)
  local b, info = tr.finetune_train(frames, 3, er)
  T.ok(info.erase, "a box was drawn")
  local e = info.erase
  T.ok(e.w < 16 and e.h < 16, "box smaller than the frame")
  for c = 0, 2 do
    for t = 0, 2 do
      for y = 0, 15 do
        for x = 0, 15 do
          local inside = x >= e.x and x < e.x + e.w and y >= e.y and y < e.y + e.h
          local va, vb = at(a, c, t, y, x), at(b, c, t, y, x)
          if inside then T.ok(va ~= vb, "erased") else T.ok(va == vb, "untouched outside the box") end
        end
      end
    end
  end
end)

T.test("test_views", function()
  -- 10 frames of 12 x 16, each one colour (10 * t): the short side goes to
  -- 8 (8 x 10), the clip is padded to 16 frames with the last, 2 x 3 views
  local frames = clip(10, 12, 16, function(t) return 10 * t end)
  local views = tr.finetune_test_views(frames, 2, 3, 8)
  T.eq(#views, 6, "segments x crops")
  for _, v in ipairs(views) do T.eq(v.shape, {3, 16, 8, 8}, "view shape") end
  -- (10 - 16) / 1 < 0: both segments start at frame 0; frame 12 is frame 9
  T.near(at(views[4], 0, 0, 0, 0), norm(0, 1), 1e-6, "frame 0")
  T.near(at(views[1], 2, 3, 5, 5), norm(30, 3), 1e-6, "frame 3")
  T.near(at(views[6], 1, 12, 7, 7), norm(90, 2), 1e-6, "padded with the last frame")
  -- a non-square pattern: crops move along the long side
  local wide = clip(16, 4, 8, function(t, y, x) return x * 20 end)
  local v2 = tr.finetune_test_views(wide, 1, 2, 4, {resize = "bilinear"})
  T.eq(#v2, 2, "two crops")
  -- 4 x 8 stays (short side 4); crop offsets 0 and 4
  T.near(at(v2[1], 0, 0, 0, 0), norm(0, 1), 1e-6, "left crop")
  T.near(at(v2[2], 0, 0, 0, 0), norm(80, 1), 1e-6, "right crop")
  T.raises(function() return tr.finetune_test_views(wide, 0, 2) end, "segments 0 outside 1..64")
end)

T.test("pretrain", function()
  local frames = clip(4, 34, 40, function(t) return 50 + t end)
  local out, info = tr.pretrain(frames, 9, 32)
  T.eq(out.shape, {3, 4, 32, 32}, "shape")
  local sizes = {[34] = true, [32] = true, [29] = true, [25] = true, [22] = true}
  -- base 34: int(34 * (1 .875 .75 .66)) = 34 29 25 22, 34 is within 3 of
  -- 32 and snaps to it
  T.ok(sizes[info.crop.w] and sizes[info.crop.h] and info.crop.w ~= 34, "crop sizes from the list")
  -- a constant frame stays constant through the PIL resize
  T.near(at(out, 2, 3, 17, 5), norm(53, 3), 1e-6, "constant frame")
  local again = tr.pretrain(frames, 9, 32)
  T.eq(again:get(1000), out:get(1000), "deterministic")
  local crops = {}
  for s = 1, 60 do
    local _, i = tr.pretrain(frames, s, 32)
    crops[i.crop.x .. "," .. i.crop.y .. "," .. i.crop.w .. "," .. i.crop.h] = true
  end
  local n = 0
  for _ in pairs(crops) do n = n + 1 end
  T.ok(n > 10, "many different crops: " .. n)
end)

T.test("masks", function()
  local m = tr.mask("part_window", 8, 10, 10, 0.9, 5, 10, 1)
  T.eq(m.shape, {800}, "shape")
  T.eq(m.dtype, "bool", "dtype")
  local visible = 0
  for i = 1, 800 do if m:get(i) == 0 then visible = visible + 1 end end
  T.eq(visible, 80, "visible tokens")
  local t = tr.mask("tube", 2, 4, 5, 0.5, nil, nil, 3)
  local first, masked = t:totable(), 0
  for i = 1, 20 do
    masked = masked + first[i]
    T.eq(first[i], first[20 + i], "same pattern every frame")
  end
  T.eq(masked, 10, "floor(0.5 * 20)")
  T.eq(tr.mask("tube", 2, 4, 5, 0.5, nil, nil, 3):totable(), first, "deterministic")
  T.raises(function() return tr.mask("random", 2, 4, 5, 0.5, nil, nil, 3) end, "unknown kind 'random'")
  T.raises(function() return tr.mask("part_window", 8, 10, 10, 0.9, 3, 10, 1) end,
    "window 3x10 does not tile the 10x10 token frame")
  T.raises(function() return tr.mask("tube", 8, 10, 10, 2, nil, nil, 1) end, "ratio 2 outside [0, 1]")
end)

T.test("mixup", function()
  local B, K = 4, 3
  local labels = {0, 2, 1, 1}
  local seen_cut, seen_mix = false, false
  for seed = 1, 40 do
    local vals = {}
    for i = 1, B * 2 * 2 * 4 * 4 do vals[i] = i end
    local videos = df.host("f32", {B, 2, 2, 4, 4}, vals)
    local lam, box, targets = tr.mixup(labels, K, seed, {videos = videos})
    T.ok(lam >= 0 and lam <= 1, "lam in [0, 1]")
    T.eq(targets.shape, {B, K}, "targets shape")
    for b = 0, B - 1 do
      local s = 0
      for k = 1, K do s = s + targets:get(b * K + k) end
      T.near(s, 1, 1e-5, "row sums to 1")
    end
    local per = 2 * 2 * 4 * 4
    if box then
      seen_cut = true
      T.near(lam, 1 - (box.y1 - box.y0) * (box.x1 - box.x0) / 16, 1e-12, "lam from the box")
      -- inside the box sample 0 holds sample 3's pixels
      if box.y1 > box.y0 and box.x1 > box.x0 then
        local y, x = box.y0, box.x0
        T.near(videos:get(y * 4 + x + 1), vals[3 * per + y * 4 + x + 1], 0, "cut from the partner")
        T.near(videos:get(3 * per + y * 4 + x + 1), vals[y * 4 + x + 1], 0, "and the partner from it")
      end
    else
      seen_mix = true
      local want = f32(f32(vals[1] * f32(lam)) + f32(vals[3 * per + 1] * f32(1 - lam)))
      T.near(videos:get(1), want, 1e-3, "blended with the partner")
    end
  end
  T.ok(seen_cut and seen_mix, "both cutmix and mixup drawn")
  -- no videos: just the draw and the targets; labels from a Host
  local lam, _, tg = tr.mixup(df.host("i64", {2}, {0, 2}), 3, 1, {size = {8, 8}, smoothing = 0})
  T.near(tg:get(1), lam, 1e-6, "target of class 0")
  T.near(tg:get(3), 1 - lam, 1e-6, "target of the partner's class")
  T.raises(function() return tr.mixup({0, 3}, 3, 1) end, "label 3 of sample 1 outside [0, 3)")
  T.raises(function() return tr.mixup({0, 1.5}, 3, 1) end, "labels[2] is not an integer")
end)

T.test("metrics", function()
  local r = tr.metrics({0, 1, 1, 1, 0, 1}, {0, 0, 1, 1, 1, 2}, 4)
  T.near(r.uar, 7 / 18, 1e-12, "uar")
  T.near(r.war, 0.5, 1e-12, "war")
  T.near(r.f1, 19 / 42, 1e-12, "weighted f1")
  T.eq(r.present, 3, "classes present")
  T.eq(r.confusion, {{1, 1, 0, 0}, {1, 2, 0, 0}, {0, 1, 0, 0}, {0, 0, 0, 0}}, "confusion")
  T.eq(r.support, {2, 3, 1, 0}, "support")
  T.near(r.recall[2], 2 / 3, 1e-12, "recall of class 1")
  local h = tr.metrics(df.host("i64", {2}, {0, 3}), df.host("i32", {2}, {0, 1}), 4)
  T.near(h.uar, 0.5, 1e-12, "uar over the classes among the labels")
  T.near(h.recall_macro, 1 / 3, 1e-12, "sklearn macro recall")
  T.raises(function() return tr.metrics({0}, {0, 1}, 2) end, "1 predictions for 2 labels")
  T.raises(function() return tr.metrics({0, 5}, {0, 1}, 2) end, "prediction 5 of sample 2 outside [0, 2)")
end)

T.test("resize_stream_randaugment", function()
  local img = df.host("u8", {1, 4, 3}, {10, 10, 10, 20, 20, 20, 40, 40, 40, 80, 80, 80})
  T.eq(tr.resize(img, 1, 2):totable(), {19, 19, 19, 54, 54, 54}, "PIL bilinear")
  T.eq(tr.resize(img, 1, 2, "linear"):totable(), {15, 15, 15, 60, 60, 60}, "torch bilinear")
  T.eq(tr.stream(1, 2), tr.stream(1, 2), "stream is a function")
  T.ok(tr.stream(1, 2) ~= tr.stream(1, 3) and tr.stream(1, 2) ~= tr.stream(2, 2), "streams differ")
  local frames = clip(2, 6, 6, function(t, y, x, c) return (y * 6 + x) * 7 % 256 end)
  local out, ops = tr.randaugment(frames, 4, "rand-m9-n3-mstd0-inc1")
  T.eq(#ops, 3, "three ops")
  local t = out:totable()
  for i = 1, 108 do T.eq(t[i], t[108 + i], "identical frames stay identical") end
  T.raises(function() return tr.randaugment(frames, 1, "rand-q3") end, "unknown key 'q'")
end)

T.test("errors_name_the_argument", function()
  T.raises(function() return tr.finetune_train(df.host("f32", {2, 4, 4, 3}), 1) end,
    "transform.finetune_train: frames must be a u8 Host [T, H, W, 3], got f32 [2, 4, 4, 3]")
  T.raises(function() return tr.finetune_train(df.host("u8", {2, 4, 4, 1}), 1) end, "got u8 [2, 4, 4, 1]")
  T.raises(function() return tr.finetune_train(clip(1, 4, 4, pattern), 1, {flip = "yes"}) end,
    "opts.flip must be a finite number")
  T.raises(function() return tr.finetune_train(clip(1, 4, 4, pattern), 1, {scale = {1}}) end,
    "opts.scale must have 2..2 numbers, got 1")
  T.raises(function() return tr.pretrain(clip(1, 4, 4, pattern), 1, 8, {scales = {2}}) end, "scale 2 outside (0, 1]")
end)

os.exit(T.done())
