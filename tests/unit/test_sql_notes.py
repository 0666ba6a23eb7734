"""The ``--skip-bad`` notes among the nodes' spooled partial rows
(``zerocloud.sql.entry._notes``) are found by ``find`` over chunks, not a readline
per row (mendB: 8 MB of ``1\\n`` rows held a proxy worker's event loop for 3.8 s):
the same notes wherever a chunk's edge falls."""

from __future__ import annotations

import io
import random

import pytest

from zerocloud.sql import entry
from zerocloud.sql.entry import SKIPPED


def by_lines(data: bytes, most: int) -> bytes:
    """The notes as the readline version found them: a line starting with SKIPPED, its
    first ``most`` bytes."""
    f, notes, line_start = io.BytesIO(data), [], True
    while piece := f.readline(most):
        if line_start and piece.startswith(SKIPPED):
            notes.append(piece)
        line_start = piece.endswith(b'\n')
    return b''.join(notes)


def notes(data: bytes) -> bytes:
    f = io.BytesIO(data)
    found = entry._notes(f)
    assert f.tell() == 0
    return found


NOTE = SKIPPED + b'2\tswift://A/c/a.csv\tline 3: x\n'


@pytest.mark.parametrize('edge', range(1, len(NOTE) + 2))
def test_a_note_cut_by_a_chunk_edge_or_at_the_start_is_found_once(monkeypatch, edge) -> None:
    monkeypatch.setattr(entry, 'NOTES_CHUNK', 16)
    rows = b'r' * (16 - edge) + b'\n'       # the note's newline or mark cut at 16
    data = NOTE + rows + NOTE + NOTE + b'x#skipped\tno\n' + rows + NOTE[:-1]
    assert notes(data) == NOTE * 3 + NOTE[:-1] == by_lines(data, entry.NOTE_MAX)
    assert notes(NOTE) == NOTE and notes(b'') == b''


def test_the_notes_are_those_a_readline_per_row_found(monkeypatch) -> None:
    """Random rows, notes and overlong lines, chunks and NOTE_MAX small."""
    rng = random.Random(5)
    for round_ in range(300):
        chunk, most = rng.randint(1, 40), rng.randint(len(SKIPPED) + 1, 30)
        monkeypatch.setattr(entry, 'NOTES_CHUNK', chunk)
        monkeypatch.setattr(entry, 'NOTE_MAX', most)
        data = b''.join(rng.choice([b'\n', b'1\n', b'#skip', SKIPPED, b'x' * rng.randint(0, 50),
                                    NOTE, b'\n' + SKIPPED + b'1\t'])
                        for _ in range(rng.randint(0, 20)))
        assert notes(data) == by_lines(data, most), (round_, chunk, most, data)


class Chunks(io.BytesIO):
    """A spool whose reads are counted; it has no readline."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int] = []

    def read(self, size: int = -1) -> bytes:
        self.reads.append(size)
        return super().read(size)

    def readline(self, size: int = -1) -> bytes:
        raise AssertionError('a readline per row')


def test_the_rows_are_searched_a_chunk_at_a_time(monkeypatch) -> None:
    monkeypatch.setattr(entry, 'NOTES_CHUNK', 1000)
    f = Chunks(b'1\n' * 2500 + NOTE)     # 5035 bytes
    assert entry._notes(f) == NOTE
    assert f.reads == [1000] * 7          # 6 chunks, then the end
