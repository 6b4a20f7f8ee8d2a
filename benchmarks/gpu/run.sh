#!/usr/bin/env bash
# fwrd GPU verification kit: one command on a GPU machine that has PyTorch + CUDA (+ cuda-bindings) and no
# network. Installs the wheels prepare.sh put in .whl/ (offline) when OpenSlide or imagecodecs are missing,
# then runs benchmarks/gpu/kit.py.
#
#   bash benchmarks/gpu/run.sh [--dry-run] [--budget-s 480] [--steps environment precision ...]
#
# Results: $OUT/kit.json|md|log, $OUT/bench-*.json and benchmarks/results/gpu-<gpu>-<date>.json|md.
set -uo pipefail
cd "$(dirname "$0")/../.."
export OUT="${OUT:-$PWD/gpu-kit-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
SITE="${FWRD_KIT_SITE:-/tmp/fwrd-kit-site}"
if ! "$PY" -c "import openslide, imagecodecs" 2> /dev/null && compgen -G ".whl/*.whl" > /dev/null; then
    # --no-deps: the wheelhouse holds exactly what the machine lacks; nothing is fetched from a network
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
        || { echo "run.sh: installing the wheelhouse failed" >&2; exit 2; }
    export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
"$PY" benchmarks/gpu/kit.py --out "$OUT" "$@" 2>&1 | tee -a "$OUT/run.log"
exit "${PIPESTATUS[0]}"
