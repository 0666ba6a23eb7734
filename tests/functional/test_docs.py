"""The docs' commands, run in order as a new user would: a step that does not work fails.

Each doc below becomes one bash script, run in a fresh directory (for an
example, a copy of its directory; for a doc, one where `examples/` is the
repository's, as in a clone), whose line N is the doc's line N:

- a fenced block tagged ``sh`` runs as written; ``python`` runs with ``python3``;
- a block with ``file=NAME`` after its language (```` ```c file=lines.c ````)
  is written to NAME, as the text before it tells the reader to do;
- ``sh norun`` (or ``python norun``) marks a block deliberately not run
  (installing the machine); blocks of other languages, and output without
  a language, are not run; ``bash``/``shell``/``console`` are refused, so
  that no shell block escapes the check by its tag;
- a block without a language (or ``text``) right after a block that runs is
  what that block prints on stdout, and must be: line by line, where a line
  ``...`` stands for any lines (none too) and ``...`` within a line for any
  text; transaction ids, dates and the node table's seconds are normalised
  on both sides, since they differ from run to run.

The script runs with ``set -e -o pipefail``; curl reads a ``.curlrc`` with
``fail-with-body``, so an HTTP error fails its step too. The first step
that fails ends the test, naming the doc, the line and the command; then
each output block is compared with what its block printed. The
docs start their own cluster with ``zerocloud-devcluster start``: it lives
under this module's ``XDG_CACHE_HOME`` and is stopped at the end.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zerocloud.devcluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
DOCS = [                        # (doc, the section that runs: None for all), in order
    ('README.md', '## Trying it by hand'),
    ('doc/user-guide.md', None),
    ('examples/mapreduce/README.md', None),
    ('examples/python-wordcount/README.md', None),
    ('examples/python-csv/README.md', None),
    ('examples/lua-filter/README.md', None),
    ('examples/sql/README.md', None),
    ('doc/sql.md', None),
    ('doc/python.md', '## Running a script locally'),
    ('doc/lua.md', '## Running a script'),
]
FENCE = re.compile(r'( *)(```+)(.*)')
RUN = {'sh': '', 'python': "python3 - <<'ZC_DOC_EOF'"}
OUTPUT = ('', 'text')           # the language of a block that shows output
ELIDED = '...'
# what differs from run to run, and what it becomes on both sides of a comparison
VARIES = [(re.compile(r'\btx[0-9a-f]{21}-[0-9a-f]{10}\b'), 'tx<id>'),
          (re.compile(r'\b(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\b'),
           '<date>'),
          # the local cluster's ports are chosen free; a node may run on another replica's server
          (re.compile(r'\b127\.0\.0\.1:\d+/obj\d+\b'), '<object server>')]
REFUSED = ('bash', 'shell', 'console', 'zsh')
END = 'ZC_DOC_EOF'
FAILED = '@@doc step failed@@'
ENTRY_POINTS = ('zerocloud-devcluster', 'zvm', 'zc')     # the package's commands
INSTALLED = (' (the package installs it: scripts/setup.sh runs pip install -e .; '
             'or put the bin directory of that Python on PATH)')
PRELUDE = (f"set -eE -o pipefail; trap 'echo \"{FAILED} $LINENO: $BASH_COMMAND\" >&2' ERR")


@dataclass
class DocScript:
    """A doc as a bash script whose line N is the doc's line N (blank where nothing runs),
    and the doc's output blocks: the line of each one's fence -> the lines it shows."""

    text: str
    outputs: dict[int, list[str]] = field(default_factory=dict)


def doc_script(doc: str, section: str | None, root: Path = REPO) -> DocScript:
    """The doc as a script; a block followed by an output block writes its stdout to
    ``$ZC_DOC_OUT/<line of the output block>``, which the output block's line prints."""
    lines = (root / doc).read_text().splitlines()
    out = [''] * len(lines)
    outputs: dict[int, list[str]] = {}
    heading, i, previous = None, 0, None     # previous: the last block, if it runs
    while i < len(lines):
        fence = FENCE.fullmatch(lines[i])
        if not fence:
            if lines[i].startswith('## '):
                heading = lines[i].strip()
            i += 1
            continue
        start, indent, ticks = i, len(fence[1]), fence[2]
        words = fence[3].split()
        i += 1
        while i < len(lines) and lines[i].strip() != ticks:
            i += 1
        assert i < len(lines), f'{doc}:{start + 1}: the block does not end'
        if section is not None and heading != section:
            i, previous = i + 1, None
            continue
        body = [line[min(indent, len(line) - len(line.lstrip(' '))):]
                for line in lines[start + 1:i]]
        if previous is not None and words in ([], ['text']):
            outputs[start + 1] = body
            saved = f'"$ZC_DOC_OUT/{start + 1}"'
            run_start, run_end = previous
            if out[run_start]:              # python3 - <<'END' > file
                out[run_start] += f' > {saved}'
            else:                           # { shell lines } > file
                out[run_start], out[run_end] = '{', f'}} > {saved}'
            out[start] = f'cat {saved}'
            previous = None
            i += 1
            continue
        opening = _opening(doc, start + 1, words)
        previous = None
        if opening is not None:
            assert END not in body, f'{doc}:{start + 1}: the block contains {END}'
            out[start + 1:i] = body
            if opening:
                out[start], out[i] = opening, END
            if not opening.startswith('cat > '):
                previous = (start, i)
        i += 1
    assert out and not out[0], f'{doc}: the first line must not run'
    out[0] = PRELUDE
    return DocScript('\n'.join(out) + '\n', outputs)


def normalised(text: str) -> str:
    """``text`` with what differs from run to run replaced (``VARIES``), CRLF as LF."""
    text = text.replace('\r\n', '\n')
    for pattern, replacement in VARIES:
        text = pattern.sub(replacement, text)
    return text


def shows(expected: list[str], printed: str) -> bool:
    """Whether ``printed`` is what the doc's output block ``expected`` shows (its
    ``...`` lines and ``...`` within lines stand for what the doc leaves out)."""
    pattern = []
    for line in normalised('\n'.join(expected)).split('\n'):
        if line.strip() == ELIDED:
            pattern.append(r'(?:[^\n]*\n)*?')
        else:
            pattern.append('[^\n]*'.join(map(re.escape, line.split(ELIDED))) + '\n')
    printed = normalised(printed)
    if printed and not printed.endswith('\n'):
        printed += '\n'
    return re.fullmatch(''.join(pattern), printed) is not None


def _opening(doc: str, line: int, words: list[str]) -> str | None:
    """What replaces a block's opening fence: None if it does not run, '' for shell lines."""
    lang, attrs = (words[0], words[1:]) if words else ('', [])
    where = f'{doc}:{line}'
    assert lang not in REFUSED, f'{where}: tag shell blocks "sh" (run) or "sh norun"'
    files = [a[len('file='):] for a in attrs if a.startswith('file=')]
    others = [a for a in attrs if not a.startswith('file=')]
    if files:
        assert len(attrs) == 1 and re.fullmatch(r'[\w.-]+', files[0]), \
            f'{where}: expected "<language> file=NAME", got {" ".join(words)!r}'
        return f"cat > {files[0]} <<'{END}'"
    if others == ['norun'] and lang in RUN:
        return None
    assert not others, f'{where}: unknown block attributes {" ".join(others)!r}'
    return RUN.get(lang)


@pytest.fixture(scope='module')
def home(tmp_path_factory: pytest.TempPathFactory, sysimages) -> Iterator[Path]:
    """XDG_CACHE_HOME and CURL_HOME of the docs' shell; stops the docs' cluster at the end."""
    home = tmp_path_factory.mktemp('docs-home')
    (home / '.curlrc').write_text('fail-with-body\n')
    yield home
    DevCluster(home / 'zerocloud' / 'devcluster').stop()


@pytest.mark.parametrize('doc, section', DOCS, ids=[doc for doc, _ in DOCS])
def test_the_docs_commands_work_as_written(doc: str, section: str | None, home: Path,
                                           tmp_path: Path) -> None:
    for tool in ('zerocloud-devcluster', 'zvm', 'zc', 'swift', 'curl', 'musl-gcc', 'g++'):
        assert shutil.which(tool), f'{tool} is not on PATH: the docs need it' + (
            INSTALLED if tool in ENTRY_POINTS else '')
    work = tmp_path / 'work'
    if doc.startswith('examples/'):
        shutil.copytree(REPO / doc.rsplit('/', 1)[0], work)
    else:                           # a doc's own commands run from a clone of the repository
        work.mkdir()
        (work / 'examples').symlink_to(REPO / 'examples')
    env = {k: v for k, v in os.environ.items() if not k.startswith(('ST_', 'OS_'))}
    printed = tmp_path / 'printed'
    printed.mkdir()
    env.update(XDG_CACHE_HOME=str(home), CURL_HOME=str(home), ZC_DOC_OUT=str(printed))
    script = doc_script(doc, section)
    result = subprocess.run(['bash', '-c', script.text, doc], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=900)
    failed = re.search(f'{FAILED} (\\d+): (.*)', result.stdout)
    tail = '\n'.join(result.stdout.splitlines()[-40:])
    assert not failed, f'{doc}:{failed[1]}: `{failed[2]}` failed:\n{tail}'
    assert result.returncode == 0, f'{doc}: exit {result.returncode}:\n{tail}'
    for line, expected in script.outputs.items():
        got = (printed / str(line)).read_text()
        assert shows(expected, got), (f'{doc}:{line}: the doc shows\n' + '\n'.join(expected)
                                      + f'\nbut the block before it printed\n{got}')


@pytest.mark.parametrize('info, says', [
    ('bash', 'tag shell blocks "sh" (run) or "sh norun"'),
    ('sh fast', "unknown block attributes 'fast'"),
    ('text norun', "unknown block attributes 'norun'"),
    ('c file=a b', 'expected "<language> file=NAME"'),
    ('c file=../x', 'expected "<language> file=NAME"'),
])
def test_a_block_the_runner_cannot_place_is_refused(info: str, says: str) -> None:
    with pytest.raises(AssertionError, match=re.escape(says)):
        _opening('doc.md', 3, info.split())


def test_the_script_keeps_the_docs_line_numbers(tmp_path: Path) -> None:
    (tmp_path / 'doc.md').write_text(
        '# T\n\n```sh norun\nsetup\n```\n\n## Run\n\n```c file=a.c\nint x;\n```\n'
        '  ```sh\n  echo one\n  ```\n```text\nout\n```\n```python\nprint(2)\n```\n'
        'prints\n```\n2\n...\n```\n```\nnot output: no block runs before it\n```\n')
    script = doc_script('doc.md', None, tmp_path)
    assert script.text.splitlines() == [
        PRELUDE, '', '', '', '', '', '', '', f"cat > a.c <<'{END}'", 'int x;', END,
        '{', 'echo one', '} > "$ZC_DOC_OUT/15"', 'cat "$ZC_DOC_OUT/15"', '', '',
        f"python3 - <<'{END}' > \"$ZC_DOC_OUT/22\"", 'print(2)', END, '',
        'cat "$ZC_DOC_OUT/22"', '', '', '', '', '', '']
    assert script.outputs == {15: ['out'], 22: ['2', '...']}
    assert doc_script('doc.md', '## Run', tmp_path).text.splitlines()[3] == ''


@pytest.mark.parametrize('expected, printed, same', [
    (['one', 'two'], 'one\ntwo\n', True),
    (['one', 'two'], 'one\ntwo', True),                  # no newline at the end
    (['one', 'two'], 'one\ntwo\nthree\n', False),        # a line more
    (['one', 'two'], 'one\n', False),
    (['one', 'two'], 'one\nTwo\n', False),
    (['HTTP/1.1 200 OK', '...', 'X-Nexe-Status: ok', '...'],
     'HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nX-Nexe-Status: ok\r\n\r\n100\n', True),
    (['HTTP/1.1 200 OK', '...', 'X-Nexe-Status: ok'], 'HTTP/1.1 200 OK\nX-Nexe-Status: ok\n',
     True),                                              # "..." can be no line at all
    (['...', 'X-Nexe-Status: ok'], 'X-Nexe-Status: fault\n', False),
    (['X-Nexe-Host: 127.0.0.1:6203/obj0,...'],           # another port, another replica
     'X-Nexe-Host: 127.0.0.1:41234/obj2,127.0.0.1:41236/obj1\n', True),
    (['X-Nexe-Cdr-Line: 0.9...'], 'X-Nexe-Cdr-Line: 0.934, 0.7\n', True),
    (['X-Nexe-Cdr-Line: 0.9...'], 'X-Nexe-Cdr-Line: 0.934\nmore\n', False),
    (['X-Trans-Id: tx0123456789abcdef01234-0065a1b2c3', 'Date: Mon, 01 Jan 2024 00:00:00 GMT'],
     'X-Trans-Id: txfedcba9876543210fedcb-00674f0e2a\nDate: Thu, 03 Dec 2026 13:40:02 GMT\n',
     True),
    (['x.y'], 'xzy\n', False),                          # the doc's text is not a pattern
])
def test_an_output_block_is_compared_line_by_line(expected: list[str], printed: str,
                                                  same: bool) -> None:
    assert shows(expected, printed) is same


SESSIONS = ['doc/client.md']    # docs written as recorded sessions: ```console, "$ " commands
EXIT_SHOWN = re.compile(r'\[exit (\d+)\]')


def console_commands(doc: str, root: Path = REPO) -> list[tuple[int, str, int]]:
    """The ``$ `` commands of the doc's ``console`` blocks (a here-document's lines
    with its command), each with its line and the exit status its ``[exit N]`` shows
    (0 without one)."""
    lines = (root / doc).read_text().splitlines()
    commands: list[tuple[int, str, int]] = []
    inside, i = False, 0
    while i < len(lines):
        line = lines[i]
        if line.startswith('```'):
            inside = line == '```console'
        elif inside and line.startswith('$ '):
            start, command = i + 1, [line[2:]]
            here = re.search(r"<<'?(\w+)'?", line)
            while here and lines[i] != here[1]:
                i += 1
                command.append(lines[i])
            commands.append((start, '\n'.join(command), 0))
        elif inside and commands and (shown := EXIT_SHOWN.fullmatch(line)):
            commands[-1] = commands[-1][:2] + (int(shown[1]),)
        i += 1
    return commands


@pytest.mark.parametrize('doc', SESSIONS)
def test_a_sessions_commands_exit_as_it_shows(doc: str, home: Path, tmp_path: Path) -> None:
    """Each command of a recorded session, typed in order in one shell, exits as the
    session shows: exactly (a job shown running, [exit 3], is one that cannot end
    before the session cancels it)."""
    commands = console_commands(doc)
    script = ['zerocloud-devcluster start > /dev/null', 'eval "$(zerocloud-devcluster env)"']
    for n, (_, command, _) in enumerate(commands):
        script += ['{', command, '}', f'echo "@@exit {n} $?" >&2']
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'examples').symlink_to(REPO / 'examples')
    env = {k: v for k, v in os.environ.items() if not k.startswith(('ST_', 'OS_'))}
    env.update(XDG_CACHE_HOME=str(home), CURL_HOME=str(tmp_path))  # no fail-with-body: curl as is
    result = subprocess.run(['bash', '-c', '\n'.join(script) + '\n', doc], cwd=work, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=900)
    exits = {int(n): int(code) for n, code in re.findall(r'@@exit (\d+) (\d+)', result.stdout)}
    said = re.split(r'@@exit \d+ \d+\n', result.stdout)    # said[n]: command n's output
    wrong = [f'{doc}:{line}: `{command.splitlines()[0]}` exited {exits.get(n)}, the doc '
             f'shows {shown}; it said:\n{said[n] if n < len(said) else ""}'
             for n, (line, command, shown) in enumerate(commands) if exits.get(n) != shown]
    assert not wrong, '\n'.join(wrong) + '\n' + '\n'.join(result.stdout.splitlines()[-20:])


def test_a_sessions_commands_and_the_exits_they_show(tmp_path: Path) -> None:
    (tmp_path / 'doc.md').write_text(
        '# T\n```console\n$ cat > a <<\'EOF\'\nx\nEOF\n$ false\n[exit 1]\n$ echo\n\n```\n'
        '```\n$ not a command\n```\n')
    assert console_commands('doc.md', tmp_path) == [
        (3, "cat > a <<'EOF'\nx\nEOF", 0), (6, 'false', 1), (8, 'echo', 0)]
