"""INT8 by static QDQ quantisation of the convolutions, calibrated on tissue tiles, in one of two forms.

Only Conv and ConvTranspose are quantised (per-channel weights, per-tensor activations); the cosine,
resize and mean at the end stay fp32, since they decide the score and cost nothing. Dynamic
quantisation would barely touch convolutions, which is where the time goes. One calibration (MinMax
over the same tiles) serves both forms:

- `cpu` (default): uint8 activations with a zero point, int8 weights (u8s8, ONNX Runtime's fast CPU
  path), Q/DQ on convolution inputs and outputs. TensorRT's parser refuses it (uint8 intermediates).
- `tensorrt`: the explicit-quantization form TensorRT fuses: int8 activations and weights, zero point
  0 everywhere, Q/DQ only at convolution inputs, float biases (TensorRT has no int32 Dequantize).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from fwrd.config import INPUT_NAME
from fwrd.errors import DependencyMissing

QUANTIZED_OPS = ["Conv", "ConvTranspose"]
TARGETS = ("cpu", "tensorrt")


def quantization_options(target: str) -> dict:
    """quantize_static's type and placement options for `target` ("cpu" or "tensorrt")."""
    if target == "cpu":
        return {"activation": "QUInt8", "extra": {"ActivationSymmetric": False, "WeightSymmetric": True}}
    if target == "tensorrt":
        return {"activation": "QInt8", "extra": {
            "ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
            "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}}
    raise ValueError(f"unknown int8 target {target!r}; expected one of {', '.join(TARGETS)}")


def quantize_int8(fp32_path: Path, out_path: Path, calibration_tiles: np.ndarray, batch: int = 8,
                  target: str = "cpu", log: Callable[[str], None] = lambda line: None) -> Path:
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

    starts = range(0, len(calibration_tiles), batch)

    class TileReader(CalibrationDataReader):
        """Feeds the tiles batch by batch; ONNX Runtime asks for the next batch after running the last one."""

        def __init__(self) -> None:
            self._starts = iter(starts)
            self._started = time.perf_counter()

        def get_next(self):
            start = next(self._starts, None)
            if start is None:
                log(f"quantising the convolutions to int8 for {target} (calibrated in "
                    f"{time.perf_counter() - self._started:.0f} s)...")
                return None
            end = min(start + batch, len(calibration_tiles))
            log(f"calibrating int8: tiles {start + 1}-{end} of {len(calibration_tiles)}...")
            return {INPUT_NAME: calibration_tiles[start:end]}

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as work, contextlib.redirect_stdout(io.StringIO()):
        prepared = os.path.join(work, "prepared.onnx")
        log("preparing the fp32 graph for int8 calibration (shape inference)...")
        quant_pre_process(str(fp32_path), prepared, skip_symbolic_shape=True)
        quantize_static(
            prepared,
            str(out_path),
            TileReader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=getattr(QuantType, options["activation"]),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options=options["extra"],
        )
    log(f"quantised to int8 for {target} in {time.perf_counter() - started:.0f} s")
    return Path(out_path)
