"""A pool worker's template cache (``zvm_core.pool.worker.Templates``): bounded by
the memory and the descriptors its templates hold, least recently used out first
(of the account holding the most).
Its templates here are stand-ins: only what it keeps is under test."""

from __future__ import annotations

import types

import pytest

from zvm_core.pool import worker
from zvm_core.pool.worker import Templates

MIB = 1 << 20
OVERHEAD = 4 * MIB          # what ``Templates`` adds per template (translated code)


class _Template:
    """A native template's stand-in: its size, what it holds after a run, its descriptors."""

    snapshots = None

    def __init__(self, size: int, fds: int = 2) -> None:
        self.image_size, self.holds, self.fds = size, size, fds
        self.closed = False

    def held(self) -> int:
        return self.holds

    def descriptors(self) -> int:
        return self.fds

    def idle(self) -> None:
        pass

    def reset(self) -> None:
        pass

    def trim(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _templates(monkeypatch, budget: int, descriptors: int = 1000) -> tuple[Templates, dict]:
    """Templates whose ``native`` makes stand-ins, by program name."""
    monkeypatch.setattr(worker, 'descriptor_budget', lambda: descriptors)
    monkeypatch.setattr(worker, '_file_key', lambda path: (path,))
    made: dict[str, _Template] = {}

    class Warm:
        def __new__(cls, program, verdict, memory, tsc):
            made[program] = _Template(10 * MIB)
            return made[program]
    import zvm_core.engines.native.warm as warm
    monkeypatch.setattr(warm, 'Warm', Warm)
    return Templates(budget), made


class _Prepared:
    def __init__(self, name: str) -> None:
        self.program, self.verdict, self.tsc, self.engine = name, None, False, 'native'
        self.policy = type('Policy', (), {'rdtsc': 'virtualize'})()


def _use(templates: Templates, name: str, account: str = '') -> _Template:
    return templates.native(name, _Prepared(name), 64 * MIB, None, account)


def _run(templates: Templates, name: str, holds: int) -> _Template:
    """A run of ``name``'s template, after which it holds ``holds`` bytes."""
    template = _use(templates, name)
    template.holds = holds
    templates.settle(template)
    return template


def test_templates_weigh_what_each_holds_after_its_runs(monkeypatch) -> None:
    """The least recently used template goes once the sum of what each held at its
    last settle (plus the overhead) passes the budget; the newest always stays."""
    templates, made = _templates(monkeypatch, budget=2 * (10 * MIB + OVERHEAD))
    a, b = _use(templates, 'a'), _use(templates, 'b')
    assert not a.closed and not b.closed
    _run(templates, 'a', 30 * MIB)      # over the budget: b, used least recently, goes
    assert b.closed and not a.closed
    _run(templates, 'a', 5 * MIB)
    c = _use(templates, 'c')            # 5 + 10 (+ overheads) fit
    assert not a.closed and not c.closed
    _run(templates, 'a', 100 * MIB)     # alone over the budget: c goes, a stays
    assert c.closed and not a.closed
    b = _use(templates, 'b')            # a's 100 MiB still counted: a goes
    assert a.closed and not b.closed
    _run(templates, 'b', 10 * MIB)
    c = _use(templates, 'c')            # a's cost went with it
    assert not b.closed and not c.closed
    templates.close()
    assert b.closed and c.closed


def test_an_emulated_template_got_again_at_once_is_not_reordered(monkeypatch) -> None:
    """``Templates.get`` of the template it gave last, for the same account (a batch's
    next node): nothing to reorder or record (``_hold``); after another template, or
    for another account, it is recorded again, and the least recently used still
    goes first."""
    monkeypatch.setattr(worker, '_file_key', lambda path: (path,))
    monkeypatch.setattr(worker, 'prepare', lambda path, policy, engine: types.SimpleNamespace(
        program=path, verdict=None, policy=policy))
    made: dict[str, _Template] = {}

    class Machine:
        def __new__(cls, program, verdict, limits, policy, snapshots):
            made[program] = _Template(10 * MIB)
            return made[program]
    import zvm_core.engines.emulated.machine as machine
    monkeypatch.setattr(machine, 'Machine', Machine)
    held: list = []
    hold = worker._hold
    monkeypatch.setattr(worker, '_hold', lambda holders, key, account: (
        held.append((key[0], account)), hold(holders, key, account)))
    templates = Templates(2 * (10 * MIB + OVERHEAD))
    a = templates.get('a', 64 * MIB, 'virtualize', account='x')[0]
    assert templates.get('a', 64 * MIB, 'virtualize', account='x')[0] is a
    assert held == [('a', 'x')]
    templates.get('b', 64 * MIB, 'virtualize', account='x')
    templates.get('a', 64 * MIB, 'virtualize', account='y')     # shared: recorded
    assert templates.get('a', 64 * MIB, 'virtualize', account='y')[0] is a
    assert held == [('a', 'x'), ('b', 'x'), ('a', 'y')]
    templates.get('c', 64 * MIB, 'virtualize', account='x')     # b, least recently used
    assert made['b'].closed and not a.closed and not made['c'].closed


def test_templates_keep_their_descriptors_within_the_worker_s(monkeypatch) -> None:
    templates, made = _templates(monkeypatch, budget=1 << 40, descriptors=5)
    a = _use(templates, 'a')
    a.fds = 9
    templates.settle(a)                 # alone: kept, whatever it holds
    assert not a.closed
    b = _use(templates, 'b')            # 9 + 2 > 5: the least recently used goes
    assert a.closed and not b.closed


def test_a_template_evicted_since_its_run_is_not_weighed_again(monkeypatch) -> None:
    """A batch's templates are settled at the end of its chunk (``_serve_many``): one a
    later run of the chunk evicted is closed, and stays out of the weights and of
    what the idle worker tends."""
    templates, made = _templates(monkeypatch, budget=2 * (10 * MIB + OVERHEAD))
    _use(templates, 'a')
    b = _use(templates, 'b')
    _run(templates, 'a', 30 * MIB)      # b goes
    assert b.closed
    held = templates._held
    templates.settle(b)
    assert templates._held == held and id(b) not in templates._ran
    assert id(b) not in templates._costs


def test_a_chunk_settles_each_template_once_after_its_runs(monkeypatch) -> None:
    """``_serve_many`` weighs each template its runs used once, after the last reply
    (a native template holds the same after every run: per node it was ~8 us)."""
    steps: list = []
    templates, made = _templates(monkeypatch, budget=1 << 30)
    template = _use(templates, 'a')
    template.reset = lambda: steps.append('reset')
    monkeypatch.setattr(worker, '_serve_one', lambda req, fds, t, tails, ahead, ready, probe: (
        worker.Report('ok', 0), template))
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: steps.append(
        'reply'))
    monkeypatch.setattr(Templates, 'settle', lambda self, m: steps.append(('settle', m)))
    monkeypatch.setattr(worker, '_fastcall', types.SimpleNamespace(   # no guest's flags here
        hold=lambda on: False, monotonic=lambda: 0.0))
    worker._serve_many(None, [({}, []), ({}, []), ({}, [])], templates)
    assert steps == ['reply', 'reset'] * 3 + [('settle', template)]


def _runs_of_a_a_b_a() -> list[tuple[dict, list]]:
    """A ``run_many`` request's runs (no channels) of programs a, a, b, a: nodes n1-n4."""
    def req(program: str, name: str) -> dict:
        return {'program': program, 'channels': [], 'argv': [name], 'env': {}, 'limits': {},
                'rdtsc': 'virtualize', 'seed': 0, 'epoch': 0}
    return [(req('a', 'n1'), []), (req('a', 'n2'), []), (req('b', 'n3'), []),
            (req('a', 'n4'), [])]


def test_a_chunk_looks_at_its_program_once(monkeypatch, tmp_path) -> None:
    """``_serve_many``'s runs of one program: the first one's ``stat`` of the file and
    ``Templates.prepared`` serve the others, and no node reads the clock with a
    system call but for its reply's stamp (its deadlines: the coarse clock); every
    run still starts from the program's template, and another program of the same
    request is looked at for itself."""
    looked: list = []
    started: list = []
    monkeypatch.setattr(worker, '_CHOSEN', {(None, False): ('native', '', False, float('inf'))})
    monkeypatch.setattr(worker, '_file_key', lambda path: looked.append(('stat', path)) or (path,))
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: None)
    holding = [False]       # fastcall.c's hold, which a template's fork request reads
    monkeypatch.setattr(worker, '_fastcall', types.SimpleNamespace(
        hold=lambda on: holding.__setitem__(0, on), held=lambda: holding[0],
        monotonic=lambda: looked.append('clock') or 0.0, coarse=lambda: 0.0))

    class Warm:
        def run(self, channels, argv, env, seed, epoch, limits, image, ahead, probe):
            started.append((argv[0], ahead, probe, worker._fastcall.held()))
            return worker.Report('ok', 0)

        def reset(self) -> None:
            pass

        def trim(self) -> None:
            pass

    warm = Warm()

    class Prepared:
        engine, tsc, policy = 'native', False, _Prepared('').policy

    class Kept(Templates):
        def prepared(self, path, engine, rdtsc, file=None, deadline=None, account=''):
            looked.append(('prepared', path, file))
            return Prepared()

        def native(self, path, prepared, memory, file=None, account=''):
            return warm

        def settle(self, machine) -> None:
            pass

    worker._serve_many(None, _runs_of_a_a_b_a(), Kept(1 << 30))
    reply = 'clock'         # each reply's stamp (RunResult.ended)
    assert looked == [('stat', 'a'), ('prepared', 'a', ('a',)),
                      ('stat', 'b'), ('prepared', 'b', ('b',)), reply, reply, reply, reply]
    # a batch's nodes: no probe, and run in the hold (the template's forks are asked with
    # the worker's flags: Template.fork reads _fastcall.held()), which ends with the batch
    # each told the nodes after it (its template asks for their children: Template.take)
    # of its own template (a's children are not asked for b's node)
    assert started == [('n1', 2, False, True), ('n2', 1, False, True),
                       ('n3', 0, False, True), ('n4', 0, False, True)]
    assert holding == [False]


def test_an_emulated_chunk_looks_at_its_program_once(monkeypatch) -> None:
    """``_serve_many``'s emulated runs of one program: the first one's ``stat`` of the
    file names the template of the others (each still takes it from ``Templates.get``,
    most recently used); another program of the same request is looked at for itself;
    no run is in a hold (fastcall.c: only a native template's forks need it)."""
    looked: list = []
    started: list = []
    monkeypatch.setattr(worker, '_CHOSEN', {(None, False): ('emulated', '', False, float('inf'))})
    monkeypatch.setattr(worker, '_file_key', lambda path: looked.append(('stat', path)) or (path,))
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: None)
    held: list = []
    monkeypatch.setattr(worker, '_fastcall', types.SimpleNamespace(
        hold=held.append, monotonic=lambda: 0.0, coarse=lambda: 0.0))

    class Machine:
        program, verdict = None, types.SimpleNamespace(cached=True)

        def run(self, channels, argv, env, seed, epoch, limits, image, probe):
            started.append(argv[0])
            return worker.Report('ok', 0)

        def reset(self) -> None:
            pass

        def trim(self) -> None:
            pass

    machines = {'a': Machine(), 'b': Machine()}

    class Kept(Templates):
        def get(self, path, memory, rdtsc, deadline=None, account='', file=None):
            looked.append(('get', path, file))
            return machines[path], machines[path].verdict

        def settle(self, machine) -> None:
            pass

    worker._serve_many(None, _runs_of_a_a_b_a(), Kept(1 << 30))
    assert looked == [('stat', 'a'), ('get', 'a', ('a',)), ('get', 'a', ('a',)),
                      ('stat', 'b'), ('get', 'b', ('b',)), ('get', 'a', ('a',))]
    assert started == ['n1', 'n2', 'n3', 'n4']
    # no native template: the guest's flags are not carried across its nodes (the
    # first clock read of each request's emulated run faulted on them)
    assert held == []


def test_a_chunks_nodes_are_told_the_nodes_after_them_of_their_template() -> None:
    """``_following``: a node is told the later nodes of its own template alone (a
    template asks their children); a node of none (emulated) is told none."""
    a, b = ('native', 'p', 32 * MIB), ('native', 'p', 64 * MIB)
    assert worker._following([a, a, b, b]) == [1, 0, 1, 0]
    assert worker._following([a, b, a]) == [1, 0, 0]
    assert worker._following([a, None, a, None]) == [1, 0, 0, 0]
    assert worker._following([]) == []


def _chunk(monkeypatch, serve) -> tuple[Templates, list]:
    """Templates of stand-ins whose programs every engine runs natively (one template
    per program and memory), and ``_serve_one`` as ``serve``; what each run was told."""
    templates, _made = _templates(monkeypatch, budget=1 << 30)
    monkeypatch.setattr(worker, '_CHOSEN', {(e, False): ('native', '', False, float('inf'))
                                            for e in (None, 'auto', 'native')})
    monkeypatch.setattr(Templates, 'prepared', lambda self, path, engine, rdtsc, file=None,
                        deadline=None, account='': _Prepared(path))
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: None)
    monkeypatch.setattr(worker, '_fastcall', types.SimpleNamespace(
        hold=lambda on: False, monotonic=lambda: 0.0, coarse=lambda: 0.0))
    told: list = []

    def served(req, fds, t, tails, ahead, ready, probe):
        told.append((req['engine'], ahead))
        return serve(req, t)
    monkeypatch.setattr(worker, '_serve_one', served)
    return templates, told


def _node(engine: str | None) -> tuple[dict, list[int]]:
    from zvm_core.pool import _plan
    shape = {'program': 'p', 'engine': engine, 'rdtsc': 'virtualize', 'channels': [],
             'limits': {'memory': 64 * MIB}}
    return {**shape, 'plan': _plan(shape)}, []


def test_nodes_of_engines_that_choose_one_template_are_told_of_each_other(
        monkeypatch) -> None:
    """Engines none, ``auto`` and ``native`` choose one native template (its key:
    program file, memory, policy, tsc): each node is told all the later ones (by
    their engines' names, none was told of another's: too few children asked)."""
    def serve(req, t):
        return worker.Report('ok', 0), _use(t, 'p')
    templates, told = _chunk(monkeypatch, serve)
    worker._serve_many(None, [_node(None), _node('auto'), _node('native')], templates)
    assert told == [(None, 2), ('auto', 1), ('native', 0)]


def test_a_run_that_raised_after_asking_children_has_its_template_trimmed(
        monkeypatch) -> None:
    """A run raising out of ``_serve_one`` (after its template asked the next runs'
    children: ``Template.take``) returned no machine: its template was not trimmed,
    and the children asked waited unused."""
    trims: list = []

    def serve(req, t):
        template = _use(t, 'p')
        template.trim = lambda: trims.append(template)
        raise OSError('the guest channel broke')
    templates, told = _chunk(monkeypatch, serve)
    worker._serve_many(None, [_node('auto'), _node('auto')], templates)
    assert told == [('auto', 1), ('auto', 0)] and len(trims) == 1


@pytest.mark.parametrize('budget,stopped', [(None, False), (1.0, True)])
def test_a_chunk_trims_its_templates_at_its_end(monkeypatch, budget, stopped) -> None:
    """At a chunk's end, stopped by its budget or not, the templates its runs used
    kill the children asked for runs that did not take them (``trim``), before
    they are weighed again."""
    steps: list = []
    clock = [0.0]
    templates, made = _templates(monkeypatch, budget=1 << 30)
    template = _use(templates, 'a')
    template.reset = lambda: clock.__setitem__(0, clock[0] + 1)    # each run: a second
    template.trim = lambda: steps.append('trim')
    monkeypatch.setattr(worker, '_serve_one', lambda req, fds, t, tails, ahead, ready, probe: (
        worker.Report('ok', 0), template))
    monkeypatch.setattr(worker, '_reply', lambda sock, report, tails, ended: None)
    monkeypatch.setattr(worker, '_send', lambda sock, msg: steps.append('stopped'))
    monkeypatch.setattr(Templates, 'settle', lambda self, m: steps.append('settle'))
    monkeypatch.setattr(worker, '_fastcall', types.SimpleNamespace(
        hold=lambda on: False, monotonic=lambda: 0.0, coarse=lambda: clock[0]))
    worker._serve_many(None, [({}, []), ({}, []), ({}, [])], templates, budget)
    assert steps == ['stopped'] * stopped + ['trim', 'settle']


def test_one_account_cycling_programs_evicts_its_own_templates(monkeypatch) -> None:
    """Account B running many distinct programs makes room from its own templates:
    account A's template stays, and A's next run is a hit (no template made)."""
    templates, made = _templates(monkeypatch, budget=4 * (10 * MIB + OVERHEAD))
    a = _use(templates, 'a', 'A')
    for i in range(20):
        b = _use(templates, f'b{i}', 'B')
        templates.settle(b)
    assert len(made) == 21 and not a.closed
    assert _use(templates, 'a', 'A') is a and len(made) == 21     # warm: nothing made
    assert sum(not made[f'b{i}'].closed for i in range(20)) == 3    # the budget: 4 in all
    assert templates._held <= templates.budget


def test_the_account_holding_the_most_gives_way_whoever_runs(monkeypatch) -> None:
    """The template closed is the least recently used of the account holding the
    most, even when another account's run needs the room; one account alone: LRU."""
    templates, made = _templates(monkeypatch, budget=3 * (10 * MIB + OVERHEAD))
    b0, b1 = _use(templates, 'b0', 'B'), _use(templates, 'b1', 'B')
    a0 = _use(templates, 'a0', 'A')
    a1 = _use(templates, 'a1', 'A')     # B holds the most: its oldest goes
    assert b0.closed and not b1.closed and not a0.closed
    a2 = _use(templates, 'a2', 'A')     # now A holds the most: its own oldest goes
    assert a0.closed and not b1.closed and not a1.closed and not a2.closed


def test_a_template_other_accounts_run_too_goes_after_its_holder_s_own(monkeypatch) -> None:
    """Running another account's program (a system image's interpreter) once does not
    make it the next to go among the runner's templates: shared ones go last."""
    templates, made = _templates(monkeypatch, budget=3 * (10 * MIB + OVERHEAD))
    shared = _use(templates, 'py', 'A')
    _use(templates, 'py', 'B')          # B ran it last: B holds it, shared
    for i in range(10):
        _use(templates, f'b{i}', 'B')
    assert not shared.closed
    assert _use(templates, 'py', 'A') is shared


def test_descriptors_are_made_room_for_by_the_account_holding_most(monkeypatch) -> None:
    templates, made = _templates(monkeypatch, budget=1 << 40, descriptors=6)
    a = _use(templates, 'a', 'A')
    for i in range(5):
        _use(templates, f'b{i}', 'B')   # 2 descriptors each: 3 templates fit
    assert not a.closed and sum(not made[f'b{i}'].closed for i in range(5)) == 2


def test_prepared_programs_are_evicted_by_account_too(monkeypatch) -> None:
    """The programs' engine choices a worker keeps (``PREPARED``): one account's many
    programs do not push out another's, whose next run is not prepared again."""
    monkeypatch.setattr(worker, 'descriptor_budget', lambda: 1000)
    monkeypatch.setattr(worker, 'PREPARED', 4)
    prepared: list[str] = []
    monkeypatch.setattr(worker, 'prepare', lambda path, policy, engine: prepared.append(path))
    monkeypatch.setattr(worker.engines, 'choice_lasts', lambda: float('inf'))
    templates = Templates(1 << 30)
    templates.prepared('a', 'auto', 'virtualize', ('a',), None, 'A')
    for i in range(10):
        templates.prepared(f'b{i}', 'auto', 'virtualize', (f'b{i}',), None, 'B')
    templates.prepared('a', 'auto', 'virtualize', ('a',), None, 'A')
    assert prepared.count('a') == 1 and len(templates._prepared) == 4


def test_a_node_auto_tries_first_asks_for_no_children_ahead(monkeypatch, tmp_path) -> None:
    """``auto``'s nodes of a small program run emulated first (``engines.TRIAL_FUEL``):
    no native template is theirs to ask children of, unless a channel is a stream or
    the program or its inputs large (no trial: natively)."""
    from zvm_core.pool import _plan
    templates, _made = _templates(monkeypatch, budget=1 << 30)
    monkeypatch.setattr(worker, '_CHOSEN', {(e, False): ('native', '', e == 'auto', float('inf'))
                                            for e in ('auto', 'native')})
    small = {'p': True, 'big': False}       # engines.tried: the program's size
    monkeypatch.setattr(worker.engines, 'tried', lambda program: small[program])
    monkeypatch.setattr(Templates, 'prepared', lambda self, path, engine, rdtsc, file=None,
                        deadline=None, account='': _Prepared(path))

    def node(engine: str, notify: int | None = None, program: str = 'p') -> dict:
        shape = {'program': program, 'engine': engine, 'rdtsc': 'virtualize',
                 'channels': [{'alias': '/dev/stdin', 'fd': 0, 'mode': 1, 'notify': notify}],
                 'limits': {'memory': 64 * MIB}}
        return {**shape, 'plan': _plan(shape)}
    native = ('native', 'p', 64 * MIB, 'virtualize', False)
    with open(tmp_path / 'small', 'w+b') as tiny, open(tmp_path / 'large', 'w+b') as large:
        large.truncate(worker.engines.TRIAL_INPUT + 1)
        fds = [tiny.fileno()]
        assert worker._template_key(node('auto'), fds, templates, {}) is None
        assert worker._template_key(node('auto', notify=1), fds, templates, {}) == native
        assert worker._template_key(node('native'), fds, templates, {}) == native
        assert worker._template_key(node('auto', program='big'), fds, templates, {}) == (
            'native', 'big', *native[2:])
        # over a trial's inputs: natively at once, its children asked ahead
        assert worker._template_key(node('auto'), [large.fileno()], templates, {}) == native


@pytest.mark.parametrize('failure', [MemoryError, OSError, 'rejected'])
def test_a_trial_that_cannot_start_runs_natively(monkeypatch, failure) -> None:
    """The trial's machine lives in the worker (its address space, its memory): where
    it cannot be made, or its program is refused emulated, the node runs natively
    (which says for itself what is wrong), not a failure of the trial's."""
    from zvm_core.pool import _plan
    from zvm_core.prepare import Rejected
    templates, made = _templates(monkeypatch, budget=1 << 30)
    monkeypatch.setattr(worker, '_CHOSEN', {('auto', False): ('native', '', True, float('inf'))})
    monkeypatch.setattr(worker.engines, 'tried', lambda program: True)
    monkeypatch.setattr(Templates, 'prepared', lambda self, path, engine, rdtsc, file=None,
                        deadline=None, account='': _Prepared(path))

    def get(*args, **kwargs):
        if failure == 'rejected':
            raise Rejected(worker.Report('refused', None, 'refused emulated'))
        raise failure('no room for the machine')
    monkeypatch.setattr(Templates, 'get', get)
    ran: list = []
    monkeypatch.setattr(_Template, 'run', lambda self, *args, **kwargs: ran.append(args) or
                        worker.Report('ok', 0), raising=False)
    monkeypatch.setattr(worker, 'explained', lambda report, program, verdict: report)
    shape = {'program': 'p', 'engine': 'auto', 'rdtsc': 'virtualize', 'channels': [],
             'limits': {'memory': 64 * MIB}, 'argv': ['p'], 'env': {}, 'seed': 0, 'epoch': 0}
    report, machine = worker._serve_one({**shape, 'plan': _plan(shape)}, [], templates, {})
    assert (report.status, len(ran), machine) == ('ok', 1, made['p'])


def test_a_watched_run_is_not_tried(monkeypatch) -> None:
    """A run whose written files its caller reads as they grow (a streamed node) is
    not tried: a start over would show; its template is asked children ahead."""
    from zvm_core.pool import _plan
    templates, _made = _templates(monkeypatch, budget=1 << 30)
    monkeypatch.setattr(worker, '_CHOSEN', {('auto', False): ('native', '', True, float('inf'))})
    monkeypatch.setattr(worker.engines, 'tried', lambda program: True)
    monkeypatch.setattr(Templates, 'prepared', lambda self, path, engine, rdtsc, file=None,
                        deadline=None, account='': _Prepared(path))
    shape = {'program': 'p', 'engine': 'auto', 'rdtsc': 'virtualize', 'channels': [],
             'limits': {'memory': 64 * MIB}, 'watched': True}
    assert worker._template_key({**shape, 'plan': _plan(shape)}, [], templates, {}) == (
        'native', 'p', 64 * MIB, 'virtualize', False)
    monkeypatch.setattr(Templates, 'get', lambda *args, **kwargs: pytest.fail('tried'))
    ran: list = []
    monkeypatch.setattr(_Template, 'run', lambda self, *args, **kwargs: ran.append(args) or
                        worker.Report('ok', 0), raising=False)
    monkeypatch.setattr(worker, 'explained', lambda report, program, verdict: report)
    req = {**shape, 'argv': ['p'], 'env': {}, 'seed': 0, 'epoch': 0}
    report, _ = worker._serve_one({**req, 'plan': _plan(req)}, [], templates, {})
    assert (report.status, len(ran)) == ('ok', 1)
