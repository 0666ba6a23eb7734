"""Write a deterministic sales CSV of about SIZE bytes (default 20 MB) to stdout.

    python3 make_data.py [SIZE] > sales.csv
"""

import random
import sys

size = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000_000
rng = random.Random(2024)
regions = ['north', 'south', 'east', 'west', 'central']
words = ['fast', 'blue', 'large', 'spare', 'boxed', 'used', 'new', 'gift', 'bulk', 'trade']
out = sys.stdout
header = 'region,product,qty,revenue,note\n'
out.write(header)
written = len(header)
while written < size:
    qty = rng.randrange(1, 50)
    note = ' '.join(rng.choice(words) for _ in range(rng.randrange(3, 12)))
    line = (f'{rng.choice(regions)},p{rng.randrange(500):03d},{qty},'
            f'{qty * rng.randrange(100, 20000) / 100:.2f},"{note}"\n')
    out.write(line)
    written += len(line)
