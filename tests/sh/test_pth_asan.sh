#!/usr/bin/env bash
# The .pth reader under the sanitizers: tests/test_pth.c built with
# -fsanitize=address,undefined (its ok / not ok lines pass through, prefixed
# "asan_"), then the libFuzzer target tests/fuzz_pth.c for about 20 s,
# seeded with the fixture checkpoints and test_pth's hand-made archives.
# Needs gcc; the fuzzing needs clang with libFuzzer (Debian: clang-14 and
# libclang-rt-14-dev) and is skipped without it.  Under 60 s in all.
set -u
S=${DFERC_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
F=${DFERC_FIXTURES:-$S/../shared/fixtures/mae_dfer}
export DFERC_FIXTURES=$F
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/seeds" "$tmp/corpus"
lib=(compiler/err.c compiler/dtype.c runtime/tensor.c runtime/pth.c)
san=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1

# 1. the unit test under ASan + UBSan
if ! (cd "$S" && gcc -std=gnu11 -g -O1 -I. "${san[@]}" "${lib[@]}" runtime/json.c \
        runtime/safetensors.c tests/test_pth.c -o "$tmp/test_pth" -lm) >"$tmp/build.log" 2>&1; then
  echo "not ok test_pth_asan_build: $(grep -m1 -i error "$tmp/build.log")"
else
  "$tmp/test_pth" --seeds "$tmp/seeds" >"$tmp/test.log" 2>&1
  rc=$?
  grep -E '^(ok|not ok|skip) ' "$tmp/test.log" | sed -E 's/^(ok|not ok|skip) /\1 asan_/'
  if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$tmp/test.log"; then
    echo "not ok asan_test_pth: exit $rc: $(grep -m1 -E 'SUMMARY|ERROR|runtime error' "$tmp/test.log")"
  fi
fi

# 2. the fuzz target
CC=
for c in clang clang-14; do
  command -v "$c" >/dev/null 2>&1 && { CC=$c; break; }
done
echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' >"$tmp/probe.c"
if [ -z "$CC" ] || ! "$CC" -fsanitize=fuzzer "$tmp/probe.c" -o "$tmp/probe" >/dev/null 2>&1; then
  echo "skip fuzz_pth: no libFuzzer (clang) on this machine"
  exit 0
fi
if ! (cd "$S" && "$CC" -g -O1 -I. -fsanitize=fuzzer,address,undefined \
        -fno-sanitize-recover=undefined -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION \
        "${lib[@]}" tests/fuzz_pth.c -o "$tmp/fuzz_pth" -lm) >"$tmp/fbuild.log" 2>&1; then
  echo "not ok fuzz_pth: build failed: $(grep -m1 -i error "$tmp/fbuild.log")"
  exit 0
fi
for c in finetune_tiny pretrain_tiny; do
  [ -f "$F/$c.ckpt.pth" ] && cp "$F/$c.ckpt.pth" "$tmp/seeds/"
done
[ -f "$F/finetune_tiny.ckpt.pth" ] || echo "skip fuzz_pth_fixture_seeds: no fixtures in $F (set DFERC_FIXTURES)"
"$tmp/fuzz_pth" -max_total_time=20 -max_len=2000000 -timeout=10 -rss_limit_mb=2048 \
  -print_final_stats=1 -artifact_prefix="$tmp/" "$tmp/corpus" "$tmp/seeds" >"$tmp/fuzz.log" 2>&1
rc=$?
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/fuzz.log")
if [ "$rc" -eq 0 ]; then
  echo "ok fuzz_pth ($runs runs)"
else
  keep=
  crash=$(ls "$tmp"/crash-* "$tmp"/timeout-* "$tmp"/oom-* "$tmp"/leak-* 2>/dev/null | head -1)
  if [ -n "$crash" ] && [ -d tests/logs ]; then
    cp "$crash" tests/logs/ && keep=" (input kept in tests/logs/$(basename "$crash"))"
  fi
  why=$(grep -m1 -E 'SUMMARY|ERROR: libFuzzer|runtime error' "$tmp/fuzz.log")
  echo "not ok fuzz_pth: exit $rc: ${why:-see the fuzzer log}$keep"
  tail -30 "$tmp/fuzz.log"
fi
