#!/usr/bin/env bash
# A checkpoint survives kill -9 in the middle of a save: the file under
# the real name is always a complete checkpoint (the previous or the new).
set -u
D=${DFERC:-./dferc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/saver.lua" <<'LUA'
local df = require "dferc"
local train = require "dferc.train"
local S = require "mae_dfer"
local cli = require "dferc.cli"
local path = arg[1]
local model = S.build {kind = "finetune", img = 32, frames = 4, region = {2, 2, 2}, dim = 128, heads = 2,
                       depth = 3, classes = 3}
local init = {}
for k, p in ipairs(model.params) do init[p.name] = cli.init_param(p, k) end
local step = assert(train.compile {model = model, loss = model.outputs.loss,
                                   optimizer = train.adamw {lr = 1e-3}})
step:set_params(init)
local n = 0
while true do
  n = n + 1
  assert(step:save(path, {generation = n}))
  if n == 1 then io.stdout:write("saved\n"); io.stdout:flush() end
end
LUA
cat >"$tmp/check.lua" <<'LUA'
local train = require "dferc.train"
local S = require "mae_dfer"
local model = S.build {kind = "finetune", img = 32, frames = 4, region = {2, 2, 2}, dim = 128, heads = 2,
                       depth = 3, classes = 3}
local step = assert(train.compile {model = model, loss = model.outputs.loss,
                                   optimizer = train.adamw {lr = 1e-3}})
local meta, err = step:load(arg[1])
if not meta then print("not ok load: " .. err) os.exit(1) end
print("generation " .. meta.generation)
LUA
fails=0
for i in 1 2 3 4 5 6 7 8; do
  ck="$tmp/ck.safetensors"
  rm -f "$ck"
  "$D" run "$tmp/saver.lua" "$ck" >"$tmp/out" 2>&1 &
  pid=$!
  for _ in $(seq 1 300); do grep -q saved "$tmp/out" 2>/dev/null && break; sleep 0.05; done
  sleep "0.$((RANDOM % 9))$((RANDOM % 10))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if ! out=$("$D" run "$tmp/check.lua" "$ck" 2>&1); then
    echo "not ok kill_during_save_$i: $out"
    fails=$((fails + 1))
  else
    echo "ok kill_during_save_$i ($out)"
  fi
done
# the temporary files of killed saves are removed by the next save (once
# their writer is gone and they are a minute old); a live writer's are kept
ck="$tmp/ck.safetensors"
touch "$ck.tmp.999999999"                      # no such process
touch -d '2 minutes ago' "$ck".tmp.* 2>/dev/null
sleep 300 &                                     # a live process's temp file
live=$!
touch -d '2 minutes ago' "$ck.tmp.$live"
cat >"$tmp/once.lua" <<'LUA'
local train = require "dferc.train"
local S = require "mae_dfer"
local model = S.build {kind = "finetune", img = 32, frames = 4, region = {2, 2, 2}, dim = 16, heads = 2,
                       depth = 1, classes = 3}
local step = assert(train.compile {model = model, loss = model.outputs.loss, optimizer = train.adamw {lr = 1e-3}})
assert(step:save(arg[1], {generation = 1}))
LUA
if ! out=$("$D" run "$tmp/once.lua" "$ck" 2>&1); then
  echo "not ok stale_temps_save: $out"
else
  left=$(ls "$ck".tmp.* 2>/dev/null | grep -v "\.tmp\.$live\$" | wc -l)
  if [ "$left" -eq 0 ] && [ -e "$ck.tmp.$live" ]; then
    echo "ok stale_temps_removed"
  else
    echo "not ok stale_temps_removed: $(ls "$ck".tmp.* 2>/dev/null | tr '\n' ' ')"
  fi
fi
kill "$live" 2>/dev/null
exit 0
