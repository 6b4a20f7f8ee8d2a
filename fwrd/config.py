"""The one configuration that travels with a model: in the checkpoint and in the ONNX metadata.

`fwrd-run` reads it back from the model file, so it never needs flags for the tile size, resolution,
normalisation or threshold. Pure Python: the deployment path imports it without torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from fwrd.errors import FwrdError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ARCHITECTURES = ("fwrd", "rd4ad")  # bottleneck shortcut: FW-RD conv3x3 s2, RD4AD conv1x1 s2


@dataclass(frozen=True)
class QCThresholds:
    """The thresholds of the artifact rules (fwrd.slide.qc applies them; docs/qc.md says why each is set
    where it is). Fractions are of a tile's pixels; ratios compare a tile with the slide's own tissue.

    Attributes:
        ink_saturation: smallest saturation of a pixel counted as coloured ink.
        hne_hue: (from, to) hue range in degrees, through 0 (red), that H&E stains take; saturated pixels
            outside it are ink.
        pen_fraction: a tile with at least this share of solid ink pixels is `pen`.
        pen_edge_fraction: ... and so is one with at least this share that touches a `pen` tile (a stroke's
            edge: too little ink to flag alone, enough to make an anomaly model call it).
        dirt_fraction: ... of solid black pixels is `dirt`.
        dirt_edge_fraction: ... and so is one with at least this share that touches a `dirt` tile (counting
            the pixels within 2 px of a speck's dark core too: its rim, which JPEG tints like the tissue).
        bubble_fraction: ... of solid grey line pixels (bubble rims, glass and coverslip edges) is `bubble`.
        bubble_edge_fraction: ... and so is one with at least this share that touches a `bubble` tile.
        bubble_pale_fraction: ... and so is one with at least this share of solid pale pixels (washed-out,
            hardly stained: a bubble's hazy inside and its rim blended into dense tissue) ...
        bubble_pale_excess: ... that is also at least this many times the slide's median share of them (a
            bubble is an exception on its slide; a faded or pale slide is not a bubble).
        bubble_pale_edge_fraction: ... and a tile with at least this share of pale pixels touching a `bubble`
            tile is `bubble` too.
        fold_thickness: a tile whose mean optical density is at least this times that of the slide's tissue
            of the same colour (optical-density shares within `fold_colour_radius`) ...
        fold_min_darkness: ... and at least this times the slide's median is `fold` (two layers of tissue,
            not a denser tissue, which is stained differently).
        fold_colour_radius: how near in colour (red and green shares of optical density) a reference tile is.
        fold_edge_thickness: a tile that touches a `fold` tile needs only this times its colour's optical
            density (and `fold_min_darkness`) to be `fold`.
        fold_min_tiles: fold regions (8-connected tiles) smaller than this are not flagged: a fold is an
            extended region, a lone dense tile more likely dense tissue. A piece cut off from a region of this
            size by up to two tiles with too little tissue to score (a lumen) counts with that region.
        fold_link_thickness: ... and pieces linked only to one another by such tiles count together when every
            tile of them is at least this times its colour's optical density (near two layers' worth).
        blur_ratio: a tile whose sharpness is below this share of the slide's is `blur` (out of focus).
        blur_edge_ratio: ... and so is one below this share that touches a `blur` tile (or one whose least sharp
            block is below `blur_ratio`: the border of a focus miss).
        review_share: a slide whose QC excludes more than this share of its scored tissue is `review`.
        review_touching: ... as is one where more than this share of the above-threshold tiles touch
            excluded tiles.
    """

    ink_saturation: float = 0.25
    hne_hue: tuple[float, float] = (245.0, 30.0)
    pen_fraction: float = 0.1
    pen_edge_fraction: float = 0.02
    dirt_fraction: float = 0.003
    dirt_edge_fraction: float = 0.0007
    bubble_fraction: float = 0.01
    bubble_edge_fraction: float = 0.005
    bubble_pale_fraction: float = 0.1
    bubble_pale_excess: float = 4.0
    bubble_pale_edge_fraction: float = 0.07
    fold_thickness: float = 1.3
    fold_min_darkness: float = 1.1
    fold_colour_radius: float = 0.015
    fold_edge_thickness: float = 1.2
    fold_min_tiles: int = 3
    fold_link_thickness: float = 1.6
    blur_ratio: float = 0.15
    blur_edge_ratio: float = 0.3
    review_share: float = 0.25
    review_touching: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "hne_hue", tuple(float(v) for v in self.hne_hue))
        if len(self.hne_hue) != 2:
            raise FwrdError(f"hne_hue takes two hues (from, to), got {self.hne_hue}")
        for f in dataclasses.fields(self):
            values = getattr(self, f.name)
            for value in values if isinstance(values, tuple) else (values,):
                if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                    raise FwrdError(f"QC threshold {f.name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hne_hue"] = list(self.hne_hue)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "QCThresholds":
        """Build from a dict; keys a newer fwrd added are ignored, missing ones take the defaults. Models saved
        before the fold rule compared a tile with tissue of its own colour carry RETIRED_FOLD_KEYS instead of
        the fold_* fields: those set a rule that no longer exists and translate into no setting of this one, so
        such a model runs the fold rule at its defaults (summary.json's QC settings show the ones applied)."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise FwrdError(f"the model's QC thresholds are not a JSON object: {data!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known and k not in RETIRED_FOLD_KEYS})


# the fold rule's settings before it judged a tile against tissue of its own colour (darker by fold_darkness,
# more saturated by fold_saturation, no wider spread than fold_spread x the slide's): read, never applied
RETIRED_FOLD_KEYS = ("fold_darkness", "fold_saturation", "fold_spread")


@dataclass
class FWRDConfig:
    """Everything needed to prepare tiles for a model and to read its scores.

    Attributes:
        tile_size: side of the square RGB tile the model reads, a multiple of 32.
        level: pyramid level the training patches were read at (0 = full resolution).
        mpp: microns per pixel of the training patches (None when the slides carried none).
        mean, std: per-channel normalisation of RGB scaled to [0, 1].
        alpha, gamma: focal-distillation loss weights (paper: 0.1, 2).
        threshold: patch score at or above which a tile is called tumor (paper: 2 on 256 px
            Camelyon16 tiles; `fwrd-train` replaces it with the best threshold on validation).
        architecture: "fwrd" (3x3 shortcut in the bottleneck) or "rd4ad" (1x1).
        teacher_weights: where the frozen teacher came from ("imagenet", "random", or a file name).
        context: pixels of real tissue the training patches carried around each tile (`fwrd-patches
            --context`): the model was trained on lone tiles and on tiles inside their surroundings,
            so its scores rank tumor both per tile and dense (README, Dense scoring). 0: lone tiles only.
        dense_threshold: the threshold best on validation for dense scores (a model trained with
            context; `fwrd-export --validate-dense` replaces it with the one best in region passes);
            `fwrd-run --dense` uses it instead of `threshold`. None: not known.
        dense_validation: how the model scored in region passes on annotated slides, at the geometry
            recorded in it (margin, region side, stride; tile AUROC dense and per tile, the threshold):
            `fwrd-run --dense` runs only a model whose record shows it ranks tumor about as well dense
            as per tile (fwrd.runtime.dense_trust). None: never validated for dense scoring.
        qc: thresholds of the artifact rules `fwrd-run --qc on` applies (models saved before QC existed
            get the defaults).
    """

    tile_size: int = 256
    level: int = 0
    mpp: float | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    alpha: float = 0.1
    gamma: float = 2.0
    threshold: float = 2.0
    architecture: str = "fwrd"
    teacher_weights: str = "imagenet"
    context: int = 0
    dense_threshold: float | None = None
    dense_validation: dict[str, Any] | None = None
    qc: QCThresholds = field(default_factory=QCThresholds)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.tile_size = int(self.tile_size)
        self.level = int(self.level)
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]
        validate_tile_size(self.tile_size)
        self.context = validate_context(self.context)
        if not isinstance(self.qc, QCThresholds):
            self.qc = QCThresholds.from_dict(self.qc)
        self.threshold = check_threshold(self.threshold, "the model's threshold")
        if self.dense_threshold is not None:
            self.dense_threshold = check_threshold(self.dense_threshold, "the model's dense threshold")
        if self.dense_validation is not None and not isinstance(self.dense_validation, dict):
            raise FwrdError("the model's dense-validation record is not a JSON object")
        if self.architecture not in ARCHITECTURES:
            raise FwrdError(
                f"unknown architecture {self.architecture!r}; expected one of {', '.join(ARCHITECTURES)}"
            )
        if self.mpp is not None:
            self.mpp = float(self.mpp)
            if not self.mpp > 0:
                raise FwrdError(f"microns per pixel must be positive, got {self.mpp}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["qc"] = self.qc.to_dict()
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FWRDConfig":
        """Build from a dict, ignoring keys a newer fwrd may have added."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "FWRDConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FwrdError(f"model configuration is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise FwrdError("model configuration is not a JSON object")
        return cls.from_dict(data)

    def threshold_for(self, dense: bool) -> float:
        """The model's own threshold for per-tile or dense scores (dense has its own once trained with context)."""
        return self.dense_threshold if dense and self.dense_threshold is not None else self.threshold

    def replace(self, **changes: Any) -> "FWRDConfig":
        return dataclasses.replace(self, **changes)


def validate_tile_size(tile_size: int) -> int:
    """The network downsamples by 32 (teacher /16, bottleneck /2): other sizes cannot be mirrored."""
    if tile_size < 32 or tile_size % 32:
        raise FwrdError(f"tile size must be a positive multiple of 32, got {tile_size}")
    return tile_size


SCORE_RANGE = (0.0, 3.0)  # FW-RD patch scores: a sum of three 1 - cos maps of non-negative (post-ReLU) features


def check_threshold(value: float, what: str = "the threshold") -> float:
    """A threshold outside the scores' range (or not a number) would call every tile one way, silently
    (and a huge one once sized the colour key's ticks: issue 21.8)."""
    value = float(value)
    if not math.isfinite(value):
        raise FwrdError(f"{what} is not a finite number ({value})")
    lo, hi = SCORE_RANGE
    if not lo <= value <= hi:
        raise FwrdError(f"{what} ({value:g}) lies outside the range of FW-RD scores [{lo:g}, {hi:g}] (sums of "
                        "three 1 - cos maps): every tile would be called one way; give a threshold inside it")
    return value


def validate_context(context: int) -> int:
    """Context around a training tile: whole feature-map cells at every scale, so the tile's core is exact."""
    context = int(context)
    if context < 0 or context % 32:
        raise FwrdError(f"context must be 0 or a positive multiple of 32 pixels, got {context}")
    return context


# Keys of the ONNX `metadata_props` (and of the TensorRT plan's JSON manifest) that fwrd writes.
META_CONFIG = "fwrd.config"  # FWRDConfig.to_json()
META_VERSION = "fwrd.version"
META_CHECKPOINT_SHA256 = "fwrd.checkpoint_sha256"
META_PRECISION = "fwrd.precision"  # fp32 | fp16 | int8
META_TARGET = "fwrd.target"  # int8 only: "cpu" (u8s8 for ONNX Runtime) | "tensorrt" (s8s8, zero point 0)
META_FORMAT = "fwrd.format"  # FORMAT_TAG: proves the graph has fwrd's inputs and outputs
FORMAT_TAG = "fwrd-rd-v1"
INPUT_NAME = "tiles"  # uint8 [batch, T, T, 3] RGB; graphs for dense scoring take [batch, H, W, 3] (multiples of 32)
OUTPUT_SCORE = "score"  # float32 [batch]
OUTPUT_AMAP = "amap"  # float32 [batch, T/4, T/4]
# Per-scale 1 - cos maps (float32 [batch, H/s, W/s]) that dense scoring reads; older graphs lack them.
MAP_STRIDES = (4, 8, 16)
OUTPUT_MAPS = tuple(f"map_s{s}" for s in MAP_STRIDES)
