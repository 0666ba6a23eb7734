"""prepare.explained: a fault at an instruction as_fixed_cpu made ud2 says why, from the
address the engine gave (Report.invalid_at), not from its message's words; and the
report's validation state is the verdict's, whichever engine and path ran it."""

from __future__ import annotations

import dataclasses
import subprocess

import pytest

from zvm_core.elf import parse_elf
from zvm_core.prepare import ABSENT_FAULT, explained
from zvm_core.report import Report
from zvm_core.validator import validate


@pytest.fixture(scope='module')
def tsx(tmp_path_factory):
    work = tmp_path_factory.mktemp('prepare')
    (work / 'tsx.S').write_text('.globl _start\n.text\n_start:\n cs xtest\n mov $60, %eax\n'
                                ' xor %edi, %edi\n syscall\n')
    subprocess.run(['gcc', '-nostdlib', '-static', '-o', str(work / 'tsx'),
                    str(work / 'tsx.S')], check=True)
    program = parse_elf((work / 'tsx').read_bytes())
    verdict = validate(program)
    assert verdict.ok and verdict.absent == (program.entry + 1,)    # after the cs prefix
    return program, verdict


def test_explained_takes_the_faulting_address_as_data(tsx):
    program, verdict = tsx
    words = f'invalid or unsupported instruction (rip {program.entry:#x})'
    for at in (program.entry, program.entry + 1):       # the prefixed start, the opcode
        report = explained(Report('fault', None, 'whatever the engine said', invalid_at=at),
                           program, verdict)
        assert report.message == f'whatever the engine said: {ABSENT_FAULT}'
    for report in (Report('fault', None, words),                      # no address given
                   Report('fault', None, words, invalid_at=program.entry + 4),  # not a site
                   Report('memory', None, f'memory limit; then: {words}',
                          invalid_at=program.entry)):                 # not a fault
        message = report.message
        assert explained(report, program, verdict).message == message


def test_explained_gives_the_verdicts_validation_state(tsx):
    """One place says it for every path (executor.execute, the pool worker's native and
    emulated templates): each had its own copy of the line."""
    program, verdict = tsx
    for cached, state in ((False, 'ok'), (True, 'cached')):
        for status in ('ok', 'fault', 'timeout'):
            report = Report(status, 0 if status == 'ok' else None, '',
                            {'state': 'skipped', 'violations': []})
            report = explained(report, program, dataclasses.replace(verdict, cached=cached))
            assert report.validation == {'state': state, 'violations': []}
