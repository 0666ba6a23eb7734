"""``rdtsc``/``rdtscp`` natively: the fault answered from the virtual counter.

The loader sets ``PR_SET_TSC`` (``PR_TSC_SIGSEGV``): the instruction raises a
general-protection fault and the kernel sends ``SIGSEGV`` (``si_code``
``SI_KERNEL``).  For a program that contains ``rdtsc`` (the validator says
so: every CPython image does), the supervisor traces its guest with
``ptrace`` (:class:`Tracer`) and answers that fault as the emulator's guard
answers the instruction: ``edx:eax`` is the virtual counter the guest's
clock is built on (``rdtscp``: ``ecx`` is 0), ``rip`` moves past the
instruction, and the signal is never delivered.

Why ptrace and not a handler in the loader: a ``SIGSEGV`` handler would run
in the guest's address space, on its stack (leaving the host CPU's
``xsave`` frame below the stack pointer), and would need ``rt_sigaction``
and ``rt_sigreturn`` performed by the kernel for the guest, calls that a
hostile guest could then reach by jumping into the loader.  With ptrace
nothing in the guest changes but the three registers and ``rip``, the
filter lets no signal call through, and the guest cannot forge the answer
or see anything else: its ``rt_sigaction`` is the personality's bookkeeping
(no handler is ever installed in the kernel), it cannot raise a signal
itself (``kill``, ``tgkill`` are answered by the personality), and the
tracer answers only a kernel-sent ``SIGSEGV`` whose ``rip`` points at
``0f 31`` (``rdtsc``) or ``0f 01 f9`` (``rdtscp``), or ``0f a2`` (``cpuid``,
where CPUID faulting is on: ``cpuid.py``), after any legacy, segment or REX
prefixes the CPU skips, 15 bytes in all at most (:func:`decode`): the
validator accepts those forms and the emulator runs them as the plain ones,
so ``rip`` moves past the whole instruction.  Any other signal is
delivered, and its default action ends the guest as without a tracer.

The tracer is a thread of the supervisor, because ptrace requests come from
the thread that attached (``PTRACE_O_EXITKILL``: the guest dies if it
exits); it waits in ``waitpid`` without the GIL, so it also reaps the guest
and hands its status to :meth:`Tracer.status`.  A template's guest whose
run's outcome is known is killed after the reply and left to that thread
(``supervisor.Template.reap``): the request never waits for its exit, and no
other thread waits for it (two waits could reap a pid taken since).  Tracer threads are kept
for the next guest once one is reaped: starting a thread per run cost
milliseconds on a loaded host, more than a resumed CPython start-up.  A template's child
is seized as the worker takes it in, while it waits at the gate for its run
(``supervisor.Template(tsc=True)``): the run finds it traced; one killed before
its run is reaped by that thread too.  A program without ``rdtsc``
is not traced (no thread, no cost), and a hidden ``rdtsc`` in it faults.

A ptrace request that fails (the guest cannot be seized: a ptrace policy
changed since the probe, another tracer; or a request on the stopped guest
fails, as when the host killed it) is the host's trouble (``host_failure``:
the run is ``killed``, the proxy answers 503 and runs the node elsewhere),
never the program's: the guest is seized before its first instruction and
cannot make a request on it fail.  Only a tracer bug (``ctypes`` misuse) is
ours (a 500).
"""

from __future__ import annotations

import ctypes
import errno
import os
import queue
import signal
import threading
from collections.abc import Callable

from zvm_core.engines.native import cpuid
from zvm_core.validator import _MAX_INSN as MAX_INSN  # longer, the CPU raises #GP
from zvm_core.validator import _PREFIXES  # legacy prefixes and REX

PTRACE_CONT, PTRACE_GETREGS, PTRACE_SETREGS = 7, 12, 13
PTRACE_PEEKTEXT, PTRACE_GETSIGINFO, PTRACE_SEIZE = 1, 0x4202, 0x4206
PTRACE_O_EXITKILL = 0x100000
SI_KERNEL = 0x80
WALL = 0x40000000
# made once: an array type made per trap is a reference cycle (ctypes keeps none)
_SIGINFO, _REGS = ctypes.c_int * 32, ctypes.c_ulong * 27     # siginfo_t, user_regs_struct
RDTSC, RDTSCP = b'\x0f\x31', b'\x0f\x01\xf9'
# the prefixes the CPU skips before these opcodes (a lock makes them #UD: SIGILL)
_SKIPPED = _PREFIXES - {0xF0}
# struct user_regs_struct (sys/user.h): 27 unsigned longs
RAX, RCX, RDX, RIP = 10, 11, 12, 16

_tasks: queue.SimpleQueue = queue.SimpleQueue()
_idle = 0                       # tracer threads waiting for a guest
_idle_lock = threading.Lock()
_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(request: int, pid: int, addr: int = 0, data=None) -> int:
    ctypes.set_errno(0)
    ret = _libc.ptrace(request, pid, addr, data)
    err = ctypes.get_errno()
    if ret == -1 and err:
        raise OSError(err, os.strerror(err))
    return ret


class Tracer:
    """Traces one guest from a thread of its own: answers its ``rdtsc``, reaps it.

    ``ticks()`` is the guest's virtual counter; it is called only while the
    guest is stopped, so it never races with the supervisor's answers.
    """

    def __init__(self, pid: int, ticks: Callable[[], int]) -> None:
        self.pid, self.ticks = pid, ticks
        self.reads = 0                  # rdtsc/rdtscp answered
        self.error: str | None = None
        self.host_failure = False       # ``error`` is the host's (ptrace failed), not a bug
        self._status: int | None = None
        self._seized, self._done = threading.Event(), threading.Event()
        _submit(self._run)

    def attached(self) -> bool:
        """Wait until the guest is traced (before it runs a guest instruction)."""
        self._seized.wait()
        return self.error is None

    def status(self) -> int | None:
        """The guest's wait status once it is gone (the caller killed it first);
        None if the tracer could not reap it (the caller then does)."""
        self._done.wait()
        return self._status

    def done(self) -> bool:
        """Whether the tracer's thread is done with the guest (:meth:`status` waits not)."""
        return self._done.is_set()

    def _run(self) -> None:
        try:
            self._trace()
        finally:
            self._seized.set()
            self._done.set()

    def _trace(self) -> None:
        try:
            _ptrace(PTRACE_SEIZE, self.pid, 0, PTRACE_O_EXITKILL)
        except OSError as e:
            self.error, self.host_failure = f'cannot trace the guest: {e.strerror}', True
            self._seized.set()
            return
        self._seized.set()
        try:
            while True:
                _pid, status = os.waitpid(self.pid, WALL)
                if not os.WIFSTOPPED(status):
                    self._status = status
                    return
                sig = self._stopped(os.WSTOPSIG(status))
                if sig is not None:
                    _ptrace(PTRACE_CONT, self.pid, 0, sig)
        except (OSError, ctypes.ArgumentError) as e:
            # the guest dies with this thread's trace (EXITKILL); the caller reaps it
            if getattr(e, 'errno', None) != errno.ESRCH:    # else it died: its status says
                self.error, self.host_failure = f'tracer failed: {e}', isinstance(e, OSError)
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _stopped(self, sig: int) -> int | None:
        """The guest stopped with ``sig``: the signal it goes on with (0: none), or
        None to leave it stopped (start-up snapshots take its registers so)."""
        return 0 if sig == signal.SIGSEGV and self._answer() else sig

    def _answer(self) -> bool:
        """Emulate the rdtsc, rdtscp or cpuid (prefixed or not) the guest stopped at;
        False if it is none of them."""
        info = _SIGINFO()
        _ptrace(PTRACE_GETSIGINFO, self.pid, 0, ctypes.addressof(info))
        if info[2] != SI_KERNEL:            # si_signo, si_errno, si_code
            return False
        regs = _REGS()
        _ptrace(PTRACE_GETREGS, self.pid, 0, ctypes.addressof(regs))
        insn = decode(self._code(regs[RIP]))
        if insn is None:
            return False
        opcode, size = insn
        if opcode == cpuid.CPUID:               # where CPUID faulting is on (cpuid.py)
            cpuid.emulate(regs)
        else:
            self.reads += 1
            value = self.ticks()
            regs[RAX], regs[RDX] = value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF
            if opcode == RDTSCP:
                regs[RCX] = 0                   # IA32_TSC_AUX, as the emulator's guard
        regs[RIP] += size
        _ptrace(PTRACE_SETREGS, self.pid, 0, ctypes.addressof(regs))
        return True

    def _code(self, rip: int) -> bytes:
        """The bytes at ``rip`` through three past its prefixes (at most
        :data:`MAX_INSN`; fewer where the mapping ends).  Aligned words: a
        word that cannot be read starts an unmapped page."""
        code, addr = b'', rip & ~7
        while len(code) < _prefixes(code) + 3 and len(code) < MAX_INSN:
            try:
                word = _ptrace(PTRACE_PEEKTEXT, self.pid, addr) & (2 ** 64 - 1)
            except OSError:
                break
            code += word.to_bytes(8, 'little')[max(rip - addr, 0):]
            addr += 8
        return code[:MAX_INSN]


def _prefixes(code: bytes) -> int:
    """How many of ``code``'s first bytes are prefixes the CPU skips."""
    n = 0
    while n < len(code) and code[n] in _SKIPPED:
        n += 1
    return n


def decode(code: bytes) -> tuple[bytes, int] | None:
    """The opcode (:data:`RDTSC`, :data:`RDTSCP`, :data:`cpuid.CPUID`) and length
    of the instruction ``code`` starts with, prefixes included, as the CPU and
    the validator decode it; None if it is none of them or longer than
    :data:`MAX_INSN` (the CPU's #GP for that is delivered)."""
    n = _prefixes(code)
    for opcode in (RDTSC, RDTSCP, cpuid.CPUID):
        if code.startswith(opcode, n) and n + len(opcode) <= MAX_INSN:
            return opcode, n + len(opcode)
    return None


def _submit(task: Callable[[], None]) -> None:
    """Run ``task`` on an idle tracer thread, or a new one if none is idle."""
    global _idle
    with _idle_lock:
        new = _idle == 0
        if not new:
            _idle -= 1
    _tasks.put(task)
    if new:
        threading.Thread(target=_serve, name='zvm-tsc', daemon=True).start()


def _serve() -> None:
    global _idle
    while True:
        _tasks.get()()
        with _idle_lock:
            _idle += 1
