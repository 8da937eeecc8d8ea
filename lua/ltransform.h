/*
** ltransform.h -- the `dferc.transform` Lua module: the compute side of the
** data pipeline (augmentations, masks, mixup, metrics) over Host tensors.
**
** A clip's frames are a Host u8 [T, H, W, 3] (RGB, HWC per frame).  Every
** random function takes an integer seed and draws from the counter-based
** generator of runtime/rng.h, so a seed gives the same result on any
** machine or thread; derive per-clip seeds with T.stream.
**
**   T.finetune_train(frames, seed [, opts]) -> Host f32 [3, T, S, S], info
**       RandAugment -> ImageNet normalisation -> random resized crop
**       (bilinear, torch's align_corners=False) to S -> horizontal flip ->
**       random erasing, as MAE-DFER.md orders them.  opts: size (160),
**       randaug (timm config string, "rand-m7-n4-mstd0.5-inc1"; false
**       skips it), scale ({0.08, 1}), ratio ({0.75, 1.3333}), flip (0.5),
**       erase (0.25), erase_tries (100), presize (false; true first resizes
**       every frame to S x S with PIL bilinear, as the original's frame
**       dataset does).  info = {ops = {{name=, applied=, magnitude=,
**       arg=}, ...}, crop = {x=, y=, w=, h=}, flipped = bool,
**       erase = {x=, y=, w=, h=} | false}.
**   T.finetune_test_views(frames, segments, crops [, size [, opts]])
**       -> {Host f32 [3, L, S, S], ...}: frames (every 4th frame of the
**       video) padded to L = opts.clip_len (16) with the last, short side
**       resized to S (160) with opts.resize ("bilinear": PIL), then
**       segments x crops views, segment-major (view seg*crops + crop + 1).
**   T.pretrain(frames, seed [, size [, opts]]) -> Host f32 [3, T, S, S],
**       info {crop = {x=, y=, w=, h=}}: GroupMultiScaleCrop (opts.scales
**       {1, .875, .75, .66}, opts.max_distort 1), PIL bilinear resize to
**       S x S, normalisation, no flip.
**   T.mask(kind, t, h, w, ratio, win_h, win_w, seed) -> Host bool [t*h*w]
**       kind "tube" (win_h, win_w ignored, may be nil) or "part_window".
**   T.mixup(labels, K, seed [, opts]) -> lam, box | false, targets
**       labels: list of class ids (0-based) or a Host of integers [B];
**       targets: Host f32 [B, K].  opts.videos (Host f32 [B, C, T, H, W])
**       is mixed in place; opts.size ({H, W}, default {160, 160}) sets the
**       frame size when no videos are given; mixup_alpha (0.8),
**       cutmix_alpha (1.0), prob (1.0), switch_prob (0.5), smoothing
**       (0.1), correct_lam (true).  box = {y0=, y1=, x0=, x1=} (0-based,
**       ends exclusive) for cutmix, false for mixup.
**   T.metrics(preds, labels, K) -> {uar=, war=, f1=, recall_macro=, n=,
**       present=, recall = {K}, support = {K}, f1_class = {K},
**       confusion = {{K} x K}} (rows: true class; see runtime/metrics.h).
**   T.stream(seed, id) -> integer: the seed of stream id of seed.
**   T.resize(image, h, w [, kind]) -> Host u8 [h, w, C]: one u8 image
**       [H, W, C] (or a clip [T, H, W, C]) resized with kind "bilinear" /
**       "bicubic" (PIL) or "linear" (torch, no antialias).
**   T.randaugment(frames, seed [, config]) -> Host u8 (a new clip), info.
**
** Misuse (a wrong type, shape or value) raises an error that names the
** function and the argument.
*/
#ifndef DF_LTRANSFORM_H
#define DF_LTRANSFORM_H

#include <lua.h>

int luaopen_dferc_transform(lua_State *L);

#endif
