"""What travels between the proxy filter and an object server for one node.

The proxy sends ``POST /<device>/<partition>/<account>/<container>/<object>``
with these headers:

* ``X-Zerovm-Execute: 1.0`` (marks the request; every answer of the object
  filter echoes it, so the proxy can tell an object server without the
  filter from one that refused the node, and says the server's images and
  limits in ``X-Zerovm-Setup``, which the proxy compares with its own:
  ``zerocloud.proxy.dispatch.Setups``);
* ``X-Zerovm-Access: GET`` when the node reads the object of the path as a
  local channel (otherwise the path only places the node);
* ``X-Backend-Storage-Policy-Index``, ``X-Trans-Id``, ``X-Zerocloud-Id``
  (the job), ``X-Zerocloud-Account`` (the account that runs it, charged for
  the node's slot), ``Content-Type: application/x-tar``, ``Content-Length`` and
  ``Expect: 100-continue``: the object server checks its capacity and the
  local object before the body travels.

* ``X-Zerovm-Program: <sha256 hex>`` instead of an ``exe`` member when the
  proxy expects the server to have the program already (see below), and
  ``X-Zerovm-Image: <sha256 hex>`` instead of a ``dev/image`` member for the
  job's own image, the same way (the server keeps the 8 most recent images;
  a 412 names the digest it lacks, and the proxy sends both again in full).

Both bodies are plain tar streams, as in the original ZeroCloud, so that
large payloads stream through without being held in memory:

* proxy -> object server: ``node.json`` (the node spec, first), ``exe``
  (the program), then ``dev/<device>`` for readable devices whose object is
  not local;
* object server -> proxy: ``report.json`` (first), then ``dev/<device>``
  for every written channel the proxy must deliver (store or return),
  unless the spec says ``"outputs": false`` (a replica that only votes with
  its report's etags).

The nodes of a ``connect`` graph (``"stream": true`` in the spec) move
their links while they run (``zerocloud.graph``):

* a node that reads other nodes' data gets a chunked request (no
  ``Content-Length``): after the members above, ``start`` (empty: the node
  may start), then ``part/in/<node>`` members (the next bytes of that link)
  as they arrive, and ``end/in/<node>`` (its size in bytes, decimal) once
  the link is complete; a request that ends before a link's ``end/`` member
  cuts that link;
* the answer (``X-Zerovm-Stream: 1``, sent once the node has a worker) is
  ``running`` (empty), ``part/out/<node>`` members (what the node wrote to ``/dev/out/<node>``
  since the last part, at most 1 MiB each, in order), then ``report.json``
  and the other written channels as above.  A node run again after a
  failure sends its parts again from the start.

Programs travel once per server, not once per node: each object-server
process keeps the programs it received by SHA-256 (the 32 most recently
used).  The proxy remembers, per ``ip:port``, the programs it has sent
there (4096 pairs at most) and sends the digest in ``X-Zerovm-Program``
and no ``exe`` member when it did; a node for a server to which another
node's request is still carrying the program waits until that copy has
been sent (at most 5 s).  A server process without the program answers
``412 Precondition Failed`` (body ``program <digest> is not cached here:
send it``, ``X-Zerovm-Program: <digest>``) before ``100 Continue``, so no
byte of the body, and for a graph node nothing of its links, has
travelled: the proxy forgets the pair and sends the same node to the same
server again with the program.  A miss (a restarted server, an evicted
program, another worker process of the server) thus costs one round trip,
never a failed node, and the program run is always the one whose digest
the server computed over the bytes it received.  Measured with
``bench/mapreduce.py`` (100 mappers, 2 reducers, 3 servers): programs were
5.45 of the 6.14 MB sent to the object servers per job; now the first job
sends 0.29 MB of programs (one copy per server and program) and the next
ones none (0.63 MB in all).  Trying the digest first for every node
instead sent 3.0 MB of programs in the first job, after 66 412s (nodes
sent together all miss until a copy has arrived), and the same afterwards.

Batches
-------

Nodes bound for the same object server, with the same program and nothing
but their spec to send (in-place nodes of a wildcard over a container: no
links, no replicas, no objects sent along), travel together:
``POST /<device>/0/<account>/.zerocloud/batch`` with the headers above (no
``X-Zerovm-Access``) and ``X-Zerovm-Batch: <number of nodes>``.  Its tar
stream is ``exe`` (first, unless ``X-Zerovm-Program`` names it), ``dev/image``
(the job's image, if any, unless ``X-Zerovm-Image`` names it),
``batch/spec`` (a node spec the entries share: :class:`SharedSpec`), then
the nodes' entries, in order (node ``i`` = 0, 1, ...), in ``batch/entries``
members: each a JSON array of up to :data:`ENTRIES_MAX` entries (the proxy
starts a new member once one holds :data:`ENTRIES_BYTES`; the server reads
none larger than :data:`ENTRIES_LIMIT`), an entry being a :class:`BatchEntry`
as JSON ``{"device", "partition", "object": "/<a>/<c>/<o>", "set": {<the
fields of its spec that differ from the shared one>}}`` (a wildcard's
nodes: their ``name``); each node reads its ``object`` in place
(``"source": "local"``).  The proxy decides which objects the entries name,
as for nodes sent alone.  A server also reads the forms of older proxies: a
``batch/<i>`` member per entry (before ``batch/entries``), and an entry with
``"spec": <node spec>`` carrying its whole spec (before ``batch/spec``).  A
server older than ``batch/entries`` refuses a newer proxy's batch (``400
... unexpected member batch/entries``), which the proxy logs as a warning
before it sends those nodes alone: object servers are upgraded first.
The server admits the batch as one request (``503`` as for a node when it
is full, before ``100 Continue``), reads every entry, then answers ``200``
with ``X-Zerovm-Batch`` and a tar stream of results in the order the nodes
end: for node ``i`` either ``<i>/report.json`` followed by its
``<i>/dev/<device>`` outputs, or ``<i>/error`` whose body is the
status and reason the server would have given that node alone
(``404 ... is not on this server``, ``503 Slot not available ...``,
``507 ...``).  A proxy that reads blocks says so (``X-Zerovm-Reports: 1``
on the request); the server then answers (``X-Zerovm-Reports: 1``) with
``batch/reports`` members instead (:class:`ReportsBlock`: up to
:data:`REPORTS_NODES` nodes' reports as their values, their outputs of at
most 256 KiB in all and their errors in one member), each sent once full
(:data:`REPORTS_BYTES`) or when no other result is ready, so that results
still stream; a node with larger outputs still gets its members of its own
in the same answer.  An older server ignores the header (members per
node), and a proxy that does not send it gets members per node: the proxy
reads both forms, mixed.  A node with no answer in the stream (the server died, the
stream was cut) or an ``error`` a retry may cure is sent again alone, to
the object's other replicas, as any node; a batch refused whole is split
into nodes sent alone the same way.  The proxy sends at most two batches
at a time to a server, each of up to :data:`BATCH_MAX` nodes; the server runs up
to its ``zerovm_maxpool`` nodes of a batch at once.

The node spec is :class:`NodeSpec` (with :class:`DeviceSpec` and
:class:`NodeLimits`), as JSON: ``{"name", "argv", "env", "devices": [{"name",
"access": "r"|"w", "random", "source": "local"|"member"|"link"|null,
"put_size"}], "limits": {"memory", "fuel", "timeout"}, "seed", "epoch",
"outputs", "stream", "program": {"image", "member"}, "local_env"}``; a device name may be
``in/<node>`` or ``out/<node>`` (channel ``/dev/in/<node>`` ...);
``put_size`` (optional) asks for a smaller write quota than the object
server's ``zerovm_maxoutput``; ``"source": "link"`` marks an ``in/<node>``
device that arrives as ``part/`` members; ``program`` names a system image's
file to run instead of an ``exe`` member; ``local_env: true`` asks the object
server to add the ``LOCAL_*`` variables of the local object itself, from the
metadata of the copy it opens (:func:`local_env`; the proxy then made no
HEAD of the object).  Both sides build and read the
types; :meth:`NodeSpec.from_json` raises :class:`SpecError` for anything else.

The report is :class:`NodeReport`, as JSON: ``{"status", "retcode", "message",
"validation": {"state", "violations"}, "etags", "exit_state", "engine",
"engine_reason", "accounting", "stderr"}`` (the sandbox's report, its etags
limited to the declared devices, and the end of the node's stderr;
``engine_reason`` says why ``auto`` ran the node emulated, empty otherwise);
the proxy reads it with :meth:`NodeReport.from_json`, which raises
:class:`ReportError` for anything else (the node is then tried on another
server, as for a broken stream).
"""

from __future__ import annotations

import json
import operator
import os
import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from sys import intern
from urllib.parse import quote

from zvm_core.pool import as_json, one_shot

SPEC = 'node.json'
SPEC_LIMIT = 1 << 20           # largest node spec an object server reads (node.json, batch/spec)
EXE = 'exe'
REPORT = 'report.json'
DEV_PREFIX = 'dev/'
START = 'start'                 # request: the node may start; links follow as they arrive
PART_PREFIX = 'part/'           # part/in/<node>, part/out/<node>: the next bytes of a link
END_PREFIX = 'end/'             # end/in/<node>: that link is complete (its size, decimal)
STREAM = 'X-Zerovm-Stream'      # response header of a streamed node
RUNNING = 'running'             # first member of its response (empty)
BLOCK = tarfile.BLOCKSIZE
CHUNK = 1 << 16
PART = 1 << 20                  # largest part/ member
PAX_LIMIT = 1 << 16             # largest PAX extended header read
TAR_END = bytes(2 * BLOCK)      # the end of a tar stream
EXECUTE = 'X-Zerovm-Execute'
VERSION = '1.0'
ACCESS = 'X-Zerovm-Access'
SETUP = 'X-Zerovm-Setup'        # answer: the object server's images and limits (Config.setup)
ACCOUNT = 'X-Zerocloud-Account'   # request: the account whose share the node takes
PROGRAM = 'X-Zerovm-Program'    # request: the program by SHA-256 (hex) instead of ``exe``
IMAGE = 'X-Zerovm-Image'        # request: the job's image by SHA-256 instead of ``dev/image``
IMAGE_DEVICE = 'image'          # the device of the job's own image
BATCH = 'X-Zerovm-Batch'        # request and answer: a batch of this many nodes
BATCH_PREFIX = 'batch/'         # batch/<i>: one node of a batch (older proxies' form)
BATCH_SPEC = 'batch/spec'       # the node spec a batch's entries share (before them)
BATCH_ENTRIES = 'batch/entries'  # entries (a JSON array), in order, after batch/spec
ENTRIES_MAX = 128               # most entries of one batch/entries member
ENTRIES_BYTES = 1 << 20         # a batch/entries member is closed once it has this many
ENTRIES_LIMIT = 4 << 20         # largest batch/entries member read (an entry: 1 MiB at most)
# how an object server's refusals begin, which the proxy tells apart (proxy/dispatch.py):
TOO_LARGE = 'request larger than zerovm_maxinput'       # 413: the server's limit
UNREADABLE = ('bad execute request', 'bad batch request')  # 400: a request it cannot read
ERROR = 'error'                 # <i>/error: why the server did not run node i
REPORTS = 'batch/reports'       # answer: a block of nodes' reports (and their small outputs)
READS_REPORTS = 'X-Zerovm-Reports'  # request: the proxy reads batch/reports; answer: sent
REPORTS_BYTES = 1 << 18         # a batch/reports block is sent once it holds this many
REPORTS_NODES = 128             # most nodes of one batch/reports block
REPORTS_LIMIT = 4 << 20         # largest batch/reports member read
BATCH_MAX = 512                 # most nodes of one batch
# Object headers a node sees as LOCAL_* variables (and X-Object-Meta-*).
LOCAL_HEADERS = {'content-length': 'LOCAL_CONTENT_LENGTH', 'content-type': 'LOCAL_CONTENT_TYPE',
                 'etag': 'LOCAL_HTTP_ETAG', 'x-timestamp': 'LOCAL_HTTP_X_TIMESTAMP',
                 'content-encoding': 'LOCAL_HTTP_CONTENT_ENCODING'}
_ENV_UNSAFE = re.compile('[^A-Z0-9_]')


_sorted_json = one_shot(json.JSONEncoder(sort_keys=True))     # json.dumps(obj, sort_keys=True)
_decode_json = json.JSONDecoder().decode          # json.loads of a str

Member = tuple[str, int, Iterable[bytes]]


class WireError(ValueError):
    """A stream that does not follow this protocol."""


class TooLarge(WireError):
    """A member larger than the receiver accepts."""


class SpecError(WireError):
    """A node spec that does not follow the contract."""


ACCESSES = ('r', 'w')
SOURCES = (None, 'local', 'member', 'link')


@dataclass(frozen=True)
class DeviceSpec:
    """One device of a node: its channel ``/dev/<name>`` and where its data comes from."""

    name: str
    access: str = 'r'                       # 'r' or 'w'
    random: bool = False                    # seekable
    source: str | None = None               # local (the object here), member, link or None
    put_size: int | None = None             # a smaller write quota than the server's

    @property
    def writable(self) -> bool:
        return self.access == 'w'


@dataclass(frozen=True)
class NodeLimits:
    """What the proxy asks for the node (the object server gives at most its own)."""

    memory: int | None = None
    fuel: int | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class NodeSpec:
    """One node as the object server runs it (the ``node.json`` member)."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    devices: tuple[DeviceSpec, ...] = ()
    limits: NodeLimits = NodeLimits()
    seed: int = 0
    epoch: int = 0
    outputs: bool = True                    # false: a replica that only votes with its etags
    stream: bool = False                    # a connect graph's node: links while it runs
    program: tuple[str, str] | None = None  # (image, member): a system image's file
    engine: str | None = None               # the engine the job asks for (auto, native...)
    local_env: bool = False                 # the server adds the local object's LOCAL_*

    def device(self, name: str) -> DeviceSpec | None:
        return next((d for d in self.devices if d.name == name), None)

    def to_json(self) -> bytes:
        return json.dumps(self.to_obj(), sort_keys=True).encode()

    def to_obj(self) -> dict:
        """The spec as its JSON object (not ``asdict``: its deep copy was a fifth of
        the proxy's time per node of a batch)."""
        obj = {'name': self.name, 'argv': list(self.argv), 'env': dict(self.env),
               'devices': [{k: v for k, v in vars(d).items() if v is not None or k == 'source'}
                           for d in self.devices],
               'limits': {k: v for k, v in vars(self.limits).items() if v is not None},
               'seed': self.seed, 'epoch': self.epoch, 'outputs': self.outputs,
               'stream': self.stream}
        if self.program is not None:
            obj['program'] = {'image': self.program[0], 'member': self.program[1]}
        if self.engine:
            obj['engine'] = self.engine
        if self.local_env:
            obj['local_env'] = self.local_env
        return obj

    @classmethod
    def from_json(cls, data: bytes) -> NodeSpec:
        """Parse and check a spec; SpecError says what is wrong."""
        return cls.from_obj(_json_object(data, 'node spec'))

    @classmethod
    def from_obj(cls, obj: object) -> NodeSpec:
        """Check a spec parsed from JSON; SpecError says what is wrong."""
        try:
            if not isinstance(obj, dict):
                raise SpecError('node spec: not a JSON object')
            program = obj.get('program')
            if program is not None:
                program = (_text(program['image']), _text(program['member']))
            limits = obj.get('limits') or {}
            devices = tuple(_device(d) for d in obj.get('devices') or ())
            argv = obj.get('argv') or [obj.get('name', 'program')]
            env = obj.get('env') or {}
            if not all(isinstance(a, str) for a in argv) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
                raise SpecError('argv and env must be strings')
            return cls(
                name=_text(obj.get('name', 'program')), argv=list(argv), env=dict(env),
                devices=devices, program=program, seed=int(obj.get('seed', 0)),
                epoch=int(obj.get('epoch', 0)), outputs=bool(obj.get('outputs', True)),
                stream=bool(obj.get('stream', False)), engine=obj.get('engine'),
                local_env=bool(obj.get('local_env', False)),
                limits=NodeLimits(
                    memory=None if limits.get('memory') is None else int(limits['memory']),
                    fuel=None if limits.get('fuel') is None else int(limits['fuel']),
                    timeout=None if limits.get('timeout') is None
                    else float(limits['timeout'])))
        except SpecError:
            raise
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError,
                RecursionError) as e:      # Infinity as an int, nesting too deep
            raise SpecError(f'node spec: {type(e).__name__}: {e}') from None


# A spec's fields but its name (the first), in order: the wildcard's nodes of a batch
# differ only by name (``SharedSpec``).
_BUT_NAME = operator.attrgetter(*[f.name for f in fields(NodeSpec)][1:])
# What a wildcard's nodes ``set`` each (``argv[0]`` and ``SCRIPT_NAME`` are a node's
# name), and a spec's other fields, in order: what they share.
_PER_NODE = frozenset(('name', 'argv', 'env'))
# How many times an entry's JSON bytes a node's spec JSON may grow by over the shared
# spec's when it sets ``_PER_NODE`` alone (``SharedSpec.fits``): a string's escapes
# (``\uXXXX``, as a spec writes every character past ASCII) take at most 3 times the
# bytes the entry gave it (UTF-8 or an escape), ``", "`` and ``": "`` twice a ``,`` or
# ``:``, and an argv left empty is the node's name again: 2 x 3.
ENTRY_GROWTH = 6
SPEC_FIXED = operator.attrgetter(*[f.name for f in fields(NodeSpec)
                                   if f.name not in _PER_NODE])


def spec_too_large(size: int) -> str:
    """Why a node whose spec (its ``node.json``) is ``size`` bytes runs nowhere: the
    same words whether it was to go alone or in a batch."""
    return (f'its node spec is {size} bytes; an object server reads {SPEC_LIMIT} at most '
            "(the spec holds the node's argv and env and a device per node it is "
            'connected to): make them smaller')


def _text(value: object, error: type[WireError] = SpecError) -> str:
    if not isinstance(value, str):
        raise error(f'expected a string, not {value!r}')
    return value


def _device(obj: dict) -> DeviceSpec:
    if not isinstance(obj, dict):
        raise SpecError(f'device {obj!r} is not a JSON object')
    dev = DeviceSpec(name=_text(obj['name']), access=obj.get('access', 'r'),
                     random=bool(obj.get('random')), source=obj.get('source'),
                     put_size=None if obj.get('put_size') is None else int(obj['put_size']))
    if dev.access not in ACCESSES or dev.source not in SOURCES:
        raise SpecError(f'device {dev.name}: access {dev.access!r}, source {dev.source!r}')
    return dev


@dataclass(frozen=True)
class BatchEntry:
    """One node of a batch (a ``batch/<i>`` member): where its object is, and its spec."""

    device: str
    partition: int
    object: str                             # /<account>/<container>/<object>
    spec: NodeSpec

    def to_json(self, shared: SharedSpec | None = None) -> bytes:
        """The entry: its whole spec, or with ``shared`` (the batch's ``batch/spec``)
        only what differs from it (``set``)."""
        entry: dict = {'device': self.device, 'partition': self.partition,
                       'object': self.object}
        if shared is None:
            entry['spec'] = self.spec.to_obj()
        else:
            entry['set'] = shared.changes(self.spec)
        return _sorted_json(entry).encode()

    @classmethod
    def from_json(cls, data: bytes, shared: SharedSpec | None = None) -> BatchEntry:
        """Parse and check an entry (its whole ``spec``, or what it ``set``s of the
        ``shared`` one); SpecError says what is wrong."""
        return cls.from_obj(_json_object(data, 'batch entry'), shared)

    @classmethod
    def from_obj(cls, obj: object, shared: SharedSpec | None = None) -> BatchEntry:
        """Check an entry parsed from JSON (:meth:`from_json`)."""
        try:
            if not isinstance(obj, dict):
                raise SpecError('batch entry: not a JSON object')
            path = _text(obj['object'])
            if path.count('/') < 3 or not path.startswith('/'):
                raise SpecError(f'batch entry: object {path!r} is not /<a>/<c>/<o>')
            partition = obj['partition']
            if isinstance(partition, bool) or not isinstance(partition, int) or partition < 0:
                raise SpecError(f'batch entry: partition {partition!r}')
            device = _text(obj['device'])
            if not device or '/' in device or device in ('.', '..'):
                raise SpecError(f'batch entry: device {device!r}')
            if 'spec' in obj:               # a proxy of before batch/spec sends it whole
                return cls(device, partition, path, NodeSpec.from_obj(obj['spec']))
            if shared is None:
                raise SpecError(f'batch entry: no spec, and no {BATCH_SPEC} member before it')
            return _frozen(cls, {'device': device, 'partition': partition, 'object': path,
                                 'spec': shared.with_set(obj.get('set'))})
        except SpecError:
            raise
        except (ValueError, TypeError, KeyError) as e:
            raise SpecError(f'batch entry: {type(e).__name__}: {e}') from None


def entries_member(entries: list[bytes]) -> bytes:
    """A whole ``batch/entries`` member (header, data, padding) of entries' JSON
    (:meth:`BatchEntry.to_json`): one JSON array."""
    return tar_member(BATCH_ENTRIES, b'[' + b','.join(entries) + b']')


def read_entries(data: bytes, shared: SharedSpec | None) -> list[BatchEntry]:
    """The entries of a ``batch/entries`` member, in order; SpecError says what is
    wrong."""
    items = _json_value(data, BATCH_ENTRIES)
    if not isinstance(items, list):
        raise SpecError(f'{BATCH_ENTRIES}: not a JSON array')
    return [BatchEntry.from_obj(item, shared) for item in items]


class SharedSpec:
    """A batch's ``batch/spec`` member: the spec its entries share, checked once (its
    parse and check were a seventh of an object server's time per node)."""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec, self.obj, self.rest = spec, spec.to_obj(), _BUT_NAME(spec)
        self.fields = dict(vars(spec))
        self.fixed = SPEC_FIXED(spec)
        self.size: int | None = None        # of its JSON, once asked (spec_size)
        self.lengths: dict[str, int] = {}   # of its name's, argv's, env's JSON (spec_size)

    @classmethod
    def from_json(cls, data: bytes) -> SharedSpec:
        """Parse and check the member; SpecError says what is wrong."""
        return cls(NodeSpec.from_obj(_json_object(data, BATCH_SPEC)))

    def to_json(self) -> bytes:
        return json.dumps(self.obj, sort_keys=True).encode()

    def spec_size(self, spec: NodeSpec) -> int:
        """``len(spec.to_json())``: an entry's merged spec as a node's ``node.json``,
        what :data:`SPEC_LIMIT` bounds alone or in a batch.  Worked out from this
        spec's size when ``spec`` differs in its name, argv and env only (a
        wildcard's nodes): a value's JSON in a spec's is its JSON alone, and no
        whole spec is made JSON per node."""
        if self.size is None:
            self.size = len(self.to_json())
            self.lengths = {key: len(_sorted_json(self.obj[key])) for key in _PER_NODE}
        if SPEC_FIXED(spec) != self.fixed:
            return len(spec.to_json())
        size = self.size
        for key in _PER_NODE:
            if (value := getattr(spec, key)) != self.obj[key]:
                size += len(_sorted_json(value)) - self.lengths[key]
        return size

    def fits(self, entries_size: int) -> bool:
        """Whether each entry of a ``batch/entries`` member of ``entries_size`` bytes whose
        spec differs from this one in its name, argv and env alone makes a spec within
        :data:`SPEC_LIMIT`, with no :meth:`spec_size` of its own (a third of the CPU of
        reading an entry).  Such a spec's JSON is this one's with those three values
        made JSON again, each at most :data:`ENTRY_GROWTH` times the entry's JSON of it."""
        if self.size is None:
            self.spec_size(self.spec)
        return self.size + ENTRY_GROWTH * entries_size <= SPEC_LIMIT

    def changes(self, spec: NodeSpec) -> dict:
        """An entry's ``set``: the fields of ``spec`` that differ (one the shared spec
        has and ``spec`` leaves out is null: its default)."""
        if _BUT_NAME(spec) == self.rest:        # a wildcard's nodes: their names
            return {} if spec.name == self.spec.name else {'name': spec.name}
        obj = spec.to_obj()
        return {k: obj.get(k) for k in obj.keys() | self.obj.keys()
                if obj.get(k) != self.obj.get(k)}

    def with_set(self, changes: object) -> NodeSpec:
        """The shared spec with an entry's ``set``: a name alone is taken as it is;
        any other field, the whole spec is checked again."""
        if not changes:
            return self.spec
        if not isinstance(changes, dict):
            raise SpecError(f'batch entry: set {changes!r} is not a JSON object')
        if changes.keys() == {'name'}:
            return _frozen(NodeSpec, {**self.fields, 'name': _text(changes['name'])})
        if changes.keys() <= _PER_NODE:
            return self._with_own(changes)
        return NodeSpec.from_obj({**self.obj, **changes})

    def _with_own(self, changes: dict) -> NodeSpec:
        """The shared spec with a wildcard node's own name, argv and env (``argv[0]``
        and ``SCRIPT_NAME`` are its name), checked as ``NodeSpec.from_obj`` checks
        them, and sharing the rest (its limits, devices: a node's checked and
        made again were a tenth of an object server's CPU per node, and its
        limits, a new object, were worked out again per node); any other value
        (not a list, not an object) by ``from_obj``, for its error."""
        name = changes.get('name', self.spec.name)
        argv = changes.get('argv', self.fields['argv']) or [name]
        env = changes.get('env', self.fields['env']) or {}
        if type(argv) is not list or type(env) is not dict:
            return NodeSpec.from_obj({**self.obj, **changes})
        if not all(isinstance(a, str) for a in argv) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise SpecError('argv and env must be strings')
        return _frozen(NodeSpec, {**self.fields, 'name': _text(name), 'argv': list(argv),
                                  'env': dict(env)})


def _frozen(cls: type, values: dict):
    """An instance of the frozen dataclass ``cls`` whose fields are ``values`` (every
    one of them, already checked), without its ``__init__``: a frozen dataclass's
    sets each field through ``object.__setattr__``, and a batch's entries make a
    spec and an entry per node (a third of the time to read an entry)."""
    obj = object.__new__(cls)
    vars(obj).update(values)
    return obj


def _json_value(data: bytes, what: str):
    """``data`` (UTF-8, as every sender encodes it) parsed as JSON; SpecError naming
    ``what`` otherwise.  Decoded here: ``json.loads`` of bytes first guesses their
    encoding in Python (a fifth of the time to read a batch's entry)."""
    try:
        return _decode_json(data.decode('utf-8', 'surrogatepass'))
    except (ValueError, RecursionError) as e:       # bad JSON, nesting too deep
        raise SpecError(f'{what}: {type(e).__name__}: {e}') from None


def _json_object(data: bytes, what: str) -> dict:
    """``data`` parsed as a JSON object (:func:`_json_value`); SpecError otherwise."""
    obj = _json_value(data, what)
    if not isinstance(obj, dict):
        raise SpecError(f'{what}: not a JSON object')
    return obj


def batch_member(index: int, name: str) -> str:
    """The name of node ``index``'s member ``name`` in a batch's answer."""
    return f'{index}/{name}'


def batch_index(member: str) -> tuple[int, str]:
    """(node index, member name) of a member of a batch's answer."""
    index, sep, name = member.partition('/')
    if not sep or not index.isdigit():
        raise WireError(f'unexpected member {member}')
    return int(index), name


def local_env(path: str, headers) -> dict[str, str]:
    """ZeroCloud's ``LOCAL_*`` variables of the object ``/<a>/<c>/<o>`` (``path``,
    unquoted) from its metadata (``headers``: (name, native string) pairs): the
    same for every replica, like the object's data."""
    env = {'LOCAL_OBJECT': 'on',
           'LOCAL_PATH_INFO': path if _QUOTED.fullmatch(path) else quote(path)}
    for name, value in headers:
        var = _LOCAL_VARS.get(name, _UNKNOWN)
        if var is _UNKNOWN:
            var = _local_var(name)
        if var is not None:
            env[var] = value
    return env


_QUOTED = re.compile(r'[A-Za-z0-9_.~/-]*')  # what ``quote`` leaves as it is
_UNKNOWN = object()
_LOCAL_VARS: dict[str, str | None] = {}     # metadata name -> its LOCAL_ variable or None
LOCAL_VARS = 1024                           # names kept (a batch's objects share theirs)


def _local_var(name: str) -> str | None:
    """The ``LOCAL_*`` variable of the metadata ``name`` (None: not one), kept: every
    object of a batch has the same few names, each made lower case, looked up and
    checked for a prefix per node before."""
    key = name.lower()
    var = None
    if key in LOCAL_HEADERS or key.startswith('x-object-meta-'):
        var = LOCAL_HEADERS.get(key) or 'LOCAL_HTTP_' + _ENV_UNSAFE.sub('_', name.upper())
    if len(_LOCAL_VARS) >= LOCAL_VARS:
        _LOCAL_VARS.clear()
    _LOCAL_VARS[name] = var
    return var


class ReportError(WireError):
    """A node report that does not follow the contract."""


def _report_text(value: object) -> str:
    if type(value) is not str:
        raise ReportError(f'expected a string, not {value!r}')
    return value


@dataclass
class NodeReport:
    """How one node ended (the ``report.json`` member): the object server builds it
    from the sandbox's report, the proxy reads it into the job's answer.

    ``accounting`` is the sandbox's accounting as it is (``fuel``, ``syscalls``,
    ``channels`` by path with ``read_bytes``/``write_bytes``...): the proxy passes
    it on to the client unchanged.  ``stderr`` is the end of the node's stderr.
    """

    status: str
    retcode: int | None = None
    message: str = ''
    validation: str | None = None           # ok, cached, failed... (None: not validated)
    violations: list[dict] = field(default_factory=list)     # the validator's findings
    etags: dict[str, str] = field(default_factory=dict)     # /dev/<name> -> etag
    exit_state: str = ''
    engine: str | None = None
    accounting: dict = field(default_factory=dict)
    stderr: str = ''
    engine_reason: str = ''                 # why ``auto`` ran it emulated ('' otherwise)
    host_failure: bool = False              # ``killed`` by its host's trouble (Report's)

    def to_json(self) -> bytes:
        obj = dict(vars(self))              # not asdict: its deep copy cost 0.1 ms a node
        obj['validation'] = {'state': obj['validation'], 'violations': obj.pop('violations')}
        return _sorted_json(obj).encode()

    @classmethod
    def from_json(cls, data: bytes) -> NodeReport:
        """Parse and check a report (a ``report.json`` member); ReportError says what
        is wrong.  Decoded as UTF-8 (``json.loads`` of bytes guesses the encoding in
        Python)."""
        try:
            obj = _decode_json(data.decode('utf-8', 'surrogatepass'))
        except (ValueError, RecursionError) as e:   # bad JSON or UTF-8, nesting too deep
            raise ReportError(f'node report: {type(e).__name__}: {e}') from None
        return cls.from_obj(obj)

    @classmethod
    def from_obj(cls, obj: object) -> NodeReport:
        """Check a report parsed from JSON (:meth:`from_json`, :class:`ReportsBlock`):
        read once per node by the proxy, so checked with the exact types JSON gives
        and made without the dataclass's ``__init__``."""
        if type(obj) is not dict:
            raise ReportError('not a JSON object')
        get = obj.get
        status = get('status')
        if type(status) is not str:
            raise ReportError('node report: no status' if status is None
                              else f'expected a string, not {status!r}')
        retcode = get('retcode')
        if retcode is not None and type(retcode) is not int:
            raise ReportError(f'retcode {retcode!r} is not an integer')
        etags = get('etags', {})
        if type(etags) is not dict:
            raise ReportError('etags must map strings to strings')
        for value in etags.values():        # keys of a JSON object are strings
            if type(value) is not str:
                raise ReportError('etags must map strings to strings')
        accounting = get('accounting', {})
        channels = (accounting.get('channels') or {}) if type(accounting) is dict else None
        if type(channels) is not dict:
            raise ReportError('accounting must be a JSON object, its channels too')
        for channel in channels.values():
            if type(channel) is not dict:
                raise ReportError('accounting must be a JSON object, its channels too')
        validation = get('validation', {})
        if type(validation) is not dict:
            raise ReportError(f'node report: validation {validation!r} is not a JSON object')
        violations = validation.get('violations', [])
        if type(violations) is not list:
            raise ReportError('violations must be a list')
        host_failure = get('host_failure', False)
        if type(host_failure) is not bool:
            raise ReportError(f'host_failure {host_failure!r} is not a boolean')
        state, engine = validation.get('state'), get('engine')
        report = object.__new__(cls)    # set one by one: the class's shared keys, no dict
        report.status = intern(status)     # a few words, shared by the job's reports
        report.retcode = retcode
        report.message = _report_text(get('message', ''))
        report.validation = None if state is None else intern(_report_text(state))
        report.violations = violations
        report.etags = etags
        report.exit_state = intern(_report_text(get('exit_state') or ''))
        report.engine = None if engine is None else intern(_report_text(engine))
        report.accounting = accounting
        report.stderr = _report_text(get('stderr') or '')
        report.engine_reason = _report_text(get('engine_reason') or '')
        report.host_failure = host_failure
        return report

    def channel_bytes(self) -> tuple[int, int]:
        """(``read_bytes``, ``write_bytes``) summed over the node's channels, in one pass
        (counted for every node of a job: its progress, its summary)."""
        read = written = 0
        for channel in (self.accounting.get('channels') or {}).values():
            read += channel.get('read_bytes', 0)
            written += channel.get('write_bytes', 0)
        return read, written


class ReportsBlock:
    """A ``batch/reports`` member: the results of up to :data:`REPORTS_NODES` nodes of
    a batch in one member, instead of a ``<i>/report.json`` and a ``<i>/dev/<device>``
    member per node (each a header to make and read, a padding, a JSON object with
    its keys to encode and decode).

    Its data is a JSON object, a newline, then the nodes' outputs, one after the
    other: ``{"names": {"report": [...], "accounting": [...], "channel": [...]},
    "nodes": [<row>...]}``.  ``names`` say the order in which a row carries a report's
    fields (the sandbox's report as its pool worker sent it, passed on as it is);
    a row is ``[i, [<the report's values>], [[<device>, <size>]...]]`` for node
    ``i``'s report and the outputs that follow in this member (in that order), or
    ``[i, "<status> <reason>"]`` for a node the server did not run (as an
    ``<i>/error`` member).  A report's ``validation`` is ``[state, violations]``,
    its ``accounting`` its values in the order of ``names.accounting``, with
    ``channels`` as ``[[<alias>, <values in the order of names.channel>]...]``.
    The object server fills a block (:meth:`add`, :meth:`error`) and sends it
    (:meth:`member`); the proxy reads it with :func:`read_reports`."""

    def __init__(self, names: dict[str, tuple[str, ...]]) -> None:
        self.prefix = b'{"names":' + as_json(
            {k: list(v) for k, v in names.items()}).encode() + b',"nodes":'
        self.rows: list[bytes] = []         # each row as JSON: the block's size is exact
        self.outputs: list[bytes] = []
        self.size = 0

    def add(self, index: int, values: list, outputs: list[tuple[str, bytes]]) -> None:
        """Node ``index``'s report (its values in the order of ``names.report``) and
        outputs (device, bytes)."""
        self.add_encoded(index, as_json(values).encode(), outputs)

    def add_encoded(self, index: int, values: bytes, outputs: list[tuple[str, bytes]]) -> None:
        """:meth:`add` of values already JSON as ``json.dumps`` writes them (a worker's
        report passed on as it came: ``zerocloud.object.answer``), the same row."""
        self._row(b'[%d, %s, %s]' % (index, values, as_json(
            [[name, len(data)] for name, data in outputs]).encode()))
        for _, data in outputs:
            self.outputs.append(data)
            self.size += len(data)

    def error(self, index: int, text: str) -> None:
        """Node ``index`` was not run here: ``text`` is its status and reason."""
        self._row(as_json([index, text]).encode())

    def _row(self, data: bytes) -> None:
        self.rows.append(data)
        self.size += len(data) + 1

    @property
    def full(self) -> bool:
        return len(self.rows) >= REPORTS_NODES or self.size >= REPORTS_BYTES

    def member(self) -> bytes:
        """The whole member of the nodes added (header, data, padding); the block is
        empty again.  Sent once :attr:`full`, it holds at most :data:`REPORTS_BYTES`
        and one node's results (a report read whole is at most 1 MiB, its outputs in
        a block 256 KiB): less than :data:`REPORTS_LIMIT`."""
        data = b''.join((self.prefix, b'[', b','.join(self.rows), b']}\n', *self.outputs))
        self.rows, self.outputs, self.size = [], [], 0
        return tar_member(REPORTS, data)


def read_reports(data: bytes) -> list[tuple[int, NodeReport | str, dict[str, bytes]]]:
    """The results of a ``batch/reports`` member, in order: (node index, its report and
    its outputs by device) or (index, ``"<status> <reason>"``, {}) for a node not
    run; :class:`ReportError` for anything else (checked before a node is given)."""
    head, newline, rest = data.partition(b'\n')
    if not newline:
        raise ReportError(f'{REPORTS}: no newline after its head')
    try:
        obj = _decode_json(head.decode('utf-8', 'surrogatepass'))
        names, rows = obj['names'], obj['nodes']
        report, accounting, channel = names['report'], names['accounting'], names['channel']
    except (ValueError, RecursionError, TypeError, KeyError) as e:
        raise ReportError(f'{REPORTS}: {type(e).__name__}: {e}') from None
    for what in (report, accounting, channel):
        if type(what) is not list or not all(type(n) is str for n in what):
            raise ReportError(f'{REPORTS}: names must be lists of strings')
    if type(rows) is not list:
        raise ReportError(f'{REPORTS}: nodes must be a list')
    results, pos = [], 0
    for row in rows:
        if type(row) is not list or len(row) not in (2, 3) or type(row[0]) is not int:
            raise ReportError(f'{REPORTS}: bad node {row!r:.100}')
        if len(row) == 2:
            if type(row[1]) is not str:
                raise ReportError(f'{REPORTS}: bad node {row!r:.100}')
            results.append((row[0], row[1], {}))
            continue
        index, values, sizes = row
        if type(values) is not list or len(values) != len(report) or type(sizes) is not list:
            raise ReportError(f'{REPORTS}: node {index}: bad report or outputs')
        outputs = {}
        for item in sizes:
            if (type(item) is not list or len(item) != 2 or type(item[0]) is not str
                    or type(item[1]) is not int or not 0 <= item[1] <= len(rest) - pos):
                raise ReportError(f'{REPORTS}: node {index}: bad output {item!r:.100}')
            outputs[item[0]] = rest[pos:pos + item[1]]
            pos += item[1]
        obj = dict(zip(report, values, strict=True))
        validation = obj.get('validation')
        if type(validation) is list and len(validation) == 2:
            obj['validation'] = {'state': validation[0], 'violations': validation[1]}
        acc = obj.get('accounting')
        if type(acc) is list and len(acc) == len(accounting):
            acc = obj['accounting'] = dict(zip(accounting, acc, strict=True))
            channels = acc.get('channels')
            if type(channels) is list:
                if not all(type(c) is list and len(c) == len(channel) + 1
                           and type(c[0]) is str for c in channels):
                    raise ReportError(f'{REPORTS}: node {index}: bad channels')
                acc['channels'] = {c[0]: dict(zip(channel, c[1:], strict=True))
                                   for c in channels}
        results.append((index, NodeReport.from_obj(obj), outputs))
    if pos != len(rest):
        raise ReportError(f'{REPORTS}: {len(rest) - pos} bytes after the outputs')
    return results


_USTAR_REST = (b'0' + bytes(100) + b'ustar\x0000').ljust(356, b'\0')   # type, link, magic, rest
_USTAR_IDS = b'0000644\x000000000\x000000000\x00'      # mode, uid, gid
_USTAR_MTIME = b'00000000000\x00'
# the checksum of a header but its name and size (its own field counted as spaces)
_USTAR_SUM = sum(_USTAR_IDS) + sum(_USTAR_MTIME) + 8 * 32 + sum(_USTAR_REST)


def member_header(name: str, size: int) -> bytes:
    """A member's header as ``tarfile`` writes it (PAX format, mode 644): built here
    for the plain ASCII names and sizes of the wire (a node of a batch has two or
    three members, made and read per node; the checksum of its fixed fields is
    summed once), through ``tarfile`` otherwise."""
    if not name.isascii() or len(name) > tarfile.LENGTH_NAME or not 0 <= size < 8 ** 11:
        info = tarfile.TarInfo(name)
        info.size, info.mode = size, 0o644
        return info.tobuf(format=tarfile.PAX_FORMAT)
    raw, octal = name.encode(), b'%011o\x00' % size
    return b''.join((raw.ljust(100, b'\0'), _USTAR_IDS, octal, _USTAR_MTIME,
                     b'%06o\x00 ' % (_USTAR_SUM + sum(raw) + sum(octal)), _USTAR_REST))


def _padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def tar_size(members: Iterable[tuple[str, int]]) -> int:
    """Length of the stream :func:`stream_tar` makes of members ``(name, size)``."""
    return sum(len(member_header(name, size)) + size + len(_padding(size))
               for name, size in members) + 2 * BLOCK


def stream_tar(members: Iterable[Member]) -> Iterator[bytes]:
    """Yield a tar stream of ``(name, size, chunks)`` members without buffering them."""
    yield from stream_members(members)
    yield TAR_END


def tar_member(name: str, data: bytes) -> bytes:
    """One whole member of a tar stream (header, data, padding)."""
    return member_header(name, len(data)) + data + _padding(len(data))


def stream_members(members: Iterable[Member]) -> Iterator[bytes]:
    """The members of a tar stream (:func:`stream_tar` without its end)."""
    for name, size, chunks in members:
        yield member_header(name, size)
        sent = 0
        for chunk in chunks:
            sent += len(chunk)
            yield chunk
        if sent != size:
            raise WireError(f'{name}: {sent} bytes sent, {size} declared')
        yield _padding(size)


def bytes_member(name: str, data: bytes) -> Member:
    return name, len(data), [data]


def file_member(name: str, path: str) -> Member:
    def chunks() -> Iterator[bytes]:
        with open(path, 'rb') as f:
            while chunk := f.read(CHUNK):
                yield chunk
    return name, os.path.getsize(path), chunks()


def shared_member(name: str, f, size: int) -> Member:
    """A member read from an open file that other streams read at the same time.

    Each chunk is read at its own offset (seek and read with no green switch
    in between), so concurrent streams of one file do not disturb each other.
    """
    def chunks() -> Iterator[bytes]:
        offset = 0
        while offset < size:
            f.seek(offset)
            chunk = f.read(min(CHUNK, size - offset))
            if not chunk:
                return
            offset += len(chunk)
            yield chunk
    return name, size, chunks()


def read_members(stream, first: str | None) -> Iterator[tuple[str, MemberFile]]:
    """Iterate ``(name, file)`` over a tar stream whose first member must be ``first``
    (None: any).

    Each member is read exactly: its header block(s), then its data in reads
    of what the caller asks, cut at the member's end, then its padding; never
    a byte of the next member.  A stream whose reads return all they ask for
    (a request body) thus never waits for bytes the sender has not sent yet
    (a member is had as soon as all of it arrived), and large members still
    travel in large reads: tarfile's stream reader, with its fixed buffer,
    had to read such a stream :data:`BLOCK` bytes at a time (32 MiB of
    ``part/`` members from an in-memory chunked body: 46 ms, now 4 ms).  A
    member not read to its end is skipped when the next one is asked for.
    Headers are ustar, with PAX ``path`` and ``size`` records (long or
    non-ASCII names), as :func:`member_header` makes them.
    """
    index = 0
    while True:
        header = _next_header(stream)
        if header is None:
            if index == 0:
                raise WireError('bad tar stream: empty')
            return
        name, size, kind = header
        if index == 0 and first is not None and name != first:
            raise WireError(f'stream must start with {first}, found {name}')
        if kind not in tarfile.REGULAR_TYPES or name.startswith('/') or '..' in name.split('/'):
            raise WireError(f'bad member {name!r}')
        member = MemberFile(stream, size)
        yield name, member
        member.skip()
        _read_exact(stream, -size % BLOCK)
        index += 1


def _read_exact(stream, size: int) -> bytes:
    """``size`` bytes of ``stream``; :class:`WireError` if it ends before."""
    parts, left = [], size
    while left > 0:
        chunk = stream.read(left)
        if not chunk:
            raise WireError('bad tar stream: unexpected end of data')
        parts.append(chunk)
        left -= len(chunk)
    return b''.join(parts)


def _next_header(stream) -> tuple[str, int, bytes] | None:
    """The next member's (name, size, type), PAX records applied; None at the end of
    the stream."""
    pax: dict[str, str] = {}
    while True:
        block = stream.read(BLOCK)
        if len(block) < BLOCK:
            block += _read_exact(stream, BLOCK - len(block)) if block else b''
        if not block or block == bytes(BLOCK):       # end of archive (or of the stream)
            if pax:
                raise WireError('bad tar stream: PAX header without a member')
            return None
        name, size, kind = _header(block)
        if kind != tarfile.XHDTYPE:
            break
        if pax or size > PAX_LIMIT:
            raise WireError('bad tar stream: bad PAX header')
        pax = _pax_records(_read_exact(stream, size + -size % BLOCK)[:size])
    if 'path' in pax:
        name = pax['path']
    if 'size' in pax:
        try:
            size = int(pax['size'])
        except ValueError:
            raise WireError('bad tar stream: bad PAX size') from None
    return name, size, kind


_USTAR_MAGIC = b'ustar\x0000'
_PLAIN = (tarfile.REGTYPE, tarfile.XHDTYPE)


def _header(block: bytes) -> tuple[str, int, bytes]:
    """(name, size, type) of one header block.  A ustar header of a file or of PAX
    records without a name prefix (what :func:`member_header` writes; two or three
    a node of a batch, each way) is read here, as ``tarfile`` would: its
    ``TarInfo`` took a tenth of the proxy's time per node; any other by ``tarfile``."""
    kind = block[156:157]
    if kind in _PLAIN and block[257:265] == _USTAR_MAGIC and not block[345]:
        try:
            size = int(block[124:136].split(b'\0', 1)[0].strip() or b'0', 8)
            checksum = int(block[148:156].split(b'\0', 1)[0].strip() or b'0', 8)
        except ValueError:
            checksum = -1
        if checksum == sum(block) - sum(block[148:156]) + 8 * 32:
            return block[:100].split(b'\0', 1)[0].decode('utf-8', 'surrogateescape'), size, kind
    try:
        info = tarfile.TarInfo.frombuf(block, 'utf-8', 'surrogateescape')
    except tarfile.HeaderError as e:
        raise WireError(f'bad tar stream: {e}') from None
    return info.name, info.size, info.type


def _pax_records(data: bytes) -> dict[str, str]:
    """The ``<length> <key>=<value>\\n`` records of a PAX extended header."""
    records, pos = {}, 0
    while pos < len(data):
        length, space, _ = data[pos:pos + 20].partition(b' ')
        if not space or not length.isdigit() or int(length) < len(length) + 3:
            raise WireError('bad tar stream: bad PAX record')
        record = data[pos + len(length) + 1:pos + int(length)]
        key, equals, value = record.partition(b'=')
        if not equals or not record.endswith(b'\n'):
            raise WireError('bad tar stream: bad PAX record')
        records[key.decode('utf-8', 'replace')] = value[:-1].decode('utf-8', 'surrogateescape')
        pos += int(length)
    return records


class MemberFile:
    """The data of one member: a read returns all it asks for up to the member's
    end (as a file's), never more."""

    def __init__(self, stream, size: int) -> None:
        self.stream, self.left = stream, size

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = _read_exact(self.stream, n)
        self.left -= n
        return data

    def skip(self) -> None:
        while self.read(CHUNK):
            pass


class Available:
    """A file whose reads return what has arrived (at least a byte, or the end),
    over an HTTP response (its ``read1``)."""

    def __init__(self, resp) -> None:
        self.resp = resp

    def read(self, n: int = -1) -> bytes:
        return self.resp.read1(n if n >= 0 else CHUNK)


class ReadAhead:
    """A file over an HTTP response whose small reads are served from what has
    arrived (``read1``, up to :data:`CHUNK` bytes at a time): a batch's answer is
    read a few hundred bytes at a time (a header, a report, a padding), and each
    read of the response itself went through its chunked decoding in Python
    (~10 us, six or more per node).  Reads never wait for more than one byte."""

    def __init__(self, resp) -> None:
        self.resp = resp
        self.buf = b''
        self.pos = 0

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = CHUNK
        if self.pos >= len(self.buf):
            if n >= CHUNK:                  # a large read: straight from the response
                return self.resp.read1(n)
            self.buf, self.pos = self.resp.read1(CHUNK), 0
        data = self.buf[self.pos:self.pos + n]
        self.pos += len(data)
        return data


def copy_limited(src, dst, limit: int, digest=None) -> int:
    """Copy ``src`` to ``dst`` (feeding ``digest`` if given); :class:`TooLarge`
    past ``limit`` bytes."""
    total = 0
    while chunk := src.read(CHUNK):
        total += len(chunk)
        if total > limit:
            raise TooLarge(f'member larger than {limit} bytes')
        dst.write(chunk)
        if digest is not None:
            digest.update(chunk)
    return total


def too_large(limit: int) -> str:
    """An object server's 413 body (and :class:`TooLarge`'s message) past its
    ``zerovm_maxinput`` of ``limit`` bytes."""
    return f'{TOO_LARGE} ({limit} bytes)'


_TOO_LARGE = re.compile(re.escape(TOO_LARGE) + r' \((\d+) bytes\)')


def too_large_limit(reason: str) -> int | None:
    """The ``zerovm_maxinput`` an object server's 413 (:func:`too_large`) names, or None
    for another answer."""
    found = _TOO_LARGE.match(reason)
    return int(found[1]) if found else None
