"""Read a PyTorch state dict (``.pth``) into numpy arrays, without torch.

Both formats ``torch.save`` writes are read: the zip format (PyTorch >= 1.6:
``<root>/data.pkl`` plus one file per storage under ``<root>/data/``) and the
legacy format (five pickles in a row: magic number, protocol, system info, the
object, the storage keys; then each storage's raw bytes).

A pickle can run arbitrary code, so the unpickler here is fenced: it rebuilds
only what a state dict holds (ordered dicts, tensors as views of typed
storages) and refuses every other global with ``CheckpointError``. It never
imports torch or any module named in the file.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_MAX_CHECKPOINT_BYTES = 512 * 1024 * 1024

# torch storage class name -> numpy dtype of its elements
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a PyTorch state dict this reader accepts (one line, no traceback)."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise CheckpointError(f"storage {self.storage.key} has no data in the file")
        if not self.size:
            return data[self.offset].copy()
        needed = (
            self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True)) + 1
        )
        if min(self.size) > 0 and needed > len(data):
            raise CheckpointError(f"a tensor reaches past the end of storage {self.storage.key}")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a compact copy, independent of the storage


def _rebuild_tensor(storage: _Storage, offset: int, size: tuple, stride: tuple, *_: Any):
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor refers to something other than a storage")
    return _TensorRef(storage, int(offset), tuple(int(n) for n in size), tuple(stride))


def _rebuild_parameter(tensor: _TensorRef, *_: Any) -> _TensorRef:
    return tensor


_ALLOWED: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    def __init__(self, stream: BinaryIO, storages: dict[str, _Storage]) -> None:
        super().__init__(stream)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise CheckpointError(
                f"the checkpoint's pickle names {module}.{name}; only state dicts of tensors "
                f"are read (no code from the file is run)"
            )
        return allowed

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise CheckpointError(f"unexpected persistent id in the checkpoint: {pid!r:.80}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError("a storage of an unknown element type")
        if key not in self.storages:
            self.storages[key] = _Storage(key, storage_type.dtype, numel)
        return self.storages[key]


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The checkpoint's tensors by key, as numpy arrays (a state dict, or {'state_dict': ...})."""
    path = Path(path)
    if path.stat().st_size > _MAX_CHECKPOINT_BYTES:
        raise CheckpointError(f"{path.name} is larger than {_MAX_CHECKPOINT_BYTES >> 20} MiB")
    try:
        if zipfile.is_zipfile(path):
            obj = _read_zip(path)
        else:
            with path.open("rb") as stream:
                obj = _read_legacy(stream)
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, struct.error) as error:
        raise CheckpointError(
            f"{path.name} is not a readable PyTorch checkpoint: {error}"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, _TensorRef) for v in obj.values()):
        raise CheckpointError(f"{path.name} does not hold a state dict of tensors")
    return {str(key): ref.array() for key, ref in obj.items()}


def _read_legacy(stream: BinaryIO) -> Any:
    def plain() -> Any:
        return _StateDictUnpickler(stream, {}).load()

    if plain() != _LEGACY_MAGIC:
        raise CheckpointError("not a PyTorch checkpoint (no zip archive, no legacy magic number)")
    if plain() != _LEGACY_PROTOCOL:
        raise CheckpointError("an unsupported legacy PyTorch checkpoint protocol")
    info = plain()
    if not info.get("little_endian", False):
        raise CheckpointError("big-endian checkpoints are not supported")
    storages: dict[str, _Storage] = {}
    obj = _StateDictUnpickler(stream, storages).load()
    keys = plain()
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise CheckpointError(f"storage {key} is in the file but no tensor uses it")
        (numel,) = struct.unpack("<q", stream.read(8))
        if numel != storage.numel:
            raise CheckpointError(f"storage {key} holds {numel} elements, {storage.numel} expected")
        storage.data = _frombuffer(stream.read(numel * storage.dtype.itemsize), storage, numel)
    return obj


def _read_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise CheckpointError(f"{path.name}: expected one data.pkl in the archive")
        root = pickles[0].removesuffix("data.pkl")
        storages: dict[str, _Storage] = {}
        obj = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])), storages).load()
        for key, storage in storages.items():
            member = f"{root}data/{key}"
            if member not in names:
                raise CheckpointError(f"{path.name}: storage {key} is missing from the archive")
            storage.data = _frombuffer(archive.read(member), storage, storage.numel)
    return obj


def _frombuffer(raw: bytes, storage: _Storage, numel: int) -> np.ndarray:
    if len(raw) != numel * storage.dtype.itemsize:
        raise CheckpointError(f"storage {storage.key} is cut short")
    return np.frombuffer(raw, storage.dtype, numel)
