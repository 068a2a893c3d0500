"""Weights files: a compiled model's large constants, outside its code.

A compilation moves each large constant out of the module (see
`nnforge.externalize`): the entry function takes it as an extra argument,
after the inputs, and its bytes go, once, into a weights file. A saved model
is two files, `model.so` and `model.weights` beside it; the library embeds
a `Manifest` (symbol `nnforge_weights`) naming each weight with its type,
shape and place in the file, and the file's size and digest. Loading maps
the file into memory (read-only, shared: no copy, and processes running the
same model share its pages) after checking it against the manifest.

File layout: a 16-byte magic string, the length of a JSON header (8 bytes,
little-endian), the header (the weights as in the manifest), zeros up to
the next page, then the data: each weight at a 64-byte aligned offset
from the data's start.

The digest is an XXH3 (128 bits, `xxhash`) over the XXH3 of each 64 MiB
chunk of the data, so that it is computed on several threads, at the speed
memory is read: it detects a damaged file (a byte changed anywhere), not a
file forged to match. Loading hashes the mapped pages themselves (no copy),
which are then in place when the model first runs.
"""

from __future__ import annotations

import concurrent.futures
import json
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO, TypeVar

import numpy as np
import xxhash

from nnforge.errors import ModelLoadError, SaveError

MAGIC = b"nnforge-weights1"
# The symbol a saved model's manifest (JSON, NUL-terminated) is stored in.
MANIFEST_SYMBOL = "nnforge_weights"
SUFFIX = ".weights"
PAGE = 4096
ALIGNMENT = 64
_CHUNK = 64 << 20
# The digest's algorithm, named in it ("xxh3-128:<hex>").
DIGEST = "xxh3-128"
# madvise: map a range's pages in one call instead of one fault at a time (Linux 5.14).
_POPULATE_READ = getattr(mmap, "MADV_POPULATE_READ", 22)
_LENGTH = struct.Struct("<Q")
_T = TypeVar("_T")


@dataclass(frozen=True)
class WeightSpec:
    """One weight: its name (the constant's symbol), MLIR element type,
    shape, and byte offset and size within the data."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Manifest:
    """What a model's weights file holds: the weights in the order the
    entry function takes them, the data's size and digest."""

    tensors: tuple[WeightSpec, ...]
    data_size: int
    digest: str

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        """The manifest `to_json` wrote; ValueError if `text` is not one."""
        try:
            data = json.loads(text)
            tensors = tuple(
                WeightSpec(str(t["name"]), str(t["dtype"]), tuple(int(d) for d in t["shape"]),
                           int(t["offset"]), int(t["nbytes"]))
                for t in data["tensors"]
            )
            return cls(tensors, int(data["data_size"]), str(data["digest"]))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"not a weights manifest: {type(error).__name__}: {error}") from None


def path_for(library: str | os.PathLike) -> Path:
    """The weights file that goes with the library at `library` (`model.so` -> `model.weights`)."""
    return Path(library).with_suffix(SUFFIX)


def _aligned(offset: int, alignment: int) -> int:
    return -(-offset // alignment) * alignment


def layout(weights: Iterable[tuple[str, str, tuple[int, ...], int]]) -> list[WeightSpec]:
    """Places (name, dtype, shape, nbytes) weights one after another, aligned."""
    specs = []
    offset = 0
    for name, dtype, shape, nbytes in weights:
        offset = _aligned(offset, ALIGNMENT)
        specs.append(WeightSpec(name, dtype, tuple(shape), offset, nbytes))
        offset += nbytes
    return specs


def _header(specs: Sequence[WeightSpec], data_size: int) -> bytes:
    header = json.dumps({"tensors": [asdict(s) for s in specs], "data_size": data_size}).encode()
    return MAGIC + _LENGTH.pack(len(header)) + header


def _chunks(pieces: Sequence[memoryview]) -> list[list[memoryview]]:
    """The bytes `pieces` hold one after another, cut into chunks of `_CHUNK` bytes."""
    chunks: list[list[memoryview]] = [[]]
    filled = 0
    for piece in pieces:
        while len(piece):
            taken = min(len(piece), _CHUNK - filled)
            chunks[-1].append(piece[:taken])
            piece, filled = piece[taken:], filled + taken
            if filled == _CHUNK:
                chunks.append([])
                filled = 0
    return [chunk for chunk in chunks if chunk]


def _hash_chunk(chunk: list[memoryview]) -> bytes:
    hasher = xxhash.xxh3_128()
    for piece in chunk:
        hasher.update(piece)  # releases the interpreter while it hashes
    return hasher.digest()


def _in_parallel(function: Callable[[_T], bytes], items: Sequence[_T]) -> str:
    """The digest of the chunks whose digests `function` gives, called on `items` on several threads."""
    workers = max(1, min(len(items), os.cpu_count() or 1))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        return f"{DIGEST}:{xxhash.xxh3_128(b''.join(pool.map(function, items))).hexdigest()}"


def _digest(pieces: Sequence[memoryview]) -> str:
    """The digest of the bytes `pieces` hold one after another."""
    return _in_parallel(_hash_chunk, _chunks(pieces))


def _mapped_digest(mapped: mmap.mmap, start: int, size: int) -> str:
    """`_digest` of `size` bytes of `mapped` from `start` (a page boundary),
    hashed where they are mapped: each chunk's pages mapped in one call,
    then read."""

    def hashed(offset: int) -> bytes:
        length = min(_CHUNK, size - offset)
        try:
            mapped.madvise(_POPULATE_READ, start + offset, length)
        except OSError:
            pass  # a kernel without it maps the pages as they are read
        with memoryview(mapped) as view, view[start + offset:start + offset + length] as chunk:
            return _hash_chunk([chunk])

    return _in_parallel(hashed, range(0, size, _CHUNK))


def write(path: Path, weights: Sequence[tuple[str, str, tuple[int, ...], memoryview]]) -> Manifest:
    """Writes (name, dtype, shape, bytes) weights into a new weights file at
    `path`; returns its manifest. Each weight's bytes are written once, as
    they are (no copy in memory)."""
    specs = layout((name, dtype, shape, len(data)) for name, dtype, shape, data in weights)
    data_size = specs[-1].offset + specs[-1].nbytes if specs else 0
    header = _header(specs, data_size)
    start = _aligned(len(header), PAGE)
    pieces: list[memoryview] = []
    try:
        with open(path, "wb") as stream:
            stream.write(header + bytes(start - len(header)))
            for spec, (_, _, _, data) in zip(specs, weights):
                padding = memoryview(bytes(start + spec.offset - stream.tell()))
                stream.write(padding)
                stream.write(data)
                pieces += [padding, data]
    except OSError as error:
        raise SaveError(f"cannot write the weights file {path}: {error.strerror or error}") from None
    # From the weights in memory: the file is not read back.
    return Manifest(tuple(specs), data_size, _digest(pieces))


class MappedWeights:
    """A weights file mapped into memory (read-only), checked against its
    manifest; `arrays` are numpy views of its weights, in order."""

    def __init__(self, path: Path, manifest: Manifest, dtype_of: Callable[[str], np.dtype], verify: bool = True):
        """`dtype_of` maps an MLIR element type name to a numpy dtype;
        `verify=False` skips the digest (a file this process just wrote)."""
        try:
            stream = open(path, "rb")
        except FileNotFoundError:
            raise ModelLoadError(
                f"{path}: no such file; the model's weights are kept in this file beside its library "
                "(copy or move the two together)"
            ) from None
        except OSError as error:
            raise ModelLoadError(f"{path} cannot be read: {error}") from None
        with stream:
            self._open(stream, path, manifest, dtype_of, verify)

    def _open(
        self, stream: BinaryIO, path: Path, manifest: Manifest, dtype_of: Callable[[str], np.dtype], verify: bool
    ) -> None:
        """Maps the open file `stream`, checks it, views its weights."""
        try:
            self._mapped = mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError) as error:  # ValueError: an empty file cannot be mapped
            raise ModelLoadError(f"{path} cannot be read: {error}") from None
        header = _header(manifest.tensors, manifest.data_size)
        start = _aligned(len(header), PAGE)
        # The header and the zeros after it to the data's page: every byte before the digest's.
        if self._mapped.size() != start + manifest.data_size or self._mapped[:start] != header.ljust(start, b"\0"):
            size = self._mapped.size()
            self._mapped.close()
            raise ModelLoadError(
                f"{path} does not hold the weights its library expects (names, types, shapes or size "
                f"differ: {size} bytes, {start + manifest.data_size} expected): it belongs to another "
                "model or another compilation"
            )
        if verify and not manifest.digest.startswith(f"{DIGEST}:"):
            self._mapped.close()
            raise ModelLoadError(
                f"{path}: its library was saved by an older nnforge (another digest of the weights): "
                "compile and save the model again"
            )
        if verify and _mapped_digest(self._mapped, start, manifest.data_size) != manifest.digest:
            self._mapped.close()
            raise ModelLoadError(
                f"{path} is damaged: its contents do not match the digest its library holds "
                "(changed on disk or in transit); it was not loaded"
            )
        self.path = path
        self.arrays = [
            np.frombuffer(self._mapped, dtype=dtype_of(spec.dtype), count=spec.nbytes // dtype_of(spec.dtype).itemsize,
                          offset=start + spec.offset).reshape(spec.shape)
            for spec in manifest.tensors
        ]

