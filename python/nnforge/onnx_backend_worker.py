"""Child process compiling ONNX models for `nnforge.onnx_backend`.

Parts of the lowering run with assertions on and can abort the process on
inputs they do not handle, so the ONNX backend compiles here, in a
persistent child it reuses across models and restarts after a crash:

    python -m nnforge.onnx_backend_worker

Requests and replies are length-prefixed pickles on stdin and on a private
copy of stdout (fd 1 itself is pointed at stderr, so that anything printed
while compiling cannot corrupt the channel). A request is
`{"model": <serialized ModelProto>, "library": <path of the .so to write>}`;
the reply is `{"ok": True}` or `{"error": <class name>, "message": ...,
"attributes": <the exception's __dict__>}`.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback
from typing import Any, BinaryIO

from nnforge._process import die_with_parent

_LENGTH = struct.Struct("<Q")


def read_message(stream: BinaryIO) -> Any | None:
    """The next length-prefixed pickle on `stream`, or None at end of stream."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        return None
    return pickle.loads(payload)


def write_message(stream: BinaryIO, message: Any) -> None:
    """Writes `message` as a length-prefixed pickle and flushes."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def compile_request(request: dict) -> dict:
    """Compiles one request's model to its library path; the reply to send back."""
    import onnx

    from nnforge import compiler
    from nnforge.errors import NNForgeError

    try:
        model = onnx.ModelProto()
        model.ParseFromString(request["model"])
        compiler.compile(model, level=request.get("level", "linalg")).save(request["library"])
    except NNForgeError as error:
        return {
            "error": type(error).__name__,
            "message": str(error),
            "attributes": dict(vars(error)),
        }
    except Exception as error:  # a compiler bug: report it, keep serving
        where = traceback.extract_tb(error.__traceback__)[-1]
        return {
            "error": "CompileError",
            "message": f"{type(error).__name__} at {where.filename}:{where.lineno}: {error}",
            "attributes": {},
        }
    return {"ok": True}


def main() -> None:
    die_with_parent()
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    # Import the compiler before the first request, while the parent waits anyway.
    import onnx  # noqa: F401

    import nnforge.compiler  # noqa: F401

    while (request := read_message(requests)) is not None:
        write_message(replies, compile_request(request))


if __name__ == "__main__":
    main()
