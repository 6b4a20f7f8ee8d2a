"""Expected failures. The CLI turns every `FwrdError` into one line on stderr and a non-zero exit."""

from __future__ import annotations


class FwrdError(Exception):
    """Base of every error a user can cause (bad input, missing dependency); never a bug."""


class InputNotFound(FwrdError, FileNotFoundError):
    """A path the user named does not exist."""


class SlideError(FwrdError):
    """A slide cannot be opened or read (not a slide, truncated, corrupt, no resolution)."""


class AnnotationError(FwrdError):
    """An annotation file (ASAP XML) cannot be parsed."""


class CheckpointError(FwrdError):
    """A checkpoint is missing, truncated, not an fwrd/FW-RD checkpoint or of another architecture."""


class ModelError(FwrdError):
    """An ONNX model or TensorRT plan is not what fwrd exports, or does not fit this machine."""


class DependencyMissing(FwrdError):
    """An optional dependency (torch, onnxruntime, TensorRT, a GPU) is needed and not installed."""


class DataError(FwrdError):
    """Training or evaluation data is empty or malformed (patch folders, CSVs, masks)."""


class ExportGateFailed(FwrdError):
    """An exported model disagrees with PyTorch beyond the stated bound."""
