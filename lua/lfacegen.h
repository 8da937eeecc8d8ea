/*
** lfacegen.h -- the `dferc.facegen` Lua module: the synthetic
** dynamic-expression dataset of `dferc make-demo-data` (runtime/facegen.h).
**
**   facegen.dataset(dir [, {seed =, clips =, frames =, size =, progress =}])
**     -> true, {train =, val =, test =, skipped =, threads =} | nil, msg
**   facegen.clip(seed, label [, frames [, size]]) -> Host u8 [frames, size, size, 3]
**   facegen.classes  {"happy", "sad", ...}: class id i is classes[i + 1]
**   facegen.defaults {clips =, frames =, size =}
**
** Expected failures (a folder that cannot be written, arguments out of
** range) return nil, message; misuse (a wrong argument type) raises.
*/
#ifndef DF_LFACEGEN_H
#define DF_LFACEGEN_H

#include <lua.h>

int luaopen_dferc_facegen(lua_State *L);

#endif
