"""Each rank's weight slices inside a distributed model's shared library.

The library holds one blob (`nnforge_rank_slices`) with every rank's slices of
the split parameters and one copy of each replicated parameter, each
64-byte aligned and each rank's part page-aligned, so that a rank touches
(and keeps resident) only its own pages; and a manifest (`nnforge_distributed`,
JSON): the number of ranks, how many inputs the caller gives, and per
parameter its element type, the shape of one rank's slice and where each
rank's slice starts in the blob. numpy and ctypes only (the runtime side).
"""

from __future__ import annotations

import ctypes
import json
from dataclasses import asdict, dataclass

import numpy as np

from nnforge.errors import ModelLoadError

MANIFEST_SYMBOL = "nnforge_distributed"
BLOB_SYMBOL = "nnforge_rank_slices"
_ALIGNMENT, _PAGE = 64, 4096


@dataclass(frozen=True)
class Weight:
    """One parameter: its name, MLIR element type, one rank's shape, each rank's offset in the blob."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offsets: tuple[int, ...]


@dataclass(frozen=True)
class Manifest:
    """What a distributed model's library says about its ranks and weights."""

    ranks: int
    inputs: int
    weights: tuple[Weight, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        weights = tuple(Weight(str(w["name"]), str(w["dtype"]), tuple(map(int, w["shape"])),
                               tuple(map(int, w["offsets"]))) for w in data["weights"])
        return cls(int(data["ranks"]), int(data["inputs"]), weights)


def _aligned(offset: int, alignment: int) -> int:
    return -(-offset // alignment) * alignment


def layout(
    names: list[str], dtypes: list[str], slices: list[list[np.ndarray]], inputs: int, ranks: int
) -> tuple[Manifest, list[tuple[int, np.ndarray]]]:
    """The manifest and the blob's contents, as (offset, array) pieces.

    `slices[i]` holds parameter i's slice for each rank, or one array when
    the parameter is replicated (stored once, shared by all ranks).
    """
    pieces: list[tuple[int, np.ndarray]] = []
    offsets: list[list[int]] = [[] for _ in names]
    end = 0
    for index, per_rank in enumerate(slices):  # replicated parameters first, once
        if len(per_rank) == 1:
            end = _aligned(end, _ALIGNMENT)
            pieces.append((end, per_rank[0]))
            offsets[index] = [end] * ranks
            end += per_rank[0].nbytes
    for rank in range(ranks):
        end = _aligned(end, _PAGE)
        for index, per_rank in enumerate(slices):
            if len(per_rank) > 1:
                end = _aligned(end, _ALIGNMENT)
                pieces.append((end, per_rank[rank]))
                offsets[index].append(end)
                end += per_rank[rank].nbytes
    weights = tuple(
        Weight(name, dtype, tuple(per_rank[0].shape), tuple(offset))
        for name, dtype, per_rank, offset in zip(names, dtypes, slices, offsets)
    )
    return Manifest(ranks, inputs, weights), pieces


def write_blob(pieces: list[tuple[int, np.ndarray]], path) -> None:
    """Writes the blob's pieces at their offsets (zeros between them)."""
    with open(path, "wb") as stream:
        for offset, array in pieces:
            stream.seek(offset)
            stream.write(np.ascontiguousarray(array).tobytes())


def manifest_of(library: ctypes.CDLL) -> Manifest | None:
    """The manifest of a loaded library, None if it is not a distributed model."""
    try:
        text = ctypes.string_at(ctypes.addressof(ctypes.c_char.in_dll(library, MANIFEST_SYMBOL)))
    except ValueError:
        return None
    try:
        return Manifest.from_json(text.decode(errors="replace"))
    except (ValueError, KeyError, TypeError) as error:
        raise ModelLoadError(f"its manifest of ranks and weights ({MANIFEST_SYMBOL}) is damaged: {error}") from None


def rank_arrays(library: ctypes.CDLL, manifest: Manifest, rank: int, dtype_of) -> list[np.ndarray]:
    """Read-only numpy arrays over `rank`'s weight slices in the loaded library (no copy)."""
    base = ctypes.addressof(ctypes.c_char.in_dll(library, BLOB_SYMBOL))
    arrays = []
    for weight in manifest.weights:
        dtype = dtype_of(weight.dtype)
        count = int(np.prod(weight.shape)) if weight.shape else 1
        buffer = (ctypes.c_char * (count * dtype.itemsize)).from_address(base + weight.offsets[rank])
        array = np.frombuffer(buffer, dtype=dtype, count=count).reshape(weight.shape)
        array.flags.writeable = False
        arrays.append(array)
    return arrays
