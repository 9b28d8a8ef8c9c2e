#!/usr/bin/env bash
# The Table 1 runs that need more than a 2-core CPU, on one GPU (the rows whose device column in
# REPRODUCTION.md says H100; BENCHMARKS.md §9). Runs every job as its own process on the same GPU,
# each writing its own resumable store under $OUT; merge them into the CPU stores afterwards with
# `strattack merge`.
#
#   OUT=runs/gpu CIFAR_ROOT=data IMAGENET=data/imagenet-sample bash benchmarks/gpu_table1.sh
#   OUT=runs/gpu CIFAR_ROOT=data MNIST_ROOT=data PHASE=2 bash benchmarks/gpu_table1.sh
#   OUT=runs/gpu IMAGENET=data/imagenet-sample PHASE=3 bash benchmarks/gpu_table1.sh   # and PHASE=4
# Phase 1 took 281 s, phase 2 573 s (one MNIST shard hit LIMIT=480 with 4 examples left, finished
# on the CPU), phase 3 186 s on one H100. Needs the package importable (pip install -e . or
# PYTHONPATH=src) and, for phase 2, PYTHONPATH to include benchmarks/.
#
# CIFAR_ROOT needs only cifar-10-batches-py/test_batch; IMAGENET must be the same path the CPU
# store was made with (the store records the resolved folder), and needs labels.csv and the
# first 64 images (the first 20 correctly classified are among them).
set -u
OUT=${OUT:-runs/gpu}
LIMIT=${LIMIT:-540}            # seconds per job; a store keeps every finished batch
st="python3 -m strattack eval --device cuda --no-progress"
# CIFAR-10 images 50..99 of the first 100 correctly classified exact test images (images 0..49
# were run on the CPU).
cifar_more=55,56,59,60,62,63,64,65,66,67,69,70,71,72,73,74,75,76,77,78,79,80,81,82,83,84,86,87,88,89,90,92,93,94,95,96,97,98,99,100,101,102,103,104,105,106,107,108,109,110
mkdir -p "$OUT/logs"
run() { local name=$1; shift; timeout "$LIMIT" "$@" > "$OUT/logs/$name.log" 2>&1; echo "$name exit $?" >> "$OUT/logs/$name.log"; }

if [ "${PHASE:-1}" = 1 ]; then
# Phase 1: CIFAR-10 C&W-linf (50 x 9), the Table 1 attacks on CIFAR-10 images 50..99, and
# the ImageNet overlap row and full-budget C&W.
run cifar_cwlinf $st --config configs/table1_cifar10.toml --data-root "$CIFAR_ROOT" -n 50 \
    --only 'C&W-linf' --batch-size 225 -o "$OUT/cifar_cwlinf" &
for i in 0 1; do
  run cifar_n100_$i $st --config configs/table1_cifar10.toml --data-root "$CIFAR_ROOT" \
      --indices $cifar_more --only FGM-l2 --only IFGSM-l2 --only StrAttack --only 'C&W-l2' \
      --only 'StrAttack+overlap (3x3, stride 2)' --batch-size 225 --shard $i/2 -o "$OUT/cifar_n100" &
  run imagenet_overlap_$i $st --config configs/table1_imagenet.toml --dataset "$IMAGENET" -n 20 \
      --only 'StrAttack+overlap (13x13, stride 6)' --batch-size 15 --shard $i/2 -o "$OUT/imagenet_overlap" &
  run imagenet_cw_$i $st --config configs/table1_imagenet_gpu.toml --dataset "$IMAGENET" -n 20 \
      --only 'C&W-l2 (9x1000)' --batch-size 15 --shard $i/2 -o "$OUT/imagenet_cw" &
done
elif [ "${PHASE:-1}" = 3 ]; then
# Phase 3: StrAttack on ImageNet at C&W's 9 x 1000 budget, 4 processes per attack.
for i in 0 1 2 3; do
  run imagenet_str_$i $st --config configs/table1_imagenet_gpu.toml --dataset "$IMAGENET" -n 20 \
      --only 'StrAttack (9x1000)' --batch-size 15 --shard $i/4 -o "$OUT/imagenet_str" &
  run imagenet_str_overlap_$i $st --config configs/table1_imagenet_gpu.toml --dataset "$IMAGENET" -n 20 \
      --only 'StrAttack+overlap (13x13, stride 6, 9x1000)' --batch-size 15 --shard $i/4 -o "$OUT/imagenet_str_overlap" &
done
elif [ "${PHASE:-1}" = 4 ]; then
# Phase 4: tau scan of StrAttack on ImageNet (configs/imagenet_tau_scan.toml), 2 shards per tau.
for tau in 0.5 1 4; do
  for i in 0 1; do
    run imagenet_tau${tau}_$i $st --config configs/imagenet_tau_scan.toml --dataset "$IMAGENET" -n 20 \
        --only "StrAttack tau=$tau" --shard $i/2 -o "$OUT/tau$tau" &
  done
done
else
# Phase 2: GPU speed of the attack core on its own (nothing else on the GPU), then the rest of
# Table 1 / BENCHMARKS section 8 at 100 images x 9 targets (MNIST_ROOT needs mnist/t10k-*).
python3 benchmarks/bench_strattack.py --images 50 --targets all --config nonoverlap --config overlap \
    --device cuda --json "$OUT/bench.jsonl" > "$OUT/logs/bench_strattack.log" 2>&1
python3 benchmarks/bench_baselines.py --images 20 --targets next --attack admm_l2 --attack cw_l2 \
    --attack admm_elastic --attack ead --device cuda --json "$OUT/bench.jsonl" > "$OUT/logs/bench_baselines.log" 2>&1
for i in 0 1; do
  run mnist_n100_$i $st --config configs/table1_mnist.toml --data-root "$MNIST_ROOT" -n 100 \
      --only 'C&W-linf' --only 'C&W-l2' --only 'ADMM-l2 (tau=0)' --only 'EAD (EN rule)' \
      --only 'ADMM-EN (tau=0, beta=0.05)' --batch-size 225 --shard $i/2 -o "$OUT/mnist_n100" &
  run cifar_rest_$i $st --config configs/table1_cifar10.toml --data-root "$CIFAR_ROOT" \
      --indices $cifar_more --only 'C&W-linf' --only 'ADMM-l2 (tau=0)' --only 'EAD (EN rule)' \
      --only 'ADMM-EN (tau=0, beta=0.05)' --batch-size 225 --shard $i/2 -o "$OUT/cifar_rest" &
done
fi
wait
cat "$OUT"/logs/*.log && rm -r "$OUT/logs"   # stdout only: $OUT keeps at most 8 files here
