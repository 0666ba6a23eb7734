"""``zc local run``: a job run on this machine with ``zvm``, before the cluster.

The job is what ``zc run`` would send (a job description, a zapp, or one
built for a program or script ``--on`` objects).

The job is parsed and expanded by the proxy's own code (``zerocloud.job``);
``--map swift://~/CONTAINER=DIR`` makes a container a local directory (its
files, sorted, are the listing a wildcard expands over).  Each node then runs
as ``zvm run`` with its devices as files: read devices are the mapped files,
written devices with a path go to the mapped directory, and only when no
node failed (ended other than ``ok``, or with a non-zero exit code);
``stdout`` without a path is printed as each node ends (from its file, in
pieces: never held whole), and ``stdin`` (or ``input``) without
a path reads ``--stdin FILE`` (what an app opens, or a request body).
``exec.path`` may be a mapped ``swift://`` program, a file of a system image
(``file://python3:python3``) or, for a zapp, a file of the zapp.  Graphs
(``connect``) and replicas run only on the cluster.  A node's environment is its
``exec.env`` and what the cluster adds that means something here (``cluster_env``:
``LOCAL_PATH_INFO`` and the others of the object it runs next to).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from zerocloud.answer_format import exit_error
from zerocloud.client.jobs import ZAPP_TYPE, BuildError, Payload, tar_bytes
from zerocloud.client.report import OK, JobResult, node_from_report
from zerocloud.client.sandbox import ZVM, zvm_env
from zerocloud.job import USER_IMAGE, Device, JobError, Node, SwiftPath, expand, parse_job
from zvm_core import sysimages

ACCOUNT = 'local'
STREAMS = ('stdin', 'stdout', 'stderr', 'input', 'output')
CHUNK = 1 << 20                 # bytes of a node's output read and printed at once
Sink = Callable[[bytes], object]


def parse_maps(specs: list[str]) -> dict[str, Path]:
    """``swift://~/c=./dir`` (or ``c=dir``) -> {container: dir}; ValueError for another form."""
    maps = {}
    for spec in specs:
        url, sep, directory = spec.partition('=')
        container = url.removeprefix('swift://').removeprefix('~/').removeprefix('./').strip('/')
        if not sep or not container or '/' in container or not directory:
            raise ValueError(f'--map {spec}: expected swift://~/CONTAINER=DIR')
        maps[container] = Path(directory)
    return maps


class LocalRun:
    """One job run locally; ``files(path)`` is where a ``swift://`` path lives here."""

    def __init__(self, maps: dict[str, Path], work: Path, stdin: Path | None = None,
                 out: Sink | None = None) -> None:
        self.maps = maps
        self.work = work
        self.stdin = stdin              # what a readable device without a path reads
        self.out = out                  # where outputs without a path go (None: nowhere)

    def file(self, path: SwiftPath) -> Path:
        if path.account != ACCOUNT or path.container not in self.maps:
            raise BuildError(f'{_as_written(str(path))} is not mapped: add --map swift://~/{path.container}=DIR')
        return self.maps[path.container] / (path.obj or '')

    def existing(self, path: SwiftPath, what: str) -> str:
        """The mapped file of ``path``, which ``what`` reads; a missing one is named as
        the cluster's 404 would (zvm would say only that it cannot open the file)."""
        file = self.file(path)
        if not file.is_file():
            raise BuildError(f'swift://~/{path.container}/{path.obj} ({what}) is not here: '
                             f'no file {file} (--map swift://~/{path.container}='
                             f'{self.maps[path.container]})')
        return str(file)

    def list_objects(self, account: str, container: str, prefix: str = '') -> list[str]:
        root = self.file(SwiftPath(account, container))
        if not root.is_dir():           # else: "No objects found", as if it were empty
            raise BuildError(f'--map swift://~/{container}={root}: {root} is not a directory')
        names = (p.relative_to(root).as_posix() for p in root.rglob('*') if p.is_file())
        return sorted(n for n in names if n.startswith(prefix))

    def list_containers(self, account: str) -> list[str]:
        return sorted(self.maps)

    def command(self, node: Node, image: Path | None, outdir: Path) -> list[str]:
        cmd = [*ZVM, 'run', '--report', str(outdir / 'report.json')]
        if node.engine is not None:
            cmd += ['--engine', node.engine]
        for key, value in {**node.exec.env, **self.cluster_env(node)}.items():
            cmd += ['--env', f'{key}={value}']
        for dev in node.devices:
            if dev.system_image:
                cmd += ['--sysimage', dev.name]
            elif dev.name == USER_IMAGE:
                tar = self.existing(dev.path, f'image of {node.name}') if dev.path else image
                if tar is None:
                    raise BuildError(f'{node.name}: image has no path, and no zapp was given')
                cmd += ['--image', str(tar)]
            elif dev.name in STREAMS:
                if dev.writable:
                    cmd += [f'--{dev.name}', str(outdir / dev.name)]
                elif dev.path is not None:
                    cmd += [f'--{dev.name}',
                            self.existing(dev.path, f'device {dev.name} of {node.name}')]
                elif self.stdin is not None:
                    cmd += [f'--{dev.name}', str(self.stdin)]
            else:
                raise BuildError(f'{node.name}: device {dev.name} runs only on the cluster')
        if not any(d.name == 'stderr' for d in node.devices):     # shown if it fails
            cmd += ['--stderr', str(outdir / 'stderr')]
        if node.exec.swift_path is not None:
            program = self.existing(node.exec.swift_path, f'the program of {node.name}')
        else:
            where, member = node.exec.image_member
            if where is None:
                if image is None and not any(d.name == USER_IMAGE for d in node.devices):
                    raise BuildError(f'{node.name}: {node.exec.path} is a file of the zapp, '
                                     'and no zapp was given')
                where = USER_IMAGE
            if where == USER_IMAGE and image is not None and '--image' not in cmd:
                cmd += ['--image', str(image)]
            program = f'file://{where}:{member}'
        return [*cmd, program, *node.argv[1:]]

    def cluster_env(self, node: Node) -> dict[str, str]:
        """The variables the cluster gives ``node`` over its ``exec.env`` (the proxy's
        plan, the object server's ``LOCAL_*``), so a program that reads them runs here
        as there: ``SCRIPT_*`` and, next to an object, ``LOCAL_OBJECT``,
        ``LOCAL_PATH_INFO`` (``/local/<c>/<o>``), ``LOCAL_DOCUMENT_ROOT`` and
        ``LOCAL_CONTENT_LENGTH`` (named as ``zerocloud.wire.local_env`` names them: the
        client does not import it).  There is no request (``REQUEST_*``, ``PATH_INFO``)
        nor object metadata here but the file's size."""
        env = {'SCRIPT_NAME': node.argv[0], 'SCRIPT_FILENAME': node.exec.path}
        attach = node.attach        # the object it runs next to, as the proxy sees it
        if attach is not None and attach.readable and attach.path is not None:
            size = Path(self.existing(attach.path, f'device {attach.name} of {node.name}')
                        ).stat().st_size
            env.update(LOCAL_OBJECT='on', LOCAL_PATH_INFO=quote(attach.path.path),
                       LOCAL_DOCUMENT_ROOT=f'/dev/{attach.name}', LOCAL_CONTENT_LENGTH=str(size))
        return env

    def run(self, nodes: list[Node], image: Path | None) -> JobResult:
        results, written = [], []
        for node in nodes:
            outdir = self.work / node.name
            outdir.mkdir()
            cmd = self.command(node, image, outdir)
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, check=False,
                                  env=zvm_env())
            try:
                report = json.loads((outdir / 'report.json').read_text())
            except (OSError, ValueError):
                raise BuildError(f'{node.name}: zvm failed: '
                                 f'{proc.stderr.decode("utf-8", "replace").strip()}') from None
            result = node_from_report({'name': node.name, **report})
            result.host = 'local'
            result.verdict = result.status != OK or result.retcode not in node.exec.ok_exit
            stderr = outdir / 'stderr'
            if result.failed and stderr.exists():
                result.stderr = stderr.read_text('utf-8', 'replace')
            if result.failed and result.status == OK and not result.error:
                # what the cluster's X-Nexe-Error says
                result.error = exit_error(result.retcode, result.stderr)
            attached = node.attach.path if node.attach is not None else None
            result.object = attached.path[len(ACCOUNT) + 2:] if attached else ''
            results.append(result)
            for dev in node.devices:
                if dev.writable and (outdir / dev.name).exists():
                    if dev.path is None:
                        if dev.name != 'stderr' or result.failed:
                            self.print(outdir / dev.name)
                    elif (outdir / dev.name).stat().st_size >= dev.min_size:
                        written.append((outdir / dev.name, self.file(dev.path)))
        job = JobResult(0, results)         # 0: no HTTP status, nothing was sent
        if not any(r.failed for r in results):
            for src, dst in written:
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
        return job

    def print(self, file: Path) -> None:
        """A node's output to :attr:`out`, CHUNK bytes at a time (up to a GiB a node)."""
        if self.out is None:
            return
        with file.open('rb') as f:
            while chunk := f.read(CHUNK):
                self.out(chunk)


def run(payload: Payload, where: str, maps: dict[str, Path], stdin: Path | None = None,
        out: Sink | None = None) -> JobResult:
    """Run a job (JSON) or zapp (from ``where``) locally: its result; ``stdin`` is what
    its readable devices without a path read (else nothing), ``out`` gets their
    outputs without a path as each node ends (None: not printed)."""
    with tempfile.TemporaryDirectory(prefix='zc-local-') as tmp:
        work = Path(tmp)
        image = None
        if payload.content_type == ZAPP_TYPE:
            image = work / 'image.tar'
            image.write_bytes(tar_bytes(payload.body))
        try:
            groups = parse_job(payload.job, ACCOUNT, system_images=_images())
        except JobError as e:
            raise BuildError(f'{where}: {_as_written(str(e))}') from None
        for group in groups:
            if group.connect or group.replicate > 1:
                raise BuildError(f'{group.name}: connect and replicate run only on the cluster')
            if image is not None and not any(d.name == USER_IMAGE for d in group.devices):
                group.devices.append(Device(USER_IMAGE))    # as the proxy does for a zapp
        local = LocalRun(maps, work / 'nodes', stdin, out)
        (work / 'nodes').mkdir()
        try:
            nodes = expand(groups, local.list_objects, local.list_containers)
        except JobError as e:
            raise BuildError(f'{where}: {_as_written(str(e))}') from None
        return local.run(nodes, image)


def _as_written(text: str) -> str:
    """A message naming this run's objects as the user wrote them, ``swift://~/c/o``:
    the account ``local`` is nothing of theirs."""
    return text.replace(f'swift://{ACCOUNT}/', 'swift://~/')


def _images() -> list[str]:
    """The system images ``zvm`` has here (``$ZVM_SYSIMAGES`` or those built)."""
    return list(sysimages.configured())
