"""Differential fuzzing of the two x86 decoders (issue 15): capstone (the validator)
against unicorn (what runs).

Generates random and structured encodings (legacy prefixes, REX, the
one-byte, 0f, 0f38 and 0f3a maps, VEX, EVEX, XOP, 3DNow!, plain random
bytes), runs the first instruction of each in unicorn (in a child process,
since some encodings make unicorn abort) and prints how many agree, differ
harmlessly (unicorn faults on the instruction), differ, crash unicorn, give
different registers when run twice (``random``), and how many of the
differing, crashing and random ones the validator accepts (must be 0; each is
printed).  The comparison is ``tests/decoder_diff.py``; the test suite runs a
bounded version of it (``tests/unit/test_decoder_diff.py``).

Usage: ``python bench/fuzz_decoder.py [--samples N] [--seed S]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))

from decoder_diff import Outcome, run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--samples', type=int, default=1_000_000)
    ap.add_argument('--seed', type=int, default=1)
    opts = ap.parse_args()

    def report(outcome: Outcome) -> None:
        print(f'ACCEPTED {outcome.kind}: {outcome.text} (capstone {outcome.capstone} bytes, '
              f'unicorn {outcome.unicorn}, error {outcome.error})', flush=True)

    start = time.monotonic()
    counts = run(opts.samples, opts.seed, report)
    took = time.monotonic() - start
    print(f'{opts.samples} encodings (seed {opts.seed}) in {took:.1f} s:')
    for kind, n in counts.items():
        print(f'  {kind:12} {n:9}')
    return 1 if counts['accepted'] else 0


if __name__ == '__main__':
    sys.exit(main())
