"""doc/job-reference.md's example jobs, POSTed as written but for their containers.

Each example names fixed containers (``bin``, ``logs``, ``demo`` ...); a test
renames them to containers of its own, uploads what the example reads, and
checks the job does what the page says.  A page whose example stops working
fails here.
"""

from __future__ import annotations

import io
import re
import tarfile
from pathlib import Path

from swiftclient import Connection
from test_jobs import post_job

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / 'doc' / 'job-reference.md'


def example(starts: str) -> str:
    """The page's ```json block whose text begins with ``starts``."""
    blocks = re.findall(r'```json\n(.*?)```', PAGE.read_text(), re.S)
    [found] = [b for b in blocks if b.startswith(starts)]
    return found


def renamed(text: str, names: dict[str, str]) -> str:
    for old, new in names.items():
        text = text.replace(f'swift://~/{old}/', f'swift://~/{new}/')
    return text


def test_the_first_example_sorts_each_log_into_its_own_object(
        conn: Connection, make_container, guest) -> None:
    names = {old: make_container(old) for old in ('bin', 'logs', 'sorted')}
    conn.put_object(names['bin'], 'sort', guest('cat').read_bytes())
    for i in (1, 2):
        conn.put_object(names['logs'], f'log_{i}.txt', b'line %d\n' % i)
    conn.put_object(names['logs'], 'other.txt', b'not a log\n')
    resp = post_job(conn, renamed(example('[{"name": "sort"'), names))
    assert resp.status_code == 200, resp.text
    assert resp.headers['X-Nexe-System'] == 'sort-1,sort-2'
    for i in (1, 2):
        headers, body = conn.get_object(names['sorted'], f'log_{i}.txt')
        assert body == b'line %d\n' % i
        assert (headers['content-type'], headers['x-object-meta-source']) == (
            'text/plain', 'sort')


def test_the_graph_example_counts_words_with_the_mapreduce_programs(
        conn: Connection, make_container, guest) -> None:
    demo = make_container('demo')
    programs = ROOT / 'examples' / 'mapreduce'
    for name in ('mapper', 'reducer'):
        conn.put_object(demo, name, guest(programs / f'{name}.c').read_bytes())
    books = {'a.txt': b'swift node swift\n', 'b.txt': b'node object\n'}
    for name, text in books.items():
        conn.put_object(demo, f'books/{name}', text)
    resp = post_job(conn, renamed(example('[{"name": "mapper"'), {'demo': demo}))
    assert resp.status_code == 200, resp.text
    counts: dict[str, int] = {}
    for i in (1, 2):
        for line in conn.get_object(demo, f'counts/reducer-{i}.txt')[1].decode().splitlines():
            word, count = line.split()
            counts[word] = counts.get(word, 0) + int(count)
    assert counts == {'swift': 2, 'node': 2, 'object': 1}


def _mapreduce_programs(conn: Connection, container: str, guest) -> None:
    for name in ('mapper', 'reducer'):
        source = ROOT / 'examples' / 'mapreduce' / f'{name}.c'
        conn.put_object(container, name, guest(source).read_bytes())


def test_the_staged_example_counts_words_with_the_mapreduce_programs(
        conn: Connection, make_container, guest) -> None:
    """Three mapper groups, a reducer each writing to the final one, which prints the
    totals: the count of every object's words (the reducers' stdout, undeclared, was
    the example's: final read nothing, and the job said 200)."""
    demo = make_container('demo')
    _mapreduce_programs(conn, demo, guest)
    texts = {f'part-{g}{i}': b'node swift %d\n' % g + b'object\n' * i
             for g in range(3) for i in range(2)}
    for name, text in texts.items():
        conn.put_object(demo, name, text)
    resp = post_job(conn, renamed(example('[{"name": "map0"'), {'demo': demo}))
    assert resp.status_code == 200, resp.text
    assert 'X-Nexe-Dropped' not in resp.headers
    words = b' '.join(texts.values()).split()
    assert resp.content == b''.join(b'%s %d\n' % (w, words.count(w)) for w in sorted(set(words)))


def test_a_reducer_told_a_misspelt_group_fails_and_stores_nothing(
        conn: Connection, make_container, guest) -> None:
    """The graph example with the reducers reading "mappers": they find no channel and
    fail the job (422, naming the channel), where they counted nothing and it stored
    empty counts with a 200."""
    demo = make_container('demo')
    _mapreduce_programs(conn, demo, guest)
    conn.put_object(demo, 'books/a.txt', b'swift node swift\n')
    job = renamed(example('[{"name": "mapper"'), {'demo': demo}).replace(
        '"args": "mapper"', '"args": "mappers"')
    resp = post_job(conn, job)
    assert resp.status_code == 422, resp.text
    assert resp.text.startswith(
        'reducer-1: exit 1: reducer: no channel /dev/in/mappers or /dev/in/mappers-1: no '
        'node of group mappers writes to this one (its name, and its connect?)\n')
    assert [o['name'] for o in conn.get_container(demo)[1]] == ['books/a.txt', 'mapper',
                                                                 'reducer']


AGG = b'''import csv, sys
key, value = sys.argv[1], sys.argv[2]
totals = {}
with open('/dev/input', newline='') as f:
    for row in csv.DictReader(f):
        totals[row[key]] = totals.get(row[key], 0) + int(row[value])
for k in sorted(totals):
    print(k, totals[k])
'''


def test_the_system_image_example_runs_a_script_of_the_jobs_image(
        conn: Connection, make_container) -> None:
    """``python3`` from its system image runs ``/agg.py`` of the job's own image (a tar
    mounted at ``/`` after it) over ``/dev/input``."""
    names = {old: make_container(old) for old in ('jobs', 'data')}
    image = io.BytesIO()
    with tarfile.open(fileobj=image, mode='w') as tar:
        member = tarfile.TarInfo('agg.py')
        member.size = len(AGG)
        tar.addfile(member, io.BytesIO(AGG))
    conn.put_object(names['jobs'], 'agg.tar', image.getvalue())
    conn.put_object(names['data'], 'sales.csv', b'region,qty\nnorth,3\nsouth,4\nnorth,5\n')
    resp = post_job(conn, renamed(example('[{"name": "agg"'), names))
    assert (resp.status_code, resp.text) == (200, 'north 8\nsouth 4\n')
