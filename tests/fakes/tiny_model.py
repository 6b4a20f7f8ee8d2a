"""A tiny ONNX graph with fwrd's exact inputs, outputs and metadata, for backend and builder tests.

It mimics the real graph's structure at toy size: uint8 NHWC input cast and scaled inside the graph, a
"teacher" conv and a "student" 1x1 conv (optionally in fp16, like the fp16 export), then the per-pixel
(1 - cosine) map in fp32 at a quarter of the tile size (`amap`) and its mean (`score`). With
`dense=True` the input takes any height and width (multiples of 32) and the graph also outputs
per-scale maps like the real one's: `map_s4` (the map), `map_s8` and `map_s16` (its 2x2 and 4x4 means),
and `score` is FW-RD's rule on them (`fwrd_score_nodes`), so dense scoring's isolated-tile score is the
tile score here too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fwrd import __version__
from fwrd.config import (
    FORMAT_TAG, INPUT_NAME, META_CHECKPOINT_SHA256, META_CONFIG, META_FORMAT, META_PRECISION, META_VERSION,
    OUTPUT_AMAP, OUTPUT_MAPS, OUTPUT_SCORE, FWRDConfig,
)


def tiny_model(tile_size: int = 32, precision: str = "fp32", *, extra_op: str | None = None,
               seed: int = 0, transpose_first: bool = False, dense: bool = False) -> onnx.ModelProto:
    """fwrd I/O: `tiles` uint8 [batch, T, T, 3] -> `score` [batch], `amap` [batch, T/4, T/4].

    `transpose_first` permutes the uint8 tiles before casting them, as fwrd's exporter once did (a uint8
    intermediate tensor, which TensorRT's parser refuses).
    """
    rng = np.random.default_rng(seed)
    conv_type = np.float16 if precision == "fp16" else np.float32
    onnx_conv = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "scale"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 4, 4)).astype(conv_type), "w_teacher"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8,)).astype(conv_type), "b_teacher"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 8, 1, 1)).astype(conv_type), "w_student"),
        numpy_helper.from_array(np.array([1], np.int64), "axis_c"),
        numpy_helper.from_array(np.array(1e-8, np.float32), "eps"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
    ]
    head = [
        helper.make_node("Cast", [INPUT_NAME], ["x_f"], to=TensorProto.FLOAT, name="cast_in"),
        helper.make_node("Transpose", ["x_f"], ["x_nchw"], perm=[0, 3, 1, 2], name="to_nchw"),
    ]
    if transpose_first:
        head = [
            helper.make_node("Transpose", [INPUT_NAME], ["x_u8"], perm=[0, 3, 1, 2], name="to_nchw"),
            helper.make_node("Cast", ["x_u8"], ["x_nchw"], to=TensorProto.FLOAT, name="cast_in"),
        ]
    nodes = head + [
        helper.make_node("Mul", ["x_nchw", "scale"], ["x01"], name="scale_01"),
        helper.make_node("Cast", ["x01"], ["x_c"], to=onnx_conv, name="cast_conv"),
        helper.make_node("Conv", ["x_c", "w_teacher", "b_teacher"], ["t_pre"], strides=[4, 4],
                         kernel_shape=[4, 4], name="teacher_conv"),
        helper.make_node("Relu", ["t_pre"], ["t_c"], name="teacher_relu"),
        helper.make_node("Conv", ["t_c", "w_student"], ["s_pre"], kernel_shape=[1, 1], name="student_conv"),
        helper.make_node("Relu", ["s_pre"], ["s_c"], name="student_relu"),
        helper.make_node("Cast", ["t_c"], ["t"], to=TensorProto.FLOAT, name="cast_t"),
        helper.make_node("Cast", ["s_c"], ["s"], to=TensorProto.FLOAT, name="cast_s"),
        helper.make_node("Mul", ["t", "s"], ["ts"], name="cos_prod"),
        helper.make_node("ReduceSum", ["ts", "axis_c"], ["dot"], keepdims=0, name="cos_dot"),
        helper.make_node("Mul", ["t", "t"], ["tt"], name="t_sq"),
        helper.make_node("ReduceSum", ["tt", "axis_c"], ["tn2"], keepdims=0, name="t_sumsq"),
        helper.make_node("Sqrt", ["tn2"], ["tn"], name="t_norm"),
        helper.make_node("Mul", ["s", "s"], ["ss"], name="s_sq"),
        helper.make_node("ReduceSum", ["ss", "axis_c"], ["sn2"], keepdims=0, name="s_sumsq"),
        helper.make_node("Sqrt", ["sn2"], ["sn"], name="s_norm"),
        helper.make_node("Mul", ["tn", "sn"], ["den0"], name="norm_prod"),
        helper.make_node("Max", ["den0", "eps"], ["den"], name="norm_clip"),
        helper.make_node("Div", ["dot", "den"], ["cos"], name="cos_div"),
        helper.make_node("Sub", ["one", "cos"], [OUTPUT_AMAP], name="one_minus_cos"),
    ]
    if not dense:
        nodes.append(helper.make_node("ReduceMean", [OUTPUT_AMAP], [OUTPUT_SCORE], axes=[1, 2], keepdims=0,
                                      name="score_mean"))
    opsets = [helper.make_opsetid("", 17)]
    if extra_op:  # an op TensorRT's parser has no importer for, on the output path
        nodes.append(helper.make_node(extra_op, [OUTPUT_SCORE], ["extra"], domain="fwrd.test", name="mystery"))
        opsets.append(helper.make_opsetid("fwrd.test", 1))
    a = tile_size // 4
    outputs = [
        helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, ["batch"]),
        helper.make_tensor_value_info(OUTPUT_AMAP, TensorProto.FLOAT, ["batch", a, a]),
    ]
    input_dims: list = ["batch", tile_size, tile_size, 3]
    if dense:
        input_dims = ["batch", "height", "width", 3]
        outputs[1] = helper.make_tensor_value_info(OUTPUT_AMAP, TensorProto.FLOAT, ["batch", "height/4", "width/4"])
        nodes += [
            helper.make_node("Identity", [OUTPUT_AMAP], [OUTPUT_MAPS[0]], name="map4"),
            helper.make_node("Unsqueeze", [OUTPUT_AMAP, "axis_c"], ["amap_4d"], name="amap_4d"),
            helper.make_node("AveragePool", ["amap_4d"], ["pool8"], kernel_shape=[2, 2], strides=[2, 2], name="p8"),
            helper.make_node("AveragePool", ["amap_4d"], ["pool16"], kernel_shape=[4, 4], strides=[4, 4], name="p16"),
            helper.make_node("Squeeze", ["pool8", "axis_c"], [OUTPUT_MAPS[1]], name="map8"),
            helper.make_node("Squeeze", ["pool16", "axis_c"], [OUTPUT_MAPS[2]], name="map16"),
        ]
        outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", f"height/{s}", f"width/{s}"])
                    for name, s in zip(OUTPUT_MAPS, (4, 8, 16))]
        score_nodes, score_inits = fwrd_score_nodes(list(OUTPUT_MAPS), INPUT_NAME, OUTPUT_SCORE)
        nodes += score_nodes
        inits += score_inits
    if extra_op:
        outputs.append(helper.make_tensor_value_info("extra", TensorProto.FLOAT, ["batch"]))
    graph = helper.make_graph(
        nodes, "tiny_rd", [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, input_dims)], outputs, inits,
    )
    model = helper.make_model(graph, opset_imports=opsets, producer_name="fwrd-tests")
    model.ir_version = 8
    helper.set_model_props(model, {
        META_CONFIG: FWRDConfig(tile_size=tile_size, mpp=0.243, threshold=0.5).to_json(),
        META_VERSION: __version__,
        META_CHECKPOINT_SHA256: "0" * 64,
        META_PRECISION: precision,
        META_FORMAT: FORMAT_TAG,
    })
    return model


def fwrd_score_nodes(maps: list[str], image: str, out: str) -> tuple[list, list]:
    """ONNX nodes computing FW-RD's patch score of `image` (uint8 [B, H, W, 3]) from its per-scale maps
    ([B, H/s, W/s]): the mean of the sum of the maps, each resized to H x W (linear, align_corners)."""
    inits = [numpy_helper.from_array(np.array([1], np.int64), "fs_axis1"),
             numpy_helper.from_array(np.array([0], np.int64), "fs_0"),
             numpy_helper.from_array(np.array([2], np.int64), "fs_2"),
             numpy_helper.from_array(np.array([1], np.int64), "fs_1"),
             numpy_helper.from_array(np.array([3], np.int64), "fs_3")]
    nodes = [helper.make_node("Shape", [image], ["fs_image_shape"]),
             helper.make_node("Slice", ["fs_image_shape", "fs_1", "fs_3"], ["fs_hw"])]
    parts = []
    for k, name in enumerate(maps):
        nodes += [
            helper.make_node("Unsqueeze", [name, "fs_axis1"], [f"fs_m{k}"]),
            helper.make_node("Shape", [f"fs_m{k}"], [f"fs_shape{k}"]),
            helper.make_node("Slice", [f"fs_shape{k}", "fs_0", "fs_2"], [f"fs_bc{k}"]),
            helper.make_node("Concat", [f"fs_bc{k}", "fs_hw"], [f"fs_sizes{k}"], axis=0),
            helper.make_node("Resize", [f"fs_m{k}", "", "", f"fs_sizes{k}"], [f"fs_up{k}"], mode="linear",
                             coordinate_transformation_mode="align_corners"),
            helper.make_node("ReduceMean", [f"fs_up{k}"], [f"fs_mean{k}"], axes=[1, 2, 3], keepdims=0),
        ]
        parts.append(f"fs_mean{k}")
    total = parts[0]
    for k, part in enumerate(parts[1:]):
        total_next = out if k == len(parts) - 2 else f"fs_total{k}"
        nodes.append(helper.make_node("Add", [total, part], [total_next]))
        total = total_next
    return nodes, inits


def write_tiny_model(path: Path, tile_size: int = 32, precision: str = "fp32", **kwargs) -> Path:
    path = Path(path)
    onnx.save(tiny_model(tile_size, precision, **kwargs), str(path))
    return path


def ort_reference(path: Path, tiles: np.ndarray, names: tuple[str, ...] = (OUTPUT_SCORE, OUTPUT_AMAP)) -> list:
    """Outputs (score and amap unless named) straight from ONNX Runtime on CPU: what the TensorRT backend
    must reproduce."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return session.run(list(names), {INPUT_NAME: tiles})


def random_tiles(n: int, tile_size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, tile_size, tile_size, 3), dtype=np.uint8)


def tiny_verification(path: Path, n: int = 12, tile_size: int = 32, seed: int = 7):
    """A verification set for a tiny (or stand-in) graph: its own ONNX Runtime CPU scores as the reference,
    like PyTorch fp32's for a real export."""
    from fwrd.export.gate import VerificationSet
    from fwrd.digest import file_sha256

    tiles = random_tiles(n, tile_size, seed)
    return VerificationSet(tiles, ort_reference(path, tiles)[0].astype(np.float64), None, file_sha256(path))


def write_tiny_int8(path: Path, target: str, tile_size: int = 32) -> Path:
    """The tiny graph quantised by fwrd's own int8 path for `target` ("cpu" or "tensorrt"), with fwrd's
    int8 metadata."""
    from fwrd.config import META_TARGET
    from fwrd.export.quantize import quantize_int8

    path = Path(path)
    fp32 = write_tiny_model(path.with_name(path.stem + ".fp32.onnx"), tile_size, "fp32")
    quantize_int8(fp32, path, random_tiles(16, tile_size, seed=11), target=target)
    model = onnx.load(str(path))
    props = {p.key: p.value for p in onnx.load(str(fp32)).metadata_props}
    props.update({META_PRECISION: "int8", META_TARGET: target})
    del model.metadata_props[:]
    helper.set_model_props(model, props)
    onnx.save(model, str(path))
    return path
