#!/usr/bin/env bash
# Issue #10 end to end from one command with a seed: the QM9 learning curve (both protocols,
# cross-validated hyperparameters), the outlier flags and remedy, the DFT check, the whole-QM9
# amon store labeled with GFN2-xTB and its global model, and the amon-set comparison with the
# authors'. Every step resumes from its workspace under WORKDIR when re-run. On 2 idle cores:
# a few hours (the steps' own numbers are in benchmarks/results/*.json, with wall times).
#
#   bash benchmarks/reproduce_qm9.sh [SEED (0)] [WORKDIR (/tmp/amondask-qm9)] [TEST (1000)]
#
# Needs the qm9 and dft extras: pip install -e ".[qm9,dft]"
set -euo pipefail
SEED=${1:-0}
WORK=${2:-/tmp/amondask-qm9}
TEST=${3:-1000}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cd "$(dirname "$0")/.."
mkdir -p "$WORK"
step() { echo "== $(date -u +%H:%M:%S) $*" >&2; "$@"; }
step python3 benchmarks/qm9_amons.py --n 100 --seed "$SEED" --cv --workdir "$WORK/amons"
step python3 benchmarks/qm9_remedy.py --n 100 --seed "$SEED" --neighbours --remedy-workers 2 \
    --workdir "$WORK/remedy"
step python3 benchmarks/qm9_dft_check.py --n 100 --seed "$SEED" --queries 3 --workdir "$WORK/dft"
step python3 benchmarks/qm9_global.py --queries nine-heavy --max-conformers-per-amon 1 \
    --test "$TEST" --seed "$SEED" --workdir "$WORK/global"
step python3 benchmarks/qm9_amon_set.py --workspace "$WORK/global/ws.zarr" \
    --authors benchmarks/data/authors_qm9_amons_ni_le5.smi \
    --authors-sample benchmarks/data/authors_qm9_amons_ni6_sample.smi \
    --out benchmarks/results/qm9_amon_set.json
echo "== $(date -u +%H:%M:%S) done: benchmarks/results/qm9_{amons_100,remedy,dft_check,global,amon_set}.md" >&2
