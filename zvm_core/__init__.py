"""zvm_core: a deterministic sandbox for static x86-64 Linux programs.

A program is validated (``zvm_core.validator``), loaded at a fixed layout and
run under unicorn with a Linux system-call personality whose only files are
the channels given to it (``zvm_core.channels``).  Same program and inputs
give the same bytes, every run.  The native engine (``zvm_core.engines``)
runs the same validated program on the CPU in a process the kernel confines,
with the same personality and report.

It also speaks ZeroVM: manifests (``zvm_core.manifest``) run as sessions
(``zvm_core.session``) with ZeroVM's report and exit codes, programs get the
trap API and the user manifest (``zvm_core.trap``, ``sdk/zvm.h``), and
``/dev/nvram`` gives argv, environment and tar images mounted as the file
tree (``zvm_core.nvram``, ``zvm_core.syscalls.fs``).
"""
