"""A tiny stand-in for fwrd's exported graph: same I/O and metadata, trivially cheap to run.

    darkness = 1 - mean_rgb / 255                     [B, T, T]
    amap     = 4x4 average pool of darkness           [B, T/4, T/4]
    score    = mean of amap (= mean darkness)         [B]

Tumor regions of the synthetic slides are darker (crowded nuclei), so the score separates them.
`reference_scores` computes the same in numpy for the correctness tests.

`dense=True` makes the stand-in of a graph for dense scoring: any height and width (multiples of 32),
per-scale maps map_s4 / map_s8 / map_s16 = the s x s average pools of darkness / 3, amap = map_s4, and
score = FW-RD's rule on the maps (the mean of their align_corners upsamples to the input size, summed),
so about the mean darkness. Pooling has no border effects, so a tile window of a region whose offset
is a multiple of 16 has exactly the maps of the tile alone: dense scores equal per-tile scores there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from fwrd.config import (
    FORMAT_TAG, INPUT_NAME, META_CONFIG, META_FORMAT, META_PRECISION, META_VERSION, OUTPUT_AMAP,
    OUTPUT_MAPS, OUTPUT_SCORE, FWRDConfig,
)


# A dense-validation record for the dense stand-in, whose dense scores equal its per-tile ones (pooling has
# no border effects): the geometry the dense tests run at (32 px margin, 256 px regions). Test data, not a
# measurement; `fwrd-export --validate-dense` measures a real one (tests/test_dense_trust.py).
STANDIN_RECORD = {"margin": 32, "region": 256, "stride": 16, "slides": 3, "tiles": 4000, "tumor_tiles": 800,
                  "auroc_dense": 0.99, "auroc_tiles": 0.99, "threshold": 0.35}


def build_standin(
    path: str | Path,
    config: FWRDConfig,
    *,
    batch: int | str = "batch",
    metadata: dict[str, str] | None = None,
    input_dtype: int = TensorProto.UINT8,
    dense: bool = False,
) -> Path:
    """Write the stand-in graph to `path`; `metadata` replaces fwrd's metadata when given."""
    t = config.tile_size
    if dense:
        return _save(_dense_graph(batch), path, config, metadata)
    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["gray"], axes=[3], keepdims=1),  # [B, T, T, 1]
        helper.make_node("Mul", ["gray", "inv255"], ["scaled"]),
        helper.make_node("Sub", ["one", "scaled"], ["dark"]),
        helper.make_node("Transpose", ["dark"], ["nchw"], perm=[0, 3, 1, 2]),  # [B, 1, T, T]
        helper.make_node("AveragePool", ["nchw"], ["pooled"], kernel_shape=[4, 4], strides=[4, 4]),
        helper.make_node("Squeeze", ["pooled", "axis1"], [OUTPUT_AMAP]),  # [B, T/4, T/4]
        helper.make_node("ReduceMean", [OUTPUT_AMAP], [OUTPUT_SCORE], axes=[1, 2], keepdims=0),
    ]
    inits = [
        helper.make_tensor("inv255", TensorProto.FLOAT, [], [1.0 / 255.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    graph = helper.make_graph(
        nodes,
        "fwrd_standin",
        [helper.make_tensor_value_info(INPUT_NAME, input_dtype, [batch, t, t, 3])],
        [
            helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, [batch]),
            helper.make_tensor_value_info(OUTPUT_AMAP, TensorProto.FLOAT, [batch, t // 4, t // 4]),
        ],
        inits,
    )
    return _save(graph, path, config, metadata)


def _dense_graph(batch: int | str) -> onnx.GraphProto:
    from fakes.tiny_model import fwrd_score_nodes

    nodes = [
        helper.make_node("Cast", [INPUT_NAME], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["gray"], axes=[3], keepdims=1),  # [B, H, W, 1]
        helper.make_node("Mul", ["gray", "inv255"], ["scaled"]),
        helper.make_node("Sub", ["one", "scaled"], ["dark"]),
        helper.make_node("Mul", ["dark", "third"], ["dark3"]),
        helper.make_node("Transpose", ["dark3"], ["nchw"], perm=[0, 3, 1, 2]),  # [B, 1, H, W]
    ]
    for name, s in zip(OUTPUT_MAPS, (4, 8, 16)):
        nodes += [helper.make_node("AveragePool", ["nchw"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]),
                  helper.make_node("Squeeze", [f"pool{s}", "axis1"], [name])]
    nodes.append(helper.make_node("Identity", [OUTPUT_MAPS[0]], [OUTPUT_AMAP]))
    score_nodes, score_inits = fwrd_score_nodes(list(OUTPUT_MAPS), INPUT_NAME, OUTPUT_SCORE)
    inits = [
        helper.make_tensor("inv255", TensorProto.FLOAT, [], [1.0 / 255.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("third", TensorProto.FLOAT, [], [1.0 / 3.0]),
        helper.make_tensor("axis1", TensorProto.INT64, [1], [1]),
    ]
    outputs = [helper.make_tensor_value_info(OUTPUT_SCORE, TensorProto.FLOAT, [batch]),
               helper.make_tensor_value_info(OUTPUT_AMAP, TensorProto.FLOAT, [batch, "height/4", "width/4"])]
    outputs += [helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, f"height/{s}", f"width/{s}"])
                for name, s in zip(OUTPUT_MAPS, (4, 8, 16))]
    return helper.make_graph(
        nodes + score_nodes, "fwrd_standin_dense",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, [batch, "height", "width", 3])],
        outputs, inits + score_inits,
    )


def _save(graph: onnx.GraphProto, path: str | Path, config: FWRDConfig, metadata: dict[str, str] | None) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="fwrd-tests")
    model.ir_version = 8
    if metadata is None:
        metadata = {
            META_FORMAT: FORMAT_TAG,
            META_CONFIG: config.to_json(),
            META_VERSION: "test",
            META_PRECISION: "fp32",
        }
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def reference_scores(tiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy twin of the stand-in graph (float32, same operation order up to rounding)."""
    dark = 1.0 - tiles.astype(np.float32).mean(axis=3) / 255.0
    b, t, _ = dark.shape
    amap = dark.reshape(b, t // 4, 4, t // 4, 4).mean(axis=(2, 4))
    return amap.mean(axis=(1, 2)).astype(np.float32), amap.astype(np.float32)
