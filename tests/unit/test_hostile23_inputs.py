"""An attacker's review (review23): the objects a job's nodes read but do not run next
to travel through the proxy, fetched once per job and held on its disk until the job
ends.  Nothing bounded them: a wildcard over a large container (any public one) whose
nodes run next to another device's object made one job spool the whole container on
the proxy's disk, which every user's outputs share (their jobs then failed 507)."""

from __future__ import annotations

import json

import pytest
from archives import tar_bytes
from swift.common.swob import HTTPException

from zerocloud import config, sources
from zerocloud.job import parse_job, stream
from zerocloud.proxy.caller import SPOOL_MEMORY, Held, Input, spooled


def sent(size: int) -> Input:
    f = spooled()
    f.write(b'x' * size)
    return Input(f, size)


def test_the_option_has_a_default_and_refuses_a_bad_value() -> None:
    conf = config.Config.from_conf({})
    assert conf.job_max_inputs == 4 << 30 >= conf.max_input
    assert config.Config.from_conf({'zerovm_job_maxinputs': '1000'}).job_max_inputs == 1000
    with pytest.raises(ValueError, match='zerovm_job_maxinputs: 0: '):
        config.Config.from_conf({'zerovm_job_maxinputs': '0'})


def test_inputs_on_the_proxys_disk_past_the_bound_are_refused() -> None:
    limit = 3 * SPOOL_MEMORY
    held = Held(10, limit)
    held.input(SPOOL_MEMORY + 1, 'swift://a/c/o1')
    held.input(SPOOL_MEMORY + 1, 'swift://a/c/o2')
    with pytest.raises(HTTPException) as e:
        held.input(SPOOL_MEMORY + 1, 'swift://a/c/o3')
    assert e.value.status_int == 413
    text = e.value.body.decode()
    assert text.startswith(f"this job's objects sent along would hold {3 * SPOOL_MEMORY + 3} "
                           f"bytes on the proxy's disk (swift://a/c/o3 is {SPOOL_MEMORY + 1} "
                           f'bytes), more than zerovm_job_maxinputs ({limit} bytes)'), text
    assert text.endswith('ask the operator to raise zerovm_job_maxinputs\n'), text
    assert held.spooled == 2 * SPOOL_MEMORY + 2     # the refused one is not counted


def test_small_inputs_moved_to_disk_count_and_those_kept_in_memory_do_not() -> None:
    held = Held(10, 12)
    assert not held.input(10)               # in memory: the programs' bound, apart
    assert held.input(8)                    # on disk
    assert (held.kept, held.spooled) == (10, 8)
    with pytest.raises(HTTPException) as e:
        held.input(5, 'swift://a/c/o')
    assert e.value.status_int == 413 and b'(swift://a/c/o is 5 bytes)' in e.value.body


class _Images:
    """A caller whose objects are zapp images (``bin/x`` in each says which), noting
    how many images it fetched were still open when it fetched the next one."""

    def __init__(self) -> None:
        self.config = config.Config()
        self.fetched: list[Input] = []
        self.open_at_fetch: list[int] = []

    def fetch(self, path, limit: int, option: str = '', reader: str = ''):
        self.open_at_fetch.append(sum(not i.file.closed for i in self.fetched))
        data = sent(0)
        data.file.write(tar_bytes({'bin/x': path.obj.encode()}))
        data.size = data.file.tell()
        self.fetched.append(data)
        return data, None


def test_a_wildcard_over_zapp_images_holds_one_image_at_a_time() -> None:
    """Each node's program is read from its own image: every image of a chunk (up to a
    thousand, each up to zerovm_maxinput) waited on the proxy's disk until the chunk's
    last program was read."""
    job = [{'name': 'z', 'exec': {'path': 'file://image:bin/x'},
            'devices': [{'name': 'image', 'path': 'swift://AUTH_a/zapps/*'},
                        {'name': 'stdout'}]}]
    groups = parse_job(json.dumps(job).encode(), 'AUTH_a', system_images=frozenset())
    names = [f'z{i}.tar' for i in range(5)]
    nodes = list(stream(groups, lambda a, c, p: iter(names), lambda a: iter([]),
                        max_nodes=10))
    caller = _Images()
    programs = sources.fetch_programs(caller, nodes, sources.Launch(b''), Held(1 << 30))
    assert caller.open_at_fetch == [0] * len(names)
    assert all(i.file.closed for i in caller.fetched)
    for node, name in zip(nodes, names, strict=True):
        program = programs[node.name]
        program.file.seek(0)
        assert program.file.read() == name.encode()
