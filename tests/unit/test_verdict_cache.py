"""The verdict cache's directory is bounded: least recently used verdicts go first."""

from __future__ import annotations

import os

from zvm_core.validator import Verdict, VerdictCache


def test_disk_cache_is_bounded_and_evicts_least_recently_used(tmp_path):
    verdict = Verdict(ok=True, violations=[], boundaries=[(0, b'\x01' * 64)], instructions=1,
                      traced=frozenset({'cpuid'}))
    keys = [f'{i:064x}' for i in range(8)]
    for i, key in enumerate(keys[:5]):
        VerdictCache(tmp_path).put(key, verdict)
        os.utime(tmp_path / f'{key}.json', (1000 + i, 1000 + i))    # put in this order
    read = VerdictCache(tmp_path).get(keys[0])                       # used: now the newest
    assert read.cached and read.traced == {'cpuid'}
    bounded = VerdictCache(tmp_path, max_files=5)
    bounded.put(keys[5], verdict)                                    # 6 > 5: down to 4
    left = {p.stem for p in tmp_path.glob('*.json')}
    assert left == {keys[0], keys[3], keys[4], keys[5]}
    assert VerdictCache(tmp_path).get(keys[1]) is None
    size = (tmp_path / f'{keys[0]}.json').stat().st_size
    VerdictCache(tmp_path, max_bytes=2 * size).put(keys[6], verdict)
    assert len(list(tmp_path.glob('*.json'))) == 1                   # 90% of 2 files
    assert VerdictCache(tmp_path).get(keys[6]).cached


def test_a_program_validated_at_once_by_several_is_validated_once(tmp_path, monkeypatch):
    """Several processes (here threads, each with its own cache object) that meet
    the same new program together: one validates, the others wait and read its
    verdict from the directory; no lock file stays."""
    import threading
    import time
    from types import SimpleNamespace

    from zvm_core import validator
    calls = []

    def slow(program, policy):
        calls.append(program)
        time.sleep(0.2)
        return Verdict(ok=True, violations=[], boundaries=[], instructions=3)
    monkeypatch.setattr(validator, '_validate', slow)
    program = SimpleNamespace(sha256='ab' * 32, patched=False)    # all validate() reads of it
    got = []
    threads = [threading.Thread(target=lambda: got.append(
        validator.validate(program, cache=VerdictCache(tmp_path)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sorted(v.cached for v in got) == [False, True, True, True]
    assert all(v.ok and v.instructions == 3 for v in got)
    assert list(tmp_path.glob('*.lock')) == []


def test_a_cached_verdict_whose_sites_are_not_in_the_code_is_validated_again(tmp_path):
    """A damaged cache file whose sites of absent instructions lie outside the code
    its own bitmap describes is a miss for every caller (it was a cached verdict with
    which every run of the program was a worker error, as_fixed_cpu's ValueError): the
    program is validated again and that verdict replaces it on disk."""
    import dataclasses
    import json
    import subprocess

    from zvm_core.elf import parse_elf
    from zvm_core.prepare import prepare
    from zvm_core.validator import UD2, Policy, cache_key, validate
    src = tmp_path / 'tsx.S'
    src.write_text('.globl _start\n.text\n_start:\n xtest\n mov $60, %eax\n'
                   ' xor %edi, %edi\n syscall\n hlt\n')      # nothing decoded after it
    subprocess.run(['gcc', '-nostdlib', '-static', '-o', str(tmp_path / 'tsx'), str(src)],
                   check=True)
    program = parse_elf((tmp_path / 'tsx').read_bytes())
    good = validate(program)
    assert good.ok and len(good.absent) == 1
    key = cache_key(program.sha256, Policy())
    directory = tmp_path / 'verdicts'
    (base, bits), = good.boundaries
    end = base + 8 * len(bits)
    site = good.absent[0]
    # below the bitmap, no start in the 15 bytes before, the ud2's second byte past its end
    for absent in [(0x10,), (site + 32,), (end - 1,), (site, end - 1)]:
        VerdictCache(directory).put(key, dataclasses.replace(good, absent=absent))
        assert VerdictCache(directory).get(key) is None, absent
        prepared = prepare(program, cache=VerdictCache(directory))
        assert prepared.verdict.absent == good.absent and not prepared.verdict.cached
        text = next(s for s in prepared.program.segments if s.executable)
        assert text.data[site - text.vaddr:site - text.vaddr + 2] == UD2
        assert json.loads((directory / f'{key}.json').read_text())['absent'] == [site]
        assert VerdictCache(directory).get(key).absent == good.absent
