#!/usr/bin/env bash
# tests/sh/test_cuda.sh -- the cuda device on a machine without a GPU:
#  1. `dferc devices` and `--device cuda` say in one line why it cannot run
#     (no driver / no GPU here, or a build without the CUDA headers);
#  2. with a host stand-in for libcuda, cuBLAS and NVRTC (tests/cuda_mock.c:
#     kernels compiled as C++ and run thread by thread on the CPU), the
#     device's own code runs the op-by-op comparison against ref
#     (tests/lua/test_cuda.lua) and the public fixtures (test_parity,
#     test_train).
# On a machine with a real GPU, part 1 skips and part 2 runs on the GPU
# itself through scripts/gpu-check instead.
set -u
D=${DFERC:-./dferc}
top=${DFERC_SRCDIR:-$(cd "$(dirname "$0")/../.." && pwd)}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

in_build=1
"$D" devices | grep -q '^cuda' || in_build=0

# ---------------------------------------------------------------- 1. one line
line=$("$D" devices | grep '^cuda')
if [ "$in_build" = 0 ]; then
  echo "skip cuda_devices_line: this build has no cuda device (configure found no CUDA headers)"
elif [ "$line" = "cuda" ]; then
  echo "skip cuda_devices_line: a usable GPU is present (scripts/gpu-check tests it)"
else
  case "$line" in
    "cuda: unavailable: libcuda.so.1 not found"|"cuda: unavailable: no CUDA device (cuInit: "*)
      echo "ok cuda_devices_line" ;;
    *) echo "not ok cuda_devices_line: got '$line'" ;;
  esac
fi

"$D" forward --device cuda >"$tmp/out" 2>"$tmp/err"
rc=$?
if [ "$line" = "cuda" ]; then
  echo "skip cuda_forward_fails_in_one_line: a usable GPU is present"
elif [ "$rc" -ne 0 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -s "$tmp/out" ] &&
     grep -Eq '^dferc: (cuda: libcuda.so.1 not found|cuda: no CUDA device \(cuInit: .*\)|device .cuda. is not available in this build.*)$' "$tmp/err"; then
  echo "ok cuda_forward_fails_in_one_line"
else
  echo "not ok cuda_forward_fails_in_one_line: exit $rc, stderr: $(head -c 300 "$tmp/err")"
fi

# a plan for a device that cannot run fails the same way from Lua
cat >"$tmp/probe.lua" <<'EOF'
local df = require "dferc"
local ok, why = df.core.compile(df.graph(), {}, "cuda")
print(ok and "usable" or why)
EOF
msg=$("$D" run "$tmp/probe.lua" 2>&1)
case "$msg" in
  usable) echo "skip cuda_compile_message: a usable GPU is present" ;;
  "cuda: libcuda.so.1 not found"|"cuda: no CUDA device (cuInit: "*|"device 'cuda' is not available in this build"*)
    echo "ok cuda_compile_message" ;;
  *) echo "not ok cuda_compile_message: got '$msg'" ;;
esac

# ---------------------------------------------------------------- 2. stand-in
if [ "$in_build" = 0 ]; then
  echo "skip cuda_mock: this build has no cuda device"
  exit 0
fi
if [ "$line" = "cuda" ]; then
  echo "skip cuda_mock: a real GPU is present (scripts/gpu-check)"
  exit 0
fi
CC=${CC:-cc}
CXX=${CXX:-c++}
if ! command -v "$CXX" >/dev/null 2>&1 || ! command -v "$CC" >/dev/null 2>&1; then
  echo "skip cuda_mock: no C and C++ compilers ($CC, $CXX) to build the stand-in"
  exit 0
fi
mkdir -p "$tmp/lib"
if ! "$CC" -O1 -fPIC -shared -o "$tmp/lib/libdfercmock.so" "$top/tests/cuda_mock.c" -ldl 2>"$tmp/cc.log"; then
  echo "not ok cuda_mock_builds: $(head -c 300 "$tmp/cc.log")"
  exit 1
fi
for n in libcuda.so.1 libcublas.so libnvrtc.so; do ln -s libdfercmock.so "$tmp/lib/$n"; done
export LD_LIBRARY_PATH="$tmp/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CXX
[ "$("$D" devices | grep '^cuda')" = "cuda" ] && echo "ok cuda_mock_loads" ||
  { echo "not ok cuda_mock_loads: $("$D" devices | grep '^cuda')"; exit 1; }

# the stand-in runs every GPU thread in turn: the op cases in f32 only
run() { # NAME SCRIPT: its ok/not ok/skip lines, prefixed
  local name=$1 script=$2
  DFERC_TEST_QUICK=1 DFERC_TEST_DEVICES=cuda "$D" run "$top/tests/lua/$script" >"$tmp/$name.log" 2>&1
  local rc=$?
  sed -n 's/^\(ok\|not ok\|skip\) /\1 mock_/p' "$tmp/$name.log"
  if [ "$rc" -ne 0 ] && ! grep -q '^not ok ' "$tmp/$name.log"; then
    echo "not ok mock_$name: exit $rc: $(tail -3 "$tmp/$name.log" | tr '\n' ' ')"
  fi
}
run ops test_cuda.lua
run parity test_parity.lua
run train test_train.lua
