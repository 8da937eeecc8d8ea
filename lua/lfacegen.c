/*
** lfacegen.c -- the `dferc.facegen` Lua module (see lfacegen.h).
**
** dataset()'s progress function runs on the calling thread (the renderer
** reports from there) under lua_pcall: an error in it stops the run, and
** is raised again once the C side has finished and freed what it holds.
** progress(done, total) returning false also stops the run (nil, msg).
*/
#include "lua/lfacegen.h"

#include <lauxlib.h>
#include <string.h>

#include "lua/ldferc.h"
#include "runtime/facegen.h"
#include "runtime/tensor.h"

/* An optional integer field of the options table at idx. */
static lua_Integer opt_field(lua_State *L, int idx, const char *name, lua_Integer def) {
  lua_getfield(L, idx, name);
  lua_Integer v = def;
  if (!lua_isnil(L, -1)) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) luaL_error(L, "facegen.dataset: option '%s' must be an integer", name);
  }
  lua_pop(L, 1);
  return v;
}

static int to_int(lua_State *L, lua_Integer v, const char *name) {
  if (v < -0x7fffffff || v > 0x7fffffff) luaL_error(L, "facegen: %s %I is out of range", name, v);
  return (int)v;
}

typedef struct progress_ctx {
  lua_State *L;
  int fn;     /* stack index of the progress function, 0 for none */
  int raised; /* the function raised: its error is on the stack */
} progress_ctx;

static int on_progress(void *ud, int done, int total) {
  progress_ctx *p = ud;
  if (!p->fn || p->raised) return p->raised;
  lua_State *L = p->L;
  lua_pushvalue(L, p->fn);
  lua_pushinteger(L, done);
  lua_pushinteger(L, total);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    p->raised = 1; /* leave the error on the stack */
    return 1;
  }
  int stop = lua_isboolean(L, -1) && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  return stop;
}

static int l_dataset(lua_State *L) {
  size_t n;
  const char *dir = luaL_checklstring(L, 1, &n);
  if (strlen(dir) != n) return luaL_error(L, "facegen.dataset: the folder name holds a NUL byte");
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  else {
    lua_settop(L, 1);
    lua_newtable(L);
  }
  uint64_t seed = (uint64_t)opt_field(L, 2, "seed", 0);
  int clips = to_int(L, opt_field(L, 2, "clips", DF_FACEGEN_DEFAULT_CLIPS), "clips");
  int frames = to_int(L, opt_field(L, 2, "frames", DF_FACEGEN_DEFAULT_FRAMES), "frames");
  int size = to_int(L, opt_field(L, 2, "size", DF_FACEGEN_DEFAULT_SIZE), "size");
  lua_settop(L, 2);
  lua_getfield(L, 2, "progress"); /* index 3 */
  progress_ctx p = {L, 0, 0};
  if (!lua_isnil(L, 3)) {
    luaL_checktype(L, 3, LUA_TFUNCTION);
    p.fn = 3;
  }
  df_facegen_info info;
  df_err e = {0};
  int rc = df_facegen_dataset(dir, seed, clips, frames, size, on_progress, &p, &info, &e);
  if (p.raised) return lua_error(L); /* the progress function's error, on top */
  if (rc) {
    luaL_pushfail(L);
    lua_pushstring(L, e.msg);
    return 2;
  }
  lua_pushboolean(L, 1);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, info.train);
  lua_setfield(L, -2, "train");
  lua_pushinteger(L, info.val);
  lua_setfield(L, -2, "val");
  lua_pushinteger(L, info.test);
  lua_setfield(L, -2, "test");
  lua_pushboolean(L, info.skipped);
  lua_setfield(L, -2, "skipped");
  lua_pushinteger(L, info.threads);
  lua_setfield(L, -2, "threads");
  return 2;
}

static int l_clip(lua_State *L) {
  uint64_t seed = (uint64_t)luaL_checkinteger(L, 1);
  int label = to_int(L, luaL_checkinteger(L, 2), "label");
  int frames = to_int(L, luaL_optinteger(L, 3, DF_FACEGEN_DEFAULT_FRAMES), "frames");
  int size = to_int(L, luaL_optinteger(L, 4, DF_FACEGEN_DEFAULT_SIZE), "size");
  df_err e = {0};
  /* check the arguments before allocating [frames, size, size, 3] */
  if (label < 0 || label >= DF_FACEGEN_CLASSES || frames < DF_FACEGEN_MIN_FRAMES ||
      frames > DF_FACEGEN_MAX_FRAMES || size < DF_FACEGEN_MIN_SIZE || size > DF_FACEGEN_MAX_SIZE) {
    df_facegen_clip(seed, label, frames, size, NULL, &e);
    return luaL_error(L, "%s", e.msg);
  }
  int64_t shape[4] = {frames, size, size, 3};
  df_tensor *t = df_tensor_new(DF_U8, 4, shape, &e);
  if (!t) return luaL_error(L, "facegen.clip: %s", e.msg);
  if (df_facegen_clip(seed, label, frames, size, t->data, &e)) {
    df_tensor_unref(t);
    return luaL_error(L, "%s", e.msg);
  }
  df_lua_push_host(L, t);
  return 1;
}

int luaopen_dferc_facegen(lua_State *L) {
  /* Host userdata need their metatable, which dferc.core registers */
  luaL_requiref(L, "dferc.core", luaopen_dferc_core, 0);
  lua_pop(L, 1);
  static const luaL_Reg funcs[] = {{"dataset", l_dataset}, {"clip", l_clip}, {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_createtable(L, DF_FACEGEN_CLASSES, 0);
  for (int i = 0; i < DF_FACEGEN_CLASSES; i++) {
    lua_pushstring(L, df_facegen_class_names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "classes");
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, DF_FACEGEN_DEFAULT_CLIPS);
  lua_setfield(L, -2, "clips");
  lua_pushinteger(L, DF_FACEGEN_DEFAULT_FRAMES);
  lua_setfield(L, -2, "frames");
  lua_pushinteger(L, DF_FACEGEN_DEFAULT_SIZE);
  lua_setfield(L, -2, "size");
  lua_setfield(L, -2, "defaults");
  return 1;
}
