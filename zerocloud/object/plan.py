"""How a node's devices become its channels: the plan ``NodeRun.plan`` makes.

A node's spec names its devices; the object server gives each a channel by
one set of rules (``NodeRun.step``): the local object, an output file, a
request's member, a system image, ``/dev/null`` for an undeclared standard
stream, the end of an undeclared stderr, a link.  What those rules decide
depends on the devices only, so the nodes of a batch that share their spec's
devices share one plan (``zerocloud.object.batch``), and each node only opens
what is its own (``NodeRun.lay``).
"""

from __future__ import annotations

from typing import NamedTuple

from zvm_core.channels import Quota
from zvm_core.pool import ChannelSpec

# What a device becomes: a channel made once for every node (FIXED: also the end of
# an undeclared stderr, which the worker keeps), or per node: the local object, an
# output file, a file opened (a member, a system image, /dev/null), a link.
FIXED, LOCAL, OUT, FILE, LINK = 'fixed', 'local', 'out', 'file', 'link'


class Step(NamedTuple):
    """How one device becomes a node's channel."""

    kind: str
    name: str                           # the device
    alias: str                          # its channel, /dev/<name>
    mode: int
    random: bool = False
    mount: str | None = None
    system: bool = False                # FILE: a system image (``ChannelSpec.system``)
    quota: Quota | None = None          # OUT
    path: str | None = None             # FILE: what is opened
    fixed: ChannelSpec | None = None    # FIXED: the channel itself
