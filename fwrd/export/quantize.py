"""INT8 by static QDQ quantisation of the convolutions, calibrated on tissue tiles, in one of two forms.

Conv and ConvTranspose are quantised (per-channel weights, per-tensor activations), except the few
convolutions that measurement showed carry the error (KEEP_FP32); the cosine, resize and mean at the
end stay fp32, since they decide the score and cost nothing. Dynamic quantisation would barely touch
convolutions, which is where the time goes. One calibration path (the 99.99th percentile of each
activation over the same tiles, KEEP_FP32 left in fp32) serves both forms:

- `cpu` (default): uint8 activations with a zero point, int8 weights (u8s8, ONNX Runtime's fast CPU
  path), Q/DQ on convolution inputs and outputs. TensorRT's parser refuses it (uint8 intermediates).
- `tensorrt`: the explicit-quantization form TensorRT fuses: int8 activations and weights, zero point
  0 everywhere, Q/DQ only at convolution inputs, float biases (TensorRT has no int32 Dequantize).

Why (benchmarks/results/int8-cpu-intel-xeon-2c.md): with MinMax ranges on every convolution, a 1-epoch
demo-recipe model's normal tiles scored up to 0.24 higher in the tensorrt form (0.13 in the cpu form),
past its threshold, which sat 0.2 above them. Quantising one convolution at a time: each of the
teacher's 43 moves the score by <= 0.012 and leaving all of them in fp32 changes nothing; the drift is
the student's last stage (`student.layer3` in fp32: 0.24 -> 0.03), and there the 1x1 `conv1` of each
block, which reads the residual stream whose range grows block by block, moves it by 0.009-0.076
(conv2/conv3: <= 0.013). Those six plus the upsampling ConvTranspose that reads the same tensor stay
fp32 (tensorrt form 0.24 -> 0.08); percentile ranges instead of the extremes: 0.24 -> 0.17; both:
0.05 (cpu form 0.13 -> 0.06).
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

import numpy as np

from fwrd.config import INPUT_NAME
from fwrd.errors import DependencyMissing

QUANTIZED_OPS = ["Conv", "ConvTranspose"]
TARGETS = ("cpu", "tensorrt")
# Convolutions left in fp32, by weight name (fnmatch): the measured few that carry the error (above).
KEEP_FP32: tuple[str, ...] = ("student.layer3.*.conv1.weight", "student.layer3.0.upsample.*")
CALIBRATION_PERCENTILE = 99.99  # activation ranges: this percentile of |activation|, not the extreme values


def quantization_options(target: str) -> dict:
    """quantize_static's type and placement options for `target` ("cpu" or "tensorrt")."""
    if target == "cpu":
        return {"activation": "QUInt8", "extra": {"ActivationSymmetric": False, "WeightSymmetric": True}}
    if target == "tensorrt":
        return {"activation": "QInt8", "extra": {
            "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}}
    raise ValueError(f"unknown int8 target {target!r}; expected one of {', '.join(TARGETS)}")


def fp32_nodes(model_path: Path, weight_patterns: Sequence[str]) -> list[str]:
    """Names of the convolutions in the graph at `model_path` whose weights match one of `weight_patterns`
    (fnmatch, on the PyTorch parameter names the exporter keeps)."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in QUANTIZED_OPS and len(node.input) > 1
            and any(fnmatch.fnmatchcase(node.input[1], pattern) for pattern in weight_patterns)]


def quantize_int8(fp32_path: Path, out_path: Path, calibration_tiles: np.ndarray, batch: int = 8,
                  target: str = "cpu", log: Callable[[str], None] = lambda line: None,
                  keep_fp32: Sequence[str] = KEEP_FP32) -> Path:
    """Write a QDQ int8 graph of `fp32_path` for `target` to `out_path`, calibrated with `calibration_tiles`.

    Progress goes to `log` (calibration batch by batch, then quantisation); ONNX Runtime's own prints,
    which go to stdout, are dropped so that stdout stays clean.
    """
    options = quantization_options(target)
    try:
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise DependencyMissing("int8 export needs ONNX Runtime: pip install 'fwrd[cpu]'") from None

    count = len(calibration_tiles)
    batch = min(batch, count)
    # The histogram calibrators stack every batch's activations: all batches must be the same size, so
    # the last one is filled up with the first tiles again.
    tiles = np.concatenate([calibration_tiles, calibration_tiles[: -count % batch]])
    starts = range(0, len(tiles), batch)
    outer = sys.stdout

    def say(line: str) -> None:  # ONNX Runtime's prints are dropped, not ours
        with contextlib.redirect_stdout(outer):
            log(line)

    class TileReader(CalibrationDataReader):
        """Feeds the tiles batch by batch; ONNX Runtime asks for the next batch after running the last one."""

        def __init__(self) -> None:
            self._starts = iter(starts)
            self._started = time.perf_counter()

        def get_next(self):
            start = next(self._starts, None)
            if start is None:
                say(f"quantising the convolutions to int8 for {target} (calibrated in "
                    f"{time.perf_counter() - self._started:.0f} s)...")
                return None
            say(f"calibrating int8: tiles {start + 1}-{min(start + batch, count)} of {count}...")
            return {INPUT_NAME: tiles[start : start + batch]}

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as work, contextlib.redirect_stdout(io.StringIO()):
        prepared = os.path.join(work, "prepared.onnx")
        log("preparing the fp32 graph for int8 calibration (shape inference)...")
        quant_pre_process(str(fp32_path), prepared, skip_symbolic_shape=True)
        excluded = fp32_nodes(Path(prepared), keep_fp32)
        quantize_static(
            prepared,
            str(out_path),
            TileReader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=getattr(QuantType, options["activation"]),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_exclude=excluded,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={**options["extra"], "CalibPercentile": CALIBRATION_PERCENTILE},
        )
    log(f"quantised to int8 for {target} in {time.perf_counter() - started:.0f} s")
    return Path(out_path)
