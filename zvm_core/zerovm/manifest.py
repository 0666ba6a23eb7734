"""ZeroVM manifests, ``Version = 20130611``: text <-> model, with ZeroVM's errors.

The grammar is ZeroVM's (``src/main/manifest.c``): one ``Key = Value`` per
line; a line that does not split on ``=`` into exactly two parts, and an
unknown key, are ignored (so ``=====`` banners are comments); keys are case
sensitive; numbers are C integers (``10``, ``010`` octal, ``0x10``), and an
empty number is 0.  ``Channel`` has eight comma-separated fields, the first
one or more ``;``-separated sources.  Every error carries ZeroVM's exit code
(``EFAULT`` for the grammar, ``ENOMEM`` for the memory size, ``ENFILE`` for
too many channels) and, for the grammar, the line (``MANIFEST 3: ...``).

:func:`parse` checks the grammar only; :meth:`Manifest.check` checks the
values (sizes, ranges, the standard channels, duplicates) before anything
is opened.  :meth:`Manifest.from_dict` builds the same model from Python
(what the object server generates), and :meth:`Manifest.to_text` prints it
back in a form :func:`parse` reads to an equal model.
"""

from __future__ import annotations

import difflib
import errno
import ipaddress
import re
from dataclasses import asdict, dataclass, field, fields

VERSION = '20130611'
SIZE_LIMIT = 0x80000              # bytes ZeroVM reads of a manifest
LINES_LIMIT = 0x2000
SOURCES_LIMIT = 0x10
MAX_CHANNELS = 10914
MIN_CHANNELS = 3
MAX_MEMORY = 1 << 32
MAX_INT32 = (1 << 31) - 1
UNIX_PATH_MAX = 108
PROTOCOLS = ('tcp', 'udp', 'ipc', 'inproc', 'pgm', 'epgm')
STANDARD = ('/dev/stdin', '/dev/stdout', '/dev/stderr')
# keyword -> (obligatory, singleton), in ZeroVM's order: it decides which
# missing or duplicated keyword is reported first (the last one listed)
KEYWORDS = {'Channel': (True, False), 'Version': (True, True), 'Program': (True, True),
            'Memory': (True, True), 'Timeout': (True, True), 'NameServer': (False, True),
            'Node': (False, True), 'Job': (False, True), 'Etag': (False, True)}
_WS = ' \t\n\v\f\r'                # what g_strstrip strips
_INT = re.compile(r'[+-]?(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)')


class ManifestError(ValueError):
    """A manifest ZeroVM would refuse; ``errno`` is its exit code."""

    def __init__(self, code: int, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.errno, self.message, self.line = code, message, line

    def __str__(self) -> str:
        return self.message if self.line is None else f'MANIFEST {self.line}: {self.message}'


def _fail(message: str, code: int = errno.EFAULT):
    raise ManifestError(code, message)


def to_int(text: str) -> int:
    """``g_ascii_strtoll(text, &end, 0)`` that must consume everything (ZeroVM's ToInt)."""
    text = text.strip(_WS)
    m = _INT.match(text)
    if m is None:
        if text:
            _fail(f"invalid numeric value '{text}'")
        return 0                            # strtoll of "" is 0 and leaves nothing behind
    if m.end() != len(text):
        _fail(f"invalid numeric value '{text[m.end():]}'")
    body = m.group(1)
    if body[1:2] in ('x', 'X'):
        value = int(body[2:], 16)
    else:
        value = int(body, 8 if body[0] == '0' else 10)
    value = -value if text[0] == '-' else value
    if not -(1 << 63) <= value < 1 << 63:
        _fail(f"invalid numeric value '{text}'")
    return value


def network(uri: str) -> bool:
    """Whether a channel source is a network endpoint (``proto:host:port``)."""
    return uri.split(':', 1)[0].strip(_WS).lower() in PROTOCOLS


def check_source(uri: str) -> None:
    """A channel source as ZeroVM's ParseName accepts it: an absolute path or a network url."""
    tokens = uri.strip(_WS).split(':')
    if tokens[0].strip(_WS).lower() not in PROTOCOLS:
        if len(tokens) > 1:
            _fail('invalid channel name')
        if not uri.startswith('/'):
            _fail('only absolute path channels are allowed')
        return
    if len(tokens) != 3:
        _fail('invalid channel url')
    host = tokens[1]
    if '.' in host:
        try:
            ipaddress.IPv4Address(host.strip(_WS))
        except ValueError:
            _fail('malformed ip token')
    else:
        to_int(host)
    to_int(tokens[2])


@dataclass(frozen=True)
class ChannelDecl:
    """One ``Channel`` line: sources, alias, access type, etag switch and four limits."""

    sources: tuple[str, ...]
    alias: str
    type: int = 0
    etag: bool = False
    gets: int = 0
    get_size: int = 0
    puts: int = 0
    put_size: int = 0

    @property
    def readable(self) -> bool:
        return self.gets > 0 and self.get_size > 0

    @property
    def writable(self) -> bool:
        return self.puts > 0 and self.put_size > 0

    @property
    def network(self) -> bool:
        return any(network(s) for s in self.sources)

    def to_text(self) -> str:
        for part in (self.alias, *self.sources):
            if any(c in part for c in '=,;\n'):
                _fail(f'channel {self.alias!r}: {part!r} cannot be written in a manifest')
        return (f'Channel = {";".join(self.sources)}, {self.alias}, {self.type}, '
                f'{int(self.etag)}, {self.gets}, {self.get_size}, {self.puts}, {self.put_size}')


@dataclass
class Manifest:
    """A ZeroVM instance: program, memory, timeout, channels and the cluster keys."""

    program: str
    memory: int
    timeout: int
    channels: list[ChannelDecl] = field(default_factory=list)
    memory_etag: bool = False
    name_server: str | None = None
    node: int | None = None
    job: str | None = None
    etag: str | None = None
    version: str = VERSION

    def check(self) -> None:
        """The value checks ZeroVM makes while it sets up, made before anything is opened."""
        if self.name_server is not None and self.node is None:
            _fail('Node must be specified when NameServer is')
        if self.node is not None and not 1 <= self.node <= MAX_INT32:
            _fail(f'invalid node id {self.node}')
        if len(self.channels) > MAX_CHANNELS:
            _fail('channels number reached maximum', errno.ENFILE)
        aliases = {c.alias for c in self.channels}
        missing = [alias for alias in STANDARD if alias not in aliases]
        if len(self.channels) < MIN_CHANNELS:
            _fail(f'not enough channels: {len(self.channels)}{_needs(missing)}')
        seen = set()
        for ch in self.channels:
            if ch.alias in seen:
                _fail(f'{ch.alias} is already allocated')
            seen.add(ch.alias)
            if not 0 <= ch.type <= 3:
                _fail(f'{ch.alias} has invalid type {ch.type}')
        if missing:
            _fail(f'missing standard channels in manifest{_needs(missing)}')
        if not 0 < self.memory <= MAX_MEMORY:
            _fail('invalid memory size', errno.ENOMEM)
        if not 1 <= self.timeout <= MAX_INT32:
            _fail(f'invalid timeout {self.timeout}')

    def to_text(self) -> str:
        """The manifest as ZeroVM reads it (ManifestError for values it could not hold)."""
        lines = [f'Version = {self.version}', f'Program = {self.program}',
                 f'Memory = {self.memory}, {int(self.memory_etag)}',
                 f'Timeout = {self.timeout}']
        for key, value in (('NameServer', self.name_server), ('Node', self.node),
                           ('Job', self.job), ('Etag', self.etag)):
            if value is not None:
                lines.append(f'{key} = {value}')
        for line in lines:
            value = line.partition(' = ')[2]
            if '=' in value or '\n' in value or value != value.strip(_WS):
                _fail(f'{line.partition(" = ")[0]} {value!r} cannot be written in a manifest')
        lines += [ch.to_text() for ch in self.channels]
        return '\n'.join(lines) + '\n'

    def to_dict(self) -> dict:
        d = asdict(self)
        for ch in d['channels']:
            ch['sources'] = list(ch['sources'])
        return d

    @classmethod
    def from_dict(cls, data: dict) -> Manifest:
        """The model from plain values (as :meth:`to_dict` gives), checked like parsed text."""
        data = dict(data)
        channels = data.pop('channels', [])
        m = _build(cls, data, 'manifest')
        if not isinstance(channels, list):
            _fail('manifest: channels must be a list')
        for item in channels:
            if not isinstance(item, dict):
                _fail('manifest: each channel must be a dict')
            item = dict(item)
            sources = item.get('sources')
            item['sources'] = tuple(sources.split(';') if isinstance(sources, str) else
                                    sources if isinstance(sources, list | tuple) else [None])
            m.channels.append(_build(ChannelDecl, item, f'channel {item.get("alias")!r}'))
        if m.version != VERSION:
            _fail('invalid manifest version')
        if m.name_server is not None:
            _check_name_server(m.name_server)
        if m.job is not None and len(m.job) > UNIX_PATH_MAX:
            _fail('too long Job name')
        return m


# the types from_dict accepts for each field (None: the field may be unset)
_KINDS = {
    'Manifest': {'program': (str,), 'memory': (int,), 'timeout': (int,),
                 'memory_etag': (bool,), 'name_server': (str, None), 'node': (int, None),
                 'job': (str, None), 'etag': (str, None), 'version': (str,)},
    'ChannelDecl': {'alias': (str,), 'type': (int,), 'etag': (bool,), 'gets': (int,),
                    'get_size': (int,), 'puts': (int,), 'put_size': (int,)},
}


def _kind_ok(value, kinds: tuple) -> bool:
    if value is None or isinstance(value, bool):
        return (None if value is None else bool) in kinds
    return any(k is not None and k is not bool and isinstance(value, k) for k in kinds)


def _build(cls, data: dict, what: str):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        _fail(f'{what}: unknown field(s) {", ".join(sorted(unknown))}')
    for name, value in data.items():
        ok = (bool(value) and all(isinstance(s, str) for s in value) if name == 'sources'
              else _kind_ok(value, _KINDS[cls.__name__][name]))
        if not ok:
            _fail(f'{what}: bad {name} {value!r}')
    try:
        obj = cls(**data)
    except TypeError as e:
        _fail(f'{what}: {e}')
    if cls is ChannelDecl:
        if len(obj.sources) > SOURCES_LIMIT:
            _fail(f'{obj.alias}: more than {SOURCES_LIMIT} sources')
        for s in obj.sources:
            check_source(s)
        if min(obj.gets, obj.get_size, obj.puts, obj.put_size) < 0:
            _fail(f'negative limits for {obj.alias}')
    return obj


def _check_name_server(value: str) -> None:
    check_source(value)
    if value.strip(_WS).split(':', 1)[0].lower() != 'udp':
        _fail('the name server must be udp:<host>:<port>')


def _channel(value: str) -> ChannelDecl:
    tokens = [t.strip(_WS) for t in value.split(',')]
    if len(tokens) != 8:
        _fail('invalid channel tokens number')
    sources = tuple(s.strip(_WS) for s in tokens[0].split(';'))
    if len(sources) > SOURCES_LIMIT:
        _fail(f'{tokens[1]}: more than {SOURCES_LIMIT} sources')
    for s in sources:
        check_source(s)
    ctype, tag = to_int(tokens[2]), to_int(tokens[3])
    if tag not in (0, 1):
        _fail('invalid channel numeric token')
    limits = [to_int(t) for t in tokens[4:]]
    if min(limits) < 0:
        _fail(f'negative limits for {tokens[1]}')
    return ChannelDecl(sources, tokens[1], ctype, bool(tag), *limits)


def parse(text: str | bytes) -> Manifest:
    """The model of a manifest's text; ManifestError (with ZeroVM's code) if it is invalid."""
    if isinstance(text, bytes):
        if len(text) > SIZE_LIMIT:
            _fail(f'manifest is {len(text)} bytes; ZeroVM reads only {SIZE_LIMIT}')
        text = text.decode('utf-8', 'surrogateescape')
    elif len(text.encode('utf-8', 'surrogateescape')) > SIZE_LIMIT:
        _fail(f'manifest is larger than {SIZE_LIMIT} bytes')
    lines = text.split('\n')
    if lines[-1] == '':
        lines.pop()
    if len(lines) > LINES_LIMIT:
        _fail(f'manifest has {len(lines)} lines; the limit is {LINES_LIMIT}')
    counts = dict.fromkeys(KEYWORDS, 0)
    values: dict = {'channels': []}
    ignored: dict[str, int] = {}             # unknown key -> its first line, for hints
    for number, line in enumerate(lines, 1):
        tokens = line.split('=')
        key = tokens[0].strip(_WS)
        if len(tokens) != 2 or key not in KEYWORDS:
            if len(tokens) == 2:
                ignored.setdefault(key, number)
            continue                         # not a key = value line: ignored, as ZeroVM does
        counts[key] += 1
        value = tokens[1]
        try:
            _keyword(key, value, values)
        except ManifestError as e:
            raise ManifestError(e.errno, e.message, number) from None
    for key in reversed(list(KEYWORDS)[1:]):  # ZeroVM checks from the last keyword back
        obligatory, singleton = KEYWORDS[key]
        if obligatory and not counts[key]:
            _fail(f'{key} not specified{_misspelt(key, ignored)}')
        if singleton and counts[key] > 1:
            _fail(f'duplicate {key} keyword')
    return Manifest(**values)


def _needs(missing: list[str]) -> str:
    """What a manifest without all standard channels lacks, said after ZeroVM's words."""
    return f' (a manifest needs {", ".join(STANDARD)}; missing {", ".join(missing)})'


def _misspelt(keyword: str, ignored: dict[str, int]) -> str:
    """`` (line 2 has "Programm", ignored: ...)`` when an unknown key looks like ``keyword``:
    ZeroVM ignores unknown keys, so its error names only the keyword missing."""
    by_case = {k.lower(): k for k in ignored}
    close = difflib.get_close_matches(keyword.lower(), list(by_case), n=1, cutoff=0.7)
    if not close:
        return ''
    key = by_case[close[0]]
    return (f' (line {ignored[key]} has "{key}", not a keyword, so it was ignored: '
            f'keywords are spelt {keyword}, case-sensitive)')


def _keyword(key: str, value: str, values: dict) -> None:
    stripped = value.strip(_WS)
    if key == 'Channel':
        values['channels'].append(_channel(value))
    elif key == 'Version':
        if stripped != VERSION:
            _fail('invalid manifest version')
        values['version'] = stripped
    elif key == 'Program':
        values['program'] = stripped
    elif key == 'Memory':
        tokens = value.split(',', 1)
        if len(tokens) != 2:
            _fail('invalid memory token')
        values['memory'], tag = to_int(tokens[0]), to_int(tokens[1])
        if tag not in (0, 1):
            _fail('invalid memory etag token')
        values['memory_etag'] = bool(tag)
    elif key == 'Timeout':
        values['timeout'] = to_int(value)
    elif key == 'NameServer':
        _check_name_server(stripped)
        values['name_server'] = stripped
    elif key == 'Node':
        values['node'] = to_int(value)
    elif key == 'Job':
        if len(value) > UNIX_PATH_MAX:
            _fail('too long Job name')
        values['job'] = stripped
    else:
        values['etag'] = stripped


def load(path: str) -> Manifest:
    """Read and parse a manifest file (ENOENT if it cannot be opened)."""
    try:
        with open(path, 'rb') as f:
            data = f.read(SIZE_LIMIT + 1)
    except OSError as e:
        raise ManifestError(errno.ENOENT, f'manifest open error: {e.strerror}') from None
    return parse(data)
