"""Jobs for the common cases, and the requests that carry them.

``zc run PROGRAM --on URL`` and ``zc run --script FILE --on URL`` build a job
of one group (``doc/job-reference.md``): the program (a ``swift://`` object,
or a local static binary sent along in a zapp as ``bin/<name>``) or the
script (sent in a zapp, run by the system image its extension names: ``.py``
by ``file://python3:python3``, compiled here first so a syntax error is said
once, ``.lua`` by ``file://lua:lua``) reads each
object of ``--on`` (one node per object of a wildcard) on ``stdin`` (or
``input``), and writes ``stdout`` back in the answer, or to ``--out``
objects (``swift://~/c/*.out``: each ``*`` is what the ``--on`` wildcard
matched).

A :class:`Payload` is what the POST sends: the job description (JSON), or a
zapp (a gzipped tar whose ``boot/system.map`` is the job).
"""

from __future__ import annotations

import difflib
import gzip
import io
import json
import posixpath
import re
import shlex
import sys
import tarfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from zerocloud.client.sandbox import lua_syntax_error
from zerocloud.job import (
    DEVICES,
    SCRIPT_PROGRAMS,
    Node,
    SwiftPath,
    expand,
    home_hint,
    is_swift_url,
    parse_job,
    parse_location,
    scheme_hint,
    trailing_comma,
)
from zerocloud.peers import check_peers
from zerocloud.zapp_format import GZIP_MAGIC, MAPS, looks_like_archive

JSON_TYPE = 'application/json'
ZAPP_TYPE = 'application/x-gzip'
INTERPRETERS = {'.py': SCRIPT_PROGRAMS['python'], '.lua': SCRIPT_PROGRAMS['lua']}
IMAGE_PYTHON = (3, 11)      # the python3 image's CPython (zvm_core.build.interpreters.PY_VERSION)
DATA_DEVICES = ('stdin', 'input')
ELF_MAGIC = b'\x7fELF'
_BAD_NAME = re.compile(r'[^A-Za-z0-9_.-]+')


class BuildError(ValueError):
    """A job the client cannot build or read: the message says what to fix."""


class OptionError(BuildError):
    """A bad option value (``--on``, ``--out``, ``--as``...): a usage error, exit 2."""


@dataclass
class Payload:
    """The body of an execute request and its content type; ``job`` is the description."""

    body: bytes
    content_type: str
    job: list


def group_name(path: str) -> str:
    """A node name from a file name: ``./count_words.py`` -> ``count_words``."""
    stem = Path(path.rpartition(':')[2]).stem or 'job'
    return _BAD_NAME.sub('-', stem).strip('-') or 'job'


def zapp_bytes(job: list, files: dict[str, bytes]) -> bytes:
    """A gzipped tar: ``boot/system.map`` = ``job``, then ``files`` (name -> content).
    Members have fixed times and owners, so the same inputs give the same bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode='w', format=tarfile.USTAR_FORMAT) as tar:
        for name, data in [(MAPS[0], json.dumps(job, indent=1).encode()), *files.items()]:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            info.mode = 0o755 if data[:4] == ELF_MAGIC else 0o644
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def build(program: str | None, script: str | None, on: str | None, out: str | None,
          args: str = '', device: str = 'stdin', env: dict[str, str] | None = None,
          interpreter: str | None = None, name: str | None = None) -> Payload:
    """The job of ``zc run PROGRAM|--script FILE --on URL [--out URL]``."""
    if (program is None) == (script is None):
        raise OptionError('give a program or --script FILE, not both')
    if device not in DATA_DEVICES:
        raise OptionError(f'--as must be one of {", ".join(DATA_DEVICES)}')
    check_urls(on, out)
    files: dict[str, bytes] = {}
    exec_: dict = {}
    if script is not None:
        base = Path(script).name
        files[base] = _read(script)
        first = ''
        if interpreter is not None:
            _check_interpreter(interpreter)
        else:
            interpreter, first = _script_interpreter(script, files[base])
        if interpreter == INTERPRETERS['.py']:
            _check_python(script, files[base])
        elif interpreter == INTERPRETERS['.lua'] and \
                (error := lua_syntax_error(script, files[base])) is not None:
            raise BuildError(f'{error} (a syntax error: nothing was sent)')
        exec_ = {'path': interpreter,
                 'args': f'{first} {shlex.quote("/" + base)} {args}'.strip()}
        group = group_name(script)
    elif is_swift_url(program):
        exec_ = {'path': program, 'args': args}
        group = group_name(program)
    else:
        data = _read(program)
        if data[:4] != ELF_MAGIC:
            raise BuildError(f'{program} is not a program (an ELF executable): build it with '
                             'musl-gcc -static, or run a script with --script')
        base = Path(program).name
        files[f'bin/{base}'] = data
        exec_ = {'path': f'bin/{base}', 'name': base, 'args': args}
        group = group_name(program)
    if env:
        exec_['env'] = dict(env)
    if not exec_.get('args'):
        exec_.pop('args', None)
    # without --on, the device reads the request's payload: zc local run --stdin FILE
    # (the cluster's zc run sends none: empty)
    devices: list[dict] = [{'name': device, 'path': on} if on is not None else {'name': device}]
    stdout: dict = {'name': 'stdout', 'content_type': 'text/plain'}
    if out is not None:
        stdout['path'] = out
    devices.append(stdout)
    job = [{'name': name or group, 'exec': exec_, 'devices': devices}]
    if files:
        return Payload(zapp_bytes(job, files), ZAPP_TYPE, job)
    return Payload(json.dumps(job).encode(), JSON_TYPE, job)


def _check_python(script: str, source: bytes) -> None:
    """BuildError for a script the python3 image would refuse to start: every node would
    fail with the same SyntaxError, so say it once, before sending anything.  Only a
    client on the image's CPython can tell: another version's grammar and warnings
    differ (3.10 refuses ``except*``, 3.12 warns of ``"\\d"``), and the nodes judge."""
    if sys.version_info[:2] != IMAGE_PYTHON:
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')     # the nodes' stderr shows theirs
            compile(source, script, 'exec')
    except SyntaxError as e:
        raise BuildError(f'{script}:{e.lineno}: {e.msg} (a syntax error: nothing was '
                         'sent)') from None
    except ValueError as e:            # null bytes
        raise BuildError(f'{script}: {e}') from None


def _script_interpreter(script: str, data: bytes) -> tuple[str, str]:
    """(interpreter, its first arguments) of a ``--script`` given no ``--interpreter``: its
    ``#!`` line when that names a ZeroCloud program (as a script POSTed to the cluster
    says it, ``zerocloud.sources``), else the one of its extension.  None is a usage
    error (exit 2) saying what to add: it was exit 1, as if the cluster refused it."""
    line = data.partition(b'\n')[0].removeprefix(b'\xef\xbb\xbf')
    words = line[2:].decode('utf-8', 'replace').split() if line.startswith(b'#!') else []
    if words and (words[0].startswith('file://') or is_swift_url(words[0])):
        try:
            _check_interpreter(words[0])
        except OptionError as e:
            raise OptionError(f'{script}: its #! line: {str(e).removeprefix("--interpreter ")}'
                              ) from None
        return words[0], ' '.join(map(shlex.quote, words[1:]))
    known = INTERPRETERS.get(Path(script).suffix.lower())
    if known is None:
        found = f' (its {line.decode("utf-8", "replace")} is not one)' if words else ''
        raise OptionError(f'no interpreter for {script}{found}: start it with a line naming '
                          f'one, #!{INTERPRETERS[".py"]} (Python) or #!{INTERPRETERS[".lua"]} '
                          '(Lua); name a .py or .lua file; or give --interpreter '
                          'file://<image>:<program>')
    return known, ''


def _check_interpreter(url: str) -> None:
    """OptionError for an ``--interpreter`` that names no program: the job's zapp holds
    only the script, so ``python3`` was 'the zapp has no file python3' from the server."""
    image, colon, program = url.removeprefix('file://').partition(':')
    if is_swift_url(url) or url.startswith('file://') and colon and image and program:
        return
    name = url.rstrip('/').rpartition('/')[2].split(':')[0]
    meant = next((known for known in INTERPRETERS.values()
                  if name and known[len('file://'):].startswith(name)), None)
    hint = f' (did you mean {meant}?)' if meant else ''
    raise OptionError(f'--interpreter {url}: expected file://<system image>:<program> (a '
                      'program of a system image, e.g. file://python3:python3) or '
                      f'swift://~/<container>/<program>{hint}')


def check_urls(on: str | None, out: str | None) -> None:
    """OptionError for an ``--on`` or ``--out`` that is not a ``swift://`` path, or an
    ``--out`` naming a container: outputs are objects, which the user must name."""
    for what, url in (('--on', on), ('--out', out)):
        if url is not None:
            try:
                location = parse_location(url, '~')
            except ValueError as e:
                if what == '--on' and Path(url).is_file():
                    raise OptionError(_local_on(url)) from None
                raise OptionError(f'{what}: {e}') from None
            if what == '--out' and location.obj is None:
                objects = SwiftPath(location.account, location.container, '*')
                fix = home_hint(location, '~') or \
                    f'; e.g. {objects}.out (each * becomes what --on matched)'
                raise OptionError(f'--out names the objects to write, not a container: '
                                  f'{url}{fix}')
    if on is not None and out is not None and '*' in out and '*' not in on:
        stem = posixpath.splitext(posixpath.basename(on))[0]
        raise OptionError(f'--out {out}: --on names one object, so its * would be the node\'s '
                          f'name, not what --on matched: name the object to write, e.g. '
                          f'{out.replace("*", stem)}')


def _local_on(path: str) -> str:
    """What to say of ``--on`` naming a file of this machine: how to upload it."""
    name, file = Path(path).name, shlex.quote(path)
    named = '' if posixpath.normpath(path) == name else f'--object-name {shlex.quote(name)} '
    return (f'--on {path}: a file of this machine; a job reads objects: upload it (swift '
            f'upload {named}CONTAINER {file}) and give --on swift://~/CONTAINER/'
            f'{quote(name)}, or run it here (zc local run ... --stdin {file})'
            f'{scheme_hint(path)}')     # logs/day-1.log may be an object's name too


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise BuildError(f'cannot read {path}: {e.strerror}') from None


def load(path: str) -> Payload:
    """A job description (JSON) or a zapp from a local file."""
    data = _read(path)
    if looks_like_archive(data[:512]):
        return Payload(data, ZAPP_TYPE, zapp_job(data, path))
    try:
        job = json.loads(data)
    except ValueError as e:
        if data.lstrip()[:1] in (b'[', b'{') or Path(path).suffix.lower() == '.json':
            comments = ' (JSON has no comments)' if data.lstrip()[:2] in (b'//', b'/*', b'#') \
                else trailing_comma(e)
            raise BuildError(f'{path} is not valid JSON: {e}{comments}') from None
        script = f'; a script runs with --script {path}' \
            if Path(path).suffix.lower() in INTERPRETERS else ''
        raise BuildError(f'{path} is not a job description (JSON), a zapp, nor a program '
                         f'(a static ELF executable: musl-gcc -static){script}') from None
    return Payload(data, JSON_TYPE, job)


def tar_bytes(zapp: bytes) -> bytes:
    """A zapp as a plain tar (zapps may be gzipped)."""
    return gzip.decompress(zapp) if zapp[:2] == GZIP_MAGIC else zapp


def zapp_job(data: bytes, where: str) -> list:
    """The job description inside a zapp (gzipped or not)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes(data)), mode='r:') as tar:
            names = {m.name.lstrip('./'): m for m in tar}
            found = next((names[m] for m in MAPS if m in names), None)
            if found is None:
                raise BuildError(f'{where} has no {MAPS[0]}: it is not a zapp')
            return json.loads(tar.extractfile(found).read())
    except (OSError, EOFError, tarfile.TarError, ValueError) as e:
        if isinstance(e, BuildError):
            raise
        raise BuildError(f'{where} is not a zapp (a tar or gzipped tar with {MAPS[0]}: '
                         f'zc bundle makes one): {e}') from None


def read_zapp(data: bytes, where: str) -> tuple[list, dict[str, bytes]]:
    """A zapp's job and its other files (name -> content)."""
    job = zapp_job(data, where)
    files = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes(data)), mode='r:') as tar:
        for member in tar:
            name = member.name.removeprefix('./').lstrip('/')
            if member.isfile() and name not in MAPS:
                files[name] = tar.extractfile(member).read()
    return job, files


def rebind(payload: Payload, on: str | None, out: str | None, where: str) -> Payload:
    """A zapp run over ``on`` (its devices without a path that read: stdin, input)
    with its stdout without a path stored as ``out``."""
    check_urls(on, out)
    job, files = read_zapp(payload.body, where)
    for url, names, what in ((on, DATA_DEVICES, 'stdin or input'), (out, ('stdout',),
                                                                    'stdout')):
        if url is None:
            continue
        free = [d for g in job for d in group_devices(g)
                if device_name(d) in names and not d.get('path')]
        if not free:
            raise BuildError(f'{where}: no group has {what} without a path to give {url}')
        for device in free:
            device['path'] = url
    return Payload(zapp_bytes(job, files), ZAPP_TYPE, job)


def with_engine(payload: Payload, engine: str, where: str) -> Payload:
    """The job with ``engine`` as the ``"engine"`` of every group (``zc run --engine``:
    the command line wins over what the job says)."""
    return _regrouped(payload, lambda group: group.__setitem__('engine', engine), where)


def _regrouped(payload: Payload, change: Callable[[dict], object], where: str) -> Payload:
    """The payload (a job description or a zapp) with ``change`` made to each group."""
    if not isinstance(payload.job, list):
        raise BuildError(f'{where}: a job description is a JSON list of groups')
    if payload.content_type == ZAPP_TYPE:
        job, files = read_zapp(payload.body, where)
    else:
        job, files = payload.job, None
    for group in job:
        if isinstance(group, dict):
            change(group)
    if files is None:
        return Payload(json.dumps(job).encode(), JSON_TYPE, job)
    return Payload(zapp_bytes(job, files), ZAPP_TYPE, job)


ANSWER_DEVICES = ('stdout', 'stderr', 'output')     # without a path: the answer's body


def _given(spec: dict, key: str, alias: str) -> object:
    """``spec[key]``, else its deprecated ``alias`` (JSON null is not given), as the
    job's parser reads it: ``devices``/``file_list``, ``name``/``device``."""
    value = spec.get(key)
    return spec.get(alias) if value is None else value


def devices_key(group: dict) -> str:
    """The key a group's devices are read from (``devices``, else ``file_list``), as
    :func:`_given` reads them."""
    return 'file_list' if group.get('devices') is None and group.get('file_list') is not None \
        else 'devices'


def group_devices(group: object) -> list[dict]:
    """The devices of a group (JSON objects; anything else is the parser's to refuse)."""
    devices = _given(group, 'devices', 'file_list') if isinstance(group, dict) else None
    return [d for d in devices if isinstance(d, dict)] if isinstance(devices, list) else []


def device_name(device: dict) -> object:
    """A device's name as the parser reads it (``name``, else the deprecated ``device``)."""
    return _given(device, 'name', 'device')


def answer_devices(group: object) -> list[dict]:
    """The devices of a group that write to the answer's body (no path)."""
    return [d for d in group_devices(group)
            if not d.get('path') and device_name(d) in ANSWER_DEVICES]


def stdout_to(payload: Payload, prefix: str, where: str) -> Payload | None:
    """The job with each node's stdout stored under ``prefix`` (``swift://~/c/p/``)
    instead of answered: ``--split`` of a job too large for the answer to say which
    bytes each node wrote. None when a group answers with another device (stderr,
    output), which no stored stdout holds."""
    groups = payload.job if isinstance(payload.job, list) else []
    if any(device_name(dev) != 'stdout' for group in groups for dev in answer_devices(group)):
        return None
    index = iter(range(len(groups)))

    def store(group: dict) -> None:
        # one * per * its read path has (each takes what that one matched), else one
        # (the node's name): no two nodes write the same object
        group_dir = f'{prefix}{next(index)}/'
        stars = next((dev['path'].count('*') for dev in group_devices(group)
                      if isinstance(dev.get('path'), str) and '*' in dev['path']
                      and device_name(dev) not in ANSWER_DEVICES), 1)
        for dev in answer_devices(group):
            dev['path'] = group_dir + '/'.join(['*'] * stars)
    return _regrouped(payload, store, where)


def nodes(job: list, account: str, list_objects, list_containers) -> list[Node]:
    """The job's nodes as the proxy will expand them (same parser and peer check: a
    connect too wide is refused before it is wired), for the object each one runs on;
    ``list_*`` list the caller's containers."""
    groups = parse_job(job, account, system_images=system_images(job))
    for group in groups:            # devices the request fills in (zapp image...)
        group.devices = [d for d in group.devices if d.path is not None or d.name != 'image']
    return expand(groups, list_objects, list_containers, check_peers=check_peers)


def system_images(job: list) -> list[str]:
    """The names the job may use as system images (the parser needs to know them; the
    server, which knows its images, refuses unknown ones): those its programs come
    from, and the other devices' names but misspelt standard ones (``stdn``), which
    the parser then refuses as the server would."""
    programs, devices = set(), set()
    for group in job if isinstance(job, list) else []:
        if not isinstance(group, dict):
            continue
        path = str((group.get('exec') or {}).get('path') or '')
        if path.startswith('file://') and ':' in path[7:]:
            programs.add(path[7:].partition(':')[0])
        devices |= {str(device_name(dev) or '') for dev in group_devices(group)}
    standard = list(DEVICES)
    images = programs | {n for n in devices - DEVICES.keys()
                         if not difflib.get_close_matches(n, standard, n=1, cutoff=0.7)}
    return sorted(n for n in images - DEVICES.keys() if n)


def node_object(node: Node) -> SwiftPath | None:
    """The object a node runs next to (its attached device's), if any."""
    if node.attach is not None and node.attach.readable and node.attach.path is not None:
        return node.attach.path
    return None


def sql_request(query: str, *, fmt: str = 'csv', header: bool = True, explain: bool = False,
                output: str | None = None, engine: str | None = None,
                input_format: str | None = None, columns: list[str] | None = None,
                delimiter: str | None = None, input_header: bool = True,
                skip_bad: bool = False) -> dict:
    """The JSON body of a ``sql/1.0`` request (``doc/sql.md``): only what differs from
    the entry point's defaults, so that the server's defaults stay the one truth."""
    if not query.strip():
        raise OptionError('the query is empty: give one SELECT ... FROM swift://~/c/*.csv')
    body: dict = {'query': query}
    if fmt != 'csv':
        body['format'] = fmt
    if not header:
        body['header'] = False
    if explain:
        body['explain'] = True
    if output is not None:
        body['output'] = output
    if engine is not None:
        body['engine'] = engine
    given = {'format': input_format, 'columns': columns, 'delimiter': delimiter,
             'header': None if input_header else False, 'skip_bad': True if skip_bad else None}
    if any(v is not None for v in given.values()):
        body['input'] = {k: v for k, v in given.items() if v is not None}
    return body
