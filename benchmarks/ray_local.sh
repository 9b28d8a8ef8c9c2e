#!/usr/bin/env bash
# strattack eval --ray local against one process, on the same job (for BENCHMARKS.md). Run it
# on an otherwise idle machine: every row competes for the same cores.
#
#   bash benchmarks/ray_local.sh [OUT]                  # default job: 20 bundled MNIST x 9, StrAttack
#   JOB="--bundled -n 3 --targets all -a fgm" bash benchmarks/ray_local.sh /tmp/try   # a quick check
#
# Rows: one process with 2 threads and with 1; --ray local with 2 tasks (one per core) and with
# the default number (4 x the cores); the last rerun has nothing left to attack, so its time is
# Ray's start-up, the planning task and the shutdown alone. Then the stores are compared.
set -euo pipefail
OUT=${1:-/tmp/strattack-ray-bench}
read -r -a job <<< "${JOB:---bundled -n 20 --targets all -a str_attack}"
rm -rf "$OUT"

timed() {   # timed NAME ARGS...: the run's `done:` line and its wall time
    local name=$1 start end
    shift
    start=$(date +%s.%N)
    strattack eval "${job[@]}" --no-progress "$@" -o "$OUT/$name" 2>/dev/null | grep '^done:'
    end=$(date +%s.%N)
    python3 -c "print(f'$name: wall {$end - $start:.1f} s')"
}

uptime
timed one_2threads --threads 2
timed one_1thread --threads 1
timed ray_2tasks --ray local --ray-tasks 2
timed ray_default --ray local
timed ray_default --ray local            # nothing left: the fixed cost of --ray local
uptime
python3 - "$OUT" <<'EOF'
import sqlite3, sys
from pathlib import Path

def rows(run):
    db = sqlite3.connect(Path(sys.argv[1]) / run / "results.sqlite")
    return {(a, i, t): (s, l0, l2) for a, i, t, s, l0, l2 in
            db.execute("SELECT attack, image, target, success, l0, l2 FROM examples")}

base = rows("one_2threads")
for run in ("one_1thread", "ray_2tasks", "ray_default"):
    other = rows(run)
    same = other.keys() == base.keys()
    diff = max((abs(other[k][2] - base[k][2]) for k in base if k in other), default=0.0)
    flips = sum(other[k][0] != base[k][0] for k in base if k in other)
    print(f"{run}: {len(other)} examples, same set {same}, max |l2 diff| {diff:.3g}, "
          f"success differs on {flips}")
EOF
