/*
** lcache.c -- the `dferc.cache` Lua module (see lcache.h).
**
** No Lua error ever unwinds through cache/ (and so through SQLite): C
** results that own memory (an entry, an explain answer) land in a holder
** userdata allocated before the C call, whose __gc frees them if a later
** push raises; the rows of a listing are pushed from the walk's callback
** under lua_pcall, and a failure there stops the walk before it is raised.
*/
#include "lua/lcache.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "compiler/tune.h"

#define CACHE_MT "dferc.Cache"
#define ENTRY_MT "dferc.CacheEntry"     /* holder of a df_cache_entry */
#define EXPLAIN_MT "dferc.CacheExplain" /* holder of a df_cache_explain */

typedef struct { df_cache *c; } lcache;

static df_cache *check_cache(lua_State *L, int idx) {
  lcache *u = luaL_checkudata(L, idx, CACHE_MT);
  if (!u->c) luaL_error(L, "dferc.Cache: the cache is closed");
  return u->c;
}

static int fail(lua_State *L, const df_err *e) {
  luaL_pushfail(L);
  lua_pushstring(L, e->msg);
  return 2;
}

/* A misuse (DF_EINVAL: a bad key) raises; anything else is nil, msg. */
static int fail_or_raise(lua_State *L, const df_err *e) {
  if (e->code == DF_EINVAL) {
    lua_pushstring(L, e->msg);
    return lua_error(L);
  }
  return fail(L, e);
}

/* A string argument without NUL bytes (NULL when absent and optional). */
static const char *check_text(lua_State *L, int idx, const char *what, int optional) {
  if (optional && lua_isnoneornil(L, idx)) return NULL;
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  if (strlen(s) != n) luaL_error(L, "%s holds a NUL byte", what);
  return s;
}

/*
** Read the key table at idx into k.  The strings stay owned by the table,
** which stays on the stack for the call.  Raises on an unknown field or a
** value that is not a string.
*/
static void check_key(lua_State *L, int idx, df_cache_key *k) {
  luaL_checktype(L, idx, LUA_TTABLE);
  memset(k, 0, sizeof *k);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "cache key: field names must be strings");
    const char *name = lua_tostring(L, -2);
    int i = df_cache_key_index(name);
    if (i < 0) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (int j = 0; j < DF_CACHE_NKEY; j++) {
        if (j) luaL_addstring(&b, ", ");
        luaL_addstring(&b, df_cache_key_name(j));
      }
      luaL_pushresult(&b);
      luaL_error(L, "cache key: unknown field '%s' (fields: %s)", name, lua_tostring(L, -1));
    }
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "cache key: field '%s' must be a string, got %s", name, luaL_typename(L, -1));
    size_t n;
    const char *v = lua_tolstring(L, -1, &n);
    if (strlen(v) != n) luaL_error(L, "cache key: field '%s' holds a NUL byte", name);
    df_cache_key_set(k, i, v);
    lua_pop(L, 1);
  }
}

/* Set the key's fields (those not NULL) on the table on top. */
static void push_key_fields(lua_State *L, const df_cache_key *k) {
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    const char *v = df_cache_key_field(k, i);
    if (!v) continue;
    lua_pushstring(L, v);
    lua_setfield(L, -2, df_cache_key_name(i));
  }
}

static void set_int(lua_State *L, const char *name, int64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, name);
}

/* ---------------------------------------------------------------- holders */

static int l_entry_gc(lua_State *L) {
  df_cache_entry_free(luaL_checkudata(L, 1, ENTRY_MT));
  return 0;
}

static int l_explain_gc(lua_State *L) {
  df_cache_explain_free(luaL_checkudata(L, 1, EXPLAIN_MT));
  return 0;
}

static void *new_holder(lua_State *L, size_t size, const char *mt) {
  void *p = lua_newuserdatauv(L, size, 0);
  memset(p, 0, size);
  luaL_setmetatable(L, mt);
  return p;
}

/* ---------------------------------------------------------------- module */

/* cache.open([path], [{disabled = bool, quiet = bool}]) -> Cache | nil, msg */
static int l_open(lua_State *L) {
  const char *path = lua_isnoneornil(L, 1) ? NULL : check_text(L, 1, "cache path", 0);
  unsigned flags = 0;
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, 2)) {
      const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
      if (strcmp(k, "disabled") == 0) flags |= lua_toboolean(L, -1) ? DF_CACHE_DISABLED : 0;
      else if (strcmp(k, "quiet") == 0) flags |= lua_toboolean(L, -1) ? DF_CACHE_QUIET : 0;
      else luaL_error(L, "cache.open: unknown option '%s' (options: disabled, quiet)", k);
      lua_pop(L, 1);
    }
  }
  lcache *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->c = NULL;
  luaL_setmetatable(L, CACHE_MT);
  df_err e = {0};
  u->c = df_cache_open(path, flags, &e);
  if (!u->c) return fail(L, &e);
  return 1;
}

/* Cache:get(key) -> {blob, config, times, created, used, hits} | nil | nil, msg */
static int l_get(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  df_cache_key k;
  check_key(L, 2, &k);
  df_cache_entry *ent = new_holder(L, sizeof *ent, ENTRY_MT);
  df_err e = {0};
  int r = df_cache_get(c, &k, ent, &e);
  if (r < 0) return fail_or_raise(L, &e);
  if (r == 0) {
    lua_pushnil(L);
    return 1;
  }
  lua_createtable(L, 0, 6);
  lua_pushlstring(L, (const char *)ent->blob, ent->size);
  lua_setfield(L, -2, "blob");
  lua_pushstring(L, ent->config);
  lua_setfield(L, -2, "config");
  lua_pushstring(L, ent->times);
  lua_setfield(L, -2, "times");
  set_int(L, "created", ent->created);
  set_int(L, "used", ent->used);
  set_int(L, "hits", ent->hits);
  df_cache_entry_free(ent);
  return 1;
}

/* Cache:put(key, blob [, config [, times]]) -> true, "stored"|"kept"|"dropped"
** | nil, msg */
static int l_put(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  df_cache_key k;
  check_key(L, 2, &k);
  size_t n;
  const char *blob = luaL_checklstring(L, 3, &n);
  const char *config = check_text(L, 4, "cache config", 1);
  const char *times = check_text(L, 5, "cache times", 1);
  df_err e = {0};
  int r = df_cache_put(c, &k, blob, n, config, times, &e);
  if (r < 0) return fail_or_raise(L, &e);
  lua_pushboolean(L, 1);
  lua_pushstring(L, r == DF_CACHE_STORED ? "stored" : r == DF_CACHE_KEPT ? "kept" : "dropped");
  return 2;
}

/* Cache:stats() -> {path, mode, entries, bytes, hits, misses, run_*, file_bytes}
** | nil, msg */
static int l_stats(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  df_cache_stats s;
  df_err e = {0};
  if (df_cache_stats_get(c, &s, &e) < 0) return fail(L, &e);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, df_cache_path(c));
  lua_setfield(L, -2, "path");
  lua_pushstring(L, df_cache_mode_name(df_cache_mode(c)));
  lua_setfield(L, -2, "mode");
  set_int(L, "entries", s.entries);
  set_int(L, "bytes", s.bytes);
  set_int(L, "hits", s.hits);
  set_int(L, "misses", s.misses);
  set_int(L, "run_hits", s.run_hits);
  set_int(L, "run_misses", s.run_misses);
  set_int(L, "run_stores", s.run_stores);
  set_int(L, "file_bytes", s.file_bytes);
  return 1;
}

typedef struct {
  lua_State *L;
  int table;   /* stack index of the result list */
  lua_Integer n;
} list_ud;

/* Under lua_pcall: push_row(list, info, n) sets list[n] to info's table. */
static int push_row(lua_State *L) {
  const df_cache_info *info = lua_touserdata(L, 2);
  lua_Integer n = lua_tointeger(L, 3);
  lua_createtable(L, 0, DF_CACHE_NKEY + 6);
  push_key_fields(L, &info->key);
  set_int(L, "size", info->size);
  set_int(L, "hits", info->hits);
  set_int(L, "created", info->created);
  set_int(L, "used", info->used);
  lua_pushstring(L, info->config);
  lua_setfield(L, -2, "config");
  lua_pushstring(L, info->times);
  lua_setfield(L, -2, "times");
  lua_rawseti(L, 1, n);
  return 0;
}

/* The walk's callback: returns 1 (the error on the stack) when a push fails. */
static int list_row(const df_cache_info *info, void *ud) {
  list_ud *lu = ud;
  lua_State *L = lu->L;
  lua_pushcfunction(L, push_row);
  lua_pushvalue(L, lu->table);
  lua_pushlightuserdata(L, (void *)info);
  lua_pushinteger(L, ++lu->n);
  return lua_pcall(L, 3, 0, 0) == LUA_OK ? 0 : 1;
}

/* Cache:list() -> {{<key fields>, size, hits, created, used, config, times}, ...}
** | nil, msg */
static int l_list(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  luaL_checkstack(L, 8, "cache list");
  lua_newtable(L);
  list_ud lu = {L, lua_gettop(L), 0};
  df_err e = {0};
  int r = df_cache_list(c, list_row, &lu, &e);
  if (r < 0) return fail(L, &e);
  if (r > 0) return lua_error(L); /* the error push_row raised */
  return 1;
}

/* Cache:clear() -> rows removed | nil, msg */
static int l_clear(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  df_err e = {0};
  int64_t n = df_cache_clear(c, &e);
  if (n < 0) return fail(L, &e);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

/* Cache:explain(key) -> {status, entries, nearest, size, hits, created, used,
** differ = {{field, want, have}, ...}, reason} | nil, msg */
static int l_explain(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  df_cache_key k;
  check_key(L, 2, &k);
  df_cache_explain *x = new_holder(L, sizeof *x, EXPLAIN_MT);
  df_err e = {0};
  if (df_cache_explain_key(c, &k, x, &e) < 0) return fail_or_raise(L, &e);
  lua_createtable(L, 0, 9);
  lua_pushstring(L, df_cache_explain_status_name(x->status));
  lua_setfield(L, -2, "status");
  set_int(L, "entries", x->entries);
  if (x->nearest.ir_hash) {
    lua_createtable(L, 0, DF_CACHE_NKEY);
    push_key_fields(L, &x->nearest);
    lua_setfield(L, -2, "nearest");
    set_int(L, "size", x->size);
    set_int(L, "hits", x->hits);
    set_int(L, "created", x->created);
    set_int(L, "used", x->used);
  }
  lua_createtable(L, x->n_differ, 0);
  for (int j = 0; j < x->n_differ; j++) {
    int i = x->differ[j];
    lua_createtable(L, 0, 3);
    lua_pushstring(L, df_cache_key_name(i));
    lua_setfield(L, -2, "field");
    lua_pushstring(L, df_cache_key_field(&k, i));
    lua_setfield(L, -2, "want");
    lua_pushstring(L, df_cache_key_field(&x->nearest, i));
    lua_setfield(L, -2, "have");
    lua_rawseti(L, -2, j + 1);
  }
  lua_setfield(L, -2, "differ");
  if (x->reason[0]) {
    lua_pushstring(L, x->reason);
    lua_setfield(L, -2, "reason");
  }
  df_cache_explain_free(x);
  return 1;
}

/* Cache:path() -> path, mode */
static int l_path(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  lua_pushstring(L, df_cache_path(c));
  lua_pushstring(L, df_cache_mode_name(df_cache_mode(c)));
  return 2;
}

/* Cache:warnings() -> count, last ("" when none) */
static int l_warnings(lua_State *L) {
  df_cache *c = check_cache(L, 1);
  const char *last;
  lua_pushinteger(L, df_cache_warnings(c, &last));
  lua_pushstring(L, last);
  return 2;
}

/* Cache:close(), __close, __gc: close once; later calls do nothing. */
static int l_close(lua_State *L) {
  lcache *u = luaL_checkudata(L, 1, CACHE_MT);
  df_cache_close(u->c);
  u->c = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  lcache *u = luaL_checkudata(L, 1, CACHE_MT);
  if (!u->c) lua_pushstring(L, "dferc.Cache(closed)");
  else
    lua_pushfstring(L, "dferc.Cache(%s, %s)", df_cache_path(u->c),
                    df_cache_mode_name(df_cache_mode(u->c)));
  return 1;
}

/* cache.set_tune(on): search kernels that have no tuned winner (--tune);
** DFERC_TUNE is set to match, so that processes started from here agree. */
static int l_set_tune(lua_State *L) {
  int on = lua_toboolean(L, 1);
  df_tune_set_mode(on ? DF_TUNE_SEARCH : DF_TUNE_DEFAULT);
  setenv("DFERC_TUNE", on ? "1" : "0", 1);
  return 0;
}

/* cache.tune_stats() -> {searched, from_cache, defaults, untunable,
** candidates, rejected, seconds, searching}: this process's tuner. */
static int l_tune_stats(lua_State *L) {
  df_tune_counters c;
  df_tune_counters_get(&c);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, c.searched);
  lua_setfield(L, -2, "searched");
  lua_pushinteger(L, c.from_cache);
  lua_setfield(L, -2, "from_cache");
  lua_pushinteger(L, c.defaults);
  lua_setfield(L, -2, "defaults");
  lua_pushinteger(L, c.untunable);
  lua_setfield(L, -2, "untunable");
  lua_pushinteger(L, c.candidates);
  lua_setfield(L, -2, "candidates");
  lua_pushinteger(L, c.rejected);
  lua_setfield(L, -2, "rejected");
  lua_pushnumber(L, c.seconds);
  lua_setfield(L, -2, "seconds");
  lua_pushboolean(L, df_tune_mode() == DF_TUNE_SEARCH);
  lua_setfield(L, -2, "searching");
  return 1;
}

/* cache.tune_inject_wrong(on): test only (see df_tune_inject_wrong). */
static int l_tune_inject_wrong(lua_State *L) {
  df_tune_inject_wrong(lua_toboolean(L, 1));
  return 0;
}

int luaopen_dferc_cache(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"get", l_get},         {"put", l_put},     {"stats", l_stats},
      {"list", l_list},       {"clear", l_clear}, {"explain", l_explain},
      {"path", l_path},       {"warnings", l_warnings},
      {"close", l_close},     {NULL, NULL}};
  luaL_newmetatable(L, CACHE_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_close);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, l_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  luaL_newmetatable(L, ENTRY_MT);
  lua_pushcfunction(L, l_entry_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  luaL_newmetatable(L, EXPLAIN_MT);
  lua_pushcfunction(L, l_explain_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {{"open", l_open},
                                   {"set_tune", l_set_tune},
                                   {"tune_stats", l_tune_stats},
                                   {"tune_inject_wrong", l_tune_inject_wrong},
                                   {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_createtable(L, DF_CACHE_NKEY, 0);
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    lua_pushstring(L, df_cache_key_name(i));
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "fields");
  lua_createtable(L, 0, DF_CACHE_NKEY);
  for (int i = 0; i < DF_CACHE_NKEY; i++) {
    lua_pushstring(L, df_cache_key_desc(i));
    lua_setfield(L, -2, df_cache_key_name(i));
  }
  lua_setfield(L, -2, "descriptions");
  return 1;
}
