"""Read the weight blobs of a Caffe ``.caffemodel`` without Caffe or protobuf.

A caffemodel is one protobuf ``NetParameter`` message. Only the fields that hold weights are read;
their numbers come from BVLC Caffe's ``src/caffe/proto/caffe.proto``:

- ``NetParameter``: ``layer = 100`` (``LayerParameter``) and the older ``layers = 2``
  (``V1LayerParameter``);
- ``LayerParameter``: ``name = 1``, ``blobs = 7``; ``V1LayerParameter``: ``name = 4``,
  ``blobs = 6``;
- ``BlobProto``: ``shape = 7`` (``BlobShape``: ``dim = 1``, packed int64), ``data = 5`` (float,
  packed), ``double_data = 8`` (double, packed), and the legacy 4-D ``num = 1``, ``channels = 2``,
  ``height = 3``, ``width = 4``.

Every other field is skipped by its wire type. A layer's first blob is its weight and the second
its bias, named ``<layer>.weight`` and ``<layer>.bias`` (``conv1_1.weight``, ``fc6.bias``), which
:func:`ohemcli.model.caffe_vgg16.to_torchvision_vgg16` maps onto VGG16.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ohemcli.errors import UserError

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class _Malformed(Exception):
    """The bytes are not the protobuf message they should be."""


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Malformed("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: memoryview):  # noqa: ANN202 - a generator of (field, wire type, value)
    """Yield ``(field number, wire type, value)``: an int for varints and fixed-width numbers
    (their raw bytes for fixed ones), a memoryview for length-delimited fields."""
    pos = 0
    value: int | memoryview
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == _VARINT:
            value, pos = _varint(buf, pos)
        elif wire in (_FIXED64, _FIXED32):
            size = 8 if wire == _FIXED64 else 4
            value, pos = buf[pos : pos + size], pos + size
        elif wire == _BYTES:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        else:
            raise _Malformed(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise _Malformed("truncated field")
        yield field, wire, value


def _blob(buf: memoryview) -> np.ndarray:
    """One ``BlobProto`` as an array of its shape (``shape``, else the legacy 4-D fields)."""
    shape: list[int] = []
    legacy = {1: 1, 2: 1, 3: 1, 4: 1}  # num, channels, height, width (default 0 counts as 1)
    parts: list[np.ndarray] = []
    for field, wire, value in _fields(buf):
        if field == 7 and wire == _BYTES:  # BlobShape
            for dim_field, dim_wire, dim in _fields(value):
                if dim_field == 1 and dim_wire == _BYTES:  # packed int64
                    pos = 0
                    while pos < len(dim):
                        d, pos = _varint(dim, pos)
                        shape.append(d)
                elif dim_field == 1 and dim_wire == _VARINT:
                    shape.append(dim)
        elif field in legacy and wire == _VARINT:
            legacy[field] = value or 1
        elif field in (5, 8):  # float / double data, packed (or one per field in old writers)
            size = 4 if field == 5 else 8
            if wire not in (_BYTES, _FIXED32 if size == 4 else _FIXED64):
                raise _Malformed(f"blob data field {field} has wire type {wire}, not numbers")
            if len(value) % size:
                raise _Malformed(f"blob data field {field} holds {len(value)} bytes")
            parts.append(np.frombuffer(value, dtype=f"<f{size}").astype(np.float32))
    data = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    dims = shape or [legacy[1], legacy[2], legacy[3], legacy[4]]
    if int(np.prod(dims)) != data.size:
        raise _Malformed(f"blob of shape {dims} holds {data.size} values")
    return data.reshape(dims)


def _layer(buf: memoryview, name_field: int, blobs_field: int) -> tuple[str, list[np.ndarray]]:
    name, blobs = "", []
    for field, wire, value in _fields(buf):
        if field == name_field and wire == _BYTES:
            name = bytes(value).decode("utf-8", "replace")
        elif field == blobs_field and wire == _BYTES:
            blobs.append(_blob(value))
    return name, blobs


def _as_torch(name: str, index: int, blob: np.ndarray) -> torch.Tensor:
    """A blob in the shape PyTorch gives the parameter: legacy 4-D blobs of fc weights
    ``(1, 1, out, in)`` become ``(out, in)`` and every bias ``(..., n)`` becomes ``(n,)``."""
    if index == 1:
        blob = blob.reshape(-1)
    elif blob.ndim == 4 and blob.shape[:2] == (1, 1) and name.startswith("fc"):
        blob = blob.reshape(blob.shape[2:])
    return torch.from_numpy(np.array(blob, dtype=np.float32))


def read_caffemodel(path: str | Path) -> dict[str, torch.Tensor]:
    """``{"<layer>.weight": ..., "<layer>.bias": ...}`` of every layer with blobs in ``path``.

    A file that is not a caffemodel (or is cut short) is one line naming it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # VGG16's is about 550 MB; its tensors are copied out of it
    except OSError as exc:
        raise UserError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return _read(memoryview(data))
    except _Malformed as exc:
        raise UserError(f"{path}: not a Caffe model ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is the file's, in one line
        raise UserError(f"{path}: not a Caffe model ({type(exc).__name__}: {exc})") from None


def _read(buf: memoryview) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for field, wire, value in _fields(buf):
        if wire != _BYTES or field not in (100, 2):
            continue
        name, blobs = _layer(value, *((1, 7) if field == 100 else (4, 6)))
        for index, blob in enumerate(blobs[:2]):
            state[f"{name}.{('weight', 'bias')[index]}"] = _as_torch(name, index, blob)
    return state
