/*
** lcache.h -- the `dferc.cache` Lua module: the kernel cache (cache/cache.h)
** for Lua.
**
**   cache.open([path], {disabled = bool, quiet = bool}) -> Cache | nil, msg
**   cache.fields                      the key field names, in order
**   Cache:get(key) -> {blob =, config =, times =, created =, used =, hits =} | nil
**                     (nil, msg on a database error)
**   Cache:put(key, blob [, config [, times]]) -> true, "stored"|"kept"|"dropped"
**                     | nil, msg
**   Cache:stats()   -> {path, mode, entries, bytes, hits, misses, run_hits,
**                       run_misses, run_stores, file_bytes}
**   Cache:list()    -> {{<key fields>, size, hits, created, used, config, times}, ...}
**   Cache:clear()   -> rows removed | nil, msg
**   Cache:explain(key) -> {status = "hit"|"invalid"|"nearest"|"empty"|"disabled",
**                          entries, nearest = {<key fields>} | nil, size, hits,
**                          created, used, differ = {{field, want, have}, ...}, reason}
**   Cache:path()    -> path, mode ("file", "memory", "disabled")
**   Cache:warnings() -> count, last
**   Cache:close()   (also __close and __gc)
**   cache.set_tune(on)  search kernels without a tuned winner (`--tune`; compiler/tune.h)
**   cache.tune_stats() -> {searched, from_cache, defaults, untunable, candidates,
**                          rejected, seconds, searching}: this process's autotuner
**   cache.tune_inject_wrong(on)  test only: search adds a wrong candidate
**
** A key is a table of strings named by cache.fields (ir_hash and backend
** required for get and put; in explain a missing field is not compared).
** An unknown field, a non-string value, a bad ir_hash or a closed cache
** raise an error (misuse); database failures return nil, message.
*/
#ifndef DF_LCACHE_H
#define DF_LCACHE_H

#include <lua.h>

int luaopen_dferc_cache(lua_State *L);

#endif
