"""zvm_core: a deterministic sandbox for static x86-64 Linux programs.

A program is validated (``zvm_core.validator``), loaded at a fixed layout and
run under unicorn with a Linux system-call personality whose only files are
the channels given to it (``zvm_core.channels``).  Same program and inputs
give the same bytes, every run.  The native engine (``zvm_core.engines``)
runs the same validated program on the CPU in a process the kernel confines,
with the same personality and report.

It also speaks ZeroVM (``zvm_core.zerovm``): manifests run as sessions with
ZeroVM's report and exit codes, programs get the trap API and the user
manifest (``zerovm/sdk/zvm.h``), and ``/dev/nvram`` gives argv, environment
and tar images mounted as the file tree.  README "Layout" lists the parts.
"""
