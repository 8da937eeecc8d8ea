/*
** ldata.c -- the `dferc.data` Lua module (see ldata.h).
**
**   data.read_csv(path) -> {{path =, label =, line =}, ...} | nil, msg
**   data.open_clip(path) -> Clip | nil, msg
**     clip:count() -> n          clip:size() -> w, h
**     clip:read({i, ...}) -> Host u8 [T, H, W, 3] | nil, msg  (0-based)
**     clip:path(), clip:is_video(), clip:close()
**   data.sample_train(n, seed [, clip_len, rate]) -> {i, ...}
**   data.sample_pretrain(n, seed [, clip_len, rate]) -> {i, ...}
**   data.sample_test(n, segments [, clip_len, rate]) -> {{i, ...}, ...}
**   data.loader(items [, opts]) -> Loader
**     loader:next() -> Host, position | nil at the end
**     loader:stats() -> {waited_s =, held_s =, items =, skipped =}
**     loader:close()
**
** Loader items: a path string or a table {path = P, frames = {i, ...}} or
** {path = P, sample = "train" | "pretrain" | "test", segment = k}; an
** item with neither frames nor sample (a read_csv entry) uses
** opts.sample.  Options: workers (2), depth (2 * workers, at least 2),
** seed (0), sample ("train"), segments (2, for "test"; segment k is
** 0-based), clip_len (16), rate (4), quiet (false: a skipped item prints
** one warning line on stderr).  Each item is "open the clip, pick its
** frames, decode them"; its position (1-based, in `items`) comes back
** with it.  The items are copied into C memory when the loader starts, as
** the workers never touch Lua.
*/
#include "config.h"
#include "lua/ldata.h"
#include "runtime/imgwrite.h"
#include "runtime/vidwrite.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/ldferc.h"
#include "runtime/clip.h"
#include "runtime/dataset.h"
#include "runtime/loader.h"
#include "runtime/sampling.h"

#define CLIP_MT "dferc.Clip"
#define LOADER_MT "dferc.Loader"

static int fail(lua_State *L, const df_err *e) {
  luaL_pushfail(L);
  lua_pushstring(L, e->msg);
  return 2;
}

/* ---------------------------------------------------------------- read_csv */

#define CSV_MT "dferc.data.csv"

/* The annotation file is held in a userdata while its tables are built,
** so a memory error there cannot leak it. */
static int l_csv_gc(lua_State *L) {
  df_csv **box = luaL_checkudata(L, 1, CSV_MT);
  df_csv_free(*box);
  *box = NULL;
  return 0;
}

static int l_read_csv(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  df_csv **box = lua_newuserdatauv(L, sizeof *box, 0);
  *box = NULL;
  luaL_setmetatable(L, CSV_MT);
  df_err e = {0};
  df_csv *c = *box = df_csv_read(path, &e);
  if (!c) return fail(L, &e);
  size_t n = df_csv_count(c);
  lua_createtable(L, n < 0x7fffffff ? (int)n : 0, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, df_csv_path(c, i));
    lua_setfield(L, -2, "path");
    lua_pushinteger(L, df_csv_label(c, i));
    lua_setfield(L, -2, "label");
    lua_pushinteger(L, df_csv_line(c, i));
    lua_setfield(L, -2, "line");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  df_csv_free(c);
  *box = NULL;
  return 1;
}

/* ---------------------------------------------------------------- clips */

typedef struct {
  df_clip *c;
} lclip;

static df_clip *check_clip(lua_State *L, int idx) {
  lclip *u = luaL_checkudata(L, idx, CLIP_MT);
  if (!u->c) luaL_error(L, "clip is closed");
  return u->c;
}

static int l_open_clip(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lclip *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->c = NULL;
  luaL_setmetatable(L, CLIP_MT);
  df_err e = {0};
  u->c = df_clip_open(path, &e);
  if (!u->c) return fail(L, &e);
  return 1;
}

static int l_clip_gc(lua_State *L) {
  lclip *u = luaL_checkudata(L, 1, CLIP_MT);
  df_clip_close(u->c);
  u->c = NULL;
  return 0;
}

static int l_clip_count(lua_State *L) {
  lua_pushinteger(L, df_clip_count(check_clip(L, 1)));
  return 1;
}

static int l_clip_size(lua_State *L) {
  int w, h;
  df_clip_size(check_clip(L, 1), &w, &h);
  lua_pushinteger(L, w);
  lua_pushinteger(L, h);
  return 2;
}

static int l_clip_path(lua_State *L) {
  lua_pushstring(L, df_clip_path(check_clip(L, 1)));
  return 1;
}

static int l_clip_is_video(lua_State *L) {
  lua_pushboolean(L, df_clip_is_video(check_clip(L, 1)));
  return 1;
}

/*
** Read a list of integers at idx into a new userdata array (on the stack
** above everything, so Lua frees it); returns the array and its length.
*/
static int64_t *check_index_list(lua_State *L, int idx, int64_t *n, const char *what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  lua_Integer len = luaL_len(L, idx);
  if (len < 0 || len > (1 << 24)) luaL_error(L, "%s: %d entries is too many", what, (int)len);
  int64_t *a = lua_newuserdatauv(L, (size_t)(len ? len : 1) * sizeof *a, 0);
  for (lua_Integer i = 0; i < len; i++) {
    lua_geti(L, idx, i + 1);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "%s: entry %d is not an integer", what, (int)(i + 1));
    a[i] = v;
    lua_pop(L, 1);
  }
  *n = len;
  return a;
}

/* clip:read({i, ...}) -> Host u8 [T, H, W, 3] | nil, msg */
static int l_clip_read(lua_State *L) {
  df_clip *c = check_clip(L, 1);
  int64_t n;
  int64_t *idx = check_index_list(L, 2, &n, "read");
  df_err e = {0};
  df_tensor *t = df_clip_read(c, idx, n, &e);
  if (!t) return fail(L, &e);
  df_lua_push_host(L, t);
  return 1;
}

static int l_clip_tostring(lua_State *L) {
  lclip *u = luaL_checkudata(L, 1, CLIP_MT);
  if (!u->c) {
    lua_pushliteral(L, "Clip(closed)");
    return 1;
  }
  int w, h;
  df_clip_size(u->c, &w, &h);
  lua_pushfstring(L, "Clip(%s, %I frames, %dx%d)", df_clip_path(u->c),
                  (lua_Integer)df_clip_count(u->c), w, h);
  return 1;
}

/* ---------------------------------------------------------------- sampling */

static int opt_int(lua_State *L, int idx, int def, const char *what) {
  lua_Integer v = luaL_optinteger(L, idx, def);
  if (v < 1 || v > 4096) luaL_error(L, "%s must be in [1, 4096], got %d", what, (int)v);
  return (int)v;
}

static void push_indices(lua_State *L, const int64_t *a, int n) {
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushinteger(L, a[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* sample_train / sample_pretrain (n, seed [, clip_len, rate]) */
static int sample_seeded(lua_State *L, int pretrain) {
  lua_Integer n = luaL_checkinteger(L, 1);
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 2);
  int len = opt_int(L, 3, DF_SAMPLE_CLIP_LEN, "clip_len");
  int rate = opt_int(L, 4, DF_SAMPLE_RATE, "rate");
  int64_t *out = lua_newuserdatauv(L, (size_t)len * sizeof *out, 0);
  df_err e = {0};
  int rc = pretrain ? df_sample_pretrain(n, len, rate, seed, out, &e)
                    : df_sample_train(n, len, rate, seed, out, &e);
  if (rc) return luaL_error(L, "%s", e.msg);
  push_indices(L, out, len);
  return 1;
}

static int l_sample_train(lua_State *L) { return sample_seeded(L, 0); }
static int l_sample_pretrain(lua_State *L) { return sample_seeded(L, 1); }

/* sample_test(n, segments [, clip_len, rate]) -> one list per segment */
static int l_sample_test(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  int segments = opt_int(L, 2, 2, "segments");
  int len = opt_int(L, 3, DF_SAMPLE_CLIP_LEN, "clip_len");
  int rate = opt_int(L, 4, DF_SAMPLE_RATE, "rate");
  int64_t *out = lua_newuserdatauv(L, (size_t)segments * (size_t)len * sizeof *out, 0);
  df_err e = {0};
  if (df_sample_test(n, len, rate, segments, out, &e)) return luaL_error(L, "%s", e.msg);
  lua_createtable(L, segments, 0);
  for (int k = 0; k < segments; k++) {
    push_indices(L, out + (size_t)k * (size_t)len, len);
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

/* ---------------------------------------------------------------- loader */

enum { MODE_FRAMES, MODE_TRAIN, MODE_PRETRAIN, MODE_TEST };

/* The sampling rule named by the string at idx; raises naming `what`. */
static int check_mode(lua_State *L, int idx, const char *what) {
  const char *s = lua_tostring(L, idx);
  if (s && strcmp(s, "train") == 0) return MODE_TRAIN;
  if (s && strcmp(s, "pretrain") == 0) return MODE_PRETRAIN;
  if (s && strcmp(s, "test") == 0) return MODE_TEST;
  return luaL_error(L, "loader: %s: sample must be 'train', 'pretrain' or 'test', got %s", what,
                    s ? s : luaL_typename(L, idx));
}

typedef struct {
  char *path;
  int mode;
  int segment;     /* MODE_TEST: which of `segments` */
  int64_t *frames; /* MODE_FRAMES */
  int64_t nframes;
} ld_item;

typedef struct {
  ld_item *items;
  int64_t n;
  int clip_len, rate, segments;
} ld_ctx;

typedef struct {
  df_loader *l;
  ld_ctx *ctx;
} lloader;

static void ctx_free(ld_ctx *c) {
  if (!c) return;
  for (int64_t i = 0; c->items && i < c->n; i++) {
    free(c->items[i].path);
    free(c->items[i].frames);
  }
  free(c->items);
  free(c);
}

/* Pick the frame indices of item `it` of a clip of n frames into out
** (capacity clip_len, or nframes for MODE_FRAMES); returns their count. */
static int64_t pick_frames(const ld_ctx *c, const ld_item *it, int64_t n, uint64_t seed,
                           int64_t *out, df_err *err) {
  int rc;
  switch (it->mode) {
  case MODE_FRAMES:
    memcpy(out, it->frames, (size_t)it->nframes * sizeof *out);
    return it->nframes;
  case MODE_TRAIN: rc = df_sample_train(n, c->clip_len, c->rate, seed, out, err); break;
  case MODE_PRETRAIN: rc = df_sample_pretrain(n, c->clip_len, c->rate, seed, out, err); break;
  default: {
    int64_t *all = malloc((size_t)c->segments * (size_t)c->clip_len * sizeof *all);
    if (!all) return df_err_set(err, DF_ENOMEM, "out of memory");
    rc = df_sample_test(n, c->clip_len, c->rate, c->segments, all, err);
    if (!rc) memcpy(out, all + (size_t)it->segment * (size_t)c->clip_len, (size_t)c->clip_len * sizeof *out);
    free(all);
  }
  }
  return rc ? rc : c->clip_len;
}

/* The loader's callback (on a worker thread): open, pick, decode. */
static df_tensor *load_item(void *ctx, int64_t index, int worker, uint64_t seed, df_err *err) {
  ld_ctx *c = ctx;
  const ld_item *it = &c->items[index];
  df_clip *clip = df_clip_open(it->path, err);
  if (!clip) return NULL;
  size_t cap = (size_t)(it->mode == MODE_FRAMES ? it->nframes : c->clip_len);
  int64_t *idx = malloc((cap ? cap : 1) * sizeof *idx);
  df_tensor *t = NULL;
  if (!idx) {
    df_err_set(err, DF_ENOMEM, "%s: out of memory", df_clip_path(clip));
  } else {
    int64_t n = pick_frames(c, it, df_clip_count(clip), seed, idx, err);
    if (n >= 0) t = df_clip_read(clip, idx, n, err);
    else df_err_prefix(err, "%s", df_clip_path(clip));
  }
  free(idx);
  df_clip_close(clip);
  return t;
}

static void quiet_warn(void *ctx, const char *line) {
  (void)ctx;
  (void)line;
}

static int opt_field_int(lua_State *L, int t, const char *k, int def, int lo, int hi) {
  if (lua_isnoneornil(L, t)) return def;
  lua_getfield(L, t, k);
  int ok = 1;
  lua_Integer v = lua_isnil(L, -1) ? def : lua_tointegerx(L, -1, &ok);
  lua_pop(L, 1);
  if (!ok || v < lo || v > hi) luaL_error(L, "loader: option %s must be an integer in [%d, %d]", k, lo, hi);
  return (int)v;
}

static char *dup_string(lua_State *L, int idx, size_t *len) {
  const char *s = lua_tolstring(L, idx, len);
  char *p = malloc(*len + 1);
  if (!p) luaL_error(L, "loader: out of memory");
  memcpy(p, s, *len + 1);
  return p;
}

/*
** Copy item i (1-based) of the list at index 1 into it.  Raises on
** misuse; whatever was copied is freed with the loader's context.
*/
static void read_item(lua_State *L, ld_ctx *c, ld_item *it, int64_t i, int def_mode) {
  lua_geti(L, 1, i);
  int top = lua_gettop(L);
  size_t len;
  if (lua_type(L, top) == LUA_TSTRING) {
    it->path = dup_string(L, top, &len);
    it->mode = def_mode;
  } else if (lua_istable(L, top)) {
    if (lua_getfield(L, top, "path") != LUA_TSTRING)
      luaL_error(L, "loader: item %d has no path string", (int)i);
    it->path = dup_string(L, -1, &len);
    lua_pop(L, 1);
    if (lua_getfield(L, top, "frames") == LUA_TTABLE) {
      int64_t n;
      int64_t *a = check_index_list(L, lua_gettop(L), &n, "loader: frames");
      it->frames = malloc((size_t)(n ? n : 1) * sizeof *a);
      if (!it->frames) luaL_error(L, "loader: out of memory");
      memcpy(it->frames, a, (size_t)n * sizeof *a);
      it->nframes = n;
      it->mode = MODE_FRAMES;
      lua_pop(L, 1);
    } else {
      lua_pop(L, 1);
      lua_getfield(L, top, "sample");
      char what[32];
      snprintf(what, sizeof what, "item %d", (int)i);
      it->mode = lua_isnil(L, -1) ? def_mode : check_mode(L, -1, what);
      lua_pop(L, 1);
      it->segment = opt_field_int(L, top, "segment", 0, 0, c->segments - 1);
    }
  } else {
    luaL_error(L, "loader: item %d is not a path or a table", (int)i);
  }
  lua_settop(L, top - 1);
}

/* data.loader(items [, opts]) -> Loader */
static int l_loader_new(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lloader *u = lua_newuserdatauv(L, sizeof *u, 0); /* index 3: freed by __gc on any error */
  u->l = NULL;
  u->ctx = NULL;
  luaL_setmetatable(L, LOADER_MT);
  ld_ctx *c = u->ctx = calloc(1, sizeof *c);
  if (!c) return luaL_error(L, "loader: out of memory");
  int workers = opt_field_int(L, 2, "workers", 2, 0, 64);
  int depth = opt_field_int(L, 2, "depth", workers * 2 > 2 ? workers * 2 : 2, 1, 1 << 16);
  c->clip_len = opt_field_int(L, 2, "clip_len", DF_SAMPLE_CLIP_LEN, 1, 4096);
  c->rate = opt_field_int(L, 2, "rate", DF_SAMPLE_RATE, 1, 4096);
  c->segments = opt_field_int(L, 2, "segments", 2, 1, 4096);
  uint64_t seed = 0;
  int def_mode = MODE_TRAIN, quiet = 0;
  if (!lua_isnil(L, 2)) {
    lua_getfield(L, 2, "seed");
    if (!lua_isnil(L, -1)) seed = (uint64_t)luaL_checkinteger(L, -1);
    lua_getfield(L, 2, "sample");
    if (!lua_isnil(L, -1)) def_mode = check_mode(L, -1, "option");
    lua_getfield(L, 2, "quiet");
    quiet = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  lua_Integer n = luaL_len(L, 1);
  if (n < 0 || n > (1 << 26)) return luaL_error(L, "loader: %d items is too many", (int)n);
  c->items = calloc((size_t)(n ? n : 1), sizeof *c->items);
  if (!c->items) return luaL_error(L, "loader: out of memory");
  for (lua_Integer i = 1; i <= n; i++) {
    c->n = i; /* item i - 1 is freed with the context even if half-read */
    read_item(L, c, &c->items[i - 1], i, def_mode);
  }
  df_loader_opts o = {.n_items = n, .workers = workers, .depth = depth, .seed = seed,
                      .fn = load_item, .ctx = c, .warn = quiet ? quiet_warn : NULL};
  df_err e = {0};
  u->l = df_loader_new(&o, &e);
  if (!u->l) return luaL_error(L, "%s", e.msg);
  return 1;
}

static lloader *check_loader(lua_State *L) {
  lloader *u = luaL_checkudata(L, 1, LOADER_MT);
  if (!u->l) luaL_error(L, "loader is closed");
  return u;
}

/* Join the workers before freeing what they read. */
static int l_loader_gc(lua_State *L) {
  lloader *u = luaL_checkudata(L, 1, LOADER_MT);
  df_loader_close(u->l);
  u->l = NULL;
  ctx_free(u->ctx);
  u->ctx = NULL;
  return 0;
}

/* loader:next() -> Host, position | nil */
static int l_loader_next(lua_State *L) {
  lloader *u = check_loader(L);
  df_tensor *t;
  int64_t idx;
  if (!df_loader_next(u->l, &t, &idx)) {
    lua_pushnil(L);
    return 1;
  }
  df_lua_push_host(L, t);
  lua_pushinteger(L, idx + 1);
  return 2;
}

static int l_loader_stats(lua_State *L) {
  lloader *u = check_loader(L);
  df_loader_stats st;
  df_loader_get_stats(u->l, &st);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, st.waited_s);
  lua_setfield(L, -2, "waited_s");
  lua_pushnumber(L, st.held_s);
  lua_setfield(L, -2, "held_s");
  lua_pushinteger(L, st.items);
  lua_setfield(L, -2, "items");
  lua_pushinteger(L, st.skipped);
  lua_setfield(L, -2, "skipped");
  return 1;
}

static int l_loader_tostring(lua_State *L) {
  lloader *u = luaL_checkudata(L, 1, LOADER_MT);
  if (!u->l) lua_pushliteral(L, "Loader(closed)");
  else lua_pushfstring(L, "Loader(%I items)", (lua_Integer)u->ctx->n);
  return 1;
}

/* ---------------------------------------------------------------- module */

/* data.write_jpeg(path, Host u8 [H, W, 3] [, quality]) / data.write_png(path, Host)
** -> true | nil, msg */
static int write_image(lua_State *L, int png) {
  const char *path = luaL_checkstring(L, 1);
  df_tensor *t = df_lua_check_host(L, 2);
  if (t->dtype != DF_U8 || t->ndim != 3 || t->shape[2] != 3)
    return luaL_error(L, "write_%s: needs a Host u8 [H, W, 3]", png ? "png" : "jpeg");
  df_err e = {0};
  int rc = png ? df_write_png(path, t->data, (int)t->shape[1], (int)t->shape[0], &e)
               : df_write_jpeg(path, t->data, (int)t->shape[1], (int)t->shape[0], (int)luaL_optinteger(L, 3, 90), &e);
  if (rc) {
    luaL_pushfail(L);
    lua_pushstring(L, e.msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}
static int l_write_jpeg(lua_State *L) { return write_image(L, 0); }
static int l_write_png(lua_State *L) { return write_image(L, 1); }

/* data.write_video(path, Host u8 [T, H, W, 3] [, fps [, codec]]) -> true | nil, msg */
static int l_write_video(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  df_tensor *t = df_lua_check_host(L, 2);
  if (t->dtype != DF_U8 || t->ndim != 4 || t->shape[3] != 3)
    return luaL_error(L, "write_video: needs a Host u8 [T, H, W, 3]");
  df_err e = {0};
  if (df_write_video(path, t->data, (int)t->shape[0], (int)t->shape[2], (int)t->shape[1],
                     (int)luaL_optinteger(L, 3, 25), luaL_optstring(L, 4, NULL), &e)) {
    luaL_pushfail(L);
    lua_pushstring(L, e.msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

static void new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                     lua_CFunction gc, lua_CFunction tostring) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, gc);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

int luaopen_dferc_data(lua_State *L) {
  /* Host userdata need their metatable, which dferc.core registers */
  luaL_requiref(L, "dferc.core", luaopen_dferc_core, 0);
  lua_pop(L, 1);
  luaL_newmetatable(L, CSV_MT);
  lua_pushcfunction(L, l_csv_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  static const luaL_Reg clip_m[] = {{"count", l_clip_count}, {"size", l_clip_size},
                                    {"read", l_clip_read},   {"path", l_clip_path},
                                    {"is_video", l_clip_is_video}, {"close", l_clip_gc},
                                    {NULL, NULL}};
  new_type(L, CLIP_MT, clip_m, l_clip_gc, l_clip_tostring);
  static const luaL_Reg loader_m[] = {{"next", l_loader_next}, {"stats", l_loader_stats},
                                      {"close", l_loader_gc}, {NULL, NULL}};
  new_type(L, LOADER_MT, loader_m, l_loader_gc, l_loader_tostring);
  static const luaL_Reg funcs[] = {{"read_csv", l_read_csv},
                                    {"write_jpeg", l_write_jpeg}, {"write_png", l_write_png},
                                    {"write_video", l_write_video},
                                   {"open_clip", l_open_clip},
                                   {"sample_train", l_sample_train},
                                   {"sample_pretrain", l_sample_pretrain},
                                   {"sample_test", l_sample_test},
                                   {"loader", l_loader_new},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  return 1;
}
