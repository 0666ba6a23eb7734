"""ZeroVM compatibility: what ZeroVM programs and ZeroVM's callers see.

``manifest`` (the manifest grammar), ``session`` (a manifest in, ZeroVM's
report and exit code out: ``zvm MANIFEST``), ``trap`` (the trap API at
0x10000 and the user manifest), ``nvram`` (``/dev/nvram``: args, environment,
tar mounts) and ``sdk/zvm.h`` (the header programs build against).
"""
