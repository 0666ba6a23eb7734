"""bench/warm_hello.py's CPU columns: a process's CPU read in nanoseconds from its
threads' schedstat (steadier than clock ticks on a loaded host), ticks without it."""

from __future__ import annotations

import builtins
import importlib.util
import os
import sys
import threading
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / 'bench'


@pytest.fixture
def warm_hello(monkeypatch):
    """The bench module, its import's side effects (a private verdict cache in the
    environment, bench/ on sys.path) undone afterwards."""
    monkeypatch.setenv('ZVM_CACHE_DIR', os.environ.get('ZVM_CACHE_DIR', ''))
    monkeypatch.setattr(sys, 'path', list(sys.path))
    spec = importlib.util.spec_from_file_location('warm_hello_bench', BENCH / 'warm_hello.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _spin(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_ran_counts_every_thread_in_nanoseconds(warm_hello):
    """All of the process's live threads, as ``process_time`` counts them, to within
    a few ms (the spinner measured while alive: a thread that ended is no task to
    read; deltas, as the bench takes them, leave out threads that ended before)."""
    pid = os.getpid()
    ran0, cpu0 = warm_hello._ran(pid, warm_hello._stat(pid)), time.process_time()
    spun, measured = threading.Event(), threading.Event()

    def spinner() -> None:
        _spin(0.05)
        spun.set()
        measured.wait()

    thread = threading.Thread(target=spinner)
    thread.start()
    _spin(0.05)
    spun.wait()
    try:
        ran, cpu = warm_hello._ran(pid, warm_hello._stat(pid)), time.process_time()
    finally:
        measured.set()
        thread.join()
    assert cpu - cpu0 >= 0.1
    assert abs((ran - ran0) - (cpu - cpu0)) < 0.005, (ran - ran0, cpu - cpu0)


def test_ran_falls_back_to_clock_ticks_without_schedstat(warm_hello, monkeypatch):
    pid = os.getpid()
    stat = warm_hello._stat(pid)
    real_open = builtins.open

    def no_schedstat(path, *args, **kwargs):
        if str(path).endswith('/schedstat'):
            raise FileNotFoundError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, 'open', no_schedstat)
    assert warm_hello._ran(pid, stat) == (int(stat[11]) + int(stat[12])) / warm_hello.TICK
