#!/usr/bin/env bash
# The autotuner through the dferc program, on a tiny fine-tuning model (its
# forward pass: a few dozen kernels): two processes tune into one kernel
# cache at once (--tune and DFERC_TUNE=1), every kernel gets one stored
# winner with its times, and a later process without --tune loads the same
# winners from the cache and compiles nothing; then 8 processes compiling
# overlapping kernel sets into one database at once; then every kernel of
# the tiny pre-training step tuned.  Under 2 minutes on 2 cores.
set -u
D=${DFERC:-./dferc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export DFERC_CACHE="$tmp/kernels.db"
unset DFERC_TUNE
# the kernels' tuner alone: the products stay with OpenBLAS (the products'
# own choice under --tune is tests/sh/test_gemm.sh's)
export DFERC_GEMM=blas

ok() { echo "ok $1"; }
nok() { echo "not ok $1: $2"; }
oneline() { tr '\n' ' ' | cut -c1-300; }

if ! "$D" devices | grep -qx cpu; then
  echo "skip tune: no cpu device in this build"
  exit 0
fi

tiny=(forward --kind finetune --device cpu img=64 frames=8 'region=[2,2,4]' dim=64 heads=4 depth=2 B=1)

# two "ranks" tune at once into one database
"$D" "${tiny[@]}" --tune >"$tmp/a.out" 2>"$tmp/a.err" &
pa=$!
DFERC_TUNE=1 "$D" "${tiny[@]}" >"$tmp/b.out" 2>"$tmp/b.err" &
pb=$!
bad=""
wait $pa || bad+="--tune process exited $?: $(oneline <"$tmp/a.err"); "
wait $pb || bad+="DFERC_TUNE=1 process exited $?: $(oneline <"$tmp/b.err"); "
if [ -z "$bad" ]; then ok two_processes_tune_one_database; else nok two_processes_tune_one_database "$bad"; fi

# every kernel's default code agrees with the Kernel IR interpreter
if grep -q "disagrees" "$tmp/a.err" "$tmp/b.err"; then
  nok default_code_agrees_with_interpreter "$(grep -h disagrees "$tmp/a.err" "$tmp/b.err" | oneline)"
else
  ok default_code_agrees_with_interpreter
fi

n=$(sed -n 's/^ *\([0-9]*\) kernels: .*/\1/p' "$tmp/a.out")
"$D" cache list >"$tmp/list1" 2>&1
winners=$(grep -c ' tuning=winner config="vw=[0-9]* il=[0-9]* ur=[0-9]* ch=[0-9]*" ([0-9.e-]* ms \[' "$tmp/list1")
entries=$(grep -c . "$tmp/list1")
if [ -n "$n" ] && [ "$n" -gt 0 ] && [ "$winners" = "$n" ] && [ "$entries" = "$n" ]; then
  ok "a_winner_per_kernel ($n kernels)"
else
  nok a_winner_per_kernel "$n kernels, $winners winners, $entries entries: $(head -3 "$tmp/list1" | cut -c1-160 | oneline)"
fi

# a process without --tune: every kernel from the cache, the same choices
hits0=$("$D" cache stats | sed -n 's/^hits *//p')
"$D" "${tiny[@]}" >"$tmp/c.out" 2>"$tmp/c.err"
rc=$?
hits1=$("$D" cache stats | sed -n 's/^hits *//p')
"$D" cache list >"$tmp/list2" 2>&1
if [ $rc -eq 0 ] && grep -q "$n kernels: $n from the kernel cache, 0 compiled" "$tmp/c.out" &&
  [ $((hits1 - hits0)) = "$n" ]; then
  ok "second_process_loads_winners (cache hits $hits0 -> $hits1)"
else
  nok second_process_loads_winners "exit $rc, hits $hits0 -> $hits1: $(grep kernels: "$tmp/c.out" | oneline) $(oneline <"$tmp/c.err")"
fi
cut -d' ' -f1-4 "$tmp/list1" >"$tmp/choice1"
cut -d' ' -f1-4 "$tmp/list2" >"$tmp/choice2"
if cmp -s "$tmp/choice1" "$tmp/choice2"; then ok same_choices; else nok same_choices "$(diff "$tmp/choice1" "$tmp/choice2" | oneline)"; fi
loss() { sed -n 's/^ *loss .*= //p' "$1"; }
if [ "$(loss "$tmp/a.out")" = "$(loss "$tmp/c.out")" ] && [ "$(loss "$tmp/b.out")" = "$(loss "$tmp/c.out")" ]; then
  ok "same_results ($(loss "$tmp/c.out"))"
else
  nok same_results "$(loss "$tmp/a.out") $(loss "$tmp/b.out") $(loss "$tmp/c.out")"
fi

# explain names the tuning field: a winner row is not a default object
h=$(head -1 "$tmp/list1" | cut -d' ' -f1)
out=$("$D" cache explain ir_hash="$h" backend=cpu tuning="vw=512 il=0 ur=0 ch=0" 2>&1)
if [[ "$out" == *"tuning:"*"wanted"*"vw=512 il=0 ur=0 ch=0"*"the entry has winner"* ]]; then
  ok explain_names_tuning
else
  nok explain_names_tuning "$(echo "$out" | oneline)"
fi

# 8 processes compiling overlapping kernel sets (4 tiny models, each twice)
# into one fresh database at once: no errors, and a second run of each
# model takes every kernel from the cache and computes the same loss
export DFERC_CACHE="$tmp/eight.db"
models=("depth=1 B=1" "depth=2 B=1" "depth=1 B=2" "depth=2 B=2")
pids=()
for i in 0 1 2 3 4 5 6 7; do
  # shellcheck disable=SC2086
  "$D" forward --kind finetune --device cpu img=64 frames=8 'region=[2,2,4]' dim=64 heads=4 ${models[$((i % 4))]} \
    >"$tmp/e$i.out" 2>"$tmp/e$i.err" &
  pids+=($!)
done
bad=""
for i in 0 1 2 3 4 5 6 7; do wait "${pids[$i]}" || bad+="process $i exited $?: $(oneline <"$tmp/e$i.err"); "; done
if [ -z "$bad" ]; then ok eight_processes_compile_at_once; else nok eight_processes_compile_at_once "$bad"; fi
bad=""
for i in 0 1 2 3; do
  # shellcheck disable=SC2086
  "$D" forward --kind finetune --device cpu img=64 frames=8 'region=[2,2,4]' dim=64 heads=4 ${models[$i]} \
    >"$tmp/f$i.out" 2>"$tmp/f$i.err" || bad+="rerun $i exited $?; "
  grep -q " kernels: \([0-9]*\) from the kernel cache, 0 compiled" "$tmp/f$i.out" ||
    bad+="rerun $i compiled: $(grep kernels: "$tmp/f$i.out" | oneline); "
  for j in $i $((i + 4)); do
    [ "$(loss "$tmp/f$i.out")" = "$(loss "$tmp/e$j.out")" ] || bad+="model $i: loss $(loss "$tmp/f$i.out") != $(loss "$tmp/e$j.out"); "
  done
done
if [ -z "$bad" ]; then ok eight_processes_same_kernels_after; else nok eight_processes_same_kernels_after "$bad"; fi

# the tiny pre-training step (forward, backward, AdamW updates): every
# kernel is searched (none too big, none whose default code disagrees with
# the interpreter, no candidate rejected), and a second process reloads them
cat >"$tmp/step.lua" <<'LUA'
local df = require "dferc"
local cache = require "dferc.cache"
local train = require "dferc.train"
local S = require "mae_dfer"
local model = S.build({kind = "pretrain", B = 2, img = 64, frames = 8, region = {2, 2, 4}, enc_dim = 64,
  enc_heads = 4, enc_depth = 2, dec_dim = 48, dec_heads = 3, dec_depth = 1, win = {2, 4}, mask_ratio = 0.75},
  {fused_attention = df.core.supports("cpu", "attention")})
local opt = train.adamw {lr = 1e-4, betas = {0.9, 0.95}, weight_decay = 0.05, groups = train.mae_dfer_groups(model)}
local step = assert(train.compile {model = model, loss = model.outputs.loss, optimizer = opt, device = "cpu"})
local st, t = step.plan:stats(), cache.tune_stats()
print(string.format("kernels %d hits %d searched %d from_cache %d untunable %d rejected %d", st.kernels,
  st.cache_hits, t.searched, t.from_cache, t.untunable, t.rejected))
LUA
export DFERC_CACHE="$tmp/step.db"
out1=$(DFERC_TUNE=1 "$D" run "$tmp/step.lua" 2>"$tmp/step1.err")
out2=$("$D" run "$tmp/step.lua" 2>"$tmp/step2.err")
k=$(echo "$out1" | sed -n 's/^kernels \([0-9]*\) .*/\1/p')
if [ -n "$k" ] && [ "$out1" = "kernels $k hits 0 searched $k from_cache 0 untunable 0 rejected 0" ] &&
  [ "$out2" = "kernels $k hits $k searched 0 from_cache $k untunable 0 rejected 0" ]; then
  ok "pretrain_step_every_kernel_tuned ($k kernels)"
else
  nok pretrain_step_every_kernel_tuned "tuning: $out1 $(oneline <"$tmp/step1.err"); reloading: $out2 $(oneline <"$tmp/step2.err")"
fi
