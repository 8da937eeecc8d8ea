#!/usr/bin/env bash
# tests/sh/test_gemm.sh -- the public fixtures (forward, gradients and the
# training steps) on the cpu device with the generated GEMM in place of
# OpenBLAS (DFERC_GEMM=generated), so that every product of the model --
# its shapes, its transposed backward products -- is checked against the
# original's tensors.
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
