"""The integrity of saved models: a SHA-256 digest appended to the library.

`seal` appends to a shared library nnforge wrote a 48-byte trailer: a magic
string and the SHA-256 of everything before it. `check` reads a file and
verifies that trailer before anything else looks at the file: the dynamic
loader trusts the ELF it maps, and a damaged library (bytes flipped in
transit, a truncated copy) can crash the process inside `dlopen`, before
any error can be raised. A file without the trailer is not a model nnforge
saved. The loader ignores bytes past the segments it maps, so a sealed
library stays a valid one for any other tool.

This guards against accidents, not attackers: anyone who can write the
file can write a matching digest. Standard library only (the runtime uses it).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import shutil
from pathlib import Path

from nnforge.errors import ModelLoadError, SaveError

# Marks the trailer; the version digit changes if the trailer ever does.
MAGIC = b"\0nnforge-sha256:1"
_DIGEST_SIZE = hashlib.sha256().digest_size
TRAILER_SIZE = len(MAGIC) + _DIGEST_SIZE
# Bytes hashed at a time when checking.
_CHUNK = 1 << 20


def seal(path: Path) -> None:
    """Appends the digest trailer to the library at `path` (written by nnforge, not sealed yet)."""
    data = path.read_bytes()
    with open(path, "ab") as stream:
        stream.write(MAGIC + hashlib.sha256(data).digest())


def check(path: Path) -> mmap.mmap:
    """The sealed library at `path`, mapped read-only (its trailer included).

    Raises ModelLoadError when the file has no trailer (not saved by
    nnforge, or by a version before digests) or when its contents do not
    match the digest (damaged or truncated). The digest is computed a chunk
    at a time: a model holding gigabytes of weights (each rank of a
    distributed one uses only its part) is not read into memory.
    """
    with open(path, "rb") as stream:
        size = os.fstat(stream.fileno()).st_size
        trailer = b""
        if size >= TRAILER_SIZE:
            stream.seek(size - TRAILER_SIZE)
            trailer = stream.read(TRAILER_SIZE)
        if not trailer.startswith(MAGIC):
            raise ModelLoadError(
                f"{path} is not a model saved by nnforge: it lacks the digest nnforge appends to the "
                "libraries it saves (a foreign or truncated file, or one saved by an nnforge before "
                "digests: compile and save it again)"
            )
        digest, chunk, left = hashlib.sha256(), bytearray(_CHUNK), size - TRAILER_SIZE
        stream.seek(0)
        while left > 0:
            count = stream.readinto(memoryview(chunk)[:min(left, _CHUNK)])
            if not count:
                break
            digest.update(memoryview(chunk)[:count])
            left -= count
        if left or digest.digest() != trailer[len(MAGIC):]:
            raise ModelLoadError(
                f"{path} is damaged: its contents do not match the SHA-256 digest saved with it "
                "(changed on disk or in transit); it was not loaded"
            )
        return mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ)


def check_destination(path: str | os.PathLike) -> Path:
    """`path` as a Path; SaveError if a library cannot be saved there (not a
    path, or a folder is there)."""
    if not isinstance(path, (str, os.PathLike)):
        raise SaveError(f"save takes the path of the library to write, not {type(path).__name__}")
    if "\0" in os.fsdecode(path):
        raise SaveError(f"cannot save the model as {os.fsdecode(path)!r}: a path cannot hold a NUL character")
    path = Path(path)
    if path.is_dir():
        raise SaveError(f"cannot save the model as {path}: it is a folder (name the file, e.g. {path / 'model.so'})")
    return path


def install(built: Path, path: Path) -> Path:
    """Seals the library `built` and moves it to `path`, creating its folder; returns `path`."""
    check_destination(path)
    seal(built)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(built), path)
    except OSError as error:
        raise SaveError(f"cannot save the model as {path}: {error.strerror or error}") from None
    return path
