/*
** ldata.h -- the `dferc.data` Lua module: annotation files, clips, the
** frame-index rules and the background loader.
**
** Types (one metatable each): dferc.Clip (an open clip), dferc.Loader (a
** running loader).  Frames come back as dferc.Host u8 [T, H, W, 3]; the
** module loads dferc.core first so that the Host type exists.  Expected
** failures (a missing file, a bad frame) return nil, message; misuse (a
** wrong argument type, a closed handle) raises an error.
*/
#ifndef DF_LDATA_H
#define DF_LDATA_H

#include <lua.h>

int luaopen_dferc_data(lua_State *L);

#endif
