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

#endif
