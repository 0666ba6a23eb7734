"""Differential semantics of the two engines: what an instruction does under unicorn
against what the CPU does.

Generates register-only instructions the validator accepts (random encodings
of every opcode map, and every opcode's register form in turn), runs each
from the same random registers, flags and x87/SSE state under the emulated
and the native engine, then every memory form of ``semantic_diff.MEMORY`` (loads,
stores, locked read-modify-write, cmpxchg, xadd, SSE, string instructions) ``--memory``
times on a random scratch buffer, and prints every difference: the encoding, capstone's
text and what each engine gave, with the known class it falls in
(``semantic_diff.KNOWN``), then a count per class.  Exit status 1 if any
difference is in no known class.  The comparison is ``tests/semantic_diff.py``;
the test suite runs a bounded version (``tests/sandbox/test_semantic_diff.py``).

Usage: ``python bench/fuzz_semantics.py [--samples N] [--seed S] [--structured F]
[--memory EACH] [--quiet]``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / 'tests'))

import semantic_diff  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--samples', type=int, default=10_000)
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('--structured', type=float, default=0.5,
                    help='share of the cases from the opcode maps (the rest: random bytes)')
    ap.add_argument('--memory', type=int, default=10,
                    help='cases of each memory form (semantic_diff.MEMORY)')
    ap.add_argument('--quiet', action='store_true', help='print only the unknown differences')
    opts = ap.parse_args()

    start = time.monotonic()
    rng = random.Random(opts.seed)
    counts: Counter[str] = Counter()
    done = faulted = refused = 0
    # a thousand register-only cases at a time (progress), then rounds of the memory forms
    sizes = [min(1000, opts.samples - first) for first in range(0, opts.samples, 1000)]
    for n in sizes + [0] * opts.memory:
        batch = (semantic_diff.cases(rng, n, opts.structured) if n
                 else semantic_diff.memory_cases(rng))
        result = semantic_diff.differences(batch)
        done, faulted, refused = (done + result.cases, faulted + result.faulted,
                                  refused + result.refused)
        for d in result.differences:
            kind = semantic_diff.explain(d)
            counts[kind or 'UNKNOWN'] += 1
            if kind is None or not opts.quiet:
                print(('UNKNOWN ' if kind is None else '') + str(d), flush=True)
    took = time.monotonic() - start
    print(f'{done} cases (seed {opts.seed}) in {took:.1f} s; {faulted} faulted under both '
          f'engines, {refused} refused in the program')
    for kind, n in counts.most_common():
        print(f'  {kind:20} {n:7}')
    return 1 if counts['UNKNOWN'] else 0


if __name__ == '__main__':
    sys.exit(main())
