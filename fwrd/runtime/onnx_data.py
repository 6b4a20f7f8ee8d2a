"""Where an ONNX file's tensors keep their bytes: refuse a model whose external data lies outside its folder.

An ONNX tensor may keep its bytes in another file (`data_location: EXTERNAL`, `external_data` entry
`location`), named relative to the model's folder. ONNX Runtime 1.19 followed `../../etc/passwd` there
(a crafted model turned a local file into tile scores: issue 26.5), and TensorRT's parser reads the same
field. So before any session or parser sees a model, fwrd reads every tensor it holds (initializers,
sparse initializers, constants in node attributes, subgraphs, functions, training graphs) and refuses, in
one line, a location that is absolute, climbs out of the folder, or resolves (through a link) outside it.

The walk reads only the few ONNX message fields that lead to tensors (their ONNX field numbers are
declared here; tests/test_onnx_external_data.py holds them equal to onnx's own) straight off the
protocol-buffer wire format of the memory-mapped file, skipping everything else by its length: no
weights are copied (protobuf's own parser would copy every unknown field, the whole file: 1.2 GB peak
for a 636 MB graph), nesting is bounded, and a file that is not a protocol buffer is one line.

    refuse_outside_data("rd.onnx")     # ModelError naming the tensor and its location, else None
"""

from __future__ import annotations

import mmap
from pathlib import Path

from fwrd.errors import InputNotFound, ModelError

EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
MAX_DEPTH = 64  # message nesting (graphs in attributes in nodes in graphs ...) a model may have
NAME_BYTES = 1024  # of a tensor name or location, for the message

# message -> {ONNX field number: (field, message type, or "" for a scalar)} (onnx.proto)
FIELDS: dict[str, dict[int, tuple[str, str]]] = {
    "ModelProto": {7: ("graph", "GraphProto"), 25: ("functions", "FunctionProto"),
                   20: ("training_info", "TrainingInfoProto")},
    "TrainingInfoProto": {1: ("initialization", "GraphProto"), 2: ("algorithm", "GraphProto")},
    "GraphProto": {1: ("node", "NodeProto"), 5: ("initializer", "TensorProto"),
                   15: ("sparse_initializer", "SparseTensorProto")},
    "FunctionProto": {7: ("node", "NodeProto")},
    "NodeProto": {5: ("attribute", "AttributeProto")},
    "AttributeProto": {5: ("t", "TensorProto"), 6: ("g", "GraphProto"), 10: ("tensors", "TensorProto"),
                       11: ("graphs", "GraphProto"), 22: ("sparse_tensor", "SparseTensorProto"),
                       23: ("sparse_tensors", "SparseTensorProto")},
    "SparseTensorProto": {1: ("values", "TensorProto"), 2: ("indices", "TensorProto")},
    "TensorProto": {8: ("name", ""), 13: ("external_data", "StringStringEntryProto"), 14: ("data_location", "")},
    "StringStringEntryProto": {1: ("key", ""), 2: ("value", "")},
}


class _Malformed(Exception):
    """The bytes are not a protocol buffer of this shape."""


def external_locations(path: str | Path) -> list[tuple[str, str]]:
    """(tensor name, location) of every tensor of the ONNX file at `path` that keeps its bytes elsewhere."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFound(f"model not found: {path}")
    found: list[tuple[str, str]] = []
    try:
        with open(path, "rb") as handle:
            if path.stat().st_size:
                with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data, memoryview(data) as view:
                    _walk(view, 0, len(view), "ModelProto", 0, found)
    except (_Malformed, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not an ONNX model ({exc})") from None
    return found


def refuse_outside_data(path: str | Path) -> None:
    """ModelError when a tensor of the model at `path` keeps its bytes outside the model's folder."""
    path = Path(path)
    folder = path.absolute().parent
    for name, location in external_locations(path):
        target = Path(location)
        if not location or target.is_absolute() or ".." in target.parts or target.drive:
            where = "names no file" if not location else f"points at {location[:120]!r}"
        elif not (folder / target).resolve().is_relative_to(folder.resolve()):
            where = f"points at {location[:120]!r}, which leads outside it (through a link)"
        else:
            continue
        raise ModelError(f"{path}: tensor {name[:80]!r} keeps its data outside the model's folder ({where}); "
                         "fwrd reads external data only from files beside the model: refusing it")


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed("a truncated or overlong varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _walk(buf: memoryview, pos: int, end: int, message: str, depth: int,
          found: list[tuple[str, str]]) -> tuple[str, str] | None:
    """Walk one message in buf[pos:end]: descend into FIELDS, skip the rest; a TensorProto that keeps its
    data elsewhere goes to `found`. Returns (key, value) for a StringStringEntryProto."""
    if depth > MAX_DEPTH:
        raise _Malformed(f"messages nested more than {MAX_DEPTH} deep")
    fields = FIELDS[message]
    scalars: dict[str, str | int] = {}
    entries: dict[str, str] = {}
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        start = pos
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        elif wire == 2:
            length, start = _varint(buf, pos, end)
            pos = start + length
        else:
            raise _Malformed(f"wire type {wire} in {message}")
        if pos > end:
            raise _Malformed(f"a field of {message} runs past its end")
        if number not in fields:
            continue
        name, kind = fields[number]
        if kind and wire == 2:
            entry = _walk(buf, start, pos, kind, depth + 1, found)
            if entry is not None:
                entries[entry[0]] = entry[1]
        elif not kind and wire == 2:
            scalars[name] = bytes(buf[start:min(pos, start + NAME_BYTES)]).decode("utf-8", "replace")
        elif not kind and wire == 0:
            scalars[name] = value
    if message == "StringStringEntryProto":
        return str(scalars.get("key", "")), str(scalars.get("value", ""))
    if message == "TensorProto" and (scalars.get("data_location") == EXTERNAL or entries):
        found.append((str(scalars.get("name", "")), entries.get("location", "")))
    return None
