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
"$D" make-demo-data "$tmp/a" --clips 21 --frames 8 --size 32 --quiet >/dev/null 2>&1
"$D" make-demo-data "$tmp/b" --clips 21 --frames 8 --size 32 --quiet >/dev/null 2>&1
if diff -r "$tmp/a" "$tmp/b" >/dev/null; then echo "ok demo_data_deterministic"; else echo "not ok demo_data_deterministic"; fi
exit 0
