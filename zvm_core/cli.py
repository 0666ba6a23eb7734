"""The ``zvm`` command: validate or run a static x86-64 program in the sandbox.

    zvm [-s] [-F] [-P] [-t 0|1|2] MANIFEST      (a drop-in for ``zerovm``)
    zvm validate [--rdtsc virtualize|reject] PROGRAM
    zvm run [--stdin F] [--stdout F] [--stderr F] [--input F] [--output F]
            [--memory BYTES] [--fuel N] [--timeout S] [--seed N] [--epoch SECONDS]
            [--env K=V ...] [--quota /dev/NAME=key:value,...] [--rdtsc POLICY]
            [--image TAR] [--sysimage NAME ...] [--engine auto|native|emulated]
            [--report F|-] [--repeat N] PROGRAM [ARGS...]
    zvm info

``validate`` exits 0 for a valid program (1 for an invalid one, with its
violations); a valid one that holds instructions of extensions the sandbox's
CPU lacks (built with -march=native or -mavx2; glibc's, behind ``cpuid``) gets
a second line: how many, of which extensions, and that they fault if reached.
``run`` exits with the guest's return code when the report status is ``ok``,
with 141 (128 + SIGPIPE, quietly, as ``cat``) when the program was stopped for
writing again to a pipe whose reader went away (``zvm run prog | head -1``), and
with 125 otherwise; ``--report -`` writes the JSON report to stderr.
The CLI's own stderr lines wait at most :data:`STDERR_GRACE` for room (a guest
may leave an inherited stderr pipe full), then are dropped: the exit status
still says how the run ended.
``--repeat N`` runs the program N times through a warm worker
(``zvm_core.pool``) and prints the start-up times: the first run builds the
template, the others reuse it.
``--image TAR`` gives the guest a read-only file tree: the tar is the channel
``/dev/image``, mounted at ``/``.  ``--sysimage NAME`` mounts a system image
(``zvm_core.sysimages``: ``$ZVM_SYSIMAGES``, else the ones ``zvm-interpreters
build`` made) as ``/dev/NAME`` at ``/`` too, user image last.  PROGRAM may
be a file inside an image: ``file://NAME:PATH`` (a system image, mounted
implicitly; ``zvm run file://python3:python3 -c 'print(1)'``) or
``file://image:PATH`` (the ``--image`` tar).
``--engine`` picks the engine (``zvm_core.engines``; default ``auto``, or
``$ZVM_ENGINE``): ``native`` runs the program on the CPU, contained by the
kernel, ``emulated`` under the strict emulator; ``--fuel`` asks for the
emulated engine (``--engine native --fuel N`` is a usage error).  ``zvm info``
lists the engines and, for one this host cannot run, why.  ``run`` and ``info``
keep a probe that found the native engine able on disk (``zvm_core.engines.native.probe``:
a probe is a loader's spawn); a run the host killed where a kept verdict said it
could run drops it and probes again, and says what it found.
Usage errors (unreadable program, bad option values) exit with 2.

The ``zerovm`` form runs a ZeroVM manifest (``zvm_core.zerovm.manifest``), prints
ZeroVM's six-line report on stdout (``-t 1``: to syslog) and exits with
ZeroVM's code: 0 when the program ran (whatever it returned), else the errno
of the first error.  ``-s`` reports validation as skipped (zvm validates
anyway), ``-F`` stops after validation, ``-P`` does not preallocate write
channels; ``-Q``, ``-v N``, ``-l N`` and ``-T FILE`` are accepted and ignored,
``-M MANIFEST`` is the old spelling.  A bad command line exits with EINVAL.
``zvm sdk`` prints the directory that holds ``zvm.h``.
"""

from __future__ import annotations

from zvm_core.interrupt import quiet_imports

with quiet_imports('zvm'):   # Ctrl-C as the command is starting: exit 130
    import argparse
    import contextlib
    import errno
    import getopt
    import os
    import posixpath
    import select
    import shlex
    import sys
    import syslog
    import time
    from typing import TYPE_CHECKING

    from zvm_core import engines, stdout
    from zvm_core.channels import READ, WRITE, Channel, ChannelError, FdBacking, Quota
    from zvm_core.elf import ELF_MAGIC, ElfError, load_program
    from zvm_core.engines import CHOICES
    from zvm_core.limits import (
        DEFAULT_FUEL,
        DEFAULT_MEMORY,
        DEFAULT_TIMEOUT,
        Limits,
        bad_env_name,
    )
    from zvm_core.report import SIGPIPE_STATE
    from zvm_core.validator import Policy, default_cache, validate
    from zvm_core.version import add_version

if TYPE_CHECKING:
    from zvm_core.report import Report

# The executor, the pool and the ZeroVM session are imported by the commands that use
# them: each command is one process, and start-up is most of a short run.

EXIT_NOT_OK = 125
EXIT_USAGE = 2


def _int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        hint = (' (a whole number, written out: 1 GiB is 1073741824, 2x10^10 is 20000000000)'
                if text[:1].isdigit() else '')     # a unit or an exponent: 1G, 2e9
        raise argparse.ArgumentTypeError(f'not an integer: {text!r}{hint}') from None
    if value < 0:
        raise argparse.ArgumentTypeError(f'must not be negative: {text!r}')
    return value


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition('=')
    if not sep or not key:
        raise argparse.ArgumentTypeError(f'expected K=V, got {text!r}')
    if (bad := bad_env_name(key)) is not None:
        raise argparse.ArgumentTypeError(bad)
    return key, value


def _quota(text: str) -> tuple[str, str]:
    alias, sep, spec = text.partition('=')
    if not sep or not alias.startswith('/dev/'):
        raise argparse.ArgumentTypeError(f'expected /dev/NAME=key:value,..., got {text!r}')
    return alias, spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog='zvm',
                                     description=__doc__.split('\n\n')[0].replace('``', ''))
    add_version(parser)
    sub = parser.add_subparsers(dest='command', required=True)
    rdtsc = dict(choices=('virtualize', 'reject'), default='virtualize',
                 help='rdtsc/rdtscp: answer from a virtual counter, or reject the program')
    v = sub.add_parser('validate', help='check a program against the sandbox rules')
    v.add_argument('--rdtsc', **rdtsc)
    v.add_argument('program')
    r = sub.add_parser('run', help='run a program in the sandbox')
    for name in ('stdin', 'stdout', 'stderr', 'input', 'output'):
        r.add_argument(f'--{name}', metavar='FILE', help=f'host file for /dev/{name}')
    r.add_argument('--memory', type=_int, default=DEFAULT_MEMORY, help='guest memory, bytes')
    r.add_argument('--fuel', type=_int, default=None,
                   help='budget in bytes of guest code executed (deterministic; emulated '
                        f'engine only; default {DEFAULT_FUEL})')
    r.add_argument('--engine', choices=CHOICES, default=None,
                   help='auto (default, or $ZVM_ENGINE), native or emulated')
    r.add_argument('--timeout', type=float, default=DEFAULT_TIMEOUT,
                   help='wall-clock safety limit, seconds')
    r.add_argument('--seed', type=_int, default=0, help='seed of getrandom and AT_RANDOM')
    r.add_argument('--epoch', type=_int, default=0, help='guest clock start, Unix seconds')
    r.add_argument('--env', type=_env, action='append', default=[], metavar='K=V')
    r.add_argument('--quota', type=_quota, action='append', default=[],
                   metavar='/dev/NAME=key:value,...',
                   help='channel limits; keys gets, get_size, puts, put_size')
    r.add_argument('--rdtsc', **rdtsc)
    r.add_argument('--report', metavar='FILE', help='write the JSON report here (- = stderr)')
    r.add_argument('--repeat', type=_int, default=1, metavar='N',
                   help='run N times through a warm worker and print the timings')
    r.add_argument('--image', metavar='TAR',
                   help='a tar mounted read-only at / (the channel /dev/image)')
    r.add_argument('--sysimage', action='append', default=[], metavar='NAME',
                   help='mount this system image at / as well (repeatable)')
    r.add_argument('program')
    r.add_argument('args', nargs=argparse.REMAINDER)
    sub.add_parser('sdk', help='print the directory that holds zvm.h (the ZeroVM API)')
    sub.add_parser('info', help='list the engines this host can run')
    parser.epilog = 'or, as zerovm: ' + ZEROVM_USAGE
    return parser


# How long one of the CLI's own messages waits for stderr: the guest may have left
# the CLI's stderr a full pipe that nobody reads (the run is over, the exit status
# says how it ended); the message is then dropped rather than the CLI hung forever.
STDERR_GRACE = 2.0
_PIPE_BUF = 4096        # a write this size to a pipe that polls writable does not block


def _say(text: str) -> None:
    """Write one of the CLI's own messages (and ``--report -``) to stderr, giving up
    after :data:`STDERR_GRACE` seconds without room for it."""
    data = memoryview(text.encode(errors='replace'))
    deadline = time.monotonic() + STDERR_GRACE
    poll = select.poll()
    poll.register(2, select.POLLOUT)
    while data:
        left = deadline - time.monotonic()
        if left <= 0 or not poll.poll(left * 1000):
            return
        try:
            data = data[os.write(2, data[:_PIPE_BUF]):]
        except BlockingIOError:
            continue
        except OSError:             # no stderr at all (closed, or its reader gone)
            return


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def _channels(opts: argparse.Namespace) -> list[Channel]:
    quotas: dict[str, Quota] = {}
    for alias, spec in opts.quota:
        quotas[alias] = Quota.parse(spec, quotas.get(alias))
    spec = (('/dev/stdin', opts.stdin, 0, READ, False),
            ('/dev/stdout', opts.stdout, 1, WRITE, False),
            ('/dev/stderr', opts.stderr, 2, WRITE, False),
            ('/dev/input', opts.input, None, READ, True),
            ('/dev/output', opts.output, None, WRITE, True))
    channels = []
    try:
        for alias, path, inherit, mode, random in spec:
            if path is not None:
                backing = FdBacking.open(path, mode)
            elif inherit is not None and _is_open(inherit):
                backing = FdBacking(inherit, owned=False)
            else:
                continue
            channels.append(Channel(alias, backing, mode, random=random and backing.seekable,
                                    quota=quotas.pop(alias, Quota())))
    except ChannelError:
        for ch in channels:
            ch.close()
        raise
    if quotas:
        raise ChannelError(f'--quota for undeclared channel(s): {", ".join(quotas)}')
    return channels


def _cmd_validate(opts: argparse.Namespace) -> int:
    try:
        program = load_program(opts.program)
    except ElfError as e:
        print(f'{opts.program}: invalid: {e}')
        return 1
    verdict = validate(program, Policy(rdtsc=opts.rdtsc), default_cache())
    if verdict.ok:
        print(f'{opts.program}: valid ({verdict.instructions} instructions'
              f'{", cached" if verdict.cached else ""})')
        if verdict.absent:
            from zvm_core.prepare import absent_note
            print(f'{opts.program}: {absent_note(program, verdict)}')
        return 0
    print(f'{opts.program}: invalid: {len(verdict.violations)} violation(s)')
    for v in verdict.violations:
        print(f'  {v.rule} {v.address:#x} {v.text}')
    return 1


def _images(opts: argparse.Namespace) -> tuple[str, list[tuple[str, str]]]:
    """The host path of PROGRAM, and the images to mount: [(alias, host tar)], in order.

    Names are checked here, before any channel is opened.
    """
    from zvm_core.sysimages import SysImageError, SystemImages
    wanted = list(dict.fromkeys(opts.sysimage))
    program = opts.program
    image, sep, member = program[len('file://'):].partition(':')
    inside = program.startswith('file://')
    if inside and (not sep or not image or not member):
        raise SysImageError(f'{program}: expected file://<image>:<path>')
    if inside and image != 'image' and image not in wanted:
        wanted.insert(0, image)
    # the built images' list (zvm_core.build.interpreters) is read when one is named;
    # $ZVM_SYSIMAGES is always checked
    configured = wanted or os.environ.get('ZVM_SYSIMAGES') is not None
    system = SystemImages.from_config() if configured else SystemImages({})
    mounts = [(f'/dev/{name}', str(system.tar(name))) for name in wanted]
    if opts.image is not None:
        mounts.append(('/dev/image', opts.image))
    if inside:
        if image == 'image':
            if opts.image is None:
                raise SysImageError(f'{program}: no --image to take it from')
            program = str(SystemImages({'image': opts.image}, system.cache_dir)
                          .program('image', member))
        else:
            program = str(system.program(image, member))
    return program, mounts


def _mounted(mounts: list[tuple[str, str]]) -> list[Channel]:
    channels: list[Channel] = []
    try:
        for alias, path in mounts:
            channels.append(Channel(alias, FdBacking.open(path, READ), READ, random=True))
    except ChannelError:
        for ch in channels:
            ch.close()
        raise
    return channels


def _probes_kept(engine: str | None, fuel: bool) -> contextlib.AbstractContextManager:
    """Within: native probes kept on disk (``probe.remembered``); nothing to do when no
    probe can be asked for (an emulated run does not import the native engine)."""
    if fuel or engines.requested(engine) == 'emulated':
        return contextlib.nullcontext()
    from zvm_core.engines.native import probe
    return probe.remembered()


def _recheck(report: Report) -> None:
    """A native run its host killed, where a kept probe said the host could run it:
    the verdict goes and the host is probed again, and the user is told what it found
    (the run stays failed: the guest may have begun)."""
    if not (report.engine == 'native' and report.host_failure):
        return
    from zvm_core.engines import native
    kinds = native.probe.forget()
    if not kinds:
        return
    native.unavailable.forget()
    native.tsc_unavailable.forget()
    reason = native.unavailable()
    if reason is None and 'tsc' in kinds:
        reason = native.tsc_unavailable()
    if isinstance(reason, native.probe.Transient):  # says nothing of the host: not kept
        found = f'the host is busy ({reason}): retry'
    elif reason:
        found = f'it cannot ({reason}); the next run does not use it'
    else:
        found = "it can: the failure is the host's, retry"
    _say(f'zvm: a kept probe said the native engine runs here; probed again: {found}\n')


def _cmd_run(opts: argparse.Namespace) -> int:
    with _probes_kept(opts.engine, opts.fuel is not None):
        return _run(opts)


def _run(opts: argparse.Namespace) -> int:
    from zvm_core.executor import run
    from zvm_core.sysimages import SysImageError
    try:
        limits = Limits(opts.memory, DEFAULT_FUEL if opts.fuel is None else opts.fuel,
                        opts.timeout)
    except ValueError as e:
        raise ChannelError(f'bad limit: {e}') from None
    try:
        engines.choose(opts.engine, fuel=opts.fuel is not None)     # usage errors, now
    except engines.EngineError as e:
        raise ChannelError(str(e)) from None
    engine = 'emulated' if opts.fuel is not None else opts.engine
    try:
        program, mounts = _images(opts)
    except SysImageError as e:
        raise ChannelError(str(e)) from None
    name = opts.program.rpartition(':')[2] if opts.program.startswith('file://') \
        else opts.program
    argv = [os.path.basename(name), *opts.args]
    if opts.repeat > 1:
        report = _repeat(opts, program, mounts, argv, limits, engine)
    else:
        channels = _channels(opts)
        image = None
        if mounts:
            from zvm_core.syscalls.fs import Image, ImageError
            try:
                images = _mounted(mounts)
            except ChannelError:
                for ch in channels:
                    ch.close()
                raise
            channels += images
            image = Image()
            try:
                for ch in images:
                    image.mount(ch.backing, '/', ch.alias)
            except ImageError as e:
                for ch in channels:
                    ch.close()
                raise ChannelError(str(e)) from None
        report = run(program, channels, argv=argv, env=dict(opts.env),
                     limits=limits, seed=opts.seed, epoch=opts.epoch,
                     policy=Policy(rdtsc=opts.rdtsc), image=image, engine=engine)
        if image is not None and not (report.ok and report.retcode == 0):
            _say(_host_file_hint(opts.args, image))
    text = report.to_json() + '\n'
    if opts.report == '-':
        _say(text)
    elif opts.report:
        with open(opts.report, 'w') as f:
            f.write(text)
    if report.exit_state == SIGPIPE_STATE:     # its reader closed the pipe: quiet, as cat
        return stdout.EXIT_PIPE
    if not report.ok:
        _say(f'zvm: {report.status}: {report.message}\n')
        if opts.repeat <= 1:        # a pool's worker probes for itself
            _recheck(report)
        return EXIT_NOT_OK
    return report.retcode


def _host_file_hint(args: list[str], image) -> str:
    """Why an interpreter could not open its script: ``zvm run file://python3:python3
    job.py`` names a file of this machine, which the sandbox never sees (``job.py`` is
    looked up in the images at ``/``). '' when the first argument is none of those."""
    from zvm_core.syscalls.errors import SysError
    script = next((a for a in args if not a.startswith('-')), None)
    if script is None or not os.path.isfile(script):
        return ''
    try:
        image.lookup(posixpath.join('/', script))
        return ''
    except SysError:
        pass
    name = os.path.basename(script)
    return (f'zvm: {script} is a file of this machine, which the sandbox cannot see (only '
            f'its channels and images, at /): put it in an image, e.g. tar cf job.tar -C '
            f'{shlex.quote(os.path.dirname(script) or ".")} {shlex.quote(name)} and zvm run '
            f'--image job.tar ... /{name} (doc/python.md, doc/lua.md)\n')


def _cmd_info() -> int:
    """The engines, which one ``auto`` picks here, and why one cannot run."""
    with _probes_kept(None, False):
        return _info()


def _kept_note(kind: str) -> str:
    """Says that ``kind``'s verdict is an earlier probe's, kept on disk."""
    if kind == 'emulated':
        return ''
    from zvm_core.engines.native import probe
    return ' (an earlier probe, kept)' if probe.recalled(kind) else ''


def _info() -> int:
    available = engines.available()
    for name in engines.ENGINES:
        reason = available[name]
        print(f'{name}: {"available" if reason is None else "unavailable: " + reason}'
              + _kept_note(name))
    print(f'auto: {engines.choose("auto")}')
    if available['native'] is None:
        print(f'auto in a pool (object servers, zvm run --repeat): a program of at most '
              f'{engines.TRIAL_CODE >> 10} KiB of code runs emulated first, then natively '
              f'from the start if it has not ended within {engines.TRIAL_FUEL >> 10} KiB of '
              'code')
        from zvm_core.engines.native import cpuid, tsc_unavailable
        reason = tsc_unavailable()
        print(f'native rdtsc: {"answered" if reason is None else "unavailable: " + reason}'
              + _kept_note('tsc'))
        reason = cpuid.unsupported()
        print('native cpuid: ' + ('faults, answered from the fixed table' if reason is None
                                  else f'not virtualised: {reason}'))
        print(f'native transactions: {_transactions()}')
    return 0


CPUINFO = '/proc/cpuinfo'


def _transactions() -> str:
    """What this host's CPU does with an RTM transaction natively: validated
    ``xbegin``/``xabort``/``xend``/``xtest`` are ``ud2`` under both engines, but one in
    code the sweep never saw (reached mid-instruction) runs as the CPU has it
    (doc/sandbox.md, "What the hardware cannot hide natively")."""
    try:
        with open(CPUINFO) as f:
            flags = next((line for line in f if line.startswith('flags')), '').split()
    except OSError as e:
        return f'unknown (cannot read {CPUINFO}: {e.strerror})'
    if 'rtm' in flags:
        return ('the CPU has TSX (rtm): validated ones are ud2, a hidden one would commit '
                'or abort as the host decides')
    return ('the CPU lists no TSX (rtm): validated ones are ud2, a hidden one faults (or '
            'always aborts where TSX is disabled)')


def _repeat(opts: argparse.Namespace, program: str, mounts: list[tuple[str, str]],
            argv: list[str], limits: Limits, engine: str | None) -> Report:
    """``--repeat``: the same run N times through one warm worker, timed."""
    from zvm_core.pool import ChannelSpec, Pool, WorkersFailing
    from zvm_core.report import Report
    times = []
    with Pool(size=1) as pool:
        for _ in range(opts.repeat):
            channels = _channels(opts)
            images = _mounted(mounts)
            specs = [ChannelSpec(c.alias, c.backing.fd, c.mode, c.random, c.quota)
                     for c in channels]
            specs += [ChannelSpec(c.alias, c.backing.fd, READ, True, mount='/') for c in images]
            channels += images
            start = time.perf_counter()
            try:
                report = pool.run(program, specs, argv=argv, env=dict(opts.env),
                                  limits=limits, seed=opts.seed, epoch=opts.epoch,
                                  rdtsc=opts.rdtsc, engine=engine)
            except WorkersFailing as e:     # no worker starts: no later run would either
                return Report('killed', None, str(e), host_failure=True)
            finally:
                for ch in channels:
                    ch.close()
            times.append((time.perf_counter() - start) * 1000)
    rest = sorted(times[1:])
    _say(f'zvm: {len(times)} runs through a warm worker: first {times[0]:.3f} ms, then '
         f'p50 {rest[len(rest) // 2]:.3f} ms, max {rest[-1]:.3f} ms\n')
    return report


ZEROVM_USAGE = 'zvm [-s] [-F] [-P] [-Q] [-t 0|1|2] [-v N] [-M] MANIFEST'
SUBCOMMANDS = ('run', 'validate', 'sdk', 'info', '-h', '--help', '--version')
SDK_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'zerovm', 'sdk')


def _zerovm(argv: list[str]) -> int:
    """``zvm MANIFEST``: what ``zerovm MANIFEST`` did, report and exit code alike."""
    try:
        opts, names = getopt.gnu_getopt(argv, 'sFPQt:v:M:l:T:')
    except getopt.GetoptError as e:
        return _bad_cmdline(str(e))
    try:
        engines.check_environment()
    except engines.EngineError as e:
        return _bad_cmdline(str(e))
    kw = {}
    target = 0
    for opt, value in opts:
        if opt == '-M':
            names.append(value)
        elif opt in ('-s', '-F', '-P'):
            kw[{'-s': 'skip_validation', '-F': 'validate_only', '-P': 'preallocate'}[opt]] = \
                opt != '-P'
        elif opt == '-t':
            if value not in ('0', '1', '2'):
                return _bad_cmdline(f'-t {value}: report targets are 0 (stdout), 1 (syslog) '
                                    'and 2 (stdout; no fast reports); 3, a daemon socket, '
                                    'is not supported')
            target = int(value)
    if names and not os.path.exists(names[0]):     # a mistyped command: zvm runn ...
        import difflib
        close = difflib.get_close_matches(names[0], SUBCOMMANDS[:4], 1)
        if close:
            return _bad_cmdline(f'{names[0]}: no such command or manifest: did you mean '
                                f'zvm {close[0]}?')
    if len(names) != 1:
        return _bad_cmdline('2nd manifest encountered' if names else 'no manifest given')
    from zvm_core.zerovm.session import run_session
    session = run_session(names[0], **kw)
    text = session.text()
    if target == 1:
        syslog.syslog(syslog.LOG_INFO, text.rstrip('\n').replace('\n', '; '))
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if session.code and _is_elf(names[0]):
        _say(f'zvm: {names[0]} is a program, not a manifest: run it with '
             f'zvm run {shlex.quote(names[0])}\n')
    return session.code


def _is_elf(path: str) -> bool:
    """Whether ``path`` is an ELF file: ``zvm PROGRAM`` (for ``zvm run PROGRAM``) is
    a common slip that the manifest parser can only answer with a missing key."""
    try:
        with open(path, 'rb') as f:
            return f.read(4) == ELF_MAGIC
    except OSError:
        return False


def _bad_cmdline(message: str) -> int:
    _say(f'zvm: {message}\nusage: {ZEROVM_USAGE}\n       zvm run|validate|sdk ... '
         '(zvm --help)\n')
    return errno.EINVAL


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``zvm`` (quiet when stdout's reader goes away: ``stdout.quiet``)."""
    return stdout.quiet(lambda: _main(sys.argv[1:] if argv is None else argv))


def _main(argv: list[str]) -> int:
    if not argv or argv[0] not in SUBCOMMANDS:
        return _zerovm(argv)
    opts = build_parser().parse_args(argv)
    try:
        if opts.command == 'sdk':
            print(SDK_DIR)
            return 0
        if opts.command == 'validate':
            return _cmd_validate(opts)
        engines.check_environment()
        if opts.command == 'info':
            return _cmd_info()
        return _cmd_run(opts)
    except OSError as e:
        if isinstance(e, BrokenPipeError) and stdout.reader_gone():
            raise
        where = f'cannot open {e.filename}: ' if e.filename else ''
        _say(f'zvm: {where}{e.strerror or e}\n')
        return EXIT_USAGE
    except (ChannelError, engines.EngineError) as e:
        _say(f'zvm: {e}\n')
        return EXIT_USAGE


if __name__ == '__main__':
    sys.exit(main())
