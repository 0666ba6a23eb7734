"""Zapps: ``zc new`` (a skeleton), ``zc bundle`` (checked, then packed), ``zc deploy``.

An app's directory has ``zapp.yaml``::

    name: hello
    version: "0.1"
    job:                      # the job description, boot/system.map of the zapp
      - name: hello
        exec: {path: bin/hello}
        devices: [{name: stdin}, {name: stdout, content_type: text/plain}]
    bundle: [bin/hello, hello.py]     # files (globs) put into the zapp

``bundle`` checks the job with the proxy's own parser, checks that every
program the job runs from the zapp is bundled, validates every program
(ELF) locally with zvm_core's validator (the object servers' rules) and
compiles every Python file, and only then writes ``<name>.zapp`` (a gzipped
tar, the same bytes for the same files).

``deploy`` checks the zapp the same way and uploads it uncompressed
(``application/x-tar``), so it is both a REST endpoint (``/open/<account>/
<container>/<name>.zapp``: any method runs its job, the request body as
input) and an image other jobs can mount.  ``--content-type TYPE`` also
registers it for objects of that type: ``.zvm/<TYPE>/config`` becomes its
job with the deployed zapp as ``image``, so ``zc open`` (a ``GET`` with
``X-Zerovm-Execute: open/1.0``) of such an object runs the app over it.
``--endpoint CONTAINER`` makes it the container's REST endpoint
(``X-Container-Meta-Rest-Endpoint``: ``/api/<account>/<container>/<path>``).
"""

from __future__ import annotations

import glob
import json
import tempfile
from pathlib import Path

import yaml

from zerocloud.client.jobs import (
    ELF_MAGIC,
    INTERPRETERS,
    BuildError,
    device_name,
    devices_key,
    group_devices,
    system_images,
    zapp_bytes,
)
from zerocloud.job import USER_IMAGE, JobError, _known_keys, is_swift_url, parse_job
from zvm_core.elf import ElfError, load_program
from zvm_core.validator import Policy, default_cache, validate

MANIFEST = 'zapp.yaml'
MANIFEST_KEYS = ('name', 'version', 'job', 'bundle')

ZAPP_YAML = '''\
# The app: its job (boot/system.map of the zapp, doc/job-reference.md) and the
# files bundled with it.  Devices without a path read the object the app opens
# (or the request body) and write the answer.
name: {name}
version: "0.1"
job:
  - name: {name}
    exec: {{path: bin/{name}}}
    devices:
      - {{name: stdin}}
      - {{name: stdout, content_type: text/plain}}
# The Python example runs the same way with
#     exec: {{path: "file://python3:python3", args: "/{name}.py"}}
# or, without bundling: zc run --script {name}.py --on 'swift://~/data/*.txt'
bundle:
  - bin/{name}
  - {name}.py
'''

C_EXAMPLE = '''\
/* {name}: count the lines, words and bytes of stdin (the object the app runs on). */
#include <ctype.h>
#include <stdio.h>

int main(void)
{{
    long lines = 0, words = 0, bytes = 0;
    int c, in_word = 0;
    while ((c = getchar()) != EOF) {{
        bytes++;
        lines += c == '\\n';
        if (isspace(c))
            in_word = 0;
        else if (!in_word) {{
            in_word = 1;
            words++;
        }}
    }}
    printf("%ld lines, %ld words, %ld bytes\\n", lines, words, bytes);
    return 0;
}}
'''

PY_EXAMPLE = '''\
"""{name}: count the lines, words and bytes of stdin, like bin/{name}."""
import sys

data = sys.stdin.buffer.read()
lines, words = data.count(b"\\n"), len(data.split())
print(f"{{lines}} lines, {{words}} words, {{len(data)}} bytes")
'''

MAKEFILE = '''\
# Programs are static x86-64 Linux executables: musl-gcc -static.
CC = musl-gcc
CFLAGS = -static -O2

all: bin/{name}

bin/{name}: {name}.c
\tmkdir -p bin
\t$(CC) $(CFLAGS) -o $@ $<

zapp: all
\tzc bundle

clean:
\trm -rf bin {name}.zapp

.PHONY: all zapp clean
'''


def new(name: str, where: Path) -> Path:
    """Write the skeleton of app ``name`` into ``where/name``; refuse to overwrite."""
    if not name or any(c in name for c in '/, \t') or name.startswith('.'):
        raise BuildError(f'bad app name {name!r}: use letters, digits, - and _')
    root = where / name
    if root.exists():
        raise BuildError(f'{root} exists already')
    root.mkdir(parents=True)
    for file, text in ((MANIFEST, ZAPP_YAML), (f'{name}.c', C_EXAMPLE),
                       (f'{name}.py', PY_EXAMPLE), ('Makefile', MAKEFILE)):
        (root / file).write_text(text.format(name=name))
    return root


def manifest(root: Path) -> dict:
    path = root / MANIFEST
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError as e:
        raise BuildError(f'cannot read {path}: {e.strerror} (run zc bundle in an app '
                         'directory, or make one: zc new NAME)') from None
    except OSError as e:
        raise BuildError(f'cannot read {path}: {e.strerror}') from None
    except yaml.YAMLError as e:
        raise BuildError(f'{path} is not valid YAML: {e}') from None
    if not isinstance(data, dict) or not isinstance(data.get('job'), list):
        raise BuildError(f'{path} needs a "job" (a list of groups, doc/job-reference.md)')
    try:            # "bundel:" would bundle nothing, and say only that nothing is bundled
        _known_keys(data, MANIFEST_KEYS, str(path))
    except JobError as e:
        raise BuildError(str(e)) from None
    if not isinstance(data.get('name'), str) or not data['name']:
        raise BuildError(f'{path} needs a "name"')
    return data


def check_program(name: str, data: bytes, notes: list[str] | None = None) -> str | None:
    """Why the program ``data`` would be refused by the object servers, or None.

    ``notes`` gets ``zvm validate``'s line on a valid program's instructions of
    extensions the sandbox's CPU lacks (a -mavx2 build): valid, it faults where it
    reaches one, and the user who only sees ``valid`` learns it from a failed job."""
    with tempfile.NamedTemporaryFile(suffix='-' + Path(name).name) as f:
        f.write(data)
        f.flush()
        try:
            program = load_program(f.name)
        except ElfError as e:
            return f'{name}: invalid: {e}' if e.rule != 'E1' else _not_elf(name, e)
        verdict = validate(program, Policy(), default_cache())
    if verdict.ok:
        if verdict.absent and notes is not None:
            from zvm_core.prepare import absent_note  # 10 ms of zc start-up: only here
            notes.append(f'{name}: {absent_note(program, verdict)}')
        return None
    first = verdict.violations[0]
    return (f'{name}: invalid: {len(verdict.violations)} violation(s), first '
            f'{first.rule} at {first.address:#x}: {first.text}')


def _not_elf(name: str, error: ElfError) -> str:
    """A local text file given as a program: the command that runs it if it is a script
    (the validator's own advice names the interpreter's URL, which zc users need not type)."""
    if 'a text file' not in error.message or is_swift_url(name):
        return f'{name}: invalid: {error}'
    how = (f'zc run --script {name}' if Path(name).suffix.lower() in INTERPRETERS else
           f'zc run --script {name} --interpreter {INTERPRETERS[".py"]} (or '
           f'{INTERPRETERS[".lua"]} for Lua)')
    return (f'{name}: a text file, not a program: a Python (.py) or Lua (.lua) script runs '
            f'with {how} (doc/python.md, doc/lua.md); a program is built with musl-gcc '
            '-static')


def check(job: list, files: dict[str, bytes], where: str) -> list[str]:
    """Check a zapp's job and files as the cluster would; what was checked, one line each."""
    try:
        groups = parse_job(job, 'zapp', system_images=system_images(job))
    except JobError as e:
        raise BuildError(f'{where}: the job is not valid: {e}') from None
    for group in groups:
        member = group.exec.image_member
        if member is not None and member[0] in (None, USER_IMAGE) and member[1] not in files:
            raise BuildError(f'{where}: {group.name} runs {group.exec.path}, which is not '
                             f'bundled (files: {", ".join(sorted(files)) or "none"})')
    done = []
    for name, data in sorted(files.items()):
        if data[:4] == ELF_MAGIC:
            notes: list[str] = []
            problem = check_program(name, data, notes)
            if problem:
                raise BuildError(f'{where}: {problem}')
            done.append(f'{name}: valid program')
            done.extend(notes)
        elif name.endswith('.py'):
            try:
                compile(data, name, 'exec')
            except SyntaxError as e:
                raise BuildError(f'{where}: {name}:{e.lineno}: {e.msg}') from None
            done.append(f'{name}: Python compiles')
    return done


def bundle(root: Path, output: Path | None = None) -> tuple[Path, list[str]]:
    """Check the app in ``root`` and write its zapp; (path, what was checked)."""
    spec = manifest(root)
    files: dict[str, bytes] = {}
    for pattern in spec.get('bundle') or []:
        matches = sorted(glob.glob(str(pattern), root_dir=root, recursive=True))
        if not matches:
            hint = ' (run make first?)' if (root / 'Makefile').exists() else ''
            raise BuildError(f'{root / MANIFEST}: bundle: nothing matches {pattern}{hint}')
        for match in matches:       # a directory (a package, mylib/) with all its files
            found = [root / match] if (root / match).is_file() else \
                sorted(p for p in (root / match).rglob('*') if p.is_file())
            for path in found:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    checked = check(spec['job'], files, str(root / MANIFEST))
    output = output or root / f'{spec["name"]}.zapp'
    output.write_bytes(zapp_bytes(spec['job'], files))
    return output, checked


def bundled_path(root: Path) -> Path | None:
    """The zapp ``zc bundle root`` writes; None when ``root`` has no readable zapp.yaml."""
    try:
        name = yaml.safe_load((root / MANIFEST).read_text()).get('name')
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    return root / f'{name}.zapp' if isinstance(name, str) and name else None


def registered_job(job: list, image_url: str) -> list:
    """The zapp's job for ``.zvm/<type>/config``: its ``image`` is the deployed zapp,
    written into the devices key the group uses (``devices`` or ``file_list``: both
    in one group are refused by the parser)."""
    out = json.loads(json.dumps(job))
    for number, group in enumerate(out if isinstance(out, list) else [out], 1):
        if not isinstance(group, dict):
            raise BuildError(f'node {number} of the zapp\'s job is not a JSON object: make it '
                             '{"name": ..., "exec": ..., "devices": [...]}')
        key = devices_key(group)
        if group.get(key) is None:
            group[key] = []
        if not isinstance(group[key], list):
            raise BuildError(f'node {number} of the zapp\'s job: its {key} is not a list')
        image = next((d for d in group_devices(group) if device_name(d) == USER_IMAGE), None)
        if image is None:
            group[key].append({'name': USER_IMAGE, 'path': image_url})
        elif not is_swift_url(image.get('path')):
            image['path'] = image_url
    return out
