"""Clock calls answered by a virtual clock.

Guest time is ``epoch`` (fixed by the caller; 0 by default, as ZeroVM's
ZRT) plus one nanosecond per unit of fuel used (a byte of code executed) plus whatever the guest
slept: it moves forward, yet the same run always sees the same values.
"""

from __future__ import annotations

import errno
import struct

from zvm_core.syscalls.errors import SysError

NS = 1_000_000_000
MAX_NS = (1 << 63) - 1         # the clock saturates instead of wrapping
CLOCK_REALTIME, CLOCK_PROCESS_CPUTIME_ID, TIMER_ABSTIME = 0, 2, 1
CLK_TCK = 100
KNOWN_CLOCKS = range(0, 12)


class VirtualClock:
    def __init__(self, epoch: int, fuel_used) -> None:
        self.epoch = min(epoch, MAX_NS // NS)
        self._fuel_used = fuel_used          # callable: fuel used so far
        self.slept = 0

    def monotonic_ns(self) -> int:
        return min(MAX_NS, self._fuel_used() + self.slept)

    def clock_ns(self, clock: int) -> int:
        base = self.epoch * NS if clock in (CLOCK_REALTIME, 8, 11) else 0
        return min(MAX_NS, base + self.monotonic_ns())


def _timespec(p, addr: int) -> int:
    sec, nsec = struct.unpack('<qq', p.mem.read(addr, 16))
    if sec < 0 or not 0 <= nsec < NS:
        raise SysError(errno.EINVAL)
    return sec * NS + nsec


def sys_clock_gettime(p, clock, ts, *_):
    if clock not in KNOWN_CLOCKS:
        raise SysError(errno.EINVAL)
    p.mem.write(ts, struct.pack('<qq', *divmod(p.clock.clock_ns(clock), NS)))
    return 0


def sys_clock_getres(p, clock, ts, *_):
    if clock not in KNOWN_CLOCKS:
        raise SysError(errno.EINVAL)
    if ts:
        p.mem.write(ts, struct.pack('<qq', 0, 1))
    return 0


def sys_gettimeofday(p, tv, tz, *_):
    sec, nsec = divmod(p.clock.clock_ns(CLOCK_REALTIME), NS)
    if tv:
        p.mem.write(tv, struct.pack('<qq', sec, nsec // 1000))
    if tz:
        p.mem.write(tz, bytes(8))
    return 0


def sys_time(p, tloc, *_):
    sec = p.clock.clock_ns(CLOCK_REALTIME) // NS
    if tloc:
        p.mem.write(tloc, struct.pack('<q', sec))
    return sec


def sys_times(p, buf, *_):
    """The process's CPU clock in ticks of 1/100 s (``sysconf(_SC_CLK_TCK)``) as user
    time, no system or children's time; the return value counts the same ticks."""
    ticks = p.clock.clock_ns(CLOCK_PROCESS_CPUTIME_ID) // (NS // CLK_TCK)
    if buf:
        p.mem.write(buf, struct.pack('<qqqq', ticks, 0, 0, 0))
    return ticks


def sys_nanosleep(p, req, rem, *_):
    p.clock.slept = min(MAX_NS, p.clock.slept + _timespec(p, req))
    return 0


def sys_clock_nanosleep(p, clock, flags, req, rem, *_):
    if clock not in KNOWN_CLOCKS:
        raise SysError(errno.EINVAL)
    t = _timespec(p, req)
    if flags & TIMER_ABSTIME:
        t = max(0, t - p.clock.clock_ns(clock))
    p.clock.slept = min(MAX_NS, p.clock.slept + t)
    return 0


HANDLERS = {
    35: ('nanosleep', sys_nanosleep), 96: ('gettimeofday', sys_gettimeofday),
    100: ('times', sys_times),
    201: ('time', sys_time), 228: ('clock_gettime', sys_clock_gettime),
    229: ('clock_getres', sys_clock_getres), 230: ('clock_nanosleep', sys_clock_nanosleep),
}
