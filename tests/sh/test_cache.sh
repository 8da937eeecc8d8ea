#!/usr/bin/env bash
# The kernel cache shared by processes (tests/cache_stress, beside $DFERC):
# 8 processes at once on one database, a writer killed with kill -9 in the
# middle of its writes, a changed toolchain string; then the dferc.cache Lua
# module and `dferc cache`, when this dferc has them.  Under 60 s.
set -u
D=${DFERC:-./dferc}
S=${CACHE_STRESS:-$(dirname "$D")/tests/cache_stress}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export DFERC_CACHE="$tmp/default.db" # never the user's own cache

ok() { echo "ok $1"; }
nok() { echo "not ok $1: $2"; }
oneline() { tr '\n' ' ' | cut -c1-300; }

# ---------------------------------------------------------------- processes

if [ ! -x "$S" ]; then
  echo "skip cache_stress: $S is not built (make check builds it)"
else
  db="$tmp/shared.db"
  pids=()
  for i in 1 2 3 4 5 6 7 8; do
    "$S" "$db" run "$i" 300 "$tmp/agree.$i" >"$tmp/run.$i.out" 2>"$tmp/run.$i.err" &
    pids+=($!)
  done
  bad=""
  for i in 1 2 3 4 5 6 7 8; do
    wait "${pids[$((i - 1))]}" || bad+="process $i exited $?: $(oneline <"$tmp/run.$i.err"); "
    [ -s "$tmp/run.$i.err" ] && bad+="process $i: $(oneline <"$tmp/run.$i.err"); "
  done
  if [ -z "$bad" ]; then ok eight_processes_one_database; else nok eight_processes_one_database "$bad"; fi

  # the first committed row of each key won everywhere: every process read
  # back the same rows (the config names the process that stored them)
  same=yes
  for i in 2 3 4 5 6 7 8; do cmp -s "$tmp/agree.1" "$tmp/agree.$i" || same="process $i disagrees with process 1"; done
  [ -s "$tmp/agree.1" ] || same="no agreement file"
  if [ "$same" = yes ]; then ok processes_read_the_same_rows; else nok processes_read_the_same_rows "$same"; fi

  if out=$("$S" "$db" verify 2>&1); then ok "shared_database_consistent ($out)"
  else nok shared_database_consistent "$(echo "$out" | oneline)"; fi

  out=$("$S" "$db" lookup "llvm 15.0.7" 2>&1)
  if [ "$out" = "hits 0" ]; then ok changed_toolchain_misses; else nok changed_toolchain_misses "$out"; fi
  out=$("$S" "$db" lookup "llvm 14.0.6" 2>&1)
  if [ "$out" = "hits 48" ]; then ok same_toolchain_hits; else nok same_toolchain_hits "$out"; fi

  # a garbage file that 8 processes open at once: one of them moves it
  # aside, with the only warning, and all of them work on the new file
  mkdir "$tmp/g8"
  head -c 30000 /dev/urandom >"$tmp/g8/kernels.db"
  pids=()
  for i in 1 2 3 4 5 6 7 8; do
    "$S" "$tmp/g8/kernels.db" run "$i" 50 "$tmp/g8agree.$i" >/dev/null 2>"$tmp/g8.$i.err" &
    pids+=($!)
  done
  bad=""
  for i in 1 2 3 4 5 6 7 8; do wait "${pids[$((i - 1))]}" || bad+="process $i exited $?; "; done
  warnings=$(cat "$tmp"/g8.*.err | grep -c 'warning: kernel cache .* is corrupt')
  others=$(cat "$tmp"/g8.*.err | grep -vc 'warning: kernel cache .* is corrupt')
  aside=$(ls "$tmp/g8" | grep -c '^kernels.db.corrupt-')
  if [ -z "$bad" ] && [ "$warnings" -eq 1 ] && [ "$others" -eq 0 ] && [ "$aside" -eq 1 ]; then
    ok eight_processes_one_garbage_file
  else
    nok eight_processes_one_garbage_file "$bad$warnings warnings, $others other lines, $aside files aside: $(cat "$tmp"/g8.*.err | oneline)"
  fi

  # a writer killed in the middle of its writes, while another process
  # works the same database: that one sees no error, and every row that
  # the database lists is served whole
  kdb="$tmp/killed.db"
  for i in 1 2 3 4 5; do
    "$S" "$kdb" writer >"$tmp/w.out" 2>&1 &
    pid=$!
    "$S" "$kdb" run "$((10 + i))" 150 "$tmp/kagree" >"$tmp/k.out" 2>&1 &
    other=$!
    for _ in $(seq 1 250); do grep -q started "$tmp/w.out" 2>/dev/null && break; sleep 0.02; done
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if ! wait "$other"; then
      nok "kill_during_write_$i" "the other process failed: $(oneline <"$tmp/k.out")"
    elif out=$("$S" "$kdb" verify 2>&1); then
      ok "kill_during_write_$i ($out)"
    else
      nok "kill_during_write_$i" "$(echo "$out" | oneline)"
    fi
  done
fi

# ---------------------------------------------------------------- Lua module

cat >"$tmp/probe.lua" <<'LUA'
print(pcall(require, "dferc.cache") and "yes" or "no")
LUA
if [ "$("$D" run "$tmp/probe.lua" 2>/dev/null)" != yes ]; then
  echo "skip lua_cache_module: this dferc has no dferc.cache module (lua/main.c preloads it)"
else
  cat >"$tmp/module.lua" <<'LUA'
local cache = require "dferc.cache"
local dir = arg[1]
local function check(name, cond, why)
  if cond then print("ok " .. name) else print("not ok " .. name .. ": " .. tostring(why)) end
end
local key = {ir_hash = "0123456789abcdef", backend = "cpu", device = "host", arch = "x86-64+avx2",
             toolchain = "llvm 14.0.6", dferc_version = "0.1.0", options = "-O3", tuning = "tile=64"}
local c = assert(cache.open(dir .. "/lua.db", {quiet = true}))
local blob = string.rep("\0\255", 5000) .. "end"
local ok, how = c:put(key, blob, '{"tile":64}', '[0.5,0.4]')
check("lua_put", ok == true and how == "stored", how)
check("lua_put_again_keeps", select(2, c:put(key, "other")) == "kept")
local e = c:get(key)
check("lua_get", e and e.blob == blob and e.config == '{"tile":64}' and e.times == '[0.5,0.4]'
  and e.hits == 0 and math.type(e.created) == "integer")
local k2 = {}
for k, v in pairs(key) do k2[k] = v end
k2.toolchain = "llvm 15.0.7"
check("lua_changed_toolchain_misses", c:get(k2) == nil)
local x = c:explain(k2)
check("lua_explain_names_toolchain", x.status == "nearest" and #x.differ == 1
  and x.differ[1].field == "toolchain" and x.differ[1].want == "llvm 15.0.7"
  and x.differ[1].have == "llvm 14.0.6" and x.nearest.tuning == "tile=64", x.status)
check("lua_explain_hit", c:explain(key).status == "hit")
local rows = c:list()
check("lua_list", #rows == 1 and rows[1].ir_hash == key.ir_hash and rows[1].size == #blob
  and rows[1].hits == 1)
local s = c:stats()
check("lua_stats", s.entries == 1 and s.bytes == #blob and s.hits == 1 and s.misses == 1
  and s.run_hits == 1 and s.run_misses == 1 and s.run_stores == 1 and s.mode == "file")
check("lua_path", select(1, c:path()) == dir .. "/lua.db" and select(2, c:path()) == "file")
local okk, err = pcall(c.get, c, {irhash = "x"})
check("lua_unknown_field_raises", not okk and err:find("unknown field 'irhash'", 1, true), err)
okk, err = pcall(c.put, c, {ir_hash = "XYZ", backend = "cpu"}, "b")
check("lua_bad_hash_raises", not okk and err:find("ir_hash 'XYZ'", 1, true), err)
check("lua_clear", c:clear() == 1 and c:get(key) == nil and #c:list() == 0)
c:close()
c:close()
okk, err = pcall(c.get, c, key)
check("lua_closed_raises", not okk and err:find("closed", 1, true), err)
do
  local d <close> = assert(cache.open(dir .. "/lua.db", {disabled = true}))
  check("lua_disabled", select(2, d:put(key, "x")) == "dropped" and d:get(key) == nil
    and d:explain(key).status == "disabled")
end
local m = assert(cache.open(dir .. "/a_file.txt/kernels.db", {quiet = true}))
check("lua_memory_fallback", select(2, m:path()) == "memory" and m:warnings() == 1
  and select(2, m:put(key, "x")) == "stored" and m:get(key).blob == "x")
m = nil
collectgarbage()
check("lua_fields", #cache.fields == 8 and cache.fields[5] == "toolchain")
LUA
  echo x >"$tmp/a_file.txt"
  "$D" run "$tmp/module.lua" "$tmp" 2>&1 || echo "not ok lua_cache_module: exit $?"
fi

# ---------------------------------------------------------------- dferc cache

if ! "$D" cache help >/dev/null 2>&1; then
  echo "skip dferc_cache_command: this dferc has no 'cache' command (lua/dferc/cli.lua wires it)"
  exit 0
fi

# expect NAME STATUS TEXT -- CMD...: CMD exits with STATUS and its output contains TEXT
expect() {
  local name=$1 want=$2 text=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then nok "$name" "exit $rc, expected $want: $(echo "$out" | tail -3 | oneline)"
  elif [[ "$out" != *"$text"* ]]; then nok "$name" "output does not contain '$text': $(echo "$out" | tail -3 | oneline)"
  else ok "$name"; fi
}

cdb="$tmp/cli.db"
cat >"$tmp/fill.lua" <<'LUA'
local c = assert(require("dferc.cache").open(arg[1]))
for i, t in ipairs {"tile=32", "tile=64"} do
  assert(c:put({ir_hash = "00000000000000aa", backend = "cpu", device = "host", arch = "x86-64",
                toolchain = "llvm 14.0.6", dferc_version = "0.1.0", options = "-O3", tuning = t},
               string.rep("k", 100 * i), "{}", "[]"))
end
LUA
"$D" run "$tmp/fill.lua" "$cdb"
expect cli_stats 0 "entries  2" -- "$D" cache stats --cache "$cdb"
expect cli_stats_bytes 0 "bytes    300" -- "$D" cache stats --cache "$cdb"
expect cli_stats_env 0 "path     $cdb" -- env DFERC_CACHE="$cdb" "$D" cache stats
expect cli_list 0 "00000000000000aa cpu tuning=tile=64 200 bytes, 0 hits" -- "$D" cache list --cache "$cdb"
n=$("$D" cache list --cache "$cdb" | wc -l)
if [ "$n" -eq 2 ]; then ok cli_list_one_line_per_entry; else nok cli_list_one_line_per_entry "$n lines"; fi
expect cli_explain_toolchain 0 'toolchain: wanted "llvm 15.0.7", the entry has "llvm 14.0.6"' -- \
  "$D" cache explain --cache "$cdb" ir_hash=00000000000000aa backend=cpu toolchain="llvm 15.0.7" tuning=tile=64
expect cli_explain_one_field 0 "differs in 1 field:" -- \
  "$D" cache explain --cache "$cdb" ir_hash=00000000000000aa backend=cpu toolchain="llvm 15.0.7" tuning=tile=64
expect cli_explain_hit 0 "hit: $cdb has an entry" -- \
  "$D" cache explain --cache "$cdb" ir_hash=00000000000000aa tuning=tile=32
expect cli_explain_bad_field 1 "unknown key field 'colour'" -- "$D" cache explain --cache "$cdb" colour=red
expect cli_explain_bad_hash 1 "ir_hash 'XY' is not 16 or 32 lowercase hex digits" -- \
  "$D" cache explain --cache "$cdb" ir_hash=XY
expect cli_unknown_subcommand 1 "unknown subcommand 'frob'" -- "$D" cache frob
expect cli_no_cache 0 "mode     disabled" -- "$D" cache stats --no-cache --cache "$cdb"
expect cli_clear 0 "removed 2 entries" -- "$D" cache clear --cache "$cdb"
expect cli_cleared 0 "entries  0" -- "$D" cache stats --cache "$cdb"

# a garbage file: moved aside with exactly one warning line, and it works
mkdir "$tmp/g"
head -c 20000 /dev/urandom >"$tmp/g/kernels.db"
out=$("$D" cache stats --cache "$tmp/g/kernels.db" 2>"$tmp/g.err")
rc=$?
nw=$(grep -c warning "$tmp/g.err")
if [ "$rc" -eq 0 ] && [ "$nw" -eq 1 ] && [[ "$out" == *"entries  0"* ]] && ls "$tmp/g" | grep -q '^kernels.db.corrupt-'; then
  ok cli_garbage_moved_aside_one_warning
else
  nok cli_garbage_moved_aside_one_warning "exit $rc, $nw warnings: $(oneline <"$tmp/g.err")"
fi
exit 0
