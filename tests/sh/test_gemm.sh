#!/usr/bin/env bash
# tests/sh/test_gemm.sh -- the generated GEMM on the cpu device:
#  1. the public fixtures (forward, gradients and the training steps) with
#     it in place of OpenBLAS (DFERC_GEMM=generated), so that every product
#     of the model -- its shapes, its transposed backward products -- is
#     checked against the original's tensors; tests/lua/test_gemm.lua again
#     with A packed (DFERC_GEMM_DIRECT_A=0);
#  2. the auto mode: under --tune a product's choice (OpenBLAS or tile
#     sizes) is searched and stored in the kernel cache, a second process
#     uses the stored one, a cache without it means OpenBLAS.
set -u
D=${DFERC:-./dferc}
top=${DFERC_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if ! "$D" devices | grep -qx cpu; then
  echo "skip gemm_fixtures: $("$D" devices | grep '^cpu')"
  exit 0
fi
for script in test_parity.lua test_train.lua; do
  DFERC_GEMM=generated DFERC_TEST_DEVICES=cpu "$D" run "$top/tests/lua/$script" >"$tmp/log" 2>&1
  rc=$?
  sed -n 's/^\(ok\|not ok\|skip\) /\1 generated_gemm_/p' "$tmp/log"
  if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$tmp/log"; then
    echo "not ok generated_gemm_$script: exit $rc: $(tail -3 "$tmp/log" | tr '\n' ' ')"
  fi
done

# the float32 GEMM with A packed too (the default reads A where it lies)
DFERC_GEMM_DIRECT_A=0 "$D" run "$top/tests/lua/test_gemm.lua" >"$tmp/log" 2>&1
rc=$?
sed -n 's/^\(ok\|not ok\|skip\) /\1 packed_a_/p' "$tmp/log"
if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$tmp/log"; then
  echo "not ok packed_a_test_gemm: exit $rc: $(tail -3 "$tmp/log" | tr '\n' ' ')"
fi

# ---------------------------------------------------------------- 2. auto
cat >"$tmp/choice.lua" <<'EOF'
local df = require "dferc"
local g = df.graph()
local a = df.input(g, "a", "f32", {300, 256})
local b = df.input(g, "b", "f32", {256, 200})
local y = df.matmul(a, b)
print("choice: " .. df.core.gemm_choice(y))
local feeds = {a = df.randn("f32", {300, 256}, 1), b = df.randn("f32", {256, 200}, 2)}
local want = assert(df.core.compile(g, {y}, "ref")):run(feeds)[1]
local got = assert(df.core.compile(g, {y}, "cpu")):run(feeds)[1]
print("error: " .. df.compare(got, want))
EOF
export DFERC_CACHE=$tmp/kernels.db
c1=$(DFERC_GEMM=auto DFERC_TUNE=1 "$D" run "$tmp/choice.lua" 2>&1)
c2=$(DFERC_GEMM=auto "$D" run "$tmp/choice.lua" 2>&1)
c3=$(DFERC_GEMM=auto DFERC_CACHE=$tmp/empty.db "$D" run "$tmp/choice.lua" 2>&1)
t1=$(echo "$c1" | sed -n 's/^choice: \(.*\) (tuned)$/\1/p')
t2=$(echo "$c2" | sed -n 's/^choice: \(.*\) (stored)$/\1/p')
if [ -n "$t1" ] && [ "$t1" = "$t2" ]; then
  echo "ok gemm_auto_tuned_then_stored ($t1)"
else
  echo "not ok gemm_auto_tuned_then_stored: first '$(echo "$c1" | tr '\n' ' ')', then '$(echo "$c2" | tr '\n' ' ')'"
fi
if echo "$c3" | grep -qx "choice: blas"; then echo "ok gemm_auto_without_a_winner_is_blas"; else
  echo "not ok gemm_auto_without_a_winner_is_blas: $(echo "$c3" | tr '\n' ' ')"; fi
bad=""
for c in "$c1" "$c2" "$c3"; do
  e=$(echo "$c" | sed -n 's/^error: //p')
  awk -v e="${e:-1}" 'BEGIN { exit !(e < 1e-5) }' || bad+="error '${e}' "
done
[ -z "$bad" ] && echo "ok gemm_auto_plans_match_ref" || echo "not ok gemm_auto_plans_match_ref: $bad"
row=$("$D" cache list 2>&1 | grep 'tuning=gemm-winner')
if echo "$row" | grep -Eq 'tuning=gemm-winner config=.* \([0-9.e+-]+ ms \[.*6 candidates'; then
  echo "ok gemm_winner_row_has_times"
else
  echo "not ok gemm_winner_row_has_times: '$(echo "$row" | head -c 300)'"; fi
