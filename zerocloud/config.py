"""Every option of the two ZeroCloud filters, parsed once, and the constants they share.

Each filter builds one :class:`Config` from its paste section as it is made
(its ``__init__``: a bad value fails the server's start with the option's
name, as Swift's own middlewares do) and reads it from then on.  The options
and their defaults are documented in ``etc/zerocloud.conf-sample`` (the
packaged ``zerocloud/etc/zerocloud.conf-sample``) and doc/operator-guide.md.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from swift.common.utils import TRUE_VALUES, config_true_value
from swift.common.wsgi import ConfigFileError

from zerocloud import zapp
from zvm_core import sysimages
from zvm_core.engines import CHOICES
from zvm_core.limits import DEFAULT_FUEL, DEFAULT_MEMORY, DEFAULT_TIMEOUT

SWIFT_SOURCE = 'ZC'     # the swift_source of our sub-requests (proxy access logs)
FALSE_VALUES = frozenset({'false', '0', 'no', 'off', 'f', 'n'})   # Swift's, mirrored
PREFIXES = ('zerovm_', 'zapp_')      # every name with these is one of ours, or a typo
# Objects a node cannot read in place: their bytes are elsewhere (manifests, symlinks).
NOT_PLAIN = ('X-Object-Manifest', 'X-Static-Large-Object', 'X-Object-Sysmeta-Symlink-Target')


class ConfigError(ConfigFileError, ValueError):
    """A bad option or pipeline: Swift's server prints it as one line and exits 1 (it
    printed a ValueError as a traceback, the message last)."""


@contextmanager
def refused_at_start() -> Iterator[None]:
    """Turn the ValueError of a filter's start (an option, its place in the pipeline,
    the host's engine) into a :class:`ConfigError`."""
    try:
        yield
    except ConfigError:
        raise
    except ValueError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class Config:
    """The options of ``[filter:zerocloud]`` (and the few Swift options the filters read)."""

    # limits of one node (both filters)
    timeout: float = DEFAULT_TIMEOUT
    memory: int = DEFAULT_MEMORY
    fuel: int = DEFAULT_FUEL
    max_input: int = 1 << 30
    max_output: int = 1 << 30
    # proxy
    swift_dir: str = '/etc/swift'
    max_config: int = 65536
    max_nexe: int = 256 << 20
    max_nodes: int = 100000
    max_spool: int = 4 << 30
    job_max_output: int = 4 << 30   # bytes of output one job may hold on the proxy at once
    job_max_programs: int = 512 << 20   # bytes of programs one job holds on disk
    job_max_inputs: int = 4 << 30   # bytes of objects sent along one job holds on disk
    pipeline: bool = True
    conn_timeout: float = 0.5
    interactive_timeout: float = DEFAULT_TIMEOUT
    chain_timeout: float = 20.0
    deferred_heartbeat: float = 10.0
    account_deferred: int = 16      # deferred jobs of one account running in one proxy
    zapp_limits: zapp.Limits = zapp.Limits()
    # both: {name: tar path}, parsed once (the proxy reads the names, object servers the paths)
    sysimage_devices: dict[str, Path] = field(default_factory=dict)
    # object server
    devices: str = '/srv/node'
    mount_check: bool = True
    pool_size: int = 1
    queue: int = 16
    account_pool: int = 1           # nodes of one account running / waiting on one server
    account_queue: int = 8
    job_slots: int = 17             # nodes of one job running or waiting on one server
    link_wait: float = 30.0         # seconds a node may wait for new data on a link
    prewarm: str = ''
    engine: str | None = None       # zerovm_engine; None: the workers' default
    one_process: bool = False       # workers = 0: no fork follows the filter's start

    @classmethod
    def from_conf(cls, conf: dict) -> Config:
        """Parse a paste section (``[DEFAULT]`` merged in); ValueError names the option."""
        known: set[str] = set()

        def option(name: str, parse, default):
            known.add(name)
            try:
                return parse(conf.get(name, default))
            except (TypeError, ValueError) as e:
                raise ValueError(f'{name}: {e}') from None

        positive, non_negative_int = _whole(1), _whole(0)
        timeout = option('zerovm_timeout', _positive_float, DEFAULT_TIMEOUT)
        pool_size = option('zerovm_maxpool', positive, os.cpu_count() or 1)
        queue = option('zerovm_maxqueue', non_negative_int, 16)
        config = cls(
            timeout=timeout,
            memory=option('zerovm_maxnexemem', positive, DEFAULT_MEMORY),
            fuel=option('zerovm_fuel', positive, DEFAULT_FUEL),
            max_input=option('zerovm_maxinput', positive, 1 << 30),
            max_output=option('zerovm_maxoutput', positive, 1 << 30),
            swift_dir=option('swift_dir', str, '/etc/swift'),
            max_config=option('zerovm_maxconfig', positive, 65536),
            max_nexe=option('zerovm_maxnexe', positive, 256 << 20),
            max_nodes=option('zerovm_maxnodes', positive, 100000),
            max_spool=option('zerovm_maxspool', positive, 4 << 30),
            job_max_output=option('zerovm_job_maxoutput', positive, 4 << 30),
            job_max_programs=option('zerovm_job_maxprograms', positive, 512 << 20),
            job_max_inputs=option('zerovm_job_maxinputs', positive, 4 << 30),
            pipeline=option('zerovm_pipeline', boolean, 'true'),
            conn_timeout=option('conn_timeout', _positive_float, 0.5),
            interactive_timeout=option('interactive_timeout', _positive_float, timeout),
            chain_timeout=option('chain_timeout', _positive_float, 20),
            deferred_heartbeat=option('deferred_heartbeat', _positive_float, 10),
            account_deferred=option('zerovm_account_maxdeferred', positive, 16),
            zapp_limits=zapp.Limits(option('zapp_max_members', positive, zapp.Limits.members),
                                    option('zapp_max_size', positive, zapp.Limits.size),
                                    option('zapp_max_ratio', positive, zapp.Limits.ratio)),
            sysimage_devices=option('zerovm_sysimage_devices', sysimages.parse, ''),
            devices=conf.get('devices', '/srv/node'),
            mount_check=config_true_value(conf.get('mount_check', 'true')),
            pool_size=pool_size,
            queue=queue,
            # by default one account may use every worker but only half the queue
            account_pool=min(pool_size, option('zerovm_account_maxpool', positive, pool_size)),
            account_queue=min(queue, option('zerovm_account_maxqueue', non_negative_int,
                                            (queue + 1) // 2)),
            job_slots=option('zerovm_job_maxslots', positive, pool_size + queue),
            link_wait=option('zerovm_link_wait', _positive_float, 30),
            prewarm=option('zerovm_prewarm', str, ''),
            engine=option('zerovm_engine', _engine, None),
            one_process=str(conf.get('workers', '')).strip() == '0',
        )
        for name in sorted(set(conf) - known):      # a typo does nothing
            _refuse_unknown(name, known)
        if config.engine == 'native' and config.fuel != DEFAULT_FUEL:   # every node refused
            raise ValueError(f'zerovm_engine = native with zerovm_fuel = {config.fuel}: the '
                             'native engine counts no fuel, so every node would be refused; '
                             'drop zerovm_fuel, or set zerovm_engine = auto (emulated when a '
                             'fuel limit is set) or emulated')
        return config

    @functools.cached_property
    def setup(self) -> str:
        """The options both filters read, as an object server's answers tell them
        (``X-Zerovm-Setup``) and the proxy compares with its own (a side upgraded or
        configured alone): ``zerovm_timeout=60.0; ...; zerovm_sysimage_devices=lua
        python3`` (the images' names)."""
        return '; '.join(f'{name}={value}' for name, value in (
            ('zerovm_timeout', float(self.timeout)), ('zerovm_maxnexemem', self.memory),
            ('zerovm_fuel', self.fuel), ('zerovm_maxinput', self.max_input),
            ('zerovm_maxoutput', self.max_output),
            ('zerovm_sysimage_devices', ' '.join(sorted(self.sysimage_devices)))))

    @property
    def system_images(self) -> list[str]:
        """The names of the configured system images (what jobs may name as devices)."""
        return list(self.sysimage_devices)


def _refuse_unknown(name: str, known: set[str]) -> None:
    """ValueError for an option ``name`` that is none of ours (``known``) but looks it:
    any ``zerovm_*`` or ``zapp_*`` name, or one a letter or two from another option
    (``conn_timout``; the conf has Swift's own options too, none that close to ours)."""
    prefix = next((p for p in PREFIXES if name.startswith(p)), '')
    if prefix:             # matched on what follows the common prefix
        close = difflib.get_close_matches(
            name[len(prefix):], [k[len(prefix):] for k in known if k.startswith(prefix)], 1)
    else:
        close = difflib.get_close_matches(
            name, [k for k in known if not k.startswith(PREFIXES)], 1, cutoff=0.9)
        if not close:
            return
    hint = f': did you mean {prefix}{close[0]}?' if close else ''
    raise ValueError(f'{name}: no such option{hint} (doc/operator-guide.md)')


def _whole(least: int):
    """A parser of whole numbers from ``least`` on, whose error shows how to write one
    (an operator writes ``256M`` or ``2e10`` where the option takes 268435456)."""
    def parse(value: str | int) -> int:
        try:
            number = int(value)
        except ValueError:
            number = least - 1
        if number < least:
            above = 'above 0' if least else '0 or more'
            raise ValueError(f'{value}: expected a whole number {above}, written out without a '
                             f'unit (256 MiB is 268435456, 2x10^10 is 20000000000)')
        return number
    return parse


def boolean(value: object) -> bool:
    """Swift's true and false words (any case, blanks around them aside); ValueError
    for another word: a slip, not ``false``."""
    word = str(value).strip().lower()
    if word not in TRUE_VALUES | FALSE_VALUES:
        raise ValueError(f'{value}: expected true or false')
    return word in TRUE_VALUES


def _positive_float(value: str | float) -> float:
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise ValueError(f'{value}: expected a number of seconds above 0')
    return number


def _engine(value: str | None) -> str | None:
    if value and value not in CHOICES:
        raise ValueError(f'{value}: choose one of {", ".join(CHOICES)}')
    return value or None
