"""The dynamic section of ELF64 little-endian shared libraries, read and edited in place.

Just enough of ELF for the libraries nnforge writes and ships: which
libraries one needs (DT_NEEDED), and dropping a needed entry (what
`patchelf --remove-needed` does). No dependency beyond the standard library,
so that the runtime can use it.
"""

from __future__ import annotations

import struct
from pathlib import Path

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB = 0, 1, 5


class ElfError(ValueError):
    """The file is not an ELF64 little-endian shared library this module can read."""


def _dynamic(data: bytes | bytearray, what: str) -> tuple[int, list[tuple[int, int]], int]:
    """(file offset of the dynamic entries, the (tag, value) entries, file offset of the strings)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ElfError(f"{what} is not a 64-bit little-endian ELF file")
    (program_offset,) = struct.unpack_from("<Q", data, 0x20)
    entry_size, count = struct.unpack_from("<HH", data, 0x36)
    segments = [
        struct.unpack_from("<IIQQQQQQ", data, program_offset + i * entry_size) for i in range(count)
    ]
    loads = [segment for segment in segments if segment[0] == _PT_LOAD]
    dynamic = next((segment for segment in segments if segment[0] == _PT_DYNAMIC), None)
    if dynamic is None:
        raise ElfError(f"{what} has no dynamic section")
    start, size = dynamic[2], dynamic[5]
    entries = [struct.unpack_from("<qQ", data, start + i) for i in range(0, size, 16)]
    strtab = next(value for tag, value in entries if tag == _DT_STRTAB)
    for _, _, offset, address, _, file_size, _, _ in loads:
        if address <= strtab < address + file_size:
            return start, entries, offset + strtab - address
    raise ElfError(f"{what}: its string table is not in the file")


def _string(data: bytes | bytearray, offset: int) -> str:
    return bytes(data[offset : data.index(b"\0", offset)]).decode()


def needed(library: Path) -> list[str]:
    """The libraries `library` names as DT_NEEDED."""
    data = library.read_bytes()
    _, entries, strings = _dynamic(data, str(library))
    return [_string(data, strings + value) for tag, value in entries if tag == _DT_NEEDED]


def remove_needed(library: Path, name: str) -> bool:
    """Drops the DT_NEEDED entry naming `name`; returns whether it was there.

    The later dynamic entries move up one slot and a DT_NULL fills the end.
    """
    data = bytearray(library.read_bytes())
    start, entries, strings = _dynamic(data, str(library))
    kept = [
        (tag, value)
        for tag, value in entries
        if not (tag == _DT_NEEDED and _string(data, strings + value) == name)
    ]
    if len(kept) == len(entries):
        return False
    kept += [(_DT_NULL, 0)] * (len(entries) - len(kept))
    for index, (tag, value) in enumerate(kept):
        struct.pack_into("<qQ", data, start + 16 * index, tag, value)
    library.write_bytes(bytes(data))
    return True
