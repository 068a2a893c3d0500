"""Damaged saved models: a library saved by nnforge with bytes flipped,
zeroed or appended, cut short, its digest trailer changed or removed, its
embedded signature damaged (and the digest recomputed, as a tool that
rewrites the file would), and files that are not models at all, loaded
with `nnforge.load` and called. A load either fails with a ModelLoadError
or gives a model computing what the original did.
"""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from test.fuzz import mlir_seeds
from test.fuzz.checks import Verdict, judge_error, judge_results
from test.fuzz.outcomes import UNCLEAN

_SAVED: dict[str, Path] = {}


def saved(folder: Path) -> Path:
    """The mlp seed compiled and saved once per worker."""
    import nnforge

    if "mlp" not in _SAVED:
        source = folder.parent / "mlp.mlir"
        source.write_text(mlir_seeds.BY_NAME["mlp"].text("f32"))
        _SAVED["mlp"] = nnforge.compile(source, threads=2).save(folder.parent / "saved" / "mlp.so")
    return _SAVED["mlp"]


def _damage(rng: random.Random, data: bytes, folder: Path) -> tuple[Any, str]:
    """A damaged copy of `data` (a path to load, and what was done)."""
    from nnforge import artifact

    path = folder / "model.so"
    data = bytearray(data)
    choice = rng.randrange(10)
    if choice == 0:
        count = rng.choice([1, 2, 16, 64])
        for _ in range(count):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        what = f"{count} bits flipped"
    elif choice == 1:
        cut = rng.randrange(len(data))
        what = f"cut to {cut} of {len(data)} bytes"
        data = data[:cut]
    elif choice == 2:
        start = rng.randrange(len(data))
        length = rng.choice([8, 64, 4096])
        data[start:start + length] = bytes(len(data[start:start + length]))
        what = f"{length} bytes zeroed at {start}"
    elif choice == 3:
        data += bytes(rng.randrange(256) for _ in range(rng.choice([1, 100])))
        what = "bytes appended"
    elif choice == 4:
        data = data[:-artifact.TRAILER_SIZE]
        what = "digest trailer removed"
    elif choice == 5:
        position = data.find(b'{"entry"')
        body = data[:-artifact.TRAILER_SIZE]
        end = body.find(b"\0", position)
        replacement = rng.choice([b"{", b"[]", b"{\"entry\": 3}", b"\xff" * 8, b"{\"entry\": \"main\"}"])
        body[position:end] = replacement.ljust(end - position, b" ")[: end - position]
        data = body + artifact.MAGIC + hashlib.sha256(bytes(body)).digest()
        what = f"signature replaced by {bytes(replacement)!r} (digest recomputed)"
    elif choice == 6:
        data = bytearray(rng.choice([b"", b"\x7fELF", b"not a library\n", bytes(100)]))
        what = f"a {len(data)}-byte file"
    elif choice == 7:
        source = rng.choice([np.__file__, shutil.which("ls") or "/bin/ls",
                             str(next(Path(np.__file__).parent.glob("_core/_multiarray_umath*.so")))])
        data = bytearray(Path(source).read_bytes())
        what = f"a copy of {Path(source).name}"
    elif choice == 8:
        target = rng.choice([folder, folder / "missing.so", "a\0b.so", 42, None, b"model.so"])
        return target, f"path {target!r}"
    else:
        body = data[:-artifact.TRAILER_SIZE]
        data = body + artifact.MAGIC + hashlib.sha256(bytes(body) + b"x").digest()
        what = "digest changed"
    path.write_bytes(bytes(data))
    return path, what


def case(rng: random.Random, folder: Path) -> Verdict:
    import nnforge

    original = saved(folder)
    target, what = _damage(rng, original.read_bytes(), folder)
    seed = mlir_seeds.BY_NAME["mlp"]
    arrays = mlir_seeds.inputs(seed, "f32", np.random.default_rng(rng.randrange(2**32)))
    try:
        model = nnforge.load(target)
        actual = model(*arrays)
    except Exception as error:
        return judge_error(error, what)
    if not isinstance(target, Path):
        return Verdict(UNCLEAN, what, "loaded something that is not a saved model")
    return judge_results(actual, seed.reference(*arrays), what)
