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

import os
import tempfile
from pathlib import Path

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
                  target: str = "cpu") -> Path:
    """Write a QDQ int8 graph of `fp32_path` for `target` to `out_path`, calibrated with `calibration_tiles`."""
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

    class TileReader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(
                [{INPUT_NAME: calibration_tiles[i : i + batch]} for i in range(0, len(calibration_tiles), batch)]
            )

        def get_next(self):
            return next(self._batches, None)

    with tempfile.TemporaryDirectory(dir=Path(out_path).parent) as work:
        prepared = os.path.join(work, "prepared.onnx")
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
    return Path(out_path)
