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


def saved_with_weights(folder: Path) -> tuple[Path, Any]:
    """A PyTorch linear layer large enough for a weights file (model.so and
    model.weights), saved once per worker; (library, module)."""
    import torch

    import nnforge

    if "linear" not in _SAVED:
        torch.manual_seed(0)
        module = torch.nn.Linear(128, 64).eval()
        compiled = nnforge.compile(module, (torch.randn(2, 128),), threads=1)
        _SAVED["linear"] = compiled.save(folder.parent / "saved" / "linear.so")
        _SAVED["linear-module"] = module
    return _SAVED["linear"], _SAVED["linear-module"]


def _damage_weights(rng: random.Random, library: Path, folder: Path) -> tuple[Path, str]:
    """A copy of `library` whose weights file is damaged, missing or another's."""
    from nnforge import weights

    copy = folder / "linear.so"
    shutil.copyfile(library, copy)
    data = bytearray(weights.path_for(library).read_bytes())
    target = weights.path_for(copy)
    choice = rng.randrange(5)
    if choice == 0:
        count = rng.choice([1, 8])
        for _ in range(count):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        what = f"weights: {count} bits flipped"
    elif choice == 1:
        cut = rng.randrange(len(data))
        what = f"weights: cut to {cut} of {len(data)} bytes"
        data = data[:cut]
    elif choice == 2:
        return copy, "weights file missing"
    elif choice == 3:
        data += bytes(rng.choice([1, 4096]))
        what = "weights: bytes appended"
    else:
        data = bytearray(rng.choice([b"", weights.MAGIC, b"\0" * 100]))
        what = f"weights: a {len(data)}-byte file"
    target.write_bytes(bytes(data))
    return copy, what


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

    if rng.random() < 0.25:
        import torch

        library, module = saved_with_weights(folder)
        target, what = _damage_weights(rng, library, folder)
        x = np.random.default_rng(rng.randrange(2**32)).standard_normal((2, 128)).astype(np.float32)
        try:
            actual = nnforge.load(target)(x)
        except Exception as error:
            return judge_error(error, what)
        with torch.no_grad():
            return judge_results(actual, module(torch.from_numpy(x)).numpy(), what)
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
