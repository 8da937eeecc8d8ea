/*
** ltransform.c -- the `dferc.transform` Lua module (see ltransform.h).
**
** Each function checks its arguments first (raising on misuse), creates
** its output Hosts on the Lua stack (so the collector owns them), then
** runs a C worker that holds all its scratch memory itself and frees it
** before returning; only then is a worker's df_err turned into a Lua error.
*/
#include "lua/ltransform.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lua/ldferc.h"
#include "runtime/augment.h"
#include "runtime/image.h"
#include "runtime/masking.h"
#include "runtime/metrics.h"
#include "runtime/mixup.h"
#include "runtime/rng.h"
#include "runtime/tensor.h"

#define MAX_VIEWS 1024

/* ---------------------------------------------------------------- helpers */

static int raise_err(lua_State *L, const char *fn, const df_err *e) {
  return luaL_error(L, "transform.%s: %s", fn, e->msg);
}

/* A new zeroed Host pushed on the stack (the collector owns it). */
static df_tensor *push_new(lua_State *L, const char *fn, df_dtype dt, int nd, const int64_t *shape) {
  df_err e = {0};
  df_tensor *t = df_tensor_new(dt, nd, shape, &e);
  if (!t) raise_err(L, fn, &e);
  df_lua_push_host(L, t);
  return t;
}

static void shape_str(const df_tensor *t, char *buf, size_t n) {
  df_shape_str(buf, n, t->ndim, t->shape);
}

/* The Host at idx as a clip of u8 RGB frames [T, H, W, 3]. */
static df_tensor *check_frames(lua_State *L, int idx, const char *fn) {
  df_tensor *t = df_lua_check_host(L, idx);
  char sb[160];
  shape_str(t, sb, sizeof sb);
  if (t->dtype != DF_U8 || t->ndim != 4 || t->shape[3] != 3)
    luaL_error(L, "transform.%s: frames must be a u8 Host [T, H, W, 3], got %s %s", fn,
               df_dtype_lname(t->dtype), sb);
  if (t->shape[0] < 1 || t->shape[0] > 4096 || t->shape[1] < 1 || t->shape[2] < 1 ||
      t->shape[1] > DF_IMG_MAX_SIDE || t->shape[2] > DF_IMG_MAX_SIDE)
    luaL_error(L, "transform.%s: frames %s: sizes out of range (1..4096 frames of 1..%d pixels)",
               fn, sb, DF_IMG_MAX_SIDE);
  return t;
}

static uint64_t check_seed(lua_State *L, int idx) { return (uint64_t)luaL_checkinteger(L, idx); }

static int check_int_range(lua_State *L, int idx, lua_Integer lo, lua_Integer hi, const char *fn,
                           const char *what) {
  lua_Integer v = luaL_checkinteger(L, idx);
  if (v < lo || v > hi)
    luaL_error(L, "transform.%s: %s %I outside %I..%I", fn, what, v, lo, hi);
  return (int)v;
}

/* opts[key] as a number (def when absent); raises when not a number. */
static double opt_number(lua_State *L, int opts, const char *key, double def, const char *fn) {
  if (lua_isnoneornil(L, opts)) return def;
  lua_getfield(L, opts, key);
  double v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tonumberx(L, -1, &ok);
    if (!ok || !isfinite(v)) luaL_error(L, "transform.%s: opts.%s must be a finite number", fn, key);
  }
  lua_pop(L, 1);
  return v;
}

static int opt_int(lua_State *L, int opts, const char *key, int def, int lo, int hi, const char *fn) {
  if (lua_isnoneornil(L, opts)) return def;
  lua_getfield(L, opts, key);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "transform.%s: opts.%s must be an integer", fn, key);
    if (v < lo || v > hi) luaL_error(L, "transform.%s: opts.%s = %I outside %d..%d", fn, key, v, lo, hi);
  }
  lua_pop(L, 1);
  return (int)v;
}

static int opt_bool(lua_State *L, int opts, const char *key, int def) {
  if (lua_isnoneornil(L, opts)) return def;
  lua_getfield(L, opts, key);
  int v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* opts[key] as a list of numbers of length n (left as def when absent). */
static void opt_numbers(lua_State *L, int opts, const char *key, double *out, int n, int minn,
                        int *count, const char *fn) {
  if (lua_isnoneornil(L, opts)) return;
  lua_getfield(L, opts, key);
  if (!lua_isnil(L, -1)) {
    if (!lua_istable(L, -1)) luaL_error(L, "transform.%s: opts.%s must be a list of numbers", fn, key);
    int len = (int)luaL_len(L, -1);
    if (len < minn || len > n)
      luaL_error(L, "transform.%s: opts.%s must have %d..%d numbers, got %d", fn, key, minn, n, len);
    for (int i = 0; i < len; i++) {
      lua_geti(L, -1, i + 1);
      int ok;
      out[i] = lua_tonumberx(L, -1, &ok);
      if (!ok || !isfinite(out[i]))
        luaL_error(L, "transform.%s: opts.%s[%d] is not a finite number", fn, key, i + 1);
      lua_pop(L, 1);
    }
    if (count) *count = len;
  }
  lua_pop(L, 1);
}

static df_resize_kind opt_resize(lua_State *L, int opts, const char *key, df_resize_kind def,
                                 const char *fn) {
  if (lua_isnoneornil(L, opts)) return def;
  lua_getfield(L, opts, key);
  df_resize_kind k = def;
  if (!lua_isnil(L, -1)) {
    const char *s = lua_tostring(L, -1);
    if (!s || df_resize_kind_parse(s, &k))
      luaL_error(L, "transform.%s: opts.%s must be \"bilinear\", \"bicubic\" or \"linear\"", fn, key);
  }
  lua_pop(L, 1);
  return k;
}

static void check_opts(lua_State *L, int idx, const char *fn) {
  if (!lua_isnoneornil(L, idx) && !lua_istable(L, idx))
    luaL_error(L, "transform.%s: opts must be a table", fn);
}

static void set_box(lua_State *L, const df_box *b) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, b->x), lua_setfield(L, -2, "x");
  lua_pushinteger(L, b->y), lua_setfield(L, -2, "y");
  lua_pushinteger(L, b->w), lua_setfield(L, -2, "w");
  lua_pushinteger(L, b->h), lua_setfield(L, -2, "h");
}

static void push_ra_info(lua_State *L, const df_aug_ra_params *p) {
  lua_createtable(L, p->n, 0);
  for (int i = 0; i < p->n; i++) {
    lua_createtable(L, 0, 4);
    lua_pushstring(L, df_aug_op_name(p->step[i].op)), lua_setfield(L, -2, "name");
    lua_pushboolean(L, p->step[i].applied), lua_setfield(L, -2, "applied");
    lua_pushnumber(L, p->step[i].magnitude), lua_setfield(L, -2, "magnitude");
    lua_pushnumber(L, p->step[i].arg), lua_setfield(L, -2, "arg");
    lua_rawseti(L, -2, i + 1);
  }
}

/* Read the RandAugment option (idx: a config string, false, or nil). */
static int read_ra(lua_State *L, int opts, const char *key, df_aug_ra_config *cfg, const char *fn) {
  df_aug_ra_default(cfg);
  if (lua_isnoneornil(L, opts)) return 1;
  lua_getfield(L, opts, key);
  int use = 1;
  if (lua_isboolean(L, -1)) {
    use = lua_toboolean(L, -1);
  } else if (!lua_isnil(L, -1)) {
    const char *s = lua_tostring(L, -1);
    df_err e = {0};
    if (!s) luaL_error(L, "transform.%s: opts.%s must be a RandAugment string or false", fn, key);
    if (df_aug_ra_parse(s, cfg, &e)) raise_err(L, fn, &e);
  }
  lua_pop(L, 1);
  return use;
}

/* ----------------------------------------------------- fine-tuning: train */

typedef struct ft_opts {
  int size, use_ra, erase_tries, presize;
  df_aug_ra_config ra;
  double scale[2], ratio[2], flip, erase;
} ft_opts;

typedef struct ft_info {
  df_aug_ra_params ra;
  df_box crop, erase;
  int flipped, erased;
} ft_info;

/*
** One training clip: frames [T, H, W, 3] u8 -> out [3, T, S, S] f32.
** Draws, in order: RandAugment, crop, flip, erase box, erase noise.
** RandAugment runs on the full frame, then only the crop rectangle is
** normalised and resized (the crop reads nothing else).
*/
static int finetune_train(const df_tensor *frames, uint64_t seed, const ft_opts *o, float *out,
                          ft_info *info, df_err *err) {
  const int T = (int)frames->shape[0], H0 = (int)frames->shape[1], W0 = (int)frames->shape[2];
  const int S = o->size;
  const int H = o->presize ? S : H0, W = o->presize ? S : W0;
  df_rng rng = df_rng_make(seed);
  memset(info, 0, sizeof *info);
  if (o->use_ra && df_aug_ra_draw(&rng, &o->ra, &info->ra, err)) return DF_EINVAL;
  df_aug_rrc_draw(&rng, H, W, o->scale, o->ratio, &info->crop);
  info->flipped = df_rng_uniform(&rng) < o->flip;
  if (o->erase > 0)
    info->erased = df_aug_erase_draw(&rng, S, S, o->erase, 0.02, 1.0 / 3.0, 0.3, 1.0 / 0.3,
                                     o->erase_tries, &info->erase);
  int ra_any = 0;
  for (int i = 0; i < info->ra.n; i++) ra_any |= info->ra.step[i].applied;
  const df_box c = info->crop;
  df_img work = {0}, tmp = {0}, crop = {0};
  df_imgf cropf = {0}, res = {0};
  df_resize *pre = NULL, *plan = NULL;
  int rc = 0;
  if ((o->presize || ra_any) && (df_img_alloc(&work, H, W, 3, err) || df_img_alloc(&tmp, H, W, 3, err)))
    goto done;
  if (df_img_alloc(&crop, c.h, c.w, 3, err) || df_imgf_alloc(&cropf, c.h, c.w, 3, err) ||
      df_imgf_alloc(&res, S, S, 3, err))
    goto done;
  if (o->presize) {
    df_box all = {0, 0, W0, H0};
    if (!(pre = df_resize_new(all, S, S, DF_RESIZE_PIL_BILINEAR, err))) goto done;
  }
  df_box rect = {0, 0, c.w, c.h};
  if (!(plan = df_resize_new(rect, S, S, DF_RESIZE_LINEAR, err))) goto done;
  const size_t fsz = (size_t)H0 * W0 * 3;
  const int64_t plane = (int64_t)T * S * S;
  for (int t = 0; t < T; t++) {
    df_img src = df_img_view((uint8_t *)frames->data + t * fsz, H0, W0, 3), *cur = &src;
    if (o->presize) {
      if ((rc = df_resize_u8(pre, &src, &work, err))) goto done;
      cur = &work;
    } else if (ra_any) {
      memcpy(work.px, src.px, fsz);
      cur = &work;
    }
    if (ra_any && (rc = df_aug_ra_apply(&info->ra, cur, &tmp, err))) goto done;
    if ((rc = df_img_crop(cur, c.x, c.y, &crop, err))) goto done;
    if ((rc = df_img_normalize(&crop, &cropf, DF_IMAGENET_MEAN, DF_IMAGENET_STD, err))) goto done;
    if ((rc = df_resize_f32(plan, &cropf, &res, err))) goto done;
    if (info->flipped) df_imgf_flip_h(&res);
    df_imgf_to_planar(&res, out + (int64_t)t * S * S, plane);
  }
  if (info->erased) df_aug_erase_fill(&rng, out, 3, T, S, S, &info->erase);
done:
  if (!rc && err && err->code) rc = err->code;
  df_img_release(&work), df_img_release(&tmp), df_img_release(&crop);
  df_imgf_release(&cropf), df_imgf_release(&res);
  df_resize_free(pre), df_resize_free(plan);
  return rc;
}

static int l_finetune_train(lua_State *L) {
  const char *fn = "finetune_train";
  df_tensor *frames = check_frames(L, 1, fn);
  uint64_t seed = check_seed(L, 2);
  check_opts(L, 3, fn);
  ft_opts o;
  o.size = opt_int(L, 3, "size", 160, 1, 4096, fn);
  o.use_ra = read_ra(L, 3, "randaug", &o.ra, fn);
  o.scale[0] = 0.08, o.scale[1] = 1.0;
  o.ratio[0] = 0.75, o.ratio[1] = 1.3333;
  opt_numbers(L, 3, "scale", o.scale, 2, 2, NULL, fn);
  opt_numbers(L, 3, "ratio", o.ratio, 2, 2, NULL, fn);
  if (!(o.scale[0] > 0 && o.scale[0] <= o.scale[1]) || !(o.ratio[0] > 0 && o.ratio[0] <= o.ratio[1]))
    return luaL_error(L, "transform.%s: opts.scale and opts.ratio must be increasing positive pairs", fn);
  o.flip = opt_number(L, 3, "flip", 0.5, fn);
  o.erase = opt_number(L, 3, "erase", 0.25, fn);
  o.erase_tries = opt_int(L, 3, "erase_tries", 100, 1, 100000, fn);
  o.presize = opt_bool(L, 3, "presize", 0);
  int64_t shape[4] = {3, frames->shape[0], o.size, o.size};
  df_tensor *out = push_new(L, fn, DF_F32, 4, shape);
  ft_info info;
  df_err e = {0};
  if (finetune_train(frames, seed, &o, out->data, &info, &e)) return raise_err(L, fn, &e);
  lua_createtable(L, 0, 4);
  push_ra_info(L, &info.ra), lua_setfield(L, -2, "ops");
  set_box(L, &info.crop), lua_setfield(L, -2, "crop");
  lua_pushboolean(L, info.flipped), lua_setfield(L, -2, "flipped");
  if (info.erased) set_box(L, &info.erase);
  else lua_pushboolean(L, 0);
  lua_setfield(L, -2, "erase");
  return 2;
}

/* ------------------------------------------------------ fine-tuning: test */

/*
** Every view of one test video into outs[v] ([3, L, S, S] each):
** short-side resize of each frame once, then per view the window of L
** frames (indices past the end take the last frame) cropped S x S.
*/
static int test_views(const df_tensor *frames, int segments, int crops, int S, int L,
                      df_resize_kind kind, float **outs, df_err *err) {
  const int n = (int)frames->shape[0], H = (int)frames->shape[1], W = (int)frames->shape[2];
  int oh, ow;
  df_img_short_side_size(H, W, S, &oh, &ow);
  if (oh < 1 || ow < 1 || oh > DF_IMG_MAX_SIDE || ow > DF_IMG_MAX_SIDE)
    return df_err_set(err, DF_EINVAL, "test views: %dx%d frames resize to %dx%d", H, W, oh, ow);
  const size_t isz = (size_t)H * W * 3, osz = (size_t)oh * ow * 3;
  uint8_t *resized = NULL;
  df_resize *plan = NULL;
  df_img crop = {0};
  df_imgf cropf = {0};
  int rc = 0;
  int same = oh == H && ow == W;
  if (!same) {
    resized = malloc(osz * n);
    if (!resized) {
      rc = df_err_set(err, DF_ENOMEM, "test views: out of memory for %d frames of %dx%d", n, oh, ow);
      goto done;
    }
    df_box all = {0, 0, W, H};
    if (!(plan = df_resize_new(all, oh, ow, kind, err))) goto done;
    for (int t = 0; t < n; t++) {
      df_img src = df_img_view((uint8_t *)frames->data + t * isz, H, W, 3);
      df_img dst = df_img_view(resized + t * osz, oh, ow, 3);
      if ((rc = df_resize_u8(plan, &src, &dst, err))) goto done;
    }
  }
  const uint8_t *base = same ? frames->data : resized;
  int npad = n > L ? n : L;
  for (int v = 0; v < segments * crops; v++) {
    int t0;
    df_box b;
    if ((rc = df_aug_test_view(npad, oh, ow, L, S, segments, crops, v / crops, v % crops, &t0, &b, err)))
      goto done;
    if (!crop.px || crop.h != b.h || crop.w != b.w) {
      df_img_release(&crop), df_imgf_release(&cropf);
      if (df_img_alloc(&crop, b.h, b.w, 3, err) || df_imgf_alloc(&cropf, b.h, b.w, 3, err)) goto done;
    }
    for (int i = 0; i < L; i++) {
      int f = t0 + i < n ? t0 + i : n - 1;
      df_img src = df_img_view((uint8_t *)base + f * osz, oh, ow, 3);
      if ((rc = df_img_crop(&src, b.x, b.y, &crop, err))) goto done;
      if ((rc = df_img_normalize(&crop, &cropf, DF_IMAGENET_MEAN, DF_IMAGENET_STD, err))) goto done;
      df_imgf_to_planar(&cropf, outs[v] + (int64_t)i * S * S, (int64_t)L * S * S);
    }
  }
done:
  if (!rc && err && err->code) rc = err->code;
  free(resized);
  df_resize_free(plan);
  df_img_release(&crop), df_imgf_release(&cropf);
  return rc;
}

static int l_finetune_test_views(lua_State *L) {
  const char *fn = "finetune_test_views";
  df_tensor *frames = check_frames(L, 1, fn);
  int segments = check_int_range(L, 2, 1, 64, fn, "segments");
  int crops = check_int_range(L, 3, 1, 64, fn, "crops");
  int S = lua_isnoneornil(L, 4) ? 160 : check_int_range(L, 4, 1, 4096, fn, "size");
  check_opts(L, 5, fn);
  int clip_len = opt_int(L, 5, "clip_len", 16, 1, 4096, fn);
  df_resize_kind kind = opt_resize(L, 5, "resize", DF_RESIZE_PIL_BILINEAR, fn);
  int nv = segments * crops;
  if (nv > MAX_VIEWS)
    return luaL_error(L, "transform.%s: %d x %d views (at most %d)", fn, segments, crops, MAX_VIEWS);
  float *outs[MAX_VIEWS];
  lua_createtable(L, nv, 0);
  int64_t shape[4] = {3, clip_len, S, S};
  for (int v = 0; v < nv; v++) {
    df_tensor *t = push_new(L, fn, DF_F32, 4, shape);
    outs[v] = t->data;
    lua_rawseti(L, -2, v + 1);
  }
  df_err e = {0};
  if (test_views(frames, segments, crops, S, clip_len, kind, outs, &e)) return raise_err(L, fn, &e);
  return 1;
}

/* ------------------------------------------------------------- pre-training */

static int pretrain(const df_tensor *frames, uint64_t seed, int S, const double *scales, int ns,
                    int max_distort, df_resize_kind kind, float *out, df_box *box, df_err *err) {
  const int T = (int)frames->shape[0], H = (int)frames->shape[1], W = (int)frames->shape[2];
  df_rng rng = df_rng_make(seed);
  if (df_aug_msc_draw(&rng, W, H, S, S, scales, ns, max_distort, box, err)) return DF_EINVAL;
  const df_box b = *box;
  int inside = b.x >= 0 && b.y >= 0 && b.x + b.w <= W && b.y + b.h <= H;
  df_img crop = {0}, res = {0};
  df_imgf resf = {0};
  df_resize *plan = NULL;
  int rc = 0;
  if (!inside && df_img_alloc(&crop, b.h, b.w, 3, err)) goto done;
  if (df_img_alloc(&res, S, S, 3, err) || df_imgf_alloc(&resf, S, S, 3, err)) goto done;
  df_box rect = inside ? b : (df_box){0, 0, b.w, b.h};
  if (!(plan = df_resize_new(rect, S, S, kind, err))) goto done;
  const size_t fsz = (size_t)H * W * 3;
  for (int t = 0; t < T; t++) {
    df_img src = df_img_view((uint8_t *)frames->data + t * fsz, H, W, 3), *cur = &src;
    if (!inside) {
      if ((rc = df_img_crop(&src, b.x, b.y, &crop, err))) goto done;
      cur = &crop;
    }
    if ((rc = df_resize_u8(plan, cur, &res, err))) goto done;
    if ((rc = df_img_normalize(&res, &resf, DF_IMAGENET_MEAN, DF_IMAGENET_STD, err))) goto done;
    df_imgf_to_planar(&resf, out + (int64_t)t * S * S, (int64_t)T * S * S);
  }
done:
  if (!rc && err && err->code) rc = err->code;
  df_img_release(&crop), df_img_release(&res), df_imgf_release(&resf);
  df_resize_free(plan);
  return rc;
}

static int l_pretrain(lua_State *L) {
  const char *fn = "pretrain";
  df_tensor *frames = check_frames(L, 1, fn);
  uint64_t seed = check_seed(L, 2);
  int S = lua_isnoneornil(L, 3) ? 160 : check_int_range(L, 3, 1, 4096, fn, "size");
  check_opts(L, 4, fn);
  double scales[16] = {1, .875, .75, .66};
  int ns = 4;
  opt_numbers(L, 4, "scales", scales, 16, 1, &ns, fn);
  int max_distort = opt_int(L, 4, "max_distort", 1, 0, 16, fn);
  df_resize_kind kind = opt_resize(L, 4, "resize", DF_RESIZE_PIL_BILINEAR, fn);
  int64_t shape[4] = {3, frames->shape[0], S, S};
  df_tensor *out = push_new(L, fn, DF_F32, 4, shape);
  df_box box;
  df_err e = {0};
  if (pretrain(frames, seed, S, scales, ns, max_distort, kind, out->data, &box, &e))
    return raise_err(L, fn, &e);
  lua_createtable(L, 0, 1);
  set_box(L, &box), lua_setfield(L, -2, "crop");
  return 2;
}

/* ------------------------------------------------------------------- masks */

static int l_mask(lua_State *L) {
  const char *fn = "mask";
  const char *kind = luaL_checkstring(L, 1);
  int t = check_int_range(L, 2, 1, DF_MASK_MAX_TOKENS, fn, "t");
  int h = check_int_range(L, 3, 1, DF_MASK_MAX_TOKENS, fn, "h");
  int w = check_int_range(L, 4, 1, DF_MASK_MAX_TOKENS, fn, "w");
  double ratio = luaL_checknumber(L, 5);
  int tube = !strcmp(kind, "tube");
  if (!tube && strcmp(kind, "part_window") && strcmp(kind, "window"))
    return luaL_error(L, "transform.mask: unknown kind '%s' (tube, part_window)", kind);
  int win_h = tube && lua_isnoneornil(L, 6) ? 1 : check_int_range(L, 6, 1, DF_MASK_MAX_TOKENS, fn, "win_h");
  int win_w = tube && lua_isnoneornil(L, 7) ? 1 : check_int_range(L, 7, 1, DF_MASK_MAX_TOKENS, fn, "win_w");
  uint64_t seed = check_seed(L, 8);
  if ((int64_t)t * h * w > DF_MASK_MAX_TOKENS)
    return luaL_error(L, "transform.mask: %d x %d x %d tokens is too many", t, h, w);
  int64_t n = (int64_t)t * h * w;
  df_tensor *out = push_new(L, fn, DF_BOOL, 1, &n);
  df_rng rng = df_rng_make(seed);
  df_err e = {0};
  int rc = tube ? df_mask_tube(&rng, t, h, w, ratio, out->data, &e)
                : df_mask_part_window(&rng, t, h, w, win_h, win_w, ratio, out->data, &e);
  if (rc) return raise_err(L, fn, &e);
  return 1;
}

/* ----------------------------------------------------------- label lists */

/* The length of a list of integers (a Lua list, or a 1-D integer Host)
** at idx; raises on anything else, before anything is allocated. */
static int64_t check_int_list(lua_State *L, int idx, const char *fn, const char *what) {
  if (lua_istable(L, idx)) {
    lua_Integer len = luaL_len(L, idx);
    if (len < 0 || len > (1 << 26)) luaL_error(L, "transform.%s: %s: bad length", fn, what);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      int ok = lua_isinteger(L, -1);
      if (!ok && lua_type(L, -1) == LUA_TNUMBER) {
        double v = lua_tonumber(L, -1);
        ok = v == floor(v) && fabs(v) < 9e15;
      }
      if (!ok) luaL_error(L, "transform.%s: %s[%I] is not an integer", fn, what, i);
      lua_pop(L, 1);
    }
    return len;
  }
  if (!luaL_testudata(L, idx, "dferc.Host"))
    luaL_error(L, "transform.%s: %s must be a list or a 1-D integer Host", fn, what);
  df_tensor *t = df_lua_check_host(L, idx);
  if (t->ndim != 1 || df_dtype_is_float(t->dtype))
    luaL_error(L, "transform.%s: %s must be a list or a 1-D integer Host, got %s with %d dims", fn,
               what, df_dtype_lname(t->dtype), t->ndim);
  return df_tensor_numel(t);
}

/* Read the list checked by check_int_list into out (never raises). */
static void read_int_list(lua_State *L, int idx, int64_t *out) {
  if (lua_istable(L, idx)) {
    lua_Integer len = luaL_len(L, idx);
    for (lua_Integer i = 1; i <= len; i++) {
      lua_geti(L, idx, i);
      out[i - 1] = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (int64_t)lua_tonumber(L, -1);
      lua_pop(L, 1);
    }
    return;
  }
  df_tensor *t = df_lua_check_host(L, idx);
  int64_t n = df_tensor_numel(t);
  for (int64_t i = 0; i < n; i++)
    out[i] = t->dtype == DF_I64 ? ((const int64_t *)t->data)[i]
                                : (int64_t)df_dtype_get(t->dtype, t->data, (size_t)i);
}

/* ------------------------------------------------------------------- mixup */

static int l_mixup(lua_State *L) {
  const char *fn = "mixup";
  lua_Integer K = luaL_checkinteger(L, 2);
  if (K < 1 || K > 1000000) return luaL_error(L, "transform.mixup: K = %I outside 1..1000000", K);
  uint64_t seed = check_seed(L, 3);
  check_opts(L, 4, fn);
  df_mix_config cfg;
  df_mix_default(&cfg);
  cfg.mixup_alpha = opt_number(L, 4, "mixup_alpha", cfg.mixup_alpha, fn);
  cfg.cutmix_alpha = opt_number(L, 4, "cutmix_alpha", cfg.cutmix_alpha, fn);
  cfg.prob = opt_number(L, 4, "prob", cfg.prob, fn);
  cfg.switch_prob = opt_number(L, 4, "switch_prob", cfg.switch_prob, fn);
  cfg.smoothing = opt_number(L, 4, "smoothing", cfg.smoothing, fn);
  cfg.correct_lam = opt_bool(L, 4, "correct_lam", 1);
  df_tensor *videos = NULL;
  int64_t H = 160, W = 160;
  if (!lua_isnoneornil(L, 4)) {
    lua_getfield(L, 4, "videos");
    if (!lua_isnil(L, -1)) {
      videos = df_lua_check_host(L, -1);
      char sb[160];
      shape_str(videos, sb, sizeof sb);
      if (videos->dtype != DF_F32 || videos->ndim != 5)
        return luaL_error(L, "transform.mixup: opts.videos must be an f32 Host [B, C, T, H, W], got %s %s",
                          df_dtype_lname(videos->dtype), sb);
      H = videos->shape[3], W = videos->shape[4];
    }
    lua_pop(L, 1);
    double size[2] = {(double)H, (double)W};
    int cnt = 0;
    opt_numbers(L, 4, "size", size, 2, 2, &cnt, fn);
    if (cnt && !videos) H = (int64_t)size[0], W = (int64_t)size[1];
  }
  if (H < 1 || W < 1 || H > DF_IMG_MAX_SIDE || W > DF_IMG_MAX_SIDE)
    return luaL_error(L, "transform.mixup: bad frame size %I x %I", (lua_Integer)H, (lua_Integer)W);
  int64_t B = check_int_list(L, 1, fn, "labels");
  if (B < 1) return luaL_error(L, "transform.mixup: no labels");
  if (videos && videos->shape[0] != B)
    return luaL_error(L, "transform.mixup: %I labels for a batch of %I videos", (lua_Integer)B,
                      (lua_Integer)videos->shape[0]);
  df_err e = {0};
  int64_t *labels = malloc(sizeof(int64_t) * (size_t)B);
  if (!labels) return luaL_error(L, "transform.mixup: out of memory");
  read_int_list(L, 1, labels);
  int64_t tshape[2] = {B, K};
  df_tensor *targets = df_tensor_new(DF_F32, 2, tshape, &e);
  if (!targets) {
    free(labels);
    return raise_err(L, fn, &e);
  }
  df_lua_push_host(L, targets); /* stack: ... targets */
  df_rng rng = df_rng_make(seed);
  df_mix_params p;
  int rc = df_mix_draw(&rng, &cfg, (int)H, (int)W, &p, &e);
  if (!rc) rc = df_mix_targets(p.lam, labels, B, K, cfg.smoothing, targets->data, &e);
  if (!rc && videos)
    rc = df_mix_apply(&p, videos->data, B, videos->shape[1], videos->shape[2], H, W, &e);
  free(labels);
  if (rc) return raise_err(L, fn, &e);
  lua_pushnumber(L, p.lam);
  if (p.cutmix) {
    lua_createtable(L, 0, 4);
    lua_pushinteger(L, p.y0), lua_setfield(L, -2, "y0");
    lua_pushinteger(L, p.y1), lua_setfield(L, -2, "y1");
    lua_pushinteger(L, p.x0), lua_setfield(L, -2, "x0");
    lua_pushinteger(L, p.x1), lua_setfield(L, -2, "x1");
  } else {
    lua_pushboolean(L, 0);
  }
  lua_pushvalue(L, -3); /* targets */
  return 3;
}

/* ----------------------------------------------------------------- metrics */

static void push_int_array(lua_State *L, const int64_t *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) lua_pushinteger(L, v[i]), lua_rawseti(L, -2, i + 1);
}

static void push_num_array(lua_State *L, const double *v, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) lua_pushnumber(L, v[i]), lua_rawseti(L, -2, i + 1);
}

static int l_metrics(lua_State *L) {
  const char *fn = "metrics";
  lua_Integer K = luaL_checkinteger(L, 3);
  if (K < 1 || K > DF_METRIC_MAX_CLASSES)
    return luaL_error(L, "transform.metrics: K = %I outside 1..%d", K, DF_METRIC_MAX_CLASSES);
  int64_t np = check_int_list(L, 1, fn, "preds"), nl = check_int_list(L, 2, fn, "labels");
  if (np != nl)
    return luaL_error(L, "transform.metrics: %I predictions for %I labels", (lua_Integer)np, (lua_Integer)nl);
  int64_t *preds = malloc(sizeof(int64_t) * (size_t)(np + 1)), *labels = malloc(sizeof(int64_t) * (size_t)(nl + 1));
  if (!preds || !labels) {
    free(preds), free(labels);
    return luaL_error(L, "transform.metrics: out of memory");
  }
  read_int_list(L, 1, preds);
  read_int_list(L, 2, labels);
  df_err e = {0};
  df_metrics m;
  int rc = df_metric_compute(labels, preds, np, (int)K, &m, &e);
  free(preds), free(labels);
  if (rc) return raise_err(L, fn, &e);
  lua_createtable(L, 0, 12);
  lua_pushnumber(L, m.uar), lua_setfield(L, -2, "uar");
  lua_pushnumber(L, m.war), lua_setfield(L, -2, "war");
  lua_pushnumber(L, m.f1), lua_setfield(L, -2, "f1");
  lua_pushnumber(L, m.recall_macro), lua_setfield(L, -2, "recall_macro");
  lua_pushinteger(L, m.n), lua_setfield(L, -2, "n");
  lua_pushinteger(L, m.present), lua_setfield(L, -2, "present");
  push_num_array(L, m.recall, m.K), lua_setfield(L, -2, "recall");
  push_num_array(L, m.f1_class, m.K), lua_setfield(L, -2, "f1_class");
  push_int_array(L, m.support, m.K), lua_setfield(L, -2, "support");
  lua_createtable(L, m.K, 0);
  for (int k = 0; k < m.K; k++) {
    push_int_array(L, m.confusion + (int64_t)k * m.K, m.K);
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "confusion");
  df_metric_free(&m);
  return 1;
}

/* ------------------------------------------------------------------- misc */

static int l_stream(lua_State *L) {
  uint64_t seed = check_seed(L, 1), id = (uint64_t)luaL_checkinteger(L, 2);
  lua_pushinteger(L, (lua_Integer)df_rng_derive(seed, id));
  return 1;
}

/* T.resize(image [H, W, C] or clip [T, H, W, C] u8, h, w [, kind]) */
static int l_resize(lua_State *L) {
  const char *fn = "resize";
  df_tensor *t = df_lua_check_host(L, 1);
  int h = check_int_range(L, 2, 1, DF_IMG_MAX_SIDE, fn, "height");
  int w = check_int_range(L, 3, 1, DF_IMG_MAX_SIDE, fn, "width");
  df_resize_kind kind = DF_RESIZE_PIL_BILINEAR;
  if (!lua_isnoneornil(L, 4) && df_resize_kind_parse(luaL_checkstring(L, 4), &kind))
    return luaL_error(L, "transform.resize: kind must be \"bilinear\", \"bicubic\" or \"linear\"");
  char sb[160];
  shape_str(t, sb, sizeof sb);
  if (t->dtype != DF_U8 || (t->ndim != 3 && t->ndim != 4))
    return luaL_error(L, "transform.resize: image must be a u8 Host [H, W, C] or [T, H, W, C], got %s %s",
                      df_dtype_lname(t->dtype), sb);
  int off = t->ndim - 3;
  int64_t T = off ? t->shape[0] : 1, H = t->shape[off], W = t->shape[off + 1], C = t->shape[off + 2];
  if (H < 1 || W < 1 || H > DF_IMG_MAX_SIDE || W > DF_IMG_MAX_SIDE || C < 1 || C > DF_IMG_MAX_CHANNELS || T < 1)
    return luaL_error(L, "transform.resize: image %s: sizes out of range", sb);
  int64_t shape[4] = {T, h, w, C};
  df_tensor *out = push_new(L, fn, DF_U8, t->ndim, off ? shape : shape + 1);
  df_err e = {0};
  df_box all = {0, 0, (int)W, (int)H};
  df_resize *p = df_resize_new(all, h, w, kind, &e);
  if (!p) return raise_err(L, fn, &e);
  int rc = 0;
  for (int64_t i = 0; i < T && !rc; i++) {
    df_img src = df_img_view((uint8_t *)t->data + i * H * W * C, (int)H, (int)W, (int)C);
    df_img dst = df_img_view((uint8_t *)out->data + i * (int64_t)h * w * C, h, w, (int)C);
    rc = df_resize_u8(p, &src, &dst, &e);
  }
  df_resize_free(p);
  if (rc) return raise_err(L, fn, &e);
  return 1;
}

/* T.randaugment(frames, seed [, config]) -> new clip, ops info */
static int l_randaugment(lua_State *L) {
  const char *fn = "randaugment";
  df_tensor *frames = check_frames(L, 1, fn);
  uint64_t seed = check_seed(L, 2);
  df_aug_ra_config cfg;
  df_err e = {0};
  if (lua_isnoneornil(L, 3)) df_aug_ra_default(&cfg);
  else if (df_aug_ra_parse(luaL_checkstring(L, 3), &cfg, &e)) return raise_err(L, fn, &e);
  df_tensor *out = push_new(L, fn, DF_U8, 4, frames->shape);
  memcpy(out->data, frames->data, frames->nbytes);
  df_rng rng = df_rng_make(seed);
  df_aug_ra_params p;
  if (df_aug_ra_draw(&rng, &cfg, &p, &e)) return raise_err(L, fn, &e);
  const int T = (int)frames->shape[0], H = (int)frames->shape[1], W = (int)frames->shape[2];
  df_img tmp = {0};
  if (df_img_alloc(&tmp, H, W, 3, &e)) return raise_err(L, fn, &e);
  int rc = 0;
  for (int t = 0; t < T && !rc; t++) {
    df_img img = df_img_view((uint8_t *)out->data + (size_t)t * H * W * 3, H, W, 3);
    rc = df_aug_ra_apply(&p, &img, &tmp, &e);
  }
  df_img_release(&tmp);
  if (rc) return raise_err(L, fn, &e);
  push_ra_info(L, &p);
  return 2;
}

int luaopen_dferc_transform(lua_State *L) {
  /* Host userdata need their metatable, which dferc.core registers */
  luaL_requiref(L, "dferc.core", luaopen_dferc_core, 0);
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {
      {"finetune_train", l_finetune_train},
      {"finetune_test_views", l_finetune_test_views},
      {"pretrain", l_pretrain},
      {"mask", l_mask},
      {"mixup", l_mixup},
      {"metrics", l_metrics},
      {"stream", l_stream},
      {"resize", l_resize},
      {"randaugment", l_randaugment},
      {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
