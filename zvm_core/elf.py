"""Parse and check a static x86-64 Linux ELF program (rules E1–E7).

The program headers are authoritative: they are what gets mapped.  Section
headers are only hints that tell the validator where the sweep of each
executable segment should start (``.init``, ``.text``, ``.fini`` ...); when
they are missing or unreadable the whole executable segment is swept, past the
zero padding between what were sections (``validator._Sweep.sweep_segment``).
Every malformed file raises an :class:`ElfError` naming the rule, so callers
handle exactly one exception type.

The ELF header and the program headers (fixed-size little-endian records) are
read here with ``struct``; pyelftools is imported only for what needs it: the
section headers (:attr:`Program.code`, computed when the validator first asks,
which a cached verdict never does) and the rejection paths that name an
``e_type``/``e_machine`` or quote its error.  Importing it was a third of the
``zvm`` command's start-up.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from elftools.elf.elffile import ELFFile

PF_X, PF_W, PF_R = 1, 2, 4
GUEST_LOW = 0x20000          # below: null guard + ZeroVM trap page at 0x10000
GUEST_HIGH = 0xFEFF0000      # above: user manifest page + 16 MiB stack up to 4 GiB
ELF_MAGIC = b'\x7fELF'
MAX_FILE_SIZE = 256 << 20
MAX_PHNUM = 128

_PAGE = 0x1000
_EHDR_SIZE = 64
_PHDR_SIZE = 56
_SHF_ALLOC, _SHF_EXECINSTR = 0x2, 0x4
# Elf64_Ehdr after e_ident: e_type e_machine e_version e_entry e_phoff e_shoff e_flags
# e_ehsize e_phentsize e_phnum e_shentsize e_shnum e_shstrndx
_EHDR = struct.Struct('<HHIQQQIHHHHHH')
_PHDR = struct.Struct('<IIQQQQQQ')  # p_type flags offset vaddr paddr filesz memsz align
ET_REL, ET_EXEC, ET_DYN, EM_X86_64 = 1, 2, 3, 62
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_PHDR, PT_TLS, PT_GNU_STACK = 1, 2, 3, 6, 7, 0x6474E551


def _page_down(x: int) -> int:
    return x & ~(_PAGE - 1)


def _page_up(x: int) -> int:
    return (x + _PAGE - 1) & ~(_PAGE - 1)


class ElfError(ValueError):
    """The file is not a program the sandbox can load; ``rule`` is E1..E7."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(rule, message)
        self.rule, self.message = rule, message

    def __str__(self) -> str:
        return f'{self.rule}: {self.message}'


@dataclass(frozen=True)
class Segment:
    """One PT_LOAD; ``data`` is its file bytes (the rest up to ``memsz`` is zero)."""

    vaddr: int
    memsz: int
    flags: int
    data: bytes = field(repr=False)

    @property
    def end(self) -> int:
        return self.vaddr + self.memsz

    @property
    def executable(self) -> bool:
        return bool(self.flags & PF_X)

    @property
    def writable(self) -> bool:
        return bool(self.flags & PF_W)

    @property
    def readable(self) -> bool:
        return bool(self.flags & PF_R)


@dataclass(frozen=True)
class CodeRange:
    """Bytes the validator sweeps, starting at an address it trusts to be in sync.

    ``sections``: the range is an executable section (or sections); else it is a
    whole segment that no section header describes (headers stripped), where
    the zero padding between what were sections must be skipped, not decoded.
    """

    start: int
    data: bytes = field(repr=False)
    sections: bool = True

    @property
    def end(self) -> int:
        return self.start + len(self.data)


class _CodeRanges(Sequence[CodeRange]):
    """:func:`_code_ranges` of a file, computed on first use (the section headers need
    pyelftools); the file's bytes are let go then, or by :meth:`release`."""

    def __init__(self, data: bytes, segments: tuple[Segment, ...]) -> None:
        self._data: bytes | None = data
        self._segments = segments
        self._ranges: tuple[CodeRange, ...] | None = None
        self._lock = threading.Lock()

    def release(self) -> None:
        """Let the file's bytes go (a copy of the whole file, beside its segments') for
        a program whose verdicts are all known; using the ranges after is an error."""
        with self._lock:
            self._data = None

    def _get(self) -> tuple[CodeRange, ...]:
        with self._lock:
            if self._ranges is None:
                if self._data is None:
                    raise RuntimeError('the code ranges of this program were released')
                self._ranges = _code_ranges(_open(self._data), self._segments)
                self._data = None
            return self._ranges

    def __getitem__(self, index):
        return self._get()[index]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self):
        return iter(self._get())

    def __repr__(self) -> str:
        """Never computes them (nor fails once they were released): a Program's
        repr is a log line's or an error's."""
        with self._lock:
            if self._ranges is not None:
                return repr(self._ranges)
            return '<code ranges: not computed>' if self._data is not None \
                else '<code ranges: released>'


@dataclass(frozen=True)
class Program:
    """A checked program image: what the executor maps and the validator sweeps
    (``code``; equal programs have equal ``sha256``)."""

    sha256: str
    entry: int
    segments: tuple[Segment, ...]
    code: Sequence[CodeRange] = field(compare=False)
    phdr_addr: int
    phent: int
    phnum: int
    tls: tuple[int, int, int, int] | None
    size: int
    # its code as the engines run it (``validator.as_fixed_cpu``), no longer the file's
    patched: bool = field(default=False, compare=False)

    def image_end(self) -> int:
        """Page-rounded end of the highest segment; the heap may start here."""
        return _page_up(max(seg.end for seg in self.segments))


@dataclass(frozen=True)
class _Phdr:
    type: int           # PT_LOAD ...
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


def release_code(program: Program) -> None:
    """Let go of what computing ``program.code`` needs, if it was not computed: its
    verdicts are known (``zvm_core.prepare``) and it may be kept long."""
    if isinstance(program.code, _CodeRanges):
        program.code.release()


def load_program(path: str | os.PathLike, *, memory_limit: int = 4 << 30) -> Program:
    """Read and check the program at ``path``; the size limit applies before reading."""
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        _check_file_size(size)
        # read(MAX_FILE_SIZE + 1) would allocate a 256 MiB buffer per load (~70 us of a
        # cold run): the size it has, then the rest if the file grew meanwhile
        data = f.read(size + 1)
        if len(data) > size:
            data += f.read(MAX_FILE_SIZE + 1 - len(data))
    return parse_elf(data, memory_limit=memory_limit)


PARSED_KEPT = 16 << 20      # file bytes whose parse a process keeps (a cold run loads anew)


class _Parsed:
    """What :func:`parse_elf` made of files it passed, by content: the same bytes give
    the same image, so a program run again skips the checks (~40 us of a cold
    run of a small program).  Oldest first out beyond PARSED_KEPT bytes."""

    def __init__(self) -> None:
        self._kept: dict[tuple[str, int], Program] = {}
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, data: bytes, sha256: str, memory_limit: int) -> Program | None:
        with self._lock:
            known = self._kept.get((sha256, memory_limit))
        if known is None:
            return None
        # its own code ranges (the caller may release them; see release_code)
        return replace(known, code=_CodeRanges(data, known.segments))

    def put(self, program: Program, memory_limit: int) -> None:
        if program.size > PARSED_KEPT:
            return
        with self._lock:
            while self._kept and self._bytes + program.size > PARSED_KEPT:
                self._bytes -= self._kept.pop(next(iter(self._kept))).size
            # kept without the file's bytes (the code ranges' copy)
            self._kept[program.sha256, memory_limit] = replace(program, code=())
            self._bytes += program.size


_PARSED = _Parsed()


def parse_elf(data: bytes, *, memory_limit: int = 4 << 30) -> Program:
    """Check ``data`` against rules E1–E6 and return the loadable image."""
    _check_file_size(len(data))
    sha256 = hashlib.sha256(data).hexdigest()
    known = _PARSED.get(data, sha256, memory_limit)
    if known is not None:
        return known
    _check_ident(data)
    (e_type, e_machine, _, entry, phoff, _, _, _, phentsize, phnum, _, _,
     _) = _EHDR.unpack_from(data, 16)
    if e_machine != EM_X86_64:
        raise ElfError('E1', f'e_machine is {_named(data, "e_machine")}, not EM_X86_64')
    if e_type == ET_DYN:
        raise ElfError('E1', 'e_type is ET_DYN (position-independent executable or shared '
                             'object); build with -static (not -static-pie)')
    if e_type == ET_REL:
        raise ElfError('E1', 'e_type is ET_REL (an object file, compiled with -c but not '
                             'linked): link it into a program, musl-gcc -static -o prog prog.o')
    if e_type != ET_EXEC:
        raise ElfError('E1', f'e_type is {_named(data, "e_type")}, not ET_EXEC')
    phdrs = _program_headers(data, phoff, phnum, phentsize)
    for ph in phdrs:
        if ph.type == PT_INTERP:
            raise ElfError('E2', 'PT_INTERP present: the program is dynamically linked; '
                                 'build with -static')
        if ph.type == PT_DYNAMIC:
            raise ElfError('E2', 'PT_DYNAMIC present: the program needs a dynamic loader; '
                                 'build with -static')
    segments = _segments(phdrs, data, memory_limit)
    if not any(s.executable and s.vaddr <= entry < s.end for s in segments):
        raise ElfError('E5', f'entry point {entry:#x} is not inside an executable segment')
    tls = _check_stack_and_tls(phdrs, segments)
    program = Program(
        sha256=sha256,
        entry=entry,
        segments=segments,
        code=_CodeRanges(data, segments),
        phdr_addr=_phdr_addr(phdrs, phoff, len(phdrs)),
        phent=_PHDR_SIZE,
        phnum=len(phdrs),
        tls=tls,
        size=len(data),
    )
    _PARSED.put(program, memory_limit)
    return program


def _check_file_size(size: int) -> None:
    if size > MAX_FILE_SIZE:
        raise ElfError('E3', f'file is {size} bytes; the limit is {MAX_FILE_SIZE}')


def _text_hint(data: bytes) -> str:
    """What to do with a text file given as a program: the bytes alone do not say that
    a script needs an interpreter, or that a manifest is run by ``zvm MANIFEST``."""
    head = data[:40]
    if not head or not all(32 <= b < 127 or b in b'\t\r\n' for b in head):
        return ''
    first = head.decode().splitlines()[0] if head.strip() else ''
    return (f': a text file ({first!r}...), not a program: build one with musl-gcc -static; '
            'a Python or Lua script runs with "file://python3:python3" or "file://lua:lua" '
            '(doc/python.md, doc/lua.md), a ZeroVM manifest with zvm MANIFEST')


def _check_ident(data: bytes) -> None:
    """E1 on the identification bytes, before any other field is read."""
    if data[:4] != ELF_MAGIC:
        raise ElfError('E1', f'not an ELF file (starts with {data[:4].hex(" ") or "nothing"})'
                             f'{_text_hint(data)}')
    if len(data) < _EHDR_SIZE:
        raise ElfError('E3', f'truncated ELF header: {len(data)} of {_EHDR_SIZE} bytes')
    if data[4] != 2:
        raise ElfError('E1', f'EI_CLASS is {data[4]}, not ELFCLASS64 (a 32-bit or bad file)')
    if data[5] != 1:
        raise ElfError('E1', f'EI_DATA is {data[5]}, not little-endian (ELFDATA2LSB)')


def _open(data: bytes) -> ELFFile:
    """pyelftools' view of a file that :func:`_check_ident` passed (which it then never
    refuses: it reads only the 64-byte header)."""
    from elftools.elf.elffile import ELFFile
    return ELFFile(io.BytesIO(data))


def _named(data: bytes, name: str) -> str | int:
    """pyelftools' name of the header field ``name`` (``EM_386``; a number it has no name
    for), for the messages that have always named it."""
    return _open(data).header[name]


def _program_headers(data: bytes, phoff: int, phnum: int, phentsize: int) -> list[_Phdr]:
    file_size = len(data)
    if phnum > MAX_PHNUM:
        raise ElfError('E3', f'e_phnum is {phnum}; the limit is {MAX_PHNUM}')
    if phnum == 0:
        raise ElfError('E3', 'no program headers')
    if phentsize != _PHDR_SIZE:
        raise ElfError('E3', f'e_phentsize is {phentsize}, not {_PHDR_SIZE}')
    if phoff + phnum * _PHDR_SIZE > file_size:
        raise ElfError('E3', f'program header table ({phnum} entries at offset {phoff:#x}) '
                             f'extends past the end of the {file_size}-byte file')
    phdrs = []
    for i in range(phnum):
        p_type, flags, offset, vaddr, _, filesz, memsz, align = \
            _PHDR.unpack_from(data, phoff + i * _PHDR_SIZE)
        phdrs.append(_Phdr(p_type, flags, offset, vaddr, filesz, memsz, align))
    if any(ph.type == PT_DYNAMIC for ph in phdrs):
        _dynamic_segments(data, phnum)
    return phdrs


def _dynamic_segments(data: bytes, phnum: int) -> None:
    """E3 where pyelftools cannot make a PT_DYNAMIC segment of the file (it reads the
    section headers for it), as before it was left out of the common path: such a
    file is refused whatever it holds, and now the same way."""
    try:
        elf = _open(data)
        for i in range(phnum):
            elf.get_segment(i)
    except Exception as e:  # pyelftools raises many types on malformed input
        raise ElfError('E3', f'malformed program header: {e}') from e


def _flags(flags: int) -> str:
    return ''.join(c if flags & bit else '-' for c, bit in (('R', PF_R), ('W', PF_W),
                                                            ('X', PF_X)))


def _segments(phdrs: list[_Phdr], data: bytes, memory_limit: int) -> tuple[Segment, ...]:
    """E3 and E4 on the PT_LOAD entries; returns them sorted by address."""
    loads = []
    for i, ph in enumerate(phdrs):
        if ph.type != PT_LOAD:
            continue
        name = f'PT_LOAD #{i} at {ph.vaddr:#x} ({_flags(ph.flags)})'
        if ph.filesz > ph.memsz:
            raise ElfError('E3', f'{name}: p_filesz {ph.filesz:#x} > p_memsz {ph.memsz:#x}')
        if ph.offset + ph.filesz > len(data):
            raise ElfError('E3', f'{name}: file range {ph.offset:#x}+{ph.filesz:#x} extends '
                                 f'past the end of the {len(data)}-byte file')
        if (ph.vaddr - ph.offset) % _PAGE:
            raise ElfError('E3', f'{name}: p_vaddr {ph.vaddr:#x} and p_offset {ph.offset:#x} '
                                 f'differ modulo the page size')
        if ph.memsz == 0:
            continue
        lo, hi = _page_down(ph.vaddr), _page_up(ph.vaddr + ph.memsz)
        if lo < GUEST_LOW or hi > GUEST_HIGH:
            raise ElfError('E3', f'{name}: pages {lo:#x}-{hi:#x} are outside the guest window '
                                 f'{GUEST_LOW:#x}-{GUEST_HIGH:#x}')
        if ph.flags & PF_W and ph.flags & PF_X:
            raise ElfError('E4', f'{name} is both writable and executable')
        if ph.flags & PF_X and ph.memsz > ph.filesz:
            # no linker makes these; the validator would have to sweep memory no file backs
            raise ElfError('E4', f'{name} is executable and zero-filled past its file bytes '
                                 f'(p_memsz {ph.memsz:#x} > p_filesz {ph.filesz:#x})')
        loads.append((lo, hi, name, Segment(ph.vaddr, ph.memsz, ph.flags,
                                            data[ph.offset:ph.offset + ph.filesz])))
    if not loads:
        raise ElfError('E3', 'no non-empty PT_LOAD segment')
    loads.sort(key=lambda t: t[0])
    for (_, prev_hi, prev, _), (lo, _, name, _) in zip(loads, loads[1:], strict=False):
        if lo < prev_hi:
            raise ElfError('E3', f'{name} overlaps {prev} (page-rounded)')
    total = sum(hi - lo for lo, hi, _, _ in loads)
    if total > memory_limit:
        raise ElfError('E3', f'segments need {total} bytes of memory; the limit is '
                             f'{memory_limit}')
    segments = tuple(seg for _, _, _, seg in loads)
    if not any(seg.executable for seg in segments):
        raise ElfError('E4', 'no executable (PF_X) segment')
    return segments


def _check_stack_and_tls(phdrs: list[_Phdr],
                         segments: tuple[Segment, ...]) -> tuple[int, int, int, int] | None:
    """E6: never an executable stack; the TLS image must be part of the loaded image."""
    tls = None
    for ph in phdrs:
        if ph.type == PT_GNU_STACK and ph.flags & PF_X:
            raise ElfError('E6', 'PT_GNU_STACK asks for an executable stack '
                                 '(link without -z execstack)')
        if ph.type != PT_TLS:
            continue
        if tls is not None:
            raise ElfError('E6', 'more than one PT_TLS')
        if ph.filesz > ph.memsz:
            raise ElfError('E6', f'PT_TLS p_filesz {ph.filesz:#x} > p_memsz {ph.memsz:#x}')
        if ph.align & (ph.align - 1):
            raise ElfError('E6', f'PT_TLS alignment {ph.align:#x} is not a power of two')
        if not any(s.vaddr <= ph.vaddr and ph.vaddr + ph.filesz <= s.end for s in segments):
            raise ElfError('E6', f'PT_TLS image {ph.vaddr:#x}+{ph.filesz:#x} is not inside '
                                 f'a PT_LOAD segment')
        tls = (ph.vaddr, ph.filesz, ph.memsz, ph.align)
    return tls


def _phdr_addr(phdrs: list[_Phdr], phoff: int, phnum: int) -> int:
    """Where the program headers are mapped (for AT_PHDR); 0 when they are not."""
    for ph in phdrs:
        if ph.type == PT_PHDR:
            return ph.vaddr
    for ph in phdrs:
        if ph.type == PT_LOAD and ph.offset <= phoff \
                and phoff + phnum * _PHDR_SIZE <= ph.offset + ph.filesz:
            return ph.vaddr + phoff - ph.offset
    return 0


def _exec_sections(elf: ELFFile) -> list[tuple[int, int]]:
    """Address ranges of allocated executable sections; none if the table is unreadable."""
    try:
        ranges = []
        for section in elf.iter_sections():
            sh = section.header
            flags = sh['sh_flags']
            if (flags & _SHF_ALLOC and flags & _SHF_EXECINSTR and sh['sh_size']
                    and sh['sh_type'] != 'SHT_NOBITS'):
                ranges.append((sh['sh_addr'], sh['sh_addr'] + sh['sh_size']))
        return ranges
    except Exception:  # section headers are hints: a broken table is as good as none
        return []


def _code_ranges(elf: ELFFile, segments: tuple[Segment, ...]) -> tuple[CodeRange, ...]:
    """Executable sections clipped to the file bytes of PF_X segments.

    A PF_X segment that no executable section overlaps is swept whole.
    Overlapping sections are merged; adjacent ones stay separate because each
    section start is a point where the sweep is known to be in sync.
    """
    sections = sorted(_exec_sections(elf))
    ranges: list[tuple[int, int, Segment, bool]] = []
    for seg in segments:
        if not seg.executable or not seg.data:
            continue
        lo, hi = seg.vaddr, seg.vaddr + len(seg.data)
        clipped = [(max(a, lo), min(b, hi)) for a, b in sections if a < hi and b > lo]
        for a, b in clipped or [(lo, hi)]:
            if ranges and ranges[-1][2] is seg and a < ranges[-1][1]:
                start, end, _, _ = ranges.pop()
                a, b = start, max(end, b)
            ranges.append((a, b, seg, bool(clipped)))
    return tuple(CodeRange(a, seg.data[a - seg.vaddr:b - seg.vaddr], sections=hinted)
                 for a, b, seg, hinted in ranges)
