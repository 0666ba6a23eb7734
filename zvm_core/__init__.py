"""zvm_core: a deterministic sandbox for static x86-64 Linux programs.

A program is validated (``zvm_core.validator``), loaded at a fixed layout and
run under unicorn with a Linux system-call personality whose only files are
the channels given to it (``zvm_core.channels``).  Same program and inputs
give the same bytes, every run.
"""
