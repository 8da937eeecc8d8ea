/*
** ldferc.c -- the `dferc.core` Lua module (see ldferc.h).
**
** Graph building: core.op(name, inputs, attrs) adds a node and returns a
** dferc.Tensor; the node records the file:line of the first Lua frame
** outside the dferc library (the files under lua/dferc/), i.e. the user's script line.
** A shape error raises "file:line: op: message" as a Lua error.
** Everything that holds C memory is a userdata with __gc; C errors are
** turned into Lua errors only after local resources are released.
*/
#include "config.h"
#include "lua/ldferc.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#include <cblas.h>

#include "compiler/autodiff.h"
#include "compiler/graph.h"
#include "compiler/schedule.h"
#include "compiler/codegen_cuda.h"
#include "runtime/nvrtc.h"
#include "runtime/device.h"
#include "compiler/codegen_llvm.h"
#include "runtime/cpu_gemm.h"
#include "runtime/json.h"
#include "runtime/pth.h"
#include "runtime/pool.h"
#include "runtime/safetensors.h"
#include "runtime/tensor.h"

#define GRAPH_MT "dferc.Graph"
#define TENSOR_MT "dferc.Tensor"
#define HOST_MT "dferc.Host"
#define PLAN_MT "dferc.Plan"
#define METHODS_KEY "dferc.methods"

static char datadir[4096] = "";

void df_lua_set_datadir(const char *dir) {
  snprintf(datadir, sizeof datadir, "%s", dir ? dir : "");
}

typedef struct { df_graph *g; } lgraph;
typedef struct { df_node_id id; } ltensor;   /* uservalue 1: its graph */
typedef struct { df_tensor *t; } lhost;
typedef struct { df_plan *p; const df_device *dev; int n_out; } lplan; /* uservalue 1: graph */

/* ---------------------------------------------------------------- helpers */

/* Raise e's message as is (no position prefix: it names its own). */
static int raise_err(lua_State *L, const df_err *e) {
  lua_pushstring(L, e->msg);
  return lua_error(L);
}

static int fail(lua_State *L, const df_err *e) {
  luaL_pushfail(L);
  lua_pushstring(L, e->msg);
  return 2;
}

/* Read a dtype name at idx. */
static df_dtype check_dtype(lua_State *L, int idx) {
  const char *s = luaL_checkstring(L, idx);
  df_dtype t;
  if (df_dtype_parse(s, &t)) luaL_error(L, "unknown dtype '%s'", s);
  return t;
}

/* Read an array of integers (a shape or attribute list) at idx. */
static int check_ints(lua_State *L, int idx, int64_t *out, int max, const char *what) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)luaL_len(L, idx);
  if (n > max) return luaL_error(L, "%s: at most %d entries, got %d", what, max, n);
  for (int i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok) return luaL_error(L, "%s: entry %d is not an integer", what, i + 1);
    out[i] = v;
    lua_pop(L, 1);
  }
  return n;
}

static void push_shape(lua_State *L, int ndim, const int64_t *shape) {
  lua_createtable(L, ndim, 0);
  for (int i = 0; i < ndim; i++) {
    lua_pushinteger(L, shape[i]);
    lua_rawseti(L, -2, i + 1);
  }
}

/* file:line of the first Lua frame outside the dferc library. */
static int caller_location(lua_State *L, char *file, size_t fsz) {
  lua_Debug ar;
  int fallback_line = 0;
  file[0] = '\0';
  for (int lvl = 1; lua_getstack(L, lvl, &ar); lvl++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
    const char *src = ar.source[0] == '@' || ar.source[0] == '=' ? ar.source + 1 : ar.short_src;
    if (strstr(src, "lua/dferc/")) {
      if (!file[0]) {
        snprintf(file, fsz, "%s", src);
        fallback_line = ar.currentline;
      }
      continue;
    }
    snprintf(file, fsz, "%s", src);
    return ar.currentline;
  }
  if (!file[0]) snprintf(file, fsz, "?");
  return fallback_line;
}

/* ---------------------------------------------------------------- graph */

static lgraph *check_graph(lua_State *L, int idx) { return luaL_checkudata(L, idx, GRAPH_MT); }

static int l_graph_new(lua_State *L) {
  lgraph *g = lua_newuserdatauv(L, sizeof *g, 0);
  g->g = NULL;
  luaL_setmetatable(L, GRAPH_MT);
  g->g = df_graph_new();
  if (!g->g) return luaL_error(L, "out of memory");
  return 1;
}

static int l_graph_gc(lua_State *L) {
  lgraph *g = check_graph(L, 1);
  df_graph_free(g->g);
  g->g = NULL;
  return 0;
}

static ltensor *check_tensor(lua_State *L, int idx) { return luaL_checkudata(L, idx, TENSOR_MT); }

/* Graph userdata of the tensor at idx, pushed. */
static lgraph *tensor_graph(lua_State *L, int idx) {
  lua_getiuservalue(L, idx, 1);
  lgraph *g = luaL_checkudata(L, -1, GRAPH_MT);
  return g;
}

/* Push a new Tensor for node id of the graph at stack index gidx. */
static void push_tensor(lua_State *L, int gidx, df_node_id id) {
  gidx = lua_absindex(L, gidx);
  ltensor *t = lua_newuserdatauv(L, sizeof *t, 1);
  t->id = id;
  lua_pushvalue(L, gidx);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, TENSOR_MT);
}

/* Fill df_attrs from the table at idx (absent fields stay zero). */
static void read_attrs(lua_State *L, int idx, df_attrs *a) {
  memset(a, 0, sizeof *a);
  a->dtype = DF_F32;
  if (lua_isnoneornil(L, idx)) return;
  luaL_checktype(L, idx, LUA_TTABLE);
  if (lua_getfield(L, idx, "ia") != LUA_TNIL)
    a->nia = check_ints(L, lua_gettop(L), a->ia, DF_MAX_IATTR, "ia");
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "fa") != LUA_TNIL) {
    luaL_checktype(L, -1, LUA_TTABLE);
    int n = (int)luaL_len(L, -1);
    if (n > DF_MAX_FATTR) luaL_error(L, "fa: at most %d entries", DF_MAX_FATTR);
    for (int i = 0; i < n; i++) {
      lua_geti(L, -1, i + 1);
      a->fa[i] = luaL_checknumber(L, -1);
      lua_pop(L, 1);
    }
    a->nfa = n;
  }
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "dtype") != LUA_TNIL) a->dtype = check_dtype(L, lua_gettop(L));
  lua_pop(L, 1);
  if (lua_getfield(L, idx, "shape") != LUA_TNIL)
    a->ndim = check_ints(L, lua_gettop(L), a->shape, DF_MAX_DIMS, "shape");
  lua_pop(L, 1);
  /* str stays on the Lua side only for the duration of the call */
  if (lua_getfield(L, idx, "str") != LUA_TNIL) a->str = luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays alive: it is referenced by the attrs table */
}

/*
** core.op(name, inputs, attrs [, graph]) -> Tensor
** inputs: a list of Tensors of one graph (may be empty for sources, which
** then need `graph`).
*/
static int l_op(lua_State *L) {
  lua_settop(L, 4); /* fixed argument slots before anything is pushed */
  const char *name = luaL_checkstring(L, 1);
  df_op op;
  if (df_op_parse(name, &op)) return luaL_error(L, "unknown op '%s'", name);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  if (n > 256) return luaL_error(L, "%s: too many inputs (%d)", name, n);
  df_node_id ids[256];
  int gidx = 0;
  lgraph *g = NULL;
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    ltensor *t = luaL_testudata(L, -1, TENSOR_MT);
    if (!t) return luaL_error(L, "%s: input %d is a %s, not a tensor", name, i + 1, luaL_typename(L, -1));
    lgraph *tg = tensor_graph(L, lua_gettop(L));
    if (!g) {
      g = tg;
      gidx = lua_gettop(L);
    } else if (tg != g) {
      return luaL_error(L, "%s: inputs belong to different graphs", name);
    } else {
      lua_pop(L, 1);
    }
    ids[i] = t->id;
  }
  if (!g) {
    g = luaL_testudata(L, 4, GRAPH_MT);
    if (!g) return luaL_error(L, "%s: a source op needs a graph", name);
    gidx = 4;
  }
  df_attrs a;
  read_attrs(L, 3, &a);
  char file[512];
  int line = caller_location(L, file, sizeof file);
  df_err e = {0};
  df_node_id id = df_graph_add(g->g, op, ids, n, &a, file, line, &e);
  if (id < 0) return raise_err(L, &e);
  push_tensor(L, gidx, id);
  return 1;
}

/* core.location() -> file, line of the caller outside the library. */
static int l_location(lua_State *L) {
  char file[512];
  int line = caller_location(L, file, sizeof file);
  lua_pushstring(L, file);
  lua_pushinteger(L, line);
  return 2;
}

static int l_graph_count(lua_State *L) {
  lua_pushinteger(L, df_graph_count(check_graph(L, 1)->g));
  return 1;
}

static void push_node_info(lua_State *L, const df_node *nd) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, df_op_name(nd->op));
  lua_setfield(L, -2, "op");
  push_shape(L, nd->ndim, nd->shape);
  lua_setfield(L, -2, "shape");
  lua_pushstring(L, df_dtype_lname(nd->dtype));
  lua_setfield(L, -2, "dtype");
  lua_pushstring(L, nd->file);
  lua_setfield(L, -2, "file");
  lua_pushinteger(L, nd->line);
  lua_setfield(L, -2, "line");
  if (nd->attrs.str) {
    lua_pushstring(L, nd->attrs.str);
    lua_setfield(L, -2, "name");
  }
  lua_createtable(L, nd->ninputs, 0);
  for (int k = 0; k < nd->ninputs; k++) {
    lua_pushinteger(L, nd->inputs[k]);
    lua_rawseti(L, -2, k + 1);
  }
  lua_setfield(L, -2, "inputs");
}

/* g:node(id) -> {op, shape, dtype, file, line, name, inputs} */
static int l_graph_node(lua_State *L) {
  lgraph *g = check_graph(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  luaL_argcheck(L, id >= 0 && id < df_graph_count(g->g), 2, "no such node");
  push_node_info(L, df_graph_node(g->g, (df_node_id)id));
  return 1;
}

/* A scratch array of n node ids owned by the Lua stack (freed by the GC
** even when an error unwinds). */
static df_node_id *ids_scratch(lua_State *L, int idx) {
  lua_Integer n = lua_istable(L, idx) ? luaL_len(L, idx) : 0;
  return lua_newuserdatauv(L, sizeof(df_node_id) * (size_t)(n > 0 ? n : 1), 0);
}

/* Collect a list of Tensors at idx (all of graph g) into ids. */
static int collect_outputs(lua_State *L, int idx, lgraph *g, df_node_id *ids, int max) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)luaL_len(L, idx);
  if (n > max) luaL_error(L, "at most %d outputs", max);
  for (int i = 0; i < n; i++) {
    lua_geti(L, idx, i + 1);
    ltensor *t = luaL_testudata(L, -1, TENSOR_MT);
    if (!t) luaL_error(L, "output %d is not a tensor", i + 1);
    if (tensor_graph(L, lua_gettop(L)) != g) luaL_error(L, "output %d belongs to another graph", i + 1);
    ids[i] = t->id;
    lua_pop(L, 2);
  }
  return n;
}

/* g:dot(path [, outputs, names]) -> true | nil, msg */
static int l_graph_dot(lua_State *L) {
  lgraph *g = check_graph(L, 1);
  const char *path = luaL_checkstring(L, 2);
  lua_settop(L, 4);
  df_node_id *ids = ids_scratch(L, 3);
  const char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(lua_istable(L, 3) ? luaL_len(L, 3) + 1 : 1), 0);
  int n = 0;
  if (!lua_isnoneornil(L, 3)) {
    n = collect_outputs(L, 3, g, ids, INT32_MAX);
    for (int i = 0; i < n; i++) {
      names[i] = NULL;
      if (lua_istable(L, 4)) {
        lua_geti(L, 4, i + 1);
        names[i] = lua_tostring(L, -1); /* kept alive by the table */
        lua_pop(L, 1);
      }
    }
  }
  df_err e = {0};
  if (df_graph_write_dot(g->g, ids, names, n, path, &e)) return fail(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.grad(loss, {wrt, ...}) -> {grad, ...}: gradient nodes of sum(loss). */
static int l_grad(lua_State *L) {
  ltensor *loss = check_tensor(L, 1);
  lgraph *g = tensor_graph(L, 1);
  int gidx = lua_gettop(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  df_node_id *wrt = lua_newuserdatauv(L, sizeof *wrt * (size_t)(n ? n : 1), 0);
  df_node_id *grads = lua_newuserdatauv(L, sizeof *grads * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    ltensor *t = luaL_testudata(L, -1, TENSOR_MT);
    if (!t) return luaL_error(L, "grad: entry %d is not a tensor", i + 1);
    if (tensor_graph(L, lua_gettop(L)) != g) return luaL_error(L, "grad: entry %d belongs to another graph", i + 1);
    wrt[i] = t->id;
    lua_pop(L, 2);
  }
  df_err e = {0};
  if (df_autodiff(g->g, loss->id, wrt, n, grads, &e)) return raise_err(L, &e);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    push_tensor(L, gidx, grads[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* ---------------------------------------------------------------- tensor */

static const df_node *tensor_node(lua_State *L, int idx) {
  ltensor *t = check_tensor(L, idx);
  lgraph *g = tensor_graph(L, idx);
  lua_pop(L, 1);
  return df_graph_node(g->g, t->id);
}

static int l_tensor_index(lua_State *L) {
  const df_node *nd = tensor_node(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k) {
    if (strcmp(k, "shape") == 0) { push_shape(L, nd->ndim, nd->shape); return 1; }
    if (strcmp(k, "dtype") == 0) { lua_pushstring(L, df_dtype_lname(nd->dtype)); return 1; }
    if (strcmp(k, "ndim") == 0) { lua_pushinteger(L, nd->ndim); return 1; }
    if (strcmp(k, "id") == 0) { lua_pushinteger(L, check_tensor(L, 1)->id); return 1; }
    if (strcmp(k, "op") == 0) { lua_pushstring(L, df_op_name(nd->op)); return 1; }
    if (strcmp(k, "name") == 0) {
      if (nd->attrs.str) lua_pushstring(L, nd->attrs.str); else lua_pushnil(L);
      return 1;
    }
    if (strcmp(k, "graph") == 0) { lua_getiuservalue(L, 1, 1); return 1; }
    if (strcmp(k, "info") == 0) { push_node_info(L, nd); return 1; }
  }
  /* methods: the dferc module's functions */
  lua_getfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
  if (!lua_istable(L, -1)) return 0;
  lua_pushvalue(L, 2);
  lua_gettable(L, -2);
  return 1;
}

static int l_tensor_tostring(lua_State *L) {
  const df_node *nd = tensor_node(L, 1);
  char sb[160];
  lua_pushfstring(L, "Tensor(%s %s %s%s%s)", df_op_name(nd->op), df_node_shape_str(nd, sb, sizeof sb),
                  df_dtype_lname(nd->dtype), nd->attrs.str ? " " : "", nd->attrs.str ? nd->attrs.str : "");
  return 1;
}

/* core.set_methods(tbl): where Tensor:__index looks up methods. */
static int l_set_methods(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, METHODS_KEY);
  return 0;
}

/* core.tensor_metatable() -> the metatable, so the Lua side can add
** arithmetic metamethods. */
static int l_tensor_mt(lua_State *L) {
  luaL_getmetatable(L, TENSOR_MT);
  return 1;
}

static int l_is_tensor(lua_State *L) {
  lua_pushboolean(L, luaL_testudata(L, 1, TENSOR_MT) != NULL);
  return 1;
}

/* ---------------------------------------------------------------- host tensors */

static lhost *check_host(lua_State *L, int idx) { return luaL_checkudata(L, idx, HOST_MT); }

/* Push a Host that takes over the reference `t`. */
static void push_host(lua_State *L, df_tensor *t) {
  lhost *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->t = t;
  luaL_setmetatable(L, HOST_MT);
}

void df_lua_push_host(lua_State *L, df_tensor *t) {
  if (!t) {
    lua_pushnil(L);
    return;
  }
  push_host(L, t);
}

df_tensor *df_lua_check_host(lua_State *L, int idx) { return check_host(L, idx)->t; }

static int l_host_gc(lua_State *L) {
  lhost *h = check_host(L, 1);
  df_tensor_unref(h->t);
  h->t = NULL;
  return 0;
}

/* New zeroed host tensor with a dtype (idx) and shape (idx + 1). */
static df_tensor *new_host_from_args(lua_State *L, int idx) {
  df_dtype dt = check_dtype(L, idx);
  int64_t shape[DF_MAX_DIMS];
  int nd = check_ints(L, idx + 1, shape, DF_MAX_DIMS, "shape");
  df_err e = {0};
  lhost *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->t = NULL;
  luaL_setmetatable(L, HOST_MT);
  h->t = df_tensor_new(dt, nd, shape, &e);
  if (!h->t) raise_err(L, &e);
  return h->t;
}

/* core.host(dtype, shape [, values | fill]) -> Host */
static int l_host_new(lua_State *L) {
  df_tensor *t = new_host_from_args(L, 1);
  int64_t n = df_tensor_numel(t);
  if (lua_isnumber(L, 3)) {
    double v = lua_tonumber(L, 3);
    for (int64_t i = 0; i < n; i++) df_dtype_set(t->dtype, t->data, (size_t)i, v);
  } else if (lua_istable(L, 3)) {
    if (luaL_len(L, 3) != n) return luaL_error(L, "host: %d values for %d elements", (int)luaL_len(L, 3), (int)n);
    for (int64_t i = 0; i < n; i++) {
      lua_geti(L, 3, i + 1);
      double v = lua_isboolean(L, -1) ? lua_toboolean(L, -1) : luaL_checknumber(L, -1);
      df_dtype_set(t->dtype, t->data, (size_t)i, v);
      lua_pop(L, 1);
    }
  }
  return 1;
}

/* splitmix64: a counter-based stream, the same on every machine. */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)(splitmix64(s) >> 11) * 0x1.0p-53; }

/* core.randn(dtype, shape, seed) / core.rand(dtype, shape, seed) -> Host */
static int random_host(lua_State *L, int normal) {
  df_tensor *t = new_host_from_args(L, 1);
  uint64_t s = (uint64_t)luaL_optinteger(L, 3, 0);
  int64_t n = df_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double v;
    if (normal) {
      double u1 = uniform01(&s), u2 = uniform01(&s);
      v = sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
    } else {
      v = uniform01(&s);
    }
    df_dtype_set(t->dtype, t->data, (size_t)i, v);
  }
  return 1;
}
static int l_randn(lua_State *L) { return random_host(L, 1); }

static double normal01(uint64_t *s) {
  double u1 = uniform01(s), u2 = uniform01(s);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

/*
** core.init(host, kind, a, b, seed): fill in place.
**   "fill" a | "scale" by a | "uniform" in [a, b) | "normal" mean a, std b |
**   "trunc_normal" std a, redrawn until |x| <= b
*/
static int l_init(lua_State *L) {
  lhost *h = check_host(L, 1);
  const char *kind = luaL_checkstring(L, 2);
  double a = luaL_optnumber(L, 3, 0), b = luaL_optnumber(L, 4, 0);
  uint64_t s = (uint64_t)luaL_optinteger(L, 5, 0);
  df_tensor *t = h->t;
  int64_t n = df_tensor_numel(t);
  if (strcmp(kind, "trunc_normal") == 0 && !(b > 0 && a > 0))
    return luaL_error(L, "init: trunc_normal needs a positive std and bound");
  for (int64_t i = 0; i < n; i++) {
    double v;
    if (strcmp(kind, "fill") == 0) v = a;
    else if (strcmp(kind, "scale") == 0) v = a * df_dtype_get(t->dtype, t->data, (size_t)i);
    else if (strcmp(kind, "uniform") == 0) v = a + (b - a) * uniform01(&s);
    else if (strcmp(kind, "normal") == 0) v = a + b * normal01(&s);
    else if (strcmp(kind, "trunc_normal") == 0) {
      do v = a * normal01(&s); while (fabs(v) > b);
    } else return luaL_error(L, "init: unknown kind '%s'", kind);
    df_dtype_set(t->dtype, t->data, (size_t)i, v);
  }
  return 0;
}
static int l_rand(lua_State *L) { return random_host(L, 0); }

static int l_host_index(lua_State *L) {
  lhost *h = check_host(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && strcmp(k, "shape") == 0) { push_shape(L, h->t->ndim, h->t->shape); return 1; }
  if (k && strcmp(k, "dtype") == 0) { lua_pushstring(L, df_dtype_lname(h->t->dtype)); return 1; }
  if (k && strcmp(k, "ndim") == 0) { lua_pushinteger(L, h->t->ndim); return 1; }
  if (k && strcmp(k, "numel") == 0) { lua_pushinteger(L, df_tensor_numel(h->t)); return 1; }
  if (k && strcmp(k, "nbytes") == 0) { lua_pushinteger(L, (lua_Integer)h->t->nbytes); return 1; }
  luaL_getmetatable(L, HOST_MT);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_gettable(L, -2);
  return 1;
}

/* h:get(i) -> element i (1-based, flat, row-major) as a number */
static int l_host_get(lua_State *L) {
  lhost *h = check_host(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && i <= df_tensor_numel(h->t), 2, "index out of range");
  double v = df_dtype_get(h->t->dtype, h->t->data, (size_t)(i - 1));
  if (df_dtype_is_float(h->t->dtype)) lua_pushnumber(L, v);
  else if (h->t->dtype == DF_I64) lua_pushinteger(L, ((int64_t *)h->t->data)[i - 1]);
  else lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

static int l_host_set(lua_State *L) {
  lhost *h = check_host(L, 1);
  lua_Integer i = luaL_checkinteger(L, 2);
  luaL_argcheck(L, i >= 1 && i <= df_tensor_numel(h->t), 2, "index out of range");
  double v = lua_isboolean(L, 3) ? lua_toboolean(L, 3) : luaL_checknumber(L, 3);
  df_dtype_set(h->t->dtype, h->t->data, (size_t)(i - 1), v);
  return 0;
}

/* h:totable() -> flat list of numbers */
static int l_host_totable(lua_State *L) {
  lhost *h = check_host(L, 1);
  int64_t n = df_tensor_numel(h->t);
  if (n > (1 << 24)) return luaL_error(L, "totable: tensor too large (%d elements)", (int)n);
  lua_createtable(L, (int)n, 0);
  int is_float = df_dtype_is_float(h->t->dtype);
  for (int64_t i = 0; i < n; i++) {
    double v = df_dtype_get(h->t->dtype, h->t->data, (size_t)i);
    if (is_float) lua_pushnumber(L, v);
    else if (h->t->dtype == DF_I64) lua_pushinteger(L, ((const int64_t *)h->t->data)[i]);
    else lua_pushinteger(L, (lua_Integer)v);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* h:cast(dtype) -> new Host */
static int l_host_cast(lua_State *L) {
  lhost *h = check_host(L, 1);
  df_dtype dt = check_dtype(L, 2);
  df_err e = {0};
  lhost *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->t = NULL;
  luaL_setmetatable(L, HOST_MT);
  r->t = df_tensor_cast(h->t, dt, &e);
  if (!r->t) return raise_err(L, &e);
  return 1;
}

/* h:reshape(shape) -> new Host with the same elements */
static int l_host_reshape(lua_State *L) {
  lhost *h = check_host(L, 1);
  int64_t shape[DF_MAX_DIMS];
  int nd = check_ints(L, 2, shape, DF_MAX_DIMS, "shape");
  if (df_shape_numel(nd, shape) != df_tensor_numel(h->t))
    return luaL_error(L, "reshape: element count differs");
  df_err e = {0};
  lhost *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->t = NULL;
  luaL_setmetatable(L, HOST_MT);
  r->t = df_tensor_new(h->t->dtype, nd, shape, &e);
  if (!r->t) return raise_err(L, &e);
  memcpy(r->t->data, h->t->data, h->t->nbytes);
  return 1;
}

static int l_host_tostring(lua_State *L) {
  lhost *h = check_host(L, 1);
  char sb[160];
  lua_pushfstring(L, "Host(%s %s)", df_shape_str(sb, sizeof sb, h->t->ndim, h->t->shape),
                  df_dtype_lname(h->t->dtype));
  return 1;
}

/* core.view(host, byte_offset, dtype, shape) -> Host sharing host's memory */
static int l_view(lua_State *L) {
  lhost *h = check_host(L, 1);
  lua_Integer off = luaL_checkinteger(L, 2);
  df_dtype dt = check_dtype(L, 3);
  int64_t shape[DF_MAX_DIMS];
  int nd = check_ints(L, 4, shape, DF_MAX_DIMS, "shape");
  luaL_argcheck(L, off >= 0, 2, "negative offset");
  df_err e = {0};
  lhost *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->t = NULL;
  luaL_setmetatable(L, HOST_MT);
  r->t = df_tensor_view(h->t, (size_t)off, dt, nd, shape, &e);
  if (!r->t) return raise_err(L, &e);
  return 1;
}

/* h:copy_from(other): copy values (converting the dtype) into h in place */
static int l_host_copy_from(lua_State *L) {
  lhost *h = check_host(L, 1), *o = check_host(L, 2);
  if (df_tensor_numel(h->t) != df_tensor_numel(o->t)) return luaL_error(L, "copy_from: element counts differ");
  if (h->t->data == o->t->data && h->t->dtype == o->t->dtype) return 0;
  df_dtype_convert(h->t->dtype, h->t->data, o->t->dtype, o->t->data, (size_t)df_tensor_numel(h->t));
  return 0;
}

/* core.stack({Host, ...}) -> Host [n, ...]: same shapes and dtypes. */
static int l_stack(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  if (n < 1 || n > (1 << 24)) return luaL_error(L, "stack: needs 1 or more tensors");
  lua_geti(L, 1, 1);
  df_tensor *first = check_host(L, -1)->t;
  lua_pop(L, 1);
  if (first->ndim >= DF_MAX_DIMS) return luaL_error(L, "stack: rank too high");
  int64_t shape[DF_MAX_DIMS];
  shape[0] = n;
  memcpy(shape + 1, first->shape, (size_t)first->ndim * sizeof *shape);
  df_err e = {0};
  lhost *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->t = NULL;
  luaL_setmetatable(L, HOST_MT);
  r->t = df_tensor_new(first->dtype, first->ndim + 1, shape, &e);
  if (!r->t) return raise_err(L, &e);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 1, i + 1);
    df_tensor *t = check_host(L, -1)->t;
    int same = t->dtype == first->dtype && t->ndim == first->ndim;
    for (int d = 0; same && d < t->ndim; d++) same = t->shape[d] == first->shape[d];
    if (!same) return luaL_error(L, "stack: tensor %d differs in shape or dtype from the first", i + 1);
    memcpy((char *)r->t->data + (size_t)i * first->nbytes, t->data, first->nbytes);
    lua_pop(L, 1);
  }
  return 1;
}

/* core.compare(a, b) -> rel_error ||a-b|| / ||b||, max_abs_diff (float64) */
static int l_compare(lua_State *L) {
  lhost *a = check_host(L, 1), *b = check_host(L, 2);
  int64_t n = df_tensor_numel(a->t);
  if (n != df_tensor_numel(b->t)) {
    char sa[160], sb[160];
    return luaL_error(L, "compare: shapes %s and %s differ",
                      df_shape_str(sa, sizeof sa, a->t->ndim, a->t->shape),
                      df_shape_str(sb, sizeof sb, b->t->ndim, b->t->shape));
  }
  double num = 0, den = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) {
    double x = df_dtype_get(a->t->dtype, a->t->data, (size_t)i);
    double y = df_dtype_get(b->t->dtype, b->t->data, (size_t)i);
    double d = x - y;
    if (isnan(d)) { num = NAN; mx = NAN; break; }
    num += d * d;
    den += y * y;
    if (fabs(d) > mx) mx = fabs(d);
  }
  lua_pushnumber(L, den > 0 ? sqrt(num) / sqrt(den) : sqrt(num));
  lua_pushnumber(L, mx);
  return 2;
}

/* ---------------------------------------------------------------- safetensors */

/* core.load(path) -> {names = {...}, tensors = {name = Host}, metadata = {}}
** | nil, msg */
static int l_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  df_err e = {0};
  df_st_file *f = df_st_open(path, &e);
  if (!f) return fail(L, &e);
  int n = df_st_count(f);
  /* allocate every tensor first; on failure close the file before raising */
  df_tensor **ts = calloc((size_t)(n ? n : 1), sizeof *ts);
  int ok = ts != NULL;
  for (int i = 0; ok && i < n; i++) {
    ts[i] = df_tensor_new(df_st_dtype(f, i), df_st_ndim(f, i), df_st_shape(f, i), &e);
    if (!ts[i]) { ok = 0; break; }
    size_t nb;
    const void *src = df_st_data(f, i, &nb);
    memcpy(ts[i]->data, src, nb);
  }
  if (!ok) {
    for (int i = 0; ts && i < n; i++) df_tensor_unref(ts[i]);
    free(ts);
    df_st_close(f);
    if (!e.code) df_err_set(&e, DF_ENOMEM, "%s: out of memory", path);
    return fail(L, &e);
  }
  lua_createtable(L, 0, 3);
  lua_createtable(L, n, 0);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, df_st_name(f, i));
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, i + 1);
    push_host(L, ts[i]);
    ts[i] = NULL;
    lua_rawset(L, -3);
  }
  lua_setfield(L, -3, "tensors");
  lua_setfield(L, -2, "names");
  int nm = df_st_metadata_count(f);
  lua_createtable(L, 0, nm);
  for (int i = 0; i < nm; i++) {
    const char *k = df_st_metadata_key(f, i);
    lua_pushstring(L, df_st_metadata(f, k));
    lua_setfield(L, -2, k);
  }
  lua_setfield(L, -2, "metadata");
  free(ts);
  df_st_close(f);
  return 1;
}

/* core.save(path, {{name, Host}, ...} [, {key = value}]) -> true | nil, msg */
static int l_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)luaL_len(L, 2);
  df_st_entry *es = lua_newuserdatauv(L, sizeof *es * (size_t)(n ? n : 1), 0);
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_geti(L, -1, 1);
    es[i].name = luaL_checkstring(L, -1);
    lua_pop(L, 1);
    lua_geti(L, -1, 2);
    lhost *h = check_host(L, lua_gettop(L));
    es[i].dtype = h->t->dtype;
    es[i].ndim = h->t->ndim;
    es[i].shape = h->t->shape;
    es[i].data = h->t->data;
    lua_pop(L, 2); /* the table 2 keeps names and hosts alive */
  }
  const char *meta[65];
  int nm = 0;
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3) && nm < 62) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
        meta[nm++] = lua_tostring(L, -2);
        meta[nm++] = lua_tostring(L, -1);
      }
      lua_pop(L, 1);
    }
  }
  meta[nm] = NULL;
  df_err e = {0};
  if (df_st_write(path, es, n, nm ? meta : NULL, &e)) return fail(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

/* ---------------------------------------------------------------- PyTorch checkpoints */

/* A pickled value as a Lua value: containers as tables, tensors as Hosts,
** None as core.null. */
static void push_pth(lua_State *L, const df_pth_value *v, int depth) {
  luaL_checkstack(L, 6, "checkpoint too deep");
  switch (df_pth_type(v)) {
  case DF_PTH_NONE: lua_pushlightuserdata(L, NULL); break;
  case DF_PTH_BOOL: lua_pushboolean(L, (int)df_pth_int(v)); break;
  case DF_PTH_INT: lua_pushinteger(L, df_pth_int(v)); break;
  case DF_PTH_FLOAT: lua_pushnumber(L, df_pth_float(v)); break;
  case DF_PTH_STR: case DF_PTH_BYTES: lua_pushstring(L, df_pth_str(v) ? df_pth_str(v) : ""); break;
  case DF_PTH_TENSOR: push_host(L, df_tensor_ref(df_pth_tensor(v))); break;
  case DF_PTH_TUPLE: case DF_PTH_LIST: {
    size_t n = df_pth_len(v);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
      push_pth(L, df_pth_item(v, i), depth + 1);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  }
  case DF_PTH_DICT: {
    size_t n = df_pth_len(v);
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
      push_pth(L, df_pth_key(v, i), depth + 1);
      push_pth(L, df_pth_item(v, i), depth + 1);
      lua_rawset(L, -3);
    }
    break;
  }
  default: lua_pushnil(L); break;
  }
}

/*
** core.load_pth(path) -> {names = {...}, tensors = {name = Host}, which =
** "model" | "module" | "", extra = {other top-level entries}} | nil, msg.
** The restricted reader never runs pickle code (runtime/pth.h).
*/
static int l_load_pth(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  df_err e = {0};
  df_pth_file *f = df_pth_open(path, &e);
  if (!f) return fail(L, &e);
  const char *which = "";
  int n = df_pth_state_dict(f, &which, &e);
  if (n < 0) {
    df_pth_close(f);
    return fail(L, &e);
  }
  lua_createtable(L, 0, 4);
  lua_createtable(L, n, 0);
  lua_createtable(L, 0, n);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, df_pth_sd_name(f, i));
    lua_pushvalue(L, -1);
    lua_rawseti(L, -4, i + 1);
    push_host(L, df_tensor_ref(df_pth_sd_tensor(f, i)));
    lua_rawset(L, -3);
  }
  lua_setfield(L, -3, "tensors");
  lua_setfield(L, -2, "names");
  lua_pushstring(L, which);
  lua_setfield(L, -2, "which");
  lua_newtable(L);
  const df_pth_value *root = df_pth_root(f);
  if (which[0] && df_pth_type(root) == DF_PTH_DICT) {
    for (size_t i = 0; i < df_pth_len(root); i++) {
      const df_pth_value *k = df_pth_key(root, i);
      if (df_pth_type(k) == DF_PTH_STR && strcmp(df_pth_str(k), which) == 0) continue;
      push_pth(L, k, 0);
      push_pth(L, df_pth_item(root, i), 0);
      lua_rawset(L, -3);
    }
  }
  lua_setfield(L, -2, "extra");
  lua_createtable(L, 0, 0);
  lua_setfield(L, -2, "metadata");
  df_pth_close(f);
  return 1;
}

/* ---------------------------------------------------------------- JSON */

static void push_json(lua_State *L, const df_json *j) {
  luaL_checkstack(L, 4, "JSON too deep");
  switch (j->kind) {
  case DF_JSON_NULL: lua_pushlightuserdata(L, NULL); break;
  case DF_JSON_BOOL: lua_pushboolean(L, j->boolean); break;
  case DF_JSON_NUM:
    if (j->is_int) lua_pushinteger(L, j->i64);
    else lua_pushnumber(L, j->num);
    break;
  case DF_JSON_STR: lua_pushlstring(L, j->str, j->len); break;
  case DF_JSON_ARR:
    lua_createtable(L, (int)j->len, 0);
    for (size_t i = 0; i < j->len; i++) {
      push_json(L, &j->items[i]);
      lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    break;
  case DF_JSON_OBJ:
    lua_createtable(L, 0, (int)j->len);
    for (size_t i = 0; i < j->len; i++) {
      push_json(L, &j->items[i]);
      lua_setfield(L, -2, j->keys[i]);
    }
    break;
  }
}

/* core.json_decode(text) -> value | nil, msg.  null is core.null. */
static int l_json_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  df_err e = {0};
  df_json *j = df_json_parse(s, len, &e);
  if (!j) return fail(L, &e);
  /* push_json can raise only on stack exhaustion; depth is bounded by the parser */
  push_json(L, j);
  df_json_free(j);
  return 1;
}

/* ---------------------------------------------------------------- plans */

static lplan *check_plan(lua_State *L, int idx) { return luaL_checkudata(L, idx, PLAN_MT); }

/* core.compile(graph, outputs, device) -> Plan | nil, msg */
static int l_compile(lua_State *L) {
  lgraph *g = check_graph(L, 1);
  const char *devname = luaL_optstring(L, 3, "ref");
  lua_settop(L, 3);
  df_node_id *ids = ids_scratch(L, 2);
  int n = collect_outputs(L, 2, g, ids, INT32_MAX);
  df_err e = {0};
  const df_device *dev = df_device_get(devname, &e);
  if (!dev) return fail(L, &e);
  lplan *p = lua_newuserdatauv(L, sizeof *p, 1);
  p->p = NULL;
  p->dev = dev;
  p->n_out = n;
  luaL_setmetatable(L, PLAN_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1); /* the plan borrows the graph: keep it alive */
  p->p = dev->compile(g->g, ids, n, &e);
  if (!p->p) return fail(L, &e);
  return 1;
}

static int l_plan_gc(lua_State *L) {
  lplan *p = check_plan(L, 1);
  if (p->p) p->dev->plan_free(p->p);
  p->p = NULL;
  return 0;
}

/* plan:run({name = Host, ...} [, into]) -> {Host, ...} | nil, msg
** into[i], when given, is a Host that output i is written into. */
static int l_plan_run(lua_State *L) {
  lua_settop(L, 3);
  lplan *p = check_plan(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!p->p) return luaL_error(L, "plan is closed");
  int nf = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    nf++;
    lua_pop(L, 1);
  }
  df_binding *b = lua_newuserdatauv(L, sizeof *b * (size_t)(nf ? nf : 1), 0);
  int i = 0;
  lua_pushnil(L);
  while (lua_next(L, 2)) {
    if (lua_type(L, -2) != LUA_TSTRING) return luaL_error(L, "run: feed keys must be names");
    lhost *h = luaL_testudata(L, -1, HOST_MT);
    if (!h) return luaL_error(L, "run: feed '%s' is not a host tensor", lua_tostring(L, -2));
    b[i].name = lua_tostring(L, -2);
    b[i].tensor = h->t;
    i++;
    lua_pop(L, 1);
  }
  df_tensor **outs = lua_newuserdatauv(L, sizeof *outs * (size_t)(p->n_out ? p->n_out : 1), 0);
  for (int k = 0; k < p->n_out; k++) {
    outs[k] = NULL;
    if (lua_istable(L, 3)) {
      lua_geti(L, 3, k + 1);
      lhost *h = luaL_testudata(L, -1, HOST_MT);
      if (h) outs[k] = h->t;
      lua_pop(L, 1);
    }
  }
  df_err e = {0};
  if (p->dev->run(p->p, b, nf, outs, &e)) return fail(L, &e);
  lua_createtable(L, p->n_out, 0);
  for (int k = 0; k < p->n_out; k++) {
    int given = 0;
    if (lua_istable(L, 3)) { /* written in place: return the given Host itself */
      lua_geti(L, 3, k + 1);
      given = luaL_testudata(L, -1, HOST_MT) != NULL;
      if (!given) lua_pop(L, 1);
    }
    if (!given) push_host(L, outs[k]);
    lua_rawseti(L, -2, k + 1);
  }
  return 1;
}

static int l_plan_stats(lua_State *L) {
  lplan *p = check_plan(L, 1);
  df_plan_stats st = {0};
  if (p->p && p->dev->plan_stats) p->dev->plan_stats(p->p, &st);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, st.nodes);
  lua_setfield(L, -2, "nodes");
  lua_pushnumber(L, st.peak_bytes);
  lua_setfield(L, -2, "peak_bytes");
  lua_pushstring(L, p->dev->name);
  lua_setfield(L, -2, "device");
  lua_pushinteger(L, st.kernels);
  lua_setfield(L, -2, "kernels");
  lua_pushinteger(L, st.cache_hits);
  lua_setfield(L, -2, "cache_hits");
  lua_pushinteger(L, st.cache_misses);
  lua_setfield(L, -2, "cache_misses");
  lua_pushnumber(L, st.codegen_seconds);
  lua_setfield(L, -2, "codegen_seconds");
  return 1;
}

/* core.set_kernel_cache(enabled [, path]) */
static int l_set_kernel_cache(lua_State *L) {
  df_set_kernel_cache(lua_toboolean(L, 1), luaL_optstring(L, 2, NULL));
  return 0;
}

static int l_plan_close(lua_State *L) { return l_plan_gc(L); }

/* plan:check_finite(on): stop a run at the first non-finite tensor. */
static int l_plan_check_finite(lua_State *L) {
  lplan *p = check_plan(L, 1);
  if (!p->p) return luaL_error(L, "plan is closed");
  if (!p->dev->set_check_finite) return luaL_error(L, "device %s cannot check for non-finite values", p->dev->name);
  p->dev->set_check_finite(p->p, lua_toboolean(L, 2));
  return 0;
}

/* plan:keep({Host, ...}): these tensors' values stay on the device
** between runs (see df_device.keep); nothing on a device that reads host
** memory itself. */
static int l_plan_keep(lua_State *L) {
  lplan *p = check_plan(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!p->p) return luaL_error(L, "plan is closed");
  if (!p->dev->keep) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_Integer n = luaL_len(L, 2);
  if (n < 0 || n > INT32_MAX / (lua_Integer)sizeof(df_tensor *)) return luaL_error(L, "keep: bad list");
  df_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(n ? n : 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, 2, i);
    lhost *h = luaL_testudata(L, -1, HOST_MT);
    if (!h) return luaL_error(L, "keep: item %d is not a host tensor", (int)i);
    ts[i - 1] = h->t;
    lua_pop(L, 1);
  }
  df_err e = {0};
  if (p->dev->keep(p->p, ts, (int)n, &e)) return fail(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

/* plan:sync([host_writes]): the kept tensors' newer values down from the
** device; with host_writes, the next run copies them up again. */
static int l_plan_sync(lua_State *L) {
  lplan *p = check_plan(L, 1);
  if (!p->p || !p->dev->sync) {
    lua_pushboolean(L, 1);
    return 1;
  }
  df_err e = {0};
  if (p->dev->sync(p->p, lua_toboolean(L, 2), &e)) return fail(L, &e);
  lua_pushboolean(L, 1);
  return 1;
}

/* core.set_gemm("auto" | "blas" | "generated" | "bf16") -> the previous mode: the
** cpu device's float32 products in plans compiled from now on ("bf16":
** an error on a CPU without AVX512-BF16). */
static int l_set_gemm(lua_State *L) {
  static const char *const modes[] = {"blas", "generated", "bf16", "auto", NULL};
  int prev = df_cpu_gemm();
  if (!lua_isnoneornil(L, 1)) {
    int m = luaL_checkoption(L, 1, NULL, modes);
    if (m == DF_GEMM_BF16 && !df_llvm_host_has("avx512bf16"))
      return luaL_error(L, "set_gemm: this CPU has no AVX512-BF16 dot products (the bf16 mode needs them)");
    df_cpu_set_gemm(m);
  }
  lua_pushstring(L, modes[prev]);
  return 1;
}

/* core.set_recompute(on) -> the previous setting: whether graphs
** differentiated from now on recompute cheap activations (gelu,
** layernorm) in the backward instead of keeping them (compiler/autodiff.h). */
static int l_set_recompute(lua_State *L) {
  int prev = lua_isnoneornil(L, 1) ? df_autodiff_recompute() : df_autodiff_set_recompute(lua_toboolean(L, 1));
  lua_pushboolean(L, prev);
  return 1;
}

/* core.gemm_choice(product) -> "blas" | "generated mr=.. ..." [" (stored)" |
** " (tuned)"]: what a cpu plan compiled now would run for this float32
** matmul (a search under --tune, stored in the kernel cache). */
static int l_gemm_choice(lua_State *L) {
  ltensor *t = luaL_checkudata(L, 1, TENSOR_MT);
  lgraph *g = tensor_graph(L, 1);
  const df_node *n = df_graph_node(g->g, t->id);
  if (n->op != DF_OP_MATMUL) return luaL_error(L, "gemm_choice: not a matmul");
  df_gemm_params prm;
  char why[192];
  df_err e = {0};
  if (df_cpu_gemm_choose(g->g, n, &prm, why, sizeof why, &e) < 0) return fail(L, &e);
  lua_pushstring(L, why);
  return 1;
}

/* core.ops() -> {{name =, inputs = {min, max}, differentiable =}, ...} in table order */
static int l_ops(lua_State *L) {
  lua_createtable(L, DF_OP_COUNT, 0);
  for (int i = 0; i < DF_OP_COUNT; i++) {
    const df_op_desc *d = df_op_info((df_op)i);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, d->name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, d->grad != NULL);
    lua_setfield(L, -2, "differentiable");
    lua_pushboolean(L, (d->flags & DF_OPF_SOURCE) != 0);
    lua_setfield(L, -2, "source");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/*
** core.schedule(graph, outputs) -> {fused = n, kernels = {name, ...},
** reasons = {[node id] = rule name}} | nil, msg: the fusion decisions the
** kernel backends make, without compiling anything (for tests and reports).
*/
static int l_schedule(lua_State *L) {
  lgraph *g = check_graph(L, 1);
  lua_settop(L, 3);
  df_node_id *ids = ids_scratch(L, 2);
  int n = collect_outputs(L, 2, g, ids, INT32_MAX);
  df_err e = {0};
  df_schedule *s = df_schedule_build(g->g, ids, n, &e);
  if (!s) return fail(L, &e);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, s->n_fused);
  lua_setfield(L, -2, "fused");
  lua_pushinteger(L, (lua_Integer)s->arena_bytes);
  lua_setfield(L, -2, "arena_bytes");
  lua_newtable(L);
  int nk = 0;
  for (int i = 0; i < s->nsteps; i++) {
    const df_step *st = &s->steps[i];
    lua_pushstring(L, st->kind == DF_STEP_KERNEL ? st->kernel->name
                      : st->kind == DF_STEP_MATMUL ? "matmul" : df_op_name(df_graph_node(g->g, st->node)->op));
    lua_rawseti(L, -2, ++nk);
  }
  lua_setfield(L, -2, "steps");
  lua_newtable(L); /* outputs per step */
  for (int i = 0; i < s->nsteps; i++) {
    lua_pushinteger(L, s->steps[i].nout);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "nout");
  lua_newtable(L); /* the node of each slot each step touches (outputs first) */
  for (int i = 0; i < s->nsteps; i++) {
    lua_newtable(L);
    for (int k = 0; k < s->steps[i].nslots; k++) {
      lua_pushinteger(L, s->slots[s->steps[i].slots[k]].node);
      lua_rawseti(L, -2, k + 1);
    }
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "step_nodes");
  lua_newtable(L); /* the outputs (1-based) computed in place into a feed */
  for (int i = 0, k = 0; i < s->n_out; i++)
    if (s->out_alias[i]) {
      lua_pushinteger(L, i + 1);
      lua_rawseti(L, -2, ++k);
    }
  lua_setfield(L, -2, "in_place");
  { /* the step where the most arena bytes are live, and its largest slots */
    double best = -1;
    int at = 0;
    for (int t = 0; t <= s->nsteps; t++) {
      double live = 0;
      for (int i = 0; i < s->nslots; i++) {
        const df_slot *x = &s->slots[i];
        if (x->kind == DF_SLOT_ARENA && x->first <= t && x->last >= t)
          live += (double)x->numel * (double)df_dtype_size(x->dtype);
      }
      if (live > best) best = live, at = t;
    }
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, at + 1);
    lua_setfield(L, -2, "step");
    lua_pushnumber(L, best);
    lua_setfield(L, -2, "bytes");
    lua_newtable(L);
    for (int i = 0, k = 0; i < s->nslots; i++) {
      const df_slot *x = &s->slots[i];
      if (x->kind != DF_SLOT_ARENA || x->first > at || x->last < at) continue;
      lua_createtable(L, 2, 0);
      lua_pushinteger(L, x->node);
      lua_rawseti(L, -2, 1);
      lua_pushnumber(L, (double)x->numel * (double)df_dtype_size(x->dtype));
      lua_rawseti(L, -2, 2);
      lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, -2, "slots");
    lua_setfield(L, -2, "peak");
  }
  lua_newtable(L);
  for (int i = 0; i < df_graph_count(g->g); i++) {
    const char *r = df_schedule_reason(s, i);
    if (!r) continue;
    lua_pushstring(L, r);
    lua_rawseti(L, -2, i);
  }
  lua_setfield(L, -2, "reasons");
  df_schedule_free(s);
  return 1;
}

/* core.blas() -> {core = the kernel family OpenBLAS chose, threads = n} */
extern char *openblas_get_corename(void);
extern int openblas_get_num_threads(void);
static int l_blas(lua_State *L) {
  df_pool_threads(); /* sets OpenBLAS's thread count */
  lua_createtable(L, 0, 2);
  lua_pushstring(L, openblas_get_corename());
  lua_setfield(L, -2, "core");
  lua_pushinteger(L, openblas_get_num_threads());
  lua_setfield(L, -2, "threads");
  return 1;
}

/* core.sgemm_gflops(n, reps) -> best GFLOP/s of an n x n x n sgemm: the
** machine's measured ceiling for float32 products. */
static int l_sgemm_gflops(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 2048), reps = luaL_optinteger(L, 2, 5);
  luaL_argcheck(L, n > 0 && n <= 8192, 1, "size out of range");
  df_pool_threads();
  float *a = malloc((size_t)(n * n) * sizeof *a), *b = malloc((size_t)(n * n) * sizeof *b),
        *c = malloc((size_t)(n * n) * sizeof *c);
  if (!a || !b || !c) {
    free(a), free(b), free(c);
    return luaL_error(L, "out of memory");
  }
  for (lua_Integer i = 0; i < n * n; i++) a[i] = b[i] = (float)((i % 17) - 8) * 0.01f;
  double best = 0;
  for (lua_Integer r = 0; r < reps; r++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9;
    double g = 2.0 * (double)n * (double)n * (double)n / s * 1e-9;
    if (g > best) best = g;
  }
  free(a), free(b), free(c);
  lua_pushnumber(L, best);
  return 1;
}

/* core.peak_rss_mb() -> this process's peak resident set, MiB */
static int l_peak_rss(lua_State *L) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  lua_pushnumber(L, (double)ru.ru_maxrss / 1024.0);
  return 1;
}

/* core.exe() -> the path of the running program */
static int l_exe(lua_State *L) {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return 0;
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* core.set_dump_dir(dir | nil): where compiled kernels are written. */
static int l_set_dump_dir(lua_State *L) {
  df_set_dump_dir(luaL_optstring(L, 1, NULL));
  return 0;
}

/*
** core.cuda_check(graph, outputs [, arch [, dump_path]]) -> {kernels =,
** distinct =, library_kernels =, cubin_bytes =, seconds =, nvrtc =} | nil,
** msg: fuse the graph as the kernel backends do, print every kernel (and
** the library steps' kernels) as CUDA C, as the cuda device does, and
** compile them all with NVRTC for sm_<arch> (90).  Needs no GPU.
*/
static int l_cuda_check(lua_State *L) {
  lgraph *g = check_graph(L, 1);
  lua_Integer arch = luaL_optinteger(L, 3, 90);
  const char *dump = luaL_optstring(L, 4, NULL);
  lua_settop(L, 4);
  df_node_id *ids = ids_scratch(L, 2);
  int n = collect_outputs(L, 2, g, ids, INT32_MAX);
  df_err e = {0};
  if (df_nvrtc_available(&e)) return fail(L, &e);
  df_schedule *s = df_schedule_build(g->g, ids, n, &e);
  if (!s) return fail(L, &e);
  int nk = 0, nlib = 0;
  for (int i = 0; i < s->nsteps; i++) {
    nk += s->steps[i].kind == DF_STEP_KERNEL;
    nlib += s->steps[i].kind == DF_STEP_LIB;
  }
  /* the generated kernels and the library steps' kernels, as cuda runs them */
  char *src = df_cuda_schedule_source(s, &e);
  int distinct = 0;
  for (const char *p = src; p && (p = strstr(p, "__global__")); p++) distinct++;
  if (!src) {
    df_schedule_free(s);
    return fail(L, &e);
  }
  if (dump) {
    FILE *f = fopen(dump, "w");
    if (f) {
      fputs(src, f);
      fclose(f);
    }
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  void *cubin = NULL;
  size_t size = 0;
  int rc = df_nvrtc_compile(src, "dferc_kernels.cu", (int)arch, &cubin, &size, &e);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  free(src);
  free(cubin);
  df_schedule_free(s);
  if (rc) return fail(L, &e);
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, nk);
  lua_setfield(L, -2, "kernels");
  lua_pushinteger(L, distinct);
  lua_setfield(L, -2, "distinct");
  lua_pushinteger(L, nlib);
  lua_setfield(L, -2, "library_kernels");
  lua_pushinteger(L, (lua_Integer)size);
  lua_setfield(L, -2, "cubin_bytes");
  lua_pushnumber(L, (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) * 1e-9);
  lua_setfield(L, -2, "seconds");
  lua_pushstring(L, df_nvrtc_version());
  lua_setfield(L, -2, "nvrtc");
  return 1;
}

/* core.devices() -> {"ref", ...} */
/* core.supports(device, opname) -> whether the device (built and usable
** here or not) has a kernel for the op; false for an unknown device */
static int l_supports(lua_State *L) {
  const char *dev = luaL_checkstring(L, 1), *opname = luaL_checkstring(L, 2);
  df_op op;
  if (df_op_parse(opname, &op)) return luaL_error(L, "supports: unknown op '%s'", opname);
  const df_device *d = df_device_find(dev);
  lua_pushboolean(L, d && d->supports_op && d->supports_op(op));
  return 1;
}

static int l_devices(lua_State *L) {
  const char *const *names = df_device_names();
  lua_newtable(L);
  for (int i = 0; names[i]; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

/* core.clock() -> seconds, monotonic */
static int l_clock(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
  return 1;
}

/* ---------------------------------------------------------------- module */

int luaopen_dferc_core(lua_State *L) {
  static const luaL_Reg graph_m[] = {
      {"count", l_graph_count}, {"node", l_graph_node}, {"dot", l_graph_dot}, {NULL, NULL}};
  luaL_newmetatable(L, GRAPH_MT);
  luaL_newlib(L, graph_m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_graph_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);

  luaL_newmetatable(L, TENSOR_MT);
  lua_pushcfunction(L, l_tensor_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_tensor_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  static const luaL_Reg host_m[] = {{"get", l_host_get},         {"set", l_host_set},
                                    {"totable", l_host_totable}, {"cast", l_host_cast},
                                    {"reshape", l_host_reshape}, {"copy_from", l_host_copy_from},
                                    {NULL, NULL}};
  luaL_newmetatable(L, HOST_MT);
  luaL_newlib(L, host_m);
  lua_setfield(L, -2, "methods");
  lua_pushcfunction(L, l_host_index);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_host_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_host_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);

  static const luaL_Reg plan_m[] = {
      {"run", l_plan_run}, {"stats", l_plan_stats}, {"close", l_plan_close},
      {"check_finite", l_plan_check_finite}, {"keep", l_plan_keep}, {"sync", l_plan_sync}, {NULL, NULL}};
  luaL_newmetatable(L, PLAN_MT);
  luaL_newlib(L, plan_m);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, l_plan_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, l_plan_gc);
  lua_setfield(L, -2, "__close");
  lua_pop(L, 1);

  static const luaL_Reg funcs[] = {
      {"gemm_choice", l_gemm_choice},
      {"set_gemm", l_set_gemm}, {"set_recompute", l_set_recompute},
      {"graph", l_graph_new},       {"op", l_op},
      {"grad", l_grad},
      {"location", l_location},     {"set_methods", l_set_methods},
      {"tensor_metatable", l_tensor_mt}, {"is_tensor", l_is_tensor},
      {"host", l_host_new},         {"randn", l_randn},
      {"rand", l_rand},             {"compare", l_compare},
      {"init", l_init},             {"stack", l_stack},
      {"view", l_view},
      {"load", l_load},             {"save", l_save},
      {"load_pth", l_load_pth},
      {"json_decode", l_json_decode}, {"compile", l_compile},
      {"devices", l_devices},       {"supports", l_supports},       {"ops", l_ops},
      {"schedule", l_schedule},     {"set_dump_dir", l_set_dump_dir},
      {"cuda_check", l_cuda_check},
      {"set_kernel_cache", l_set_kernel_cache},
      {"blas", l_blas},             {"sgemm_gflops", l_sgemm_gflops},
      {"peak_rss_mb", l_peak_rss},  {"exe", l_exe},       {"clock", l_clock},
      {NULL, NULL}};
  luaL_newlib(L, funcs);
  lua_pushlightuserdata(L, NULL);
  lua_setfield(L, -2, "null");
  lua_pushstring(L, datadir);
  lua_setfield(L, -2, "datadir");
  lua_pushstring(L, PACKAGE_VERSION);
  lua_setfield(L, -2, "version");
  return 1;
}
