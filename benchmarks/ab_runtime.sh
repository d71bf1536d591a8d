#!/usr/bin/env bash
# Before/after for the runtime benchmark: an older commit's code and this tree's,
# run in turn (twice each) on one interpreter, so machine load hits both alike.
#   benchmarks/ab_runtime.sh COMMIT [PYTHON]
# PYTHON must have the runtime's dependencies (default: .venv/bin/python). An old
# commit may not retrieve what newer pandas/pyarrow make (Arrow-backed strings): then
# use an interpreter without pyarrow.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=${1:?usage: benchmarks/ab_runtime.sh COMMIT [PYTHON]}
python=${2:-$PWD/.venv/bin/python}
old=$(mktemp -d)
trap 'git worktree remove --force "$old" >/dev/null 2>&1 || rm -rf "$old"' EXIT
git worktree add --detach -q "$old" "$commit"
for round in 1 2; do
  echo "=== before ($commit), round $round"
  (cd "$old" && PYTHONPATH="$old" "$python" benchmarks/runtime_bench.py)
  echo "=== after (this tree), round $round"
  PYTHONPATH="$PWD" "$python" benchmarks/runtime_bench.py
done
