"""ZRT's ``/dev/nvram``: command line, environment, mounts, stat modes and the clock.

ZeroVM programs got no argv or environment on the stack: ZRT, their C
runtime, read them from an INI-like channel (``zerovm/zrt: lib/nvram``).
zvm reads it on the host and gives the program an ordinary argv, envp and
file tree instead.  The format, as ZRT parses it:

* ``[section]`` headers at the start of a line; unknown sections are ignored;
* in a section, ``,`` separates ``key = value`` pairs like a newline does;
  ``#`` starts a comment; unknown keys and repeated keys are ignored; the
  pairs of a line (continued on the next lines until complete) form one
  record once every required key is there;
* values may escape characters as ``\\xHH`` (zvsh escapes ``\\ " , space
  newline``; ZeroCloud only ``,`` in ``[env]``).

Sections: ``[args] args = argv0 arg1 ...`` (split on spaces, each
unescaped), ``[env] name=K, value=V``, ``[fstab] channel=/dev/X,
mountpoint=/, access=ro|wo[, removable=yes|no][, fsname=tar]``,
``[mapping] channel=/dev/X, mode=file|char|pipe|block`` and ``[time]
seconds=N`` (the clock's start; ZRT's clock is 0 without it).
"""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass, field

MAX_SIZE = 1 << 20                 # ZRT read only 10240 bytes; zvm reads this much
MODES = {'file': stat.S_IFREG, 'char': stat.S_IFCHR, 'pipe': stat.S_IFIFO,
         'block': stat.S_IFBLK}
# section -> (required keys, optional keys with defaults)
SECTIONS = {
    'args': (('args',), {}),
    'env': (('name', 'value'), {}),
    'fstab': (('channel', 'mountpoint', 'access'), {'removable': 'no', 'fsname': 'tar'}),
    'mapping': (('channel', 'mode'), {}),
    'time': (('seconds',), {}),
}
_ESCAPE = re.compile(r'\\x([0-9a-fA-F]{2})')
_HEADER = re.compile(r'^\[([^\]\n]*)\][^\n]*$', re.M)


def unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)


def escape(value: str) -> str:
    """What zvsh wrote: ``\\ " , space newline`` as ``\\xHH``."""
    for c in '\\", \n':
        value = value.replace(c, f'\\x{ord(c):02x}')
    return value


@dataclass(frozen=True)
class Mount:
    channel: str
    mountpoint: str
    access: str = 'ro'
    removable: str = 'no'
    fsname: str = 'tar'


@dataclass
class Nvram:
    """What a program's NVRAM says; ``args`` None when it has no ``[args]``."""

    args: list[str] | None = None
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[Mount] = field(default_factory=list)
    mapping: dict[str, int] = field(default_factory=dict)    # alias -> stat file type
    time: int | None = None

    def to_text(self) -> str:
        """The NVRAM as zvsh wrote it (values escaped, so :func:`parse` gives it back)."""
        out = []
        if self.args is not None:
            out += ['[args]', 'args = ' + ' '.join(map(escape, self.args))]
        if self.env:
            out += ['[env]'] + [f'name={escape(k)}, value={escape(v)}'
                                for k, v in self.env.items()]
        if self.mounts:
            out += ['[fstab]'] + [f'channel={m.channel}, mountpoint={m.mountpoint}, '
                                  f'access={m.access}, removable={m.removable}, '
                                  f'fsname={m.fsname}' for m in self.mounts]
        if self.mapping:
            names = {v: k for k, v in MODES.items()}
            out += ['[mapping]'] + [f'channel={alias}, mode={names[kind]}'
                                    for alias, kind in self.mapping.items()]
        if self.time is not None:
            out += ['[time]', f'seconds={self.time}']
        return '\n'.join(out) + '\n'


def _records(body: str, required: tuple[str, ...], optional: dict) -> list[dict]:
    """The section's records: one ends at its last key, as in ZRT, also within a line
    (``name=A, value=1, name=B, value=2`` is two), or at the end of a line that gave
    every required key (the optional ones are then defaults)."""
    records, current = [], {}
    keys = (*required, *optional)
    for line in body.split('\n'):
        for token in line.split('#', 1)[0].split(','):
            key, sep, value = token.partition('=')
            key = key.strip()
            if sep and key in keys and key not in current:
                current[key] = value.strip()
                if len(current) == len(keys):       # every key: the record ends here
                    records.append(current)
                    current = {}
        if all(k in current for k in required):
            records.append({**optional, **current})
            current = {}
    return records


def parse(data: str | bytes) -> Nvram:
    """The NVRAM's settings; records ZRT would ignore are ignored."""
    text = data.decode('utf-8', 'replace') if isinstance(data, bytes) else data
    nv = Nvram()
    headers = list(_HEADER.finditer(text))
    for i, h in enumerate(headers):
        name = h.group(1).strip()
        if name not in SECTIONS:
            continue
        body = text[h.end():headers[i + 1].start() if i + 1 < len(headers) else len(text)]
        for r in _records(body, *SECTIONS[name]):
            if name == 'args' and nv.args is None:
                nv.args = [unescape(a) for a in r['args'].split(' ') if a]
            elif name == 'env':
                nv.env[unescape(r['name'])] = unescape(r['value'])
            elif name == 'fstab' and r['access'] in ('ro', 'wo') and \
                    r['removable'] in ('yes', 'no'):
                nv.mounts.append(Mount(r['channel'], r['mountpoint'], r['access'],
                                       r['removable'], r['fsname']))
            elif name == 'mapping' and r['mode'] in MODES:
                nv.mapping[r['channel']] = MODES[r['mode']]
            elif name == 'time' and r['seconds'].isdigit():
                nv.time = int(r['seconds'])
    return nv
