#!/usr/bin/env bash
# The dferc program as a user meets it: commands, and clear one-line errors
# (exit 1, never a crash) for every kind of bad input.
set -u
D=${DFERC:-./dferc}
F=${DFERC_FIXTURES:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect NAME STATUS TEXT -- CMD...: CMD exits with STATUS and its output contains TEXT
expect() {
  local name=$1 want=$2 text=$3
  shift 4
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$want" ]; then
    echo "not ok $name: exit $rc, expected $want: $(echo "$out" | tail -2 | tr '\n' ' ')"
  elif [[ "$out" != *"$text"* ]]; then
    echo "not ok $name: output does not contain '$text': $(echo "$out" | tail -2 | tr '\n' ' ')"
  else
    echo "ok $name"
  fi
}

expect version 0 "dferc " -- "$D" version
expect help 0 "run-io" -- "$D" help
expect unknown_command 2 "unknown command 'frobnicate'" -- "$D" frobnicate
expect graph_full_finetune 0 "84878343 parameters" -- "$D" graph kind=finetune --dot "$tmp/g.dot"
expect graph_dot_written 0 "digraph" -- cat "$tmp/g.dot"
expect graph_full_pretrain 0 "92760192 parameters" -- "$D" graph kind=pretrain
expect graph_bad_key 1 "unknown key 'colour'" -- "$D" graph colour=3
expect forward_tiny 0 "logits       [2, 7]" -- "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 B=2
expect forward_tiny_pretrain 0 "decoder_out  [1, 48, 1536]" -- "$D" forward kind=pretrain img=64 frames=8 region=[2,2,4] win=[2,4] mask_ratio=0.75 enc_dim=32 enc_heads=2 enc_depth=1 dec_dim=24 dec_heads=2 dec_depth=1
expect bench_quick 0 "finetune_infer_b1" -- "$D" bench --quick --workloads finetune_infer_b1 --repeats 1 --out "$tmp/bench.json"
expect bench_json_fields 0 '"ceiling_gflops"' -- cat "$tmp/bench.json"
expect bench_json_rss 0 '"peak_rss_mb"' -- cat "$tmp/bench.json"
expect bench_unknown_workload 1 "unknown workload 'nope'" -- "$D" bench --quick --workloads nope
expect bench_unpins_openblas 0 "OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset" -- \
  env OPENBLAS_CORETYPE=Haswell "$D" bench --quick --workloads finetune_infer_b1 --out "$tmp/bench2.json"
expect bench_unpinned_record 0 '"blas_core"' -- cat "$tmp/bench2.json"
expect bench_quick_pretrain_kept 0 "pretrain_step_b2" -- \
  env DFERC_RECOMPUTE=0 "$D" bench --quick --workloads pretrain_step_b2 --repeats 1 --out "$tmp/bench3.json"
expect bench_records_recompute 0 '"recompute": false' -- cat "$tmp/bench3.json"
if "$D" devices | grep -qx cpu; then
expect cpu_forward 0 "device cpu" -- "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 B=2 --device cpu --dump "$tmp/dump"
expect dump_has_kernels 0 "fused_layernorm" -- ls "$tmp/dump"
if grep -q avx512f /proc/cpuinfo; then
  expect dump_uses_avx512 0 "zmm" -- grep -h -m1 -o "zmm[0-9]*" -r "$tmp/dump" --include=*.s
else
  expect dump_uses_simd 0 "mm" -- grep -h -m1 -o "[xy]mm[0-9]*" -r "$tmp/dump" --include=*.s
fi
rm -f "$tmp/kc.db"
expect cache_cold 0 "0 from the kernel cache" -- env DFERC_CACHE="$tmp/kc.db" "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 --device cpu
expect cache_warm 0 "compiled (" -- env DFERC_CACHE="$tmp/kc.db" "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 --device cpu
expect cache_warm_all_hits 0 ", 0 compiled" -- env DFERC_CACHE="$tmp/kc.db" "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 --device cpu
expect cache_bypassed 0 "0 from the kernel cache" -- env DFERC_CACHE="$tmp/kc.db" "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 --device cpu --no-cache
else
  echo "skip cpu_device: $("$D" devices | grep '^cpu')"
  expect cpu_unavailable_one_line 1 "built without LLVM" -- "$D" forward img=64 frames=8 region=[2,2,4] dim=32 heads=2 depth=1 --device cpu
fi
expect runio_missing_option 1 "--weights is required" -- "$D" run-io --config x.json

if [ -z "$F" ] || [ ! -f "$F/finetune_tiny.config.json" ]; then
  echo "skip runio_errors: no fixtures (set DFERC_FIXTURES)"
  exit 0
fi
c=$F/finetune_tiny
args=(--config "$c.config.json" --weights "$c.weights.safetensors" --inputs "$c.io.safetensors")
expect runio_ok 0 "wrote features [2, 64]" -- "$D" run-io "${args[@]}" --out "$tmp/o.safetensors"
expect runio_grads 0 "71 gradients grad.*" -- "$D" run-io "${args[@]}" --out "$tmp/o.safetensors" --grads
expect runio_unknown_device 1 "unknown device 'gpu'" -- "$D" run-io "${args[@]}" --out "$tmp/o.safetensors" --device gpu
# cuda: not in a build without the CUDA headers; else one line saying why
# it cannot run here (no driver, no GPU), unless it can
cuda_line=$("$D" devices | grep '^cuda')
if [ -z "$cuda_line" ]; then
  expect runio_cuda_unavailable 1 "device 'cuda' is not available" -- "$D" run-io "${args[@]}" --out "$tmp/o.safetensors" --device cuda
elif [ "$cuda_line" = cuda ]; then
  echo "skip runio_cuda_unavailable: a usable GPU is present"
else
  expect runio_cuda_unavailable 1 "dferc: cuda: " -- "$D" run-io "${args[@]}" --out "$tmp/o.safetensors" --device cuda
fi

# configs: unknown key, unknown value, not JSON
echo '{"kind": "finetune", "colour": 1}' >"$tmp/k.json"
expect config_unknown_key 1 "k.json: unknown key 'colour'" -- "$D" run-io --config "$tmp/k.json" --weights "$c.weights.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
sed 's/"token": "region"/"token": "cls"/' "$c.config.json" >"$tmp/v.json"
expect config_bad_value 1 "key 'token': 'cls' is not one of region, org, all" -- "$D" run-io --config "$tmp/v.json" --weights "$c.weights.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
echo '{"kind": ' >"$tmp/j.json"
expect config_not_json 1 "j.json: JSON: offset" -- "$D" run-io --config "$tmp/j.json" --weights "$c.weights.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"

# weights: truncated, garbage, wrong model, missing file
w=$c.weights.safetensors
head -c 5000 "$w" >"$tmp/trunc.safetensors"
expect weights_truncated 1 "trunc.safetensors: truncated" -- "$D" run-io --config "$c.config.json" --weights "$tmp/trunc.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
head -c 100000 /dev/urandom >"$tmp/noise.safetensors"
expect weights_garbage 1 "noise.safetensors:" -- "$D" run-io --config "$c.config.json" --weights "$tmp/noise.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
expect weights_wrong_model 1 "missing parameter 'lg_region_tokens'" -- "$D" run-io --config "$c.config.json" --weights "$F/pretrain_tiny.weights.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
expect weights_missing_file 1 "nope.safetensors" -- "$D" run-io --config "$c.config.json" --weights "$tmp/nope.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
# inputs that do not fit the config
expect inputs_no_mask 1 "no tensor 'mask' (a pretrain case needs one)" -- "$D" run-io --config "$F/pretrain_tiny.config.json" --weights "$F/pretrain_tiny.weights.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
sed -e 's/"frames": 8/"frames": 16/' -e 's/"num_patches": 64/"num_patches": 128/' "$c.config.json" >"$tmp/img.json"
expect inputs_vs_config 1 "'videos' is [2, 3, 8, 64, 64] but $tmp/img.json describes [2, 3, 16, 64, 64]" -- "$D" run-io --config "$tmp/img.json" --weights "$c.weights.safetensors" --inputs "$c.io.safetensors" --out "$tmp/o.st"
# output into a folder that does not exist
expect out_unwritable 1 "no/such/dir/o.st" -- "$D" run-io "${args[@]}" --out "$tmp/no/such/dir/o.st"
exit 0
