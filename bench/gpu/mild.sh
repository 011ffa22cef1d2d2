#!/bin/sh
# The mild changes of bench/gpu/curves.py side by side on one GPU, with the base twice (more seeds of
# it), for about DEADLINE seconds, seeds from SEED0 (the base's second share from SEED0 + 100); all runs in
# $OUT/curves-mild.jsonl. Run from the repository root.
set -e
parts=$(mktemp -d)
export OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1 DEADLINE="${DEADLINE:-200}" SEED0="${SEED0:-0}"
for c in base lr_13 lr_07 lr_20 wd_05 wd_20 warm_10 warm_20 drop_05 layers_5 layers_3 dim_192; do
  OUT=$parts python3 bench/gpu/curves.py $c 8 > "$parts/$c.log" 2>&1 &
done
OUT=$parts SEED0=$((SEED0 + 100)) python3 bench/gpu/curves.py base 8 > "$parts/base-100.log" 2>&1 &
wait
cat "$parts"/*.jsonl > "$OUT/curves-mild.jsonl"
tail -n 20 "$parts"/*.log
