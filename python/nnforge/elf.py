"""The dynamic section of ELF64 little-endian shared libraries, read and edited in place.

Just enough of ELF for the libraries nnforge writes and ships: which
libraries one needs (DT_NEEDED), and dropping a needed entry (what
`patchelf --remove-needed` does). No dependency beyond the standard library,
so that the runtime can use it. Every offset read from the file is checked
against its size: a truncated or damaged file is an `ElfError`, never a
`struct.error` or an `IndexError`.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB = 0, 1, 5
_PROGRAM_HEADER = struct.Struct("<IIQQQQQQ")
_DYNAMIC_ENTRY = struct.Struct("<qQ")


class ElfError(ValueError):
    """The file is not an ELF64 little-endian shared library this module can read."""


def _unpack(layout: struct.Struct | str, data: bytes | bytearray, offset: int, what: str) -> tuple:
    layout = struct.Struct(layout) if isinstance(layout, str) else layout
    if offset < 0 or offset + layout.size > len(data):
        raise ElfError(f"{what} is truncated or damaged: its ELF headers point past its end "
                       f"(offset {offset} of {len(data)} bytes)")
    return layout.unpack_from(data, offset)


def _dynamic(data: bytes | bytearray, what: str) -> tuple[int, list[tuple[int, int]], int]:
    """(file offset of the dynamic entries, the (tag, value) entries, file offset of the strings)."""
    if data[:4] != b"\x7fELF" or len(data) < 6 or data[4] != 2 or data[5] != 1:
        raise ElfError(f"{what} is not a 64-bit little-endian ELF file")
    (program_offset,) = _unpack("<Q", data, 0x20, what)
    entry_size, count = _unpack("<HH", data, 0x36, what)
    if entry_size < _PROGRAM_HEADER.size:
        raise ElfError(f"{what} is damaged: program header entries of {entry_size} bytes")
    segments = [_unpack(_PROGRAM_HEADER, data, program_offset + i * entry_size, what) for i in range(count)]
    loads = [segment for segment in segments if segment[0] == _PT_LOAD]
    dynamic = next((segment for segment in segments if segment[0] == _PT_DYNAMIC), None)
    if dynamic is None:
        raise ElfError(f"{what} has no dynamic section")
    start, size = dynamic[2], dynamic[5]
    entries = [_unpack(_DYNAMIC_ENTRY, data, start + i, what) for i in range(0, size, _DYNAMIC_ENTRY.size)]
    strtab = next((value for tag, value in entries if tag == _DT_STRTAB), None)
    if strtab is None:
        raise ElfError(f"{what} has no string table (DT_STRTAB)")
    for _, _, offset, address, _, file_size, _, _ in loads:
        if address <= strtab < address + file_size:
            return start, entries, offset + strtab - address
    raise ElfError(f"{what}: its string table is not in the file")


def _string(data: bytes | bytearray, offset: int, what: str) -> str:
    end = data.find(b"\0", offset) if 0 <= offset < len(data) else -1
    if end < 0:
        raise ElfError(f"{what} is truncated or damaged: a library name runs past its end")
    return bytes(data[offset:end]).decode(errors="replace")


def needed(library: Path, data: bytes | mmap.mmap | None = None) -> list[str]:
    """The libraries `library` names as DT_NEEDED (`data`: its contents, if read already)."""
    data = library.read_bytes() if data is None else data
    _, entries, strings = _dynamic(data, str(library))
    return [_string(data, strings + value, str(library)) for tag, value in entries if tag == _DT_NEEDED]


def remove_needed(library: Path, name: str) -> bool:
    """Drops the DT_NEEDED entry naming `name`; returns whether it was there.

    The later dynamic entries move up one slot and a DT_NULL fills the end.
    """
    data = bytearray(library.read_bytes())
    what = str(library)
    start, entries, strings = _dynamic(data, what)
    kept = [
        (tag, value)
        for tag, value in entries
        if not (tag == _DT_NEEDED and _string(data, strings + value, what) == name)
    ]
    if len(kept) == len(entries):
        return False
    kept += [(_DT_NULL, 0)] * (len(entries) - len(kept))
    for index, (tag, value) in enumerate(kept):
        _DYNAMIC_ENTRY.pack_into(data, start + _DYNAMIC_ENTRY.size * index, tag, value)
    library.write_bytes(bytes(data))
    return True
