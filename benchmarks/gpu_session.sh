#!/usr/bin/env bash
# The GPU measurements the documents list as not run, as ONE device call (every job is cut at
# $LIMIT s so that the call fits a 10-minute limit):
#   1. alone on the GPU (BENCHMARKS.md §12): str_attack at the defaults (tau = 1, 3 x 100 + 2 x 80,
#      2 rescue steps), examples/s and GPU utilisation on MNIST (50 images x 9 targets = 450
#      examples, one batch; eager, then with compile_step=true twice: cold, then warm) and on
#      EfficientNet-Lite0 at batches of 32, 64 and 128 examples (64 also with compile_step);
#   2. then in parallel, one process per attack, each under $LIMIT seconds:
#      Table 3 on ImageNet (REPRODUCTION.md "Table 3, ImageNet"; configs/table3_imagenet.toml,
#      $N15 images x 2 targets, crafted on Lite0) and `strattack transfer` to Lite1 and Lite2;
#      the settings comparison of REPRODUCTION.md "ImageNet: the authors' settings (CPU-reduced)"
#      on the Table 1 examples (20 images x 3 targets): StrAttack with App. F's settings (tau = 2,
#      5 x 200 + 2 x 100), with the defaults, with the authors'-code preset (reduced budget) and
#      C&W-l2 at App. F's 9 x 1000; reports in both conventions with the ratios.
# Only reports, transfer tables and logs come back ($OUT/results.tgz; the stores of dense attacks
# are too large to return).
#
# Here, before the call:   python benchmarks/gpu_prepare.py --imagenet data/imagenet-sample --images 80
# The call:                run(command="bash benchmarks/gpu_session.sh", carry=[".dev"], timeout_s=600)
# A CPU rehearsal:         DEVICE=cpu TINY=1 THREADS=1 OUT=/tmp/gs bash benchmarks/gpu_session.sh   (~5 min)
# The models on the device carry float16-rounded weights (gpu_prepare.py measures the top-1
# agreement with the exact ones); numbers from this call compare among themselves only.
set -u
OUT=${OUT:-runs/gpu_session}; DEVICE=${DEVICE:-cuda}; N15=${N15:-50}
SPEED_LIMIT=${SPEED_LIMIT:-45}   # seconds per speed job (6 of them, one after another)
LIMIT=${LIMIT:-220}               # seconds per parallel job (the transfer gets 45)
export PYTHONPATH="$PWD/src:$PWD/.dev/py:$PWD/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
IMAGENET=$PWD/.dev/imagenet
W=$(mktemp -d)                      # stores stay on the machine
mkdir -p "$OUT" "$W/logs"
st="python3 -m strattack eval --device $DEVICE --no-progress ${THREADS:+--threads $THREADS}"
T_STR=""; T_CW=""; T_IF=""         # per attack name: --set must name an attack of the config
if [ "${TINY:-0}" = 1 ]; then       # a smoke test of every command, not a measurement
  N15=2; LIMIT=600; SPEED_LIMIT=600
  T_STR="--set str_attack.binary_search_steps=1 --set str_attack.max_iterations=2 --set str_attack.refine_iterations=2
         --set str_attack.rescue_steps=0 --set str_attack.iteration_growth=0 --set str_attack.refine_search_steps=1"
  T_CW="--set cw_l2.binary_search_steps=1 --set cw_l2.max_iterations=2"
  T_IF="--set ifgsm.search_steps=1 --set ifgsm.grid_steps=2"
fi
run() { local name=$1; shift; timeout "$LIMIT" "$@" > "$W/logs/$name.log" 2>&1; echo "exit $?" >> "$W/logs/$name.log"; }
nvidia-smi > "$W/logs/nvidia-smi.txt" 2>&1 || true

# 1. Speed, alone on the GPU, with utilisation sampled every second.
(nvidia-smi dmon -s u -d 1 > "$W/logs/dmon_speed.txt" 2>&1 &) ; sleep 1
for compiled in false true; do
  LIMIT=$SPEED_LIMIT run bench_mnist_compile_$compiled python3 benchmarks/bench_strattack.py \
      --images "$([ "${TINY:-0}" = 1 ] && echo 2 || echo 50)" --targets all --config nonoverlap \
      $([ $compiled = true ] && echo --config nonoverlap) --device "$DEVICE" \
      --json "$W/logs/bench_mnist.jsonl" --set tau=1.0 --set binary_search_steps=3 \
      --set max_iterations=100 --set refine_iterations=80 --set rescue_steps=2 --set compile_step=$compiled
done
for b in 32 64 128 64c; do
  n=$(( (${b%c} + 2) / 3 )); [ "${TINY:-0}" = 1 ] && n=1
  extra=""; [ "$b" = 64c ] && extra="--set str_attack.compile_step=true"
  LIMIT=$SPEED_LIMIT run lite0_batch$b $st --config configs/imagenet_defaults.toml --dataset "$IMAGENET" -n $n \
      --batch-size ${b%c} -o "$W/lite0_batch$b" $T_STR $extra
done
pkill -f "nvidia-smi dmon" || true
for d in "$W"/lite0_batch*; do   # seconds and passes per example of each batch size
  python3 -m strattack report "$d" --no-figures > "$W/logs/$(basename "$d")_report.md" 2>&1
done

# 2. Table 3 on ImageNet and the ImageNet settings comparison, in parallel.
t3=("IFGSM-l2" "C&W-l2 (4x100)" "C&W-l2 (4x100) kappa=20" "StrAttack" "StrAttack kappa=20" "StrAttack kappa=20 (scale_eta)")
for i in "${!t3[@]}"; do
  run t3_$i $st --config configs/table3_imagenet.toml --dataset "$IMAGENET" -n "$N15" \
      --only "${t3[$i]}" -o "$W/t3_$i" $T_STR $T_CW $T_IF &
done
n19=$([ "${TINY:-0}" = 1 ] && echo 1 || echo 20)
run i19_appf $st --config configs/table1_imagenet.toml --dataset "$IMAGENET" -n $n19 --only StrAttack \
    -o "$W/i19_appf" $T_STR &
run i19_ours $st --config configs/imagenet_defaults.toml --dataset "$IMAGENET" -n $n19 \
    -o "$W/i19_ours" $T_STR &
run i19_authors $st --config configs/imagenet_authors_code_cpu.toml --dataset "$IMAGENET" -n $n19 \
    -o "$W/i19_authors" $T_STR &
for i in 0 1; do
  run i19_cw_$i $st --config configs/table1_imagenet_gpu.toml --dataset "$IMAGENET" -n $n19 \
      --only "C&W-l2 (9x1000)" --shard $i/2 -o "$W/i19_cw" $T_CW &
done
wait

# Merge, report, transfer (forward passes only).
python3 -m strattack merge "$W/t3" "$W"/t3_*/results.sqlite > "$W/logs/t3_merge.log" 2>&1
python3 -m strattack report "$W/t3" --no-figures > "$W/logs/t3_report.md" 2>&1
LIMIT=45 run t3_transfer python3 -m strattack transfer "$W/t3" --model efficientnet_lite1 --model efficientnet_lite2 \
    --device "$DEVICE"
python3 -m strattack merge "$W/i19" "$W"/i19_appf/results.sqlite "$W"/i19_ours/results.sqlite \
    "$W"/i19_authors/results.sqlite "$W"/i19_cw/results-shard-*.sqlite > "$W/logs/i19_merge.log" 2>&1
for conv in ours paper; do
  python3 -m strattack report "$W/i19" --no-figures --convention $conv -o "$W/i19_$conv" \
      --ratio StrAttack "C&W-l2 (9x1000)" --ratio "StrAttack (defaults)" "C&W-l2 (9x1000)" \
      --ratio "StrAttack (authors' code, reduced: 3 steps, 200+100k)" "C&W-l2 (9x1000)" \
      > "$W/logs/i19_report_$conv.md" 2>&1
done
cp "$W"/t3/transfer.* "$W"/t3/report.* "$W/logs/" 2>/dev/null
cp "$W"/i19_ours/report* "$W"/i19_paper/report* "$W/logs/" 2>/dev/null
for d in "$W"/i19_ours "$W"/i19_paper; do cp "$d/ratios.json" "$W/logs/$(basename "$d")_ratios.json" 2>/dev/null; done
tar czf "$OUT/results.tgz" -C "$W" logs
ls -la "$OUT"; tail -n 3 "$W"/logs/*.log
