/*
** main.c -- the dferc program: starts an embedded Lua 5.4, finds the dferc
** Lua library and model scripts, and hands the command line to
** dferc.cli.main().
**
** The data directory (holding lua/dferc/ and models/) is the first of:
** each entry of $DFERC_PATH (':'-separated), the program's own directory
** and its parent (a build tree, or a program copied with its Lua files),
** <program dir>/../share/dferc, the source tree it was built from, and the
** configured data directory (after `make install`).
*/
#include "config.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lua/lcache.h"
#include "lua/ldata.h"
#include "lua/ldferc.h"
#include "lua/lfacegen.h"
#include "lua/ltransform.h"

static int has_library(const char *dir) {
  char p[4400];
  snprintf(p, sizeof p, "%s/lua/dferc/init.lua", dir);
  return access(p, R_OK) == 0;
}

/* Find the data directory into out; returns 0 or -1. */
static int find_datadir(char *out, size_t outsz) {
  const char *env = getenv("DFERC_PATH");
  if (env && *env) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", env);
    for (char *save = NULL, *tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save))
      if (has_library(tok)) {
        snprintf(out, outsz, "%s", tok);
        return 0;
      }
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    const char *suffixes[] = {"", "/..", "/../..", "/../share/dferc", "/../../share/dferc"};
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
      char cand[4200];
      snprintf(cand, sizeof cand, "%s%s", exe, suffixes[i]);
      if (has_library(cand)) {
        char *r = realpath(cand, NULL);
        snprintf(out, outsz, "%.4000s", r ? r : cand);
        free(r);
        return 0;
      }
    }
  }
  const char *fixed[] = {DFERC_SRCDIR, DFERC_DATADIR};
  for (size_t i = 0; i < 2; i++)
    if (has_library(fixed[i])) {
      snprintf(out, outsz, "%s", fixed[i]);
      return 0;
    }
  return -1;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = luaL_tolstring(L, 1, NULL);
  if (getenv("DFERC_TRACEBACK")) luaL_traceback(L, L, msg, 1);
  else lua_pushstring(L, msg);
  return 1;
}

int main(int argc, char **argv) {
  char dir[4096];
  if (find_datadir(dir, sizeof dir)) {
    fprintf(stderr, "dferc: cannot find the dferc Lua library (lua/dferc/init.lua); "
                    "set DFERC_PATH to the folder that holds lua/ and models/\n");
    return 2;
  }
  df_lua_set_datadir(dir);
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "dferc: out of memory\n");
    return 2;
  }
  luaL_openlibs(L);
  /* package.path: the dferc library first, then the models folder */
  lua_getglobal(L, "package");
  lua_pushfstring(L, "%s/lua/?.lua;%s/lua/?/init.lua;%s/models/?.lua;", dir, dir, dir);
  lua_getfield(L, -2, "path");
  lua_concat(L, 2);
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_dferc_core);
  lua_setfield(L, -2, "dferc.core");
  lua_pushcfunction(L, luaopen_dferc_data);
  lua_setfield(L, -2, "dferc.data");
  lua_pushcfunction(L, luaopen_dferc_cache);
  lua_setfield(L, -2, "dferc.cache");
  lua_pushcfunction(L, luaopen_dferc_transform);
  lua_setfield(L, -2, "dferc.transform");
  lua_pushcfunction(L, luaopen_dferc_facegen);
  lua_setfield(L, -2, "dferc.facegen");
  lua_pop(L, 2);

  lua_pushcfunction(L, traceback);
  int tb = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushstring(L, "dferc.cli");
  int rc = lua_pcall(L, 1, 1, tb);
  if (rc == LUA_OK) {
    lua_getfield(L, -1, "main");
    lua_createtable(L, argc, 0);
    for (int i = 1; i < argc; i++) {
      lua_pushstring(L, argv[i]);
      lua_rawseti(L, -2, i);
    }
    rc = lua_pcall(L, 1, 1, tb);
  }
  int status;
  if (rc != LUA_OK) {
    fprintf(stderr, "dferc: %s\n", lua_tostring(L, -1));
    status = 1;
  } else {
    status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
  }
  lua_close(L);
  return status;
}
