"""The build cache's key for a compiler: its file, without running it (a wrapper script:
with what it says it runs)."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from zvm_core.build.toolchain import BuildError, compiler_id


@pytest.fixture
def bindir(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', f'{tmp_path}{os.pathsep}{os.environ["PATH"]}')
    compiler_id.cache_clear()
    yield tmp_path
    compiler_id.cache_clear()


def _tool(path, data: bytes, mtime: int = 1_000_000_000):
    path.write_bytes(data)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    os.utime(path, (mtime, mtime))
    return path


def test_a_compiler_binary_is_not_run(bindir, monkeypatch):
    """gcc --version cost every zvm run ~16 ms (the loader's key)."""
    _tool(bindir / 'zcc', b'\x7fELF not really a compiler')

    def run(*args, **kwargs):
        raise AssertionError(f'ran {args}')
    monkeypatch.setattr(subprocess, 'run', run)
    first = compiler_id('zcc')
    assert str(bindir / 'zcc') in first


def test_the_key_changes_with_the_compiler_file(bindir):
    cc = _tool(bindir / 'zcc', b'\x7fELF version 1')
    first = compiler_id('zcc')
    compiler_id.cache_clear()
    assert compiler_id('zcc') == first
    _tool(cc, b'\x7fELF version 2')                 # same size, same mtime: not the same file?
    os.utime(cc, (1_000_000_001, 1_000_000_001))
    compiler_id.cache_clear()
    second = compiler_id('zcc')
    assert second != first
    _tool(cc, b'\x7fELF version 22', mtime=1_000_000_001)
    compiler_id.cache_clear()
    assert compiler_id('zcc') not in (first, second)


def test_an_alternative_through_a_symlink_is_another_compiler(bindir, tmp_path):
    a = _tool(tmp_path / 'cc-a', b'\x7fELF same bytes')
    b = _tool(tmp_path / 'cc-b', b'\x7fELF same bytes')
    (bindir / 'zcc').symlink_to(a)
    first = compiler_id('zcc')
    (bindir / 'zcc').unlink()
    (bindir / 'zcc').symlink_to(b)
    compiler_id.cache_clear()
    assert compiler_id('zcc') != first


def test_a_wrapper_script_says_what_it_runs(bindir):
    """musl-gcc is a script that runs gcc: the key follows gcc's --version."""
    gcc = bindir / 'version'
    gcc.write_text('1.0')
    script = f'#!/bin/sh\ncat {gcc}\n'.encode()
    _tool(bindir / 'zcc', script)
    first = compiler_id('zcc')
    assert first.endswith('1.0')
    gcc.write_text('1.1')
    compiler_id.cache_clear()
    assert compiler_id('zcc').endswith('1.1')


def test_a_missing_compiler_says_what_to_install(bindir):
    with pytest.raises(BuildError, match='apt-get install musl-tools'):
        compiler_id('musl-gcc-nonexistent')
