"""Read and validate what an fwrd model file promises: its metadata and its inputs and outputs.

The runtime takes every setting it needs (tile size, resolution, threshold) from the model, so a model
that is not an fwrd export must be refused up front with one clear line, not fail deep in a slide.

    meta = read_onnx_metadata("rd.onnx")
    config = check_fwrd_model(meta, [("tiles", "uint8", ["batch", 256, 256, 3])],
                              [("score", "float32", ["batch"]), ("amap", "float32", ["batch", 64, 64])])
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fwrd.config import (
    FORMAT_TAG,
    INPUT_NAME,
    META_CONFIG,
    META_FORMAT,
    OUTPUT_AMAP,
    OUTPUT_MAPS,
    OUTPUT_SCORE,
    FWRDConfig,
)
from fwrd.errors import FwrdError, InputNotFound, ModelError
from fwrd.runtime.onnx_data import refuse_outside_data

# (name, dtype, shape): dtype as numpy names it ("uint8") or as ONNX Runtime does ("tensor(uint8)");
# a shape entry is an int, or a str / None for a symbolic (dynamic) dimension.
TensorSpec = tuple[str, Any, Sequence[Any]]

_EXPORT_HINT = "export it with fwrd-export"
ENGINE_SUFFIXES = (".plan", ".engine", ".trt")


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The `metadata_props` of an ONNX file, read with `onnx` when installed, else ONNX Runtime."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"model not found: {path}")
    refuse_outside_data(path)  # before ONNX Runtime (the fallback below) follows any of it
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf DecodeError and friends
            raise ModelError(f"{path}: not an ONNX model ({_first_line(exc)})") from None
        return {p.key: p.value for p in model.metadata_props}
    try:
        import onnxruntime as ort
    except ImportError:
        raise ModelError("reading an ONNX model needs onnx or onnxruntime: pip install fwrd[cpu]") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path}: not an ONNX model ONNX Runtime can load ({_first_line(exc)})") from None
    return dict(session.get_modelmeta().custom_metadata_map)


def check_fwrd_model(
    metadata: dict[str, str], inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], source: str = "model"
) -> FWRDConfig:
    """Return the model's FWRDConfig, or raise ModelError saying what differs from an fwrd export.

    Expected: metadata fwrd.format == FORMAT_TAG and a valid fwrd.config; one input "tiles" uint8
    [batch, T, T, 3]; outputs "score" float32 [batch] and "amap" float32 [batch, T/4, T/4].
    """
    tag = metadata.get(META_FORMAT)
    if tag != FORMAT_TAG:
        what = "has no fwrd metadata" if tag is None else f"has format {tag!r}, expected {FORMAT_TAG!r}"
        raise ModelError(f"{source}: not an fwrd model ({what}); {_EXPORT_HINT}")
    if META_CONFIG not in metadata:
        raise ModelError(f"{source}: fwrd metadata lacks {META_CONFIG}; {_EXPORT_HINT}")
    try:
        config = FWRDConfig.from_json(metadata[META_CONFIG])
    except (FwrdError, TypeError, ValueError) as exc:
        raise ModelError(f"{source}: bad {META_CONFIG} metadata: {exc}") from None
    t = config.tile_size

    if len(inputs) != 1 or inputs[0][0] != INPUT_NAME:
        names = ", ".join(spec[0] for spec in inputs) or "none"
        raise ModelError(f"{source}: inputs are [{names}]; fwrd models take one input {INPUT_NAME!r}")
    _check_tensor(source, inputs[0], "uint8", [None, t, t, 3], "input")

    by_name = {spec[0]: spec for spec in outputs}
    for name, shape in ((OUTPUT_SCORE, [None]), (OUTPUT_AMAP, [None, t // 4, t // 4])):
        if name not in by_name:
            names = ", ".join(by_name) or "none"
            raise ModelError(f"{source}: outputs are [{names}]; fwrd models have {OUTPUT_SCORE!r} and {OUTPUT_AMAP!r}")
        _check_tensor(source, by_name[name], "float32", shape, "output")
    return config


def scores_regions(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """Whether a model (checked by `check_fwrd_model`) takes regions: dynamic height and width, and the
    per-scale maps dense scoring reads."""
    dims = list(inputs[0][2]) if inputs else []
    dynamic = len(dims) == 4 and all(not isinstance(d, int) or d < 0 for d in dims[1:3])
    return dynamic and set(OUTPUT_MAPS) <= {spec[0] for spec in outputs}


def dtype_name(dtype: Any) -> str:
    """'tensor(uint8)' (ONNX Runtime), np.uint8, 'uint8' -> 'uint8'; 'tensor(float)' -> 'float32'."""
    text = str(getattr(dtype, "name", dtype))
    if text.startswith("tensor(") and text.endswith(")"):
        text = text[len("tensor("):-1]
    if text.startswith("<class 'numpy."):
        text = text[len("<class 'numpy."):-2]
    return {"float": "float32", "double": "float64", "float16": "float16"}.get(text, text)


def is_torch_checkpoint(path: str | Path) -> bool:
    """True for a file torch.save wrote: a zip holding `<name>/data.pkl`, or a legacy pickle."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
        if head == b"PK\x03\x04":
            with zipfile.ZipFile(path) as archive:
                return any(n.endswith("/data.pkl") or n == "data.pkl" for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False
    return head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")


def refuse_checkpoint(path: Path) -> None:
    """ModelError for a PyTorch checkpoint given where an exported model belongs."""
    if is_torch_checkpoint(path):
        raise ModelError(
            f"{path} is a PyTorch checkpoint, not an exported model: export it with "
            f"`fwrd-export {path} -o rd.onnx`, or run it with --backend torch"
        )


def check_engine_argument(path: str | Path) -> None:
    """Refuse, saying what an engine is, a file given to --engine that is not a TensorRT engine."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"engine not found: {path}")
    if path.suffix.lower() in ENGINE_SUFFIXES:
        return
    build = ("an engine is an ONNX model compiled by TensorRT for one GPU model and TensorRT version: "
             "build it on the machine that runs it with `fwrd-export model.pt -o rd.onnx --engine rd.plan`")
    if is_torch_checkpoint(path):
        raise ModelError(f"{path} is a PyTorch checkpoint, not a TensorRT engine; {build}")
    if path.suffix.lower() == ".onnx":
        raise ModelError(f"{path} is an ONNX model, not a TensorRT engine: run it with --model {path}; or {build}")
    raise ModelError(
        f"{path}: --engine takes a TensorRT engine ({', '.join(ENGINE_SUFFIXES)}); {build}"
    )


def _check_tensor(source: str, spec: TensorSpec, dtype: str, shape: list[int | None], role: str) -> None:
    name, got_dtype, got_shape = spec[0], dtype_name(spec[1]), list(spec[2])
    want = "[" + ", ".join("batch" if d is None else str(d) for d in shape) + "]"
    got = f"{got_dtype} [{', '.join(str(d) for d in got_shape)}]"
    ok = got_dtype == dtype and len(got_shape) == len(shape)
    if ok:
        for n, (g, w) in enumerate(zip(got_shape, shape)):
            if isinstance(g, int) and not isinstance(g, bool):
                if n == 0:
                    ok = ok and g >= 1
                elif w is not None and g != w:
                    ok = False
    if not ok:
        raise ModelError(f"{source}: {role} {name!r} is {got}; fwrd models need {dtype} {want}; {_EXPORT_HINT}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else exc.__class__.__name__
