/*
** ldferc.h -- the `dferc.core` Lua module: the only C code that knows Lua.
**
** Types (one metatable each): dferc.Graph, dferc.Tensor (a symbolic node
** of a graph), dferc.Host (a host tensor), dferc.Plan (a compiled graph).
** Misuse raises a Lua error; functions whose failure is expected (loading
** a file) return nil, message.
*/
#ifndef DF_LDFERC_H
#define DF_LDFERC_H

#include <lua.h>

int luaopen_dferc_core(lua_State *L);

/* The data directory (holding lua/ and models/) that main found; exposed
** as core.datadir. */
void df_lua_set_datadir(const char *dir);

/* For other binding modules (dferc.data, dferc.cache, ...):
** push a dferc.Host userdata that takes over the caller's reference to t
** (pushes nil when t is NULL); and the tensor of the Host at idx (raises a
** Lua error when it is not one; the Host keeps its reference). */
struct df_tensor;
void df_lua_push_host(lua_State *L, struct df_tensor *t);
struct df_tensor *df_lua_check_host(lua_State *L, int idx);

#endif
