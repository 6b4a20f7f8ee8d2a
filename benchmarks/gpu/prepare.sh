#!/usr/bin/env bash
# Fill .whl/ (git-ignored) with the wheels the GPU machine lacks, for `bash benchmarks/gpu/run.sh` there.
# That machine has Python 3.12, PyTorch + CUDA, numpy, scipy, click, pillow, tqdm, tifffile, onnx,
# onnxruntime and cuda-bindings; fwrd itself travels as source. Under 64 MiB in all (about 31 MiB).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYVER="${PYVER:-3.12}"
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl \
    "openslide-python>=1.3" "openslide-bin>=4.0" "imagecodecs>=2023.7"
du -sh .whl
ls .whl
