#!/bin/sh
# BENCHMARKS.md §11 ("The windowed inner loop, CPU"): the windowed inner loop (33014fc) against the
# loop of commit 45642ab, App. F's settings (tau = 2, 5 x 200 + 2 x 100) on the lever_scan.py task,
# with and without patience = 10, two rounds; run it on an idle machine.
# Needs the 45642ab package checked out: git worktree add /tmp/wt_old 45642ab (or OLD_SRC=path/to/src).
cd "$(dirname "$0")"
OLD='{"tau": 2.0, "binary_search_steps": 5, "max_iterations": 200, "refine_iterations": 100}'
OLDP='{"tau": 2.0, "binary_search_steps": 5, "max_iterations": 200, "refine_iterations": 100, "patience": 10}'
NEW='{"tau": 2.0, "binary_search_steps": 5, "max_iterations": 200, "refine_iterations": 100, "rescue_steps": 0}'
NEWP='{"tau": 2.0, "binary_search_steps": 5, "max_iterations": 200, "refine_iterations": 100, "rescue_steps": 0, "patience": 10}'
for round in 1 2; do
  echo "round $round: before (45642ab)"; PYTHONPATH=${OLD_SRC:-/tmp/wt_old/src} python lever_scan.py "$OLD" "$OLDP"
  echo "round $round: after (windowed)"; python lever_scan.py "$NEW" "$NEWP"
done
