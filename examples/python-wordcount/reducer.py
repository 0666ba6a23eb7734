"""Reduce: add up the "<word> <count>" lines of every mapper, print them sorted.

    python3 reducer.py MAPPER_GROUP

Reads /dev/in/<group>-1, -2, ... (or /dev/in/<group> for a single mapper).
"""

import collections
import os
import sys


def inputs(group):
    if os.path.exists(f'/dev/in/{group}'):
        return [f'/dev/in/{group}']
    found, i = [], 1
    while os.path.exists(f'/dev/in/{group}-{i}'):
        found.append(f'/dev/in/{group}-{i}')
        i += 1
    return found


def main(group):
    totals = collections.Counter()
    for path in inputs(group):
        with open(path) as f:
            for line in f:
                word, n = line.split()
                totals[word] += int(n)
    for word, n in sorted(totals.items()):
        print(word, n)


if __name__ == '__main__':
    main(sys.argv[1] if len(sys.argv) > 1 else 'mapper')
