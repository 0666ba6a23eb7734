"""Job descriptions: ZeroCloud's JSON job format, validated and expanded into nodes.

A job is a JSON list of node groups::

    [{"name": "sort",                          # required; unique in the job
      "exec": {"path": "swift://~/bin/sort",   # required: swift:// object,
                                               #   file://<image>:<path> or a
                                               #   path inside the job's image
               "name": "sort",                 # argv[0]; default: the node name
                                               #   (file://<image>:<path>: the
                                               #   file's name, e.g. python3)
               "args": "-n -k 2",              # split like a shell would
               "env": {"LANG": "C"},
               "ok_exit": [0, 1]},             # exit codes that are success (default 0)
      "devices": [                             # deprecated alias: "file_list"
          {"name": "stdin",                    # deprecated alias: "device"
           "path": "swift://~/logs/log_*.txt"},
          {"name": "stdout",
           "path": "swift://~/sorted/log_*.txt",
           "content_type": "text/plain",       # written objects only
           "meta": {"Source": "sort"},         # -> X-Object-Meta-Source
           "min_size": 1,                      # smaller output is dropped
           "store": "always"},                 # even when the job fails (default:
                                               #   "success", only when every node did)
          {"name": "stderr"}],                 # no path: part of the response
      "count": 1,                              # nodes, unless a read path has "*"
      "connect": ["merge"],                    # groups this one writes to
      "replicate": 1,                          # 1-3 runs compared by etag
      "attach": "stdin",                       # device whose object places it
      "location": "rack-a",                    # nodes sharing it run together
      "engine": "emulated"}]                   # auto (default), native or emulated

Devices: ``stdin``, ``input``, ``script`` and ``image`` are read; ``stdout``,
``stderr`` and ``output`` are written; system images configured by the
operator (``python3.11``...) are read-only and take no path.  One of
``stdin``, ``input`` or ``script`` may go without a path: it receives the
request's payload; ``image`` without a path is the image sent with the
request; a written device without a path becomes part of the response.
``mode`` (``file``, ``char``, ``pipe`` or ``block``) changes what ``fstat``
shows the program.  ``exec.args`` may also be a list of strings.

Paths are ``swift://account/container/object`` with URL-encoded UTF-8 names;
``~`` or ``.`` as the account means the caller's account.  A read device may
name a container (its listing database) instead of an object.

``*`` in the container and/or object of a read path expands to one node per
matching object (pseudo-directories excluded; one such path per group),
named ``<name>-1`` ... ``<name>-N`` in listing order.  Each ``*`` of a
written path is replaced by the next text the read wildcards matched (with
the paths above, ``logs/log_7.txt`` is written as ``sorted/log_7.txt``), or
by the node name when nothing was matched.  ``count: N`` also makes nodes
``<name>-1`` ... ``<name>-N``; a group of one node keeps its name.  No two
nodes may write the same object.

``connect: ["B"]`` on group A lets every node of A write to every node of B:
``A-3`` writes ``/dev/out/B-1``, which ``B-1`` reads as ``/dev/in/A-3``.  A
group of several nodes may connect to itself (a node never to itself).

A node runs next to the object of its last read device with a path (then
``image``, ``script``, the first written device), or of the device named
by ``attach`` (which must have a path, or be a payload device the request
gives its object to); without one it runs on any server.

Every invalid job raises :class:`JobError`, whose message (the body of the
400 answer) says what is wrong and where.  A key the format does not know
(``"devises"``, ``"pth"``) is refused with the valid keys and the closest
one, rather than ignored: a typo must not turn into an empty run.
"""

from __future__ import annotations

import collections
import difflib
import functools
import itertools
import json
import posixpath
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from urllib.parse import quote, unquote

from zvm_core.engines import CHOICES
from zvm_core.limits import bad_env_name

READABLE, WRITABLE, RANDOM = 1, 2, 4
DEVICES = {
    'stdin': READABLE,
    'stdout': WRITABLE,
    'stderr': WRITABLE,
    'input': RANDOM | READABLE,
    'output': RANDOM | WRITABLE,
    'image': RANDOM | READABLE,
    'script': RANDOM | READABLE,
}
SYSTEM_IMAGE = RANDOM | READABLE
# Every key ZeroCloud's job format knows (doc/Servlets.md, configparser.py),
# deprecated spellings included, and ours (exec.ok_exit, a device's store, a
# group's engine); any other key is a typo, refused with a 400.
GROUP_KEYS = ('name', 'exec', 'devices', 'file_list', 'count', 'connect', 'replicate',
              'attach', 'location', 'engine')
EXEC_KEYS = ('path', 'name', 'args', 'env', 'ok_exit')
DEVICE_KEYS = ('name', 'device', 'path', 'content_type', 'meta', 'mode', 'min_size', 'store')
PAYLOAD_DEVICES = ('stdin', 'input', 'script')
MODES = ('file', 'char', 'pipe', 'block')
STORE = ('success', 'always')
MAX_REPLICATE = 3
DEFAULT_ATTACH = 'default'
HOME_ACCOUNTS = ('~', '.')
SWIFT = 'swift://'
FILE = 'file://'
USER_IMAGE = 'image'
# The program that runs a script of each language, in the system image of its name:
# what zc runs a .py or .lua with, and what a script's #! line says
SCRIPT_PROGRAMS = {'python': 'file://python3:python3', 'lua': 'file://lua:lua'}

# Characters that never belong in names, paths or values: they would end up in
# manifests, NVRAM and response headers (ZeroCloud's has_control_chars).
_ILLEGAL = re.compile('[\x00-\x1f\x7f\ud800-\udfff\ufffe\uffff]')
# A node name is a channel name (/dev/in/<name>) and an item of comma-joined
# X-Nexe-* headers.
_NAME_FORBIDDEN = re.compile(r'[\s/,]')
_HEADER_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


@functools.cache
def _meta_limits() -> tuple[int, int, int, int]:
    """Swift's metadata bounds (swift.conf), checked here so that storing an output
    never fails on them after the job ran.  Imported when first needed: Swift's
    constraints import eventlet, 0.4 s of every ``zc`` command that never needs it."""
    from swift.common import constraints
    return (constraints.MAX_META_NAME_LENGTH, constraints.MAX_META_VALUE_LENGTH,
            constraints.MAX_META_COUNT, constraints.MAX_META_OVERALL_SIZE)


@functools.cache
def _name_limits() -> tuple[int, int]:
    """Swift's longest container and object names (swift.conf), checked for a written
    path before the job runs: Swift refused one only when the output was stored, the
    job's work lost.  Imported when first needed, as ``_meta_limits``."""
    from swift.common import constraints
    return constraints.MAX_CONTAINER_NAME_LENGTH, constraints.MAX_OBJECT_NAME_LENGTH


def _too_long(path: SwiftPath, wildcard: bool = False) -> str | None:
    """Why Swift would refuse to store an object at ``path`` for its names' lengths
    (UTF-8 bytes, as Swift counts them), else None.  ``wildcard``: each ``*`` is yet
    to be filled with text, at least none: a name already too long without them is."""
    max_container, max_object = _name_limits()
    for what, name, limit in (('container', path.container, max_container),
                              ('object', path.obj or '', max_object)):
        size = len(name.encode('utf-8')) - (name.count('*') if wildcard else 0)
        if size > limit:
            least = 'at least ' if wildcard and '*' in name else ''
            return (f'{what} name is {least}{size} bytes, Swift allows at most {limit} '
                    f'(max_{what}_name_length in swift.conf)')
    return None


def _shown(path: SwiftPath) -> str:
    """A path for a message, its head only when it is long (a name too long for Swift
    is over a kilobyte)."""
    text = str(path)
    return text if len(text) <= 100 else text[:100] + '...'


class JobError(ValueError):
    """An invalid job; the message is the 400 body.

    Control characters are escaped, so the message is also safe in a header.
    """

    def __init__(self, message: str):
        super().__init__(_ILLEGAL.sub(lambda m: ascii(m.group())[1:-1], message))


class JobTooLarge(JobError):
    """A job description over the size limit (ZeroCloud answered 413)."""


class NoData(JobError):
    """The data a job reads is not there: a wildcard that matches no object, or a
    container that does not exist (a 404, like a missing object; not a bad job)."""


@dataclass(frozen=True)
class SwiftPath:
    """A Swift object, or a container when ``obj`` is None; names are decoded."""

    account: str
    container: str
    obj: str | None = None

    def __str__(self) -> str:
        return SWIFT + quote(self.path[1:], safe="/*!$&'()+,;=:@")

    @property
    def path(self) -> str:
        """``/a/c/o``, unquoted as in a WSGI PATH_INFO (prefix ``/v1`` for Swift)."""
        names = (self.account, self.container) + ((self.obj,) if self.obj is not None else ())
        return '/' + '/'.join(names)

    @property
    def wildcard(self) -> bool:
        return '*' in self.container or '*' in (self.obj or '')


def is_swift_url(url: object) -> bool:
    """Is ``url`` a ``swift://`` URL?  Its scheme in any case: schemes are case-insensitive
    (RFC 3986), and ``SWIFT://~/c/o`` was refused as no URL at all."""
    return isinstance(url, str) and url[:len(SWIFT)].lower() == SWIFT


def parse_location(url: str, account: str, *, where: str | None = None) -> SwiftPath:
    """Parse ``swift://account/container[/object]``; ``~`` or ``.`` is ``account``.

    ``where`` (a group name) is added to error messages.
    """
    def fail(reason: str) -> JobError:
        place = f' in {where}' if where else ''
        return JobError(f'Invalid path {url}{place}: {reason}')

    if not is_swift_url(url):
        raise fail(f'expected swift://account/container[/object]{scheme_hint(url)}')
    acc, _, rest = url[len(SWIFT):].partition('/')
    cont, _, obj = rest.partition('/')
    try:
        acc, cont, obj = (unquote(part, errors='strict') for part in (acc, cont, obj))
    except UnicodeDecodeError:
        raise fail('names must be URL-encoded UTF-8') from None
    if '*' in acc:
        raise fail('wildcards are allowed in container and object names only')
    if acc in HOME_ACCOUNTS:
        acc = account
    if not acc or not cont:
        raise fail('expected swift://account/container[/object]')
    if '/' in acc or '/' in cont:
        raise fail('account and container names cannot contain "/"')
    if _ILLEGAL.search(acc + cont + obj):
        raise fail('control characters are not allowed')
    return SwiftPath(acc, cont, obj or None)


_HTTP_OBJECT = re.compile(r'(?:https?://[^/]*)?/v1/(.*)')


def scheme_hint(url: object) -> str:
    """`` (did you mean swift://~/c/o?)`` for an object's path written without its
    scheme: ``c/o`` or ``~/c/o`` (in your account), ``/a/c/o`` (Swift's), ``swift:/~/c/o``, or
    its HTTP URL (``http://host/v1/a/c/o``, ``/v1/a/c/o``: copied from curl or
    ``swift stat``); else ''."""
    if not isinstance(url, str):
        return ''
    http = _HTTP_OBJECT.fullmatch(url)
    if http:
        rest = http[1]
    elif '://' in url or '//' in url or url.startswith(('./', '../')):   # ./x: a local file
        return ''
    elif url.startswith('swift:/'):
        rest = url[len('swift:/'):]
    elif url.startswith('/'):
        rest = url[1:]
    else:
        rest = url if url.startswith('~/') else '~/' + url
    return f' (did you mean swift://{rest}?)' if rest.count('/') >= 2 else ''


@functools.lru_cache(maxsize=64)
def _program_object(path: str) -> SwiftPath:
    """A program's object, parsed once: the nodes of a group share their program (its
    location was parsed twice per node of a 10,000-node job: 4 % of the proxy's CPU)."""
    return parse_location(path, '')


@dataclass
class Device:
    """A channel of a node; ``path`` None means payload (read) or response (write)."""

    name: str
    path: SwiftPath | None = None
    content_type: str | None = None
    meta: dict[str, str] = field(default_factory=dict)
    mode: str | None = None
    min_size: int = 0
    store: str = 'success'            # or 'always': stored even when the job failed

    @property
    def access(self) -> int:
        """Access flags; names outside DEVICES are system images (read-only)."""
        return DEVICES.get(self.name, SYSTEM_IMAGE)

    @property
    def readable(self) -> bool:         # DEVICES looked up here: ~20 calls a node
        return bool(DEVICES.get(self.name, SYSTEM_IMAGE) & READABLE)

    @property
    def writable(self) -> bool:
        return bool(DEVICES.get(self.name, SYSTEM_IMAGE) & WRITABLE)

    @property
    def random(self) -> bool:
        return bool(DEVICES.get(self.name, SYSTEM_IMAGE) & RANDOM)

    @property
    def system_image(self) -> bool:
        return self.name not in DEVICES


@dataclass
class Exec:
    """The program: ``path`` is a ``swift://`` URL, ``file://<image>:<path>`` or a
    path inside the job's image."""

    path: str
    name: str | None = None
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ok_exit: tuple[int, ...] = (0,)   # exit codes that count as success

    @property
    def swift_path(self) -> SwiftPath | None:
        """The program's object, which the caller must be allowed to read."""
        if not self.path.startswith(SWIFT):
            return None
        return _program_object(self.path)

    @property
    def image_member(self) -> tuple[str | None, str] | None:
        """``(image, member)`` for a program inside a tar image, else None.

        ``image`` None: look in the job's image, then in the system images in
        configuration order (ZeroCloud's rule for relative paths).
        """
        if self.path.startswith(SWIFT):
            return None
        if self.path.startswith(FILE):
            image, sep, member = self.path[len(FILE):].partition(':')
            return (image, member) if sep else (USER_IMAGE, image)
        return None, self.path


@dataclass
class Group:
    """One entry of the job description, validated."""

    name: str
    exec: Exec
    devices: list[Device] = field(default_factory=list)
    count: int = 1
    connect: list[str] = field(default_factory=list)
    replicate: int = 1
    attach: str | None = None
    location: str | None = None
    engine: str | None = None

    @property
    def wildcard_device(self) -> Device | None:
        """The read device whose wildcard decides the nodes (at most one)."""
        return next((d for d in self.devices if d.readable and d.path and d.path.wildcard),
                    None)


@dataclass
class Node:
    """One instance of a group: what runs, on which channels, wired to which peers."""

    name: str
    group: str
    index: int
    id: int
    exec: Exec
    devices: list[Device]
    reads_from: list[str] = field(default_factory=list)
    writes_to: list[str] = field(default_factory=list)
    replicate: int = 1
    attach: Device | None = None
    location: str | None = None
    engine: str | None = None
    listed: bool = False            # its attached object came from a container listing

    @property
    def argv(self) -> list[str]:
        """``exec.name`` or the node name, then the arguments.  A program of a system
        image (``file://python3:python3``) is named as a shell would name it, not
        after the node: every node of the group then runs one command line, and
        warm workers resume it from one start-up snapshot
        (``zvm_core.engines.emulated.snapshot``)."""
        default = self.name
        if self.exec.path.startswith(FILE):
            image, member = self.exec.image_member
            if image != USER_IMAGE:
                default = member.rstrip('/').rpartition('/')[2]
        return [self.exec.name or default, *self.exec.args]


def _show(value: object) -> str:
    """A JSON value as the user wrote it, without echoing whole structures."""
    if isinstance(value, dict):
        return 'an object'
    if isinstance(value, list):
        return 'a list'
    return json.dumps(value)


def _invalid(what: str, where: str, reason: str) -> JobError:
    return JobError(f'Invalid {what} in {where}: {reason}')


def _unknown(what: str, word: object, where: str, valid: list[str]) -> JobError:
    """``Unknown key "pth" in ..., did you mean "path"? Valid keys: ...``."""
    close = difflib.get_close_matches(str(word), valid, n=1, cutoff=0.7)
    hint = f', did you mean {json.dumps(close[0])}?' if close else '.'
    return JobError(f'Unknown {what} {_show(word)} in {where}{hint} '
                    f'Valid {what}s: {", ".join(valid)}')


def _known_keys(spec: dict, valid: tuple[str, ...], where: str) -> None:
    """A misspelt key would otherwise be ignored and its value silently lost."""
    for key in spec:
        if key not in valid:
            raise _unknown('key', key, where, list(valid))


def _labelled(what: str, name: object) -> str:
    """``device #2 (stdout)``: the position, and the name when there is one."""
    return f'{what} ({name})' if isinstance(name, str) and name else what


def _optional(spec: dict, key: str, default: object = None) -> object:
    """JSON null means "not given", as in ZeroCloud."""
    value = spec.get(key)
    return default if value is None else value


def _string(value: object, what: str, where: str) -> str:
    if not isinstance(value, str):
        raise _invalid(what, where, f'must be a string, got {_show(value)}')
    if _ILLEGAL.search(value):
        raise _invalid(what, where, 'control characters are not allowed')
    return value


def _integer(value: object, what: str, where: str, low: int, high: int | None = None) -> int:
    if (isinstance(value, int) and not isinstance(value, bool)
            and value >= low and (high is None or value <= high)):
        return value
    bound = f'from {low} to {high}' if high is not None else f'>= {low}'
    raise _invalid(what, where, f'must be an integer {bound}, got {_show(value)}')


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    """json object hook: a repeated key would silently override the first."""
    result = {}
    for key, value in pairs:
        if key in result:
            raise JobError(f'Duplicate key "{key}" in job description')
        result[key] = value
    return result


def _shape_hint(data: object) -> str:
    """What an object sent as a job was probably meant to be."""
    if not isinstance(data, dict):
        return ''
    if 'query' in data:
        return ': an SQL query runs with X-Zerovm-Execute: sql/1.0 (doc/sql.md)'
    if 'exec' in data or 'devices' in data:
        return ': put the group in a list, [{"name": ..., "exec": ...}]'
    return ''


def trailing_comma(err: ValueError) -> str:
    """Where a JSON error is the ``}`` or ``]`` after a trailing comma (which JavaScript,
    Python and YAML allow and JSON does not), a hint saying so: the decoder's own message
    (``Expecting property name enclosed in double quotes``) names what it wanted there."""
    if not isinstance(err, json.JSONDecodeError) or err.doc[err.pos:err.pos + 1] not in ('}', ']'):
        return ''
    before = err.doc[:err.pos].rstrip()
    if not before.endswith(','):
        return ''
    comma = len(before) - 1
    line = err.doc.count('\n', 0, comma) + 1
    column = comma - err.doc.rfind('\n', 0, comma)
    return (f' (a trailing comma at line {line} column {column}, before '
            f'"{err.doc[err.pos]}": JSON allows none; remove it)')


def _load(data: bytes | str | list, max_size: int) -> list:
    if isinstance(data, (bytes, bytearray, str)):
        raw = data.encode('utf-8', 'surrogatepass') if isinstance(data, str) else bytes(data)
        if len(raw) > max_size:
            raise JobTooLarge(f'Job description too large: {len(raw)} bytes, max {max_size}')
        raw = raw.removeprefix(b'\xef\xbb\xbf')    # a BOM, as editors save (RFC 8259 8.1)
        if not raw.strip():
            raise JobError('Job description is empty: POST a JSON list of node groups '
                           '(doc/job-reference.md)')
        if raw.startswith(b'\x7fELF'):     # curl --data-binary @prog, to run it
            raise JobError('Job description is a program (an ELF file), not a job: upload '
                           'it (swift upload <container> prog) and POST a job that names it '
                           'as exec.path (doc/user-guide.md), or run it with zc run ./prog')
        try:
            data = json.loads(raw.decode('utf-8'), object_pairs_hook=_no_duplicate_keys)
        except UnicodeDecodeError:
            raise JobError('Job description is not UTF-8') from None
        except JobError:
            raise
        except (ValueError, RecursionError) as err:
            hint = trailing_comma(err) if raw.lstrip()[:1] in (b'[', b'{') else (
                ' (a job is a JSON list of node groups, [{"name": ..., "exec": ...}]; a '
                'script starts with #!, #!file://python3:python3 for Python)')
            raise JobError(f'Job description is not valid JSON: {err}{hint}') from None
    if not isinstance(data, list):
        raise JobError(f'Job description must be a JSON list of node groups, got '
                       f'{_show(data)}{_shape_hint(data)}')
    if not data:
        raise JobError('Job description has no node groups')
    return data


def _group_name(value: object, number: int) -> str:
    where = f'node group #{number}'
    if value is None or value == '':
        raise JobError(f'Must specify node name ({where})')
    name = _string(value, 'node name', where)
    if _NAME_FORBIDDEN.search(name) or name in ('.', '..'):
        raise _invalid('node name', where, f'{json.dumps(name)}: whitespace, "/" and "," '
                       'are not allowed, nor "." and ".."')
    if not name.isascii():
        raise _invalid('node name', where, f'{json.dumps(name)}: only ASCII characters are '
                       'allowed (node names are sent in X-Nexe-* response headers)')
    return name


def home_hint(path: SwiftPath, account: str) -> str:
    """`` (did you mean swift://~/demo/lines?)`` for ``swift://demo/lines`` read as
    container ``lines`` of account ``demo`` when ``account`` (the caller's) was meant:
    a container of another account where an object is wanted (``swift://~bin/lines``,
    the ``/`` after ``~`` forgotten, too); else ''."""
    if path.obj is not None or path.account == account:
        return ''
    return f' (did you mean {SwiftPath("~", path.account.lstrip("~"), path.container)}?)'


def _exec_path(path: str, account: str, images: frozenset[str], where: str) -> str:
    if is_swift_url(path):
        location = parse_location(path, account, where=where)
        if location.obj is None or location.wildcard:
            raise _invalid('executable path', where, f'{path} must name one object'
                           f'{home_hint(location, account)}')
        return str(location)
    scheme, sep, rest = path.partition('://')
    if not sep:
        return path
    if scheme == 'zvm':
        raise JobError(f'Executable path cannot be a zvm path in {where}')
    if scheme != 'file':
        raise _invalid('executable path', where,
                       f'{path}: expected swift://, file:// or a path inside the image'
                       f'{scheme_hint(path)}')
    image, sep, member = rest.partition(':')
    if not sep:
        image, member = USER_IMAGE, image
    if image != USER_IMAGE and image not in images:
        known = ', '.join(sorted({USER_IMAGE, *images}))
        raise _invalid('executable path', where, f'{path}: unknown image "{image}" '
                       f'(known: {known})')
    if not member:
        raise _invalid('executable path', where, f'{path}: no file name')
    return path


def _args(value: object, where: str) -> list[str]:
    what = 'nexe property exec.args'
    if value is None:
        return []
    if isinstance(value, list):
        if not all(isinstance(arg, str) for arg in value):
            raise _invalid(what, where, 'must be a string or a list of strings')
        return [_string(arg, what, where) for arg in value]
    if not isinstance(value, str):
        raise _invalid(what, where, f'must be a string or a list of strings, got {_show(value)}')
    text = _string(value, what, where)
    try:
        return shlex.split(text)
    except ValueError as err:
        raise _invalid(what, where, str(err).lower()) from None


def _env(value: object, where: str) -> dict[str, str]:
    what = 'nexe property exec.env'
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(what, where, f'must be an object, got {_show(value)}')
    for key, item in value.items():
        if (bad := bad_env_name(key)) is not None:
            raise _invalid(what, where, bad)
        _string(item, f'{what} {key}', where)
    return dict(value)


def _parse_exec(spec: object, account: str, images: frozenset[str], where: str) -> Exec:
    if spec is None:
        raise JobError(f'Must specify exec stanza for {where}')
    if not isinstance(spec, dict):
        raise _invalid('exec stanza', where, f'must be an object, got {_show(spec)}')
    _known_keys(spec, EXEC_KEYS, f'exec of {where}')
    path = spec.get('path')
    if path is None or path == '':
        raise JobError(f'Must specify executable path for {where}')
    return Exec(
        path=_exec_path(_string(path, 'executable path', where), account, images, where),
        name=_string(_optional(spec, 'name', ''), 'nexe property exec.name', where) or None,
        args=_args(spec.get('args'), where),
        env=_env(spec.get('env'), where),
        ok_exit=_ok_exit(_optional(spec, 'ok_exit', [0]), where),
    )


def _ok_exit(value: object, where: str) -> tuple[int, ...]:
    what = 'nexe property exec.ok_exit'
    if not isinstance(value, list) or not value:
        raise _invalid(what, where, 'must be a non-empty list of exit codes, got '
                       + ('an empty list' if value == [] else _show(value)))
    return tuple(sorted({_integer(code, what, where, 0, 255) for code in value}))


def _meta(value: object, what: str, where: str) -> dict[str, str]:
    """Object metadata; values are any Unicode text, stored UTF-8 encoded as Swift does."""
    if not isinstance(value, dict):
        raise _invalid(what, where, f'must be an object, got {_show(value)}')
    max_name, max_value, max_count, max_total = _meta_limits()
    if len(value) > max_count:
        raise _invalid(what, where, f'{len(value)} items, at most {max_count} are allowed')
    total = 0
    for key, item in value.items():
        if not _HEADER_TOKEN.fullmatch(key):
            raise _invalid(what, where, f'{json.dumps(key)} cannot be part of a header name')
        if len(key) > max_name:
            raise _invalid(what, where, f'name {json.dumps(key)} is longer than {max_name} '
                           'characters')
        size = len(_string(item, f'{what} {key}', where).encode())
        if size > max_value:
            raise _invalid(what, where, f'value of {key} is {size} bytes (UTF-8), at most '
                           f'{max_value} are allowed')
        total += len(key) + size
    if total > max_total:
        raise _invalid(what, where, f'{total} bytes of names and values, at most {max_total} '
                       'are allowed')
    return dict(value)


def _peer_channel(name: object, where: str) -> JobError | None:
    """A channel to another node (``out/B``, ``/dev/in/A-3``) declared as a device, as if
    devices made them: ``connect`` does, and the unknown device alone did not say so."""
    direction, _, peer = str(name).removeprefix('/dev/').partition('/')
    if not isinstance(name, str) or direction not in ('in', 'out') or not peer:
        return None
    group = re.sub(r'-\d+$', '', peer)
    how = (f'"connect": [{json.dumps(group)}] on {where} gives each of its nodes '
           f'/dev/out/<node> for every node of {group}, which reads it as /dev/in/<node>'
           if direction == 'out' else
           f'"connect": [{json.dumps(where)}] on {group} gives each node of {where} '
           f'/dev/in/<node> for every node of {group}, which writes it as /dev/out/<node>')
    return JobError(f'Device {_show(name)} in {where} is a channel between nodes, which '
                    f'"connect" makes, not "devices": {how} (doc/job-reference.md, '
                    '"Multi-node graphs")')


def _parse_device(spec: object, number: int, account: str, images: frozenset[str],
                  where: str) -> Device:
    if not isinstance(spec, dict):
        raise _invalid(f'device #{number}', where, f'must be an object, got {_show(spec)}')
    label = _labelled(f'device #{number}', spec.get('name', spec.get('device')))
    if 'attach' in spec:        # where the node runs is its group's
        named = spec.get('name', spec.get('device'))
        named = named if isinstance(named, str) else '<device>'
        raise JobError(f'"attach" in {label} of {where} belongs to the node group, next to '
                       f'"devices": "attach": {_show(named)} places the node next to that '
                       'device\'s object (it needs a swift:// path)')
    _known_keys(spec, DEVICE_KEYS, f'{label} of {where}')
    if 'name' in spec and 'device' in spec:
        raise _invalid(f'device #{number}', where, 'give "name" or the deprecated "device", '
                       'not both')
    name = _optional(spec, 'name', spec.get('device'))
    if not name:
        raise JobError(f'Must specify device for file in {where}: device #{number} has no '
                       f'"name" ({", ".join(DEVICES)} or a system image)')
    if not isinstance(name, str) or name not in DEVICES and name not in images:
        raise _peer_channel(name, where) or _unknown('device', name, where,
                                                     [*DEVICES, *sorted(images)])
    url = _optional(spec, 'path', '')
    device = Device(name)
    if url != '':
        url = _string(url, f'path for device {name}', where)
        if device.system_image:
            raise JobError(f'System image device {name} cannot have a path in {where}')
        if device.readable and not is_swift_url(url):
            raise JobError(f'Readable device must be a swift object: {name} path {url} '
                           f'in {where}{scheme_hint(url)}')
        device.path = parse_location(url, account, where=where)
        if device.writable and device.path.obj is None:
            own = '~' if device.path.account == account else device.path.account
            raise JobError(f'Container path must be read-only: {name} path {url} in {where}'
                           + (home_hint(device.path, account) or
                              ': a written device names an object, or objects '
                              f'({SwiftPath(own, device.path.container, "*")} makes one '
                              'per node)'))
        if device.writable and (why := _too_long(device.path, wildcard=True)):
            raise JobError(f'Output path too long for device {name} in {where}: {why}: '
                           f'{_shown(device.path)}')
    content_type = _optional(spec, 'content_type')
    if content_type is not None:
        device.content_type = _string(content_type, f'content_type for device {name}', where)
        if not device.content_type.isascii():
            raise _invalid(f'content_type for device {name}', where,
                           'only ASCII characters are allowed (it is a header value)')
    device.meta = _meta(_optional(spec, 'meta', {}), f'meta for device {name}', where)
    device.mode = _optional(spec, 'mode')
    if device.mode is not None and device.mode not in MODES:
        raise _invalid(f'mode for device {name}', where,
                       f'must be one of {", ".join(MODES)}, got {_show(device.mode)}')
    device.min_size = _integer(_optional(spec, 'min_size', 0), f'min_size for device {name}',
                               where, 0)
    device.store = _optional(spec, 'store', 'success')
    if device.store not in STORE or device.store != 'success' and not device.writable:
        raise _invalid(f'store for device {name}', where,
                       f'must be one of {", ".join(STORE)} (written devices only), '
                       f'got {_show(device.store)}')
    return device


def _parse_devices(spec: dict, account: str, images: frozenset[str],
                   where: str) -> list[Device]:
    if 'devices' in spec and 'file_list' in spec:
        raise _invalid('devices', where, 'give "devices" or the deprecated "file_list", '
                       'not both')
    items = _optional(spec, 'devices', _optional(spec, 'file_list', []))
    if not isinstance(items, list):
        raise _invalid('devices', where, f'must be a list, got {_show(items)}')
    devices = [_parse_device(item, number, account, images, where)
               for number, item in enumerate(items, 1)]
    seen = set()
    for device in devices:
        if device.name in seen:
            raise JobError(f'Duplicate device {device.name} in {where}')
        seen.add(device.name)
    payload = [d.name for d in devices if d.name in PAYLOAD_DEVICES and not d.path]
    if len(payload) > 1:
        raise JobError(f'Only one readable device without a path (the request payload) '
                       f'in {where}, got {", ".join(payload)}')
    wild = [d.name for d in devices if d.readable and d.path and d.path.wildcard]
    if len(wild) > 1:
        raise JobError(f'Wildcards in more than one readable device in {where}: '
                       f'{", ".join(wild)}')
    return devices


def _connect(value: object, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(target, str) for target in value):
        raise _invalid('connect', where, f'must be a list of node names, got {_show(value)}')
    seen = set()
    for target in value:
        if target in seen:
            raise JobError(f'Duplicate node in connect {target} of {where}')
        seen.add(target)
    return list(value)


def _parse_group(spec: object, number: int, account: str, images: frozenset[str]) -> Group:
    if not isinstance(spec, dict):
        raise JobError(f'Node group #{number} must be a JSON object, got {_show(spec)}')
    _known_keys(spec, GROUP_KEYS, _labelled(f'node group #{number}', spec.get('name')))
    name = _group_name(spec.get('name'), number)
    group = Group(
        name=name,
        exec=_parse_exec(spec.get('exec'), account, images, name),
        devices=_parse_devices(spec, account, images, name),
        count=_integer(_optional(spec, 'count', 1), 'node count', name, 1),
        connect=_connect(_optional(spec, 'connect', []), name),
        replicate=_integer(_optional(spec, 'replicate', 1), 'replicate', name, 1,
                           MAX_REPLICATE),
    )
    attach = _optional(spec, 'attach', DEFAULT_ATTACH)
    if attach != DEFAULT_ATTACH:
        names = [d.name for d in group.devices]
        if attach not in names:
            raise _invalid('attach', name, f'no device {_show(attach)} in the group '
                           f'(its devices: {", ".join(names) or "none"})')
        device = group.devices[names.index(attach)]
        if device.path is None and device.name not in PAYLOAD_DEVICES:
            # it has no object (a response, a system image): the node ran anywhere
            raise _invalid('attach', name, f'device {_show(attach)} has no path, so no object '
                           'for the node to run next to: name a device with a swift:// '
                           'path, or leave "attach" out (the node then runs next to the '
                           'object of its last read device with a path)')
        group.attach = attach
    location = _optional(spec, 'location', '')
    group.location = _string(location, 'location', name) or None
    engine = _optional(spec, 'engine')
    if engine is not None and engine not in CHOICES:
        raise _invalid('engine', name, f'must be one of {", ".join(CHOICES)}, got {_show(engine)}')
    group.engine = engine
    return group


def parse_job(data: bytes | str | list, account: str, *, system_images: Iterable[str] = (),
              max_size: int = 65536) -> list[Group]:
    """Validate a job description (JSON text or already decoded) for ``account``.

    Everything that can be checked without listing containers is checked here,
    so that a bad job is refused before any request leaves the proxy.
    """
    images = frozenset(system_images) - DEVICES.keys()
    groups = [_parse_group(spec, number, account, images)
              for number, spec in enumerate(_load(data, max_size), 1)]
    names: dict[str, int] = {}          # name -> the group's number
    for number, group in enumerate(groups, 1):
        if group.name in names:
            raise JobError(f'Duplicate node name {group.name}: node groups #{names[group.name]} '
                           f'and #{number} are both named {group.name}; give each group a '
                           'name of its own')
        names[group.name] = number
    for group in groups:
        for target in group.connect:
            if target not in names:
                close = difflib.get_close_matches(str(target), sorted(names), n=1, cutoff=0.7)
                hint = f', did you mean {json.dumps(close[0])}?' if close else ''
                raise JobError(f'Non-existing node in connect {target} of {group.name}{hint} '
                               f'(the job\'s groups: {", ".join(g.name for g in groups)})')
        if group.name in group.connect and group.count == 1 and not group.wildcard_device:
            raise JobError(f'Cannot bind to itself: {group.name} (only a group of several '
                           'nodes can connect to itself)')
    return groups


def _glob(name: str, parts: list[str]) -> tuple[str, ...] | None:
    """ZeroCloud's wildcard (each ``*`` is ``.*``): the texts the stars of the pattern
    ``parts`` (split at them) matched in ``name``, each as long as it can be from the
    left, as the regex ``(.*)`` takes them, for output names; None when it does not
    match.  Each part after the first is placed as far right as the parts after it
    allow, a search each: the regex's backtracking took time growing as the name's
    length to the power of the stars (4 stars over a 300-character name held the
    proxy's event loop, every request, for 6 s; 20 over 1,000, for good)."""
    if len(parts) == 1:
        return () if name == parts[0] else None
    first, *middle, last = parts
    if len(first) + len(last) > len(name) or not name.startswith(first) \
            or not name.endswith(last):
        return None
    found, end = [], len(name) - len(last)
    for part in reversed(middle):
        at = name.rfind(part, len(first), end)
        if at < 0:
            return None
        found.append((at, at + len(part)))
        end = at
    texts, at = [], len(first)
    for start, stop in reversed(found):
        texts.append(name[at:start])
        at = stop
    texts.append(name[at:len(name) - len(last)])
    return tuple(texts)


def _select(names: Iterable[str], pattern: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    parts = pattern.split('*')
    for name in names:
        texts = _glob(name, parts)
        if texts is not None:
            yield name, texts


def _find(path: SwiftPath, list_objects: Callable[[str, str, str], Iterable[str]],
          list_containers: Callable[[str], Iterable[str]],
          ) -> Iterator[tuple[SwiftPath, tuple[str, ...]]]:
    """Objects (or containers) matching a wildcard path, with the matched text.
    Objects are listed from the text before the first ``*`` (Swift's ``prefix``):
    groups over parts of one container each list their own part, not all of it."""
    containers = list_containers(path.account) if '*' in path.container else [path.container]
    for container, found in _select(containers, path.container):
        if path.obj is None:
            yield SwiftPath(path.account, container), found
            continue
        prefix = path.obj.split('*', 1)[0]
        objects = (o for o in list_objects(path.account, container, prefix)
                   if not o.endswith('/'))
        for obj, more in _select(objects, path.obj):
            yield SwiftPath(path.account, container, obj), found + more


def _stars(path: SwiftPath) -> int:
    return path.container.count('*') + (path.obj or '').count('*')


def _fill(text: str, values: Iterator[str]) -> str:
    first, *rest = text.split('*')
    return first + ''.join(next(values) + part for part in rest)


def _output_path(path: SwiftPath, values: tuple[str, ...], node: str, group: str,
                 device: str) -> SwiftPath:
    """A written path with each ``*`` replaced by the next matched text."""
    if _stars(path) > len(values):
        raise JobError(f'Wildcards in input cannot be resolved into output path {path} '
                       f'in {group}: more "*" than the input path has')
    fill = iter(values)
    mapped = SwiftPath(path.account, _fill(path.container, fill),
                       _fill(path.obj, fill) if path.obj is not None else None)
    if not mapped.container or '/' in mapped.container or mapped.obj == '':
        raise JobError(f'Invalid output path {mapped} for node {node} in {group}: '
                       'the wildcard text does not make a valid name')
    why = _too_long(mapped)
    if why:
        raise JobError(f'Output path too long for device {device} of node {node} in {group} '
                       f'(its "*" filled from the input\'s name): {why}: {_shown(mapped)}')
    return mapped


def _placement(devices: list[Device], attach: str | None) -> Device | None:
    """ZeroCloud's "top channel": the last read device, then image, script, writes.

    Devices without a Swift path never decide (in ZeroCloud a path-less one
    on top sent the node to a random server).
    """
    if attach:
        chosen = next(d for d in devices if d.name == attach)
        return chosen if chosen.path else None
    placed = [d for d in devices if d.path]
    reads = [d for d in placed if d.readable and d.name not in (USER_IMAGE, 'script')]
    ranked = (reads[-1:] + [d for d in placed if d.name == USER_IMAGE]
              + [d for d in placed if d.name == 'script'] + [d for d in placed if d.writable])
    return ranked[0] if ranked else None


def no_objects_found(path: SwiftPath, hint: str = '', group: str = '') -> str:
    """What a wildcard ``path`` that matched nothing says, for a job (``group``: its
    group's name) and a query's FROM alike: the path as written, ``déjà-[12]*``, not
    quoted (``d%C3%A9j%C3%A0-%5B12%5D*``: a job's said so, a query's not), and
    `` (<hint>)``."""
    return (f'No objects found in path {SWIFT}{path.path[1:]}'
            + (f' in {group}' if group else '') + (f' ({hint})' if hint else ''))


def _too_large(max_nodes: int, group: str) -> JobError:
    return JobError(f'Job too large: more than {max_nodes} nodes (at {group}); the '
                    'operator\'s zerovm_maxnodes (proxy) raises the limit')


def _instances(group: Group, list_objects: Callable[[str, str, str], Iterable[str]],
               list_containers: Callable[[str], Iterable[str]], room: int, max_nodes: int,
               count_objects: Callable[[str, str], int] | None = None,
               ) -> tuple[bool, Iterator[tuple[SwiftPath | None, tuple[str, ...]]]]:
    """(several nodes?, one (matched read path, matched texts) per node of the group),
    the matches as the listing is read, in its order (Swift lists names sorted).
    A container that may hold more objects than ``room`` (``count_objects``) is
    counted first (its listing read once more, streamed): a job over the limit is
    refused before any of its nodes is made."""
    wild = group.wildcard_device
    if wild is None:
        if group.count > room:
            raise _too_large(max_nodes, group.name)
        return group.count > 1, itertools.repeat((None, ()), group.count)
    path = wild.path
    if (count_objects is not None and path.obj is not None and '*' not in path.container
            and count_objects(path.account, path.container) > room):
        found = _find(path, list_objects, list_containers)
        if sum(1 for _ in itertools.islice(found, room + 1)) > room:
            raise _too_large(max_nodes, group.name)
    matches = _find(wild.path, list_objects, list_containers)
    first = list(itertools.islice(matches, 2))
    if not first:
        typed = f'{wild.path.container}/{wild.path.obj or ""}'
        hint = 'only * is a wildcard: a ? or [ is part of the name' if set('?[') & set(typed) \
            else ''
        raise NoData(no_objects_found(wild.path, hint, group.name))
    return len(first) > 1, itertools.chain(first, matches)


def _group_nodes(group: Group, several: bool,
                 instances: Iterable[tuple[SwiftPath | None, tuple[str, ...]]],
                 first_id: int) -> Iterator[Node]:
    wild = group.wildcard_device
    for device in group.devices:
        if device.writable and device.path and not device.path.wildcard and several:
            star = replace(device.path, obj=posixpath.join(
                posixpath.dirname(device.path.obj), '*' + posixpath.splitext(device.path.obj)[1]))
            raise JobError(f'Single path {device.path} for multiple node definition: '
                           f'{group.name}, please use wildcard: every node would write '
                           f'this one object; {star} writes one per node')
    for index, (matched, values) in enumerate(instances, 1):
        name = f'{group.name}-{index}' if several or wild is not None else group.name
        devices = []
        for device in group.devices:
            path = device.path
            if device is wild:
                path = matched
            elif device.writable and path and path.wildcard:
                path = _output_path(path, values if wild is not None else (name,) * _stars(path),
                                    name, group.name, device.name)
            devices.append(_with_path(device, path))
        attach = _placement(devices, group.attach)
        yield Node(name=name, group=group.name, index=index, id=first_id + index - 1,
                   exec=group.exec, devices=devices, replicate=group.replicate,
                   attach=attach, location=group.location, engine=group.engine,
                   listed=wild is not None and attach is not None
                   and attach.name == wild.name)


def _with_path(device: Device, path: SwiftPath | None) -> Device:
    """A copy of a group's device for one node (``dataclasses.replace`` without its
    ``__init__`` per field: two per node were 4 % of the proxy's CPU per node).  Its
    ``meta`` is the group's, never changed: a copy per node made a connected job of
    99,000 nodes, 11 KB of JSON (Swift's most metadata on three devices), hold 1.1 GB
    of the proxy (215 MB shared).  A device whose path the node keeps is the group's
    own (never changed once parsed): 136 bytes less a node for each."""
    if path is device.path:
        return device
    copy = object.__new__(Device)
    copy.__dict__.update(device.__dict__, path=path)
    return copy


def stream(groups: list[Group], list_objects: Callable[[str, str, str], Iterable[str]],
           list_containers: Callable[[str], Iterable[str]], *, max_nodes: int = 100000,
           count_objects: Callable[[str, str], int] | None = None) -> Iterator[Node]:
    """The nodes of validated groups one at a time, in group order, with ids 1..M,
    made as the listings are read: a wildcard over a container of a million
    objects never has its listing, nor its nodes, whole in memory (the caller
    keeps what it needs).  Nodes are not wired (``connect``: :func:`expand`).

    ``list_objects(account, container)`` and ``list_containers(account)`` list
    names (paged by the caller, authorised by the caller: their exceptions pass
    through); they are only called for wildcard paths.  A :exc:`JobError` (too
    many nodes, a duplicate name, two writers of one object) comes when it is
    found, possibly after nodes were made: a job is checked whole only once
    its last node is, except for its size over a container that
    ``count_objects(account, container)`` says may be too large (see
    ``_instances``).  What is kept meanwhile: each object written (two writers
    would race) and a count per group.
    """
    made: dict[str, int] = {}           # indexed group -> nodes made: <group>-1 .. -<count>
    alone: set[str] = set()             # nodes named after their group (its only node)
    writers: dict[SwiftPath, str] = {}
    total = 0
    for group in groups:
        several, instances = _instances(group, list_objects, list_containers,
                                        max_nodes - total, max_nodes, count_objects)
        for node in _group_nodes(group, several, instances, total + 1):
            total += 1
            if total > max_nodes:
                raise _too_large(max_nodes, group.name)
            owner = _owner(node, made, alone)
            if owner is not None:
                raise JobError(f'Duplicate node name {node.name} (groups {owner} '
                               f'and {group.name})')
            if node.name == group.name:
                alone.add(node.name)
            else:
                made[group.name] = node.index
            _check_outputs(node, writers)
            yield node


def _owner(node: Node, made: dict[str, int], alone: set[str]) -> str | None:
    """The other group that made a node of the same name already: a group's one node
    is named after it, the others ``<group>-<index>``."""
    if node.name != node.group:
        return node.name if node.name in alone else None
    group, _, index = node.name.rpartition('-')
    if index.isdigit() and made.get(group, 0) >= int(index):
        return group
    return None


def _check_outputs(node: Node, writers: dict[SwiftPath, str]) -> None:
    """Two writers of one object would race; the job could not be deterministic."""
    for device in node.devices:
        if device.writable and device.path:
            writer = f'{node.name} ({device.name})'
            if device.path in writers:
                raise JobError(f'Output {device.path} written by both '
                               f'{writers[device.path]} and {writer}')
            writers[device.path] = writer


def expand(groups: list[Group], list_objects: Callable[[str, str, str], Iterable[str]],
           list_containers: Callable[[str], Iterable[str]], *,
           max_nodes: int = 100000,
           check_peers: Callable[[Node, int, int], None] | None = None,
           step: Callable[[], None] = lambda: None) -> list[Node]:
    """Every node of validated groups (:func:`stream`), wired (``connect``).

    ``check_peers(node, reads, writes)`` is asked for the first node of each group
    (its nodes have the same channels and peers) before any is wired (its exception
    passes through): the links of a connect are the product of its groups' counts, too
    many to make before refusing them.  ``step()`` is called once per node made and
    per node whose links to a group are made (a server gives its event loop a turn
    there: 100,000 nodes take seconds)."""
    nodes = []
    for node in stream(groups, list_objects, list_containers, max_nodes=max_nodes):
        step()
        nodes.append(node)
    members: dict[str, list[Node]] = collections.defaultdict(list)
    for node in nodes:
        members[node.group].append(node)
    if check_peers is not None:
        writes = collections.Counter()
        reads = collections.Counter()
        for group in groups:
            for target in group.connect:
                writes[group.name] += len(members[target]) - (target == group.name)
                reads[target] += len(members[group.name]) - (target == group.name)
        for name, group_nodes in members.items():
            check_peers(group_nodes[0], reads[name], writes[name])
    for group in groups:
        for target in group.connect:
            for source in members[group.name]:
                step()
                for peer in members[target]:
                    if peer is not source:
                        source.writes_to.append(peer.name)
                        peer.reads_from.append(source.name)
    return nodes


def job_paths(nodes: Iterable[Node]) -> tuple[set[SwiftPath], set[SwiftPath]]:
    """Every object the job reads (programs included) and writes, to authorise first."""
    reads: set[SwiftPath] = set()
    writes: set[SwiftPath] = set()
    for node in nodes:
        program = node.exec.swift_path
        if program:
            reads.add(program)
        for device in node.devices:
            if device.path:
                (writes if device.writable else reads).add(device.path)
    return reads, writes
