"""Group a CSV by one column and sum others: a ZeroCloud job in Python.

    python3 agg.py KEY [COLUMN ...] [--file PATH]

Reads the CSV (with a header line) from /dev/input, the object the job runs
next to, or from PATH; prints one line per KEY value, sorted: the value, the
number of rows and the sum of each COLUMN (two decimals).  Runs unchanged on
the host, under `zvm run` and on the cluster.
"""

import csv
import sys
from collections import defaultdict


def aggregate(rows, key, columns):
    """[(group, rows, [sum of each column])] sorted by group; ``rows`` are lists."""
    count = defaultdict(int)
    sums = {}
    for row in rows:
        group = row[key]
        count[group] += 1
        acc = sums.get(group)
        if acc is None:
            acc = sums[group] = [0.0] * len(columns)
        for i, column in enumerate(columns):
            acc[i] += float(row[column])
    return [(group, count[group], sums[group]) for group in sorted(count)]


def main(argv):
    path = '/dev/input'
    if '--file' in argv:
        i = argv.index('--file')
        path = argv[i + 1]
        argv = argv[:i] + argv[i + 2:]
    if not argv:
        sys.exit('usage: agg.py KEY [COLUMN ...] [--file PATH]')
    names = argv
    with open(path, newline='') as f:
        reader = csv.reader(f)
        header = next(reader, [])
        missing = [c for c in names if c not in header]
        if missing:
            sys.exit(f'agg.py: no column {", ".join(missing)} in {header}')
        key, *columns = [header.index(c) for c in names]
        result = aggregate(reader, key, columns)
    out = csv.writer(sys.stdout, lineterminator='\n')
    out.writerow([names[0], 'rows', *names[1:]])
    for group, n, sums in result:
        out.writerow([group, n, *(f'{s:.2f}' for s in sums)])


if __name__ == '__main__':
    main(sys.argv[1:])
