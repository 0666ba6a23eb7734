"""Write a deterministic sales data set: one CSV object per day, some gzip-compressed.

    python3 make_data.py [DIR] [DAYS] [ROWS]     # default: sales/ 30 days, 20000 rows a day

Columns: day, region, product, qty, price, note (a quoted free text, sometimes
with commas; qty is empty, i.e. NULL, now and then).  Every fifth day is
written as ``.csv.gz``; the same query reads both.
"""

import csv
import gzip
import io
import random
import sys
from pathlib import Path

out = Path(sys.argv[1] if len(sys.argv) > 1 else 'sales')
days = int(sys.argv[2]) if len(sys.argv) > 2 else 30
rows = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
regions = ['north', 'south', 'east', 'west', 'central']
words = ['fast', 'blue', 'large', 'spare', 'boxed', 'used', 'new', 'gift', 'bulk', 'trade']
out.mkdir(parents=True, exist_ok=True)
for d in range(1, days + 1):
    rng = random.Random(d)
    text = io.StringIO()
    w = csv.writer(text, lineterminator='\n')
    w.writerow(['day', 'region', 'product', 'qty', 'price', 'note'])
    for _ in range(rows):
        qty = '' if rng.random() < 0.02 else rng.randrange(1, 50)
        note = ', '.join(rng.choice(words) for _ in range(rng.randrange(1, 4)))
        w.writerow([f'2026-11-{d:02d}', rng.choice(regions), f'p{rng.randrange(200):03d}',
                    qty, f'{rng.randrange(100, 20000) / 100:.2f}', note])
    data = text.getvalue().encode()
    if d % 5 == 0:
        (out / f'day-{d:02d}.csv.gz').write_bytes(gzip.compress(data, mtime=0))
    else:
        (out / f'day-{d:02d}.csv').write_bytes(data)
