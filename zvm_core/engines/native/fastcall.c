/* fastcall.c: the native supervisor's notification loop in C, the answers
 * of the calls that read only the process's fixed identity, and the
 * personality's plain success path of a channel read or write.
 *
 * serve() waits for the guest's notifications (in the seccomp RECV ioctl itself
 * where the kernel ends it when the guest is gone, else poll, then epoll, on the
 * listener and the pidfd: "the wait", below) as supervisor.py's loop did, with the GIL
 * released while it sends an answer, waits and receives (the rdtsc tracer
 * thread needs it).  A call it can serve it answers itself; any other call it
 * hands to Python's answer() (the personality, zvm_core/syscalls), and
 * sends the answer it gives with the next wait.
 *
 * What it serves:
 * - the calls whose answer is a constant of the run (getpid, gettid, getuid,
 *   set_tid_address, sched_yield ...: proc.py's CONSTANT), from a table the
 *   supervisor fills with what the personality's own handlers return;
 * - arch_prctl setting the FS or GS base (ARCH_SET_FS, ARCH_SET_GS, the whole
 *   64-bit code compared) to a base below USER_TOP: let through to the kernel,
 *   as supervisor.py's _arch_prctl answers it (proc.py's segment_request; any
 *   other code or base is its);
 * - clock_gettime of a known clock into a buffer the table says is writable, as
 *   time.py's sys_clock_gettime answers it: the value is the personality's
 *   clock's (guest.clock.clock_ns, called with the call counted, as the
 *   personality counts it before its handler); a recorded run's is Python's;
 * - exit and exit_group: counted, left unanswered and handed back to Python as
 *   the loop's result (EXIT_CALL), which ends the run with proc.py's sys_exit;
 * - ioctl, whatever its request: io.py's sys_ioctl answers ENOTTY on an open
 *   descriptor and EBADF on any other (no channel is a terminal), read from
 *   guest.fds as it does (a recorded run's is Python's: it may cut there);
 * - read, write, readv and writev (at most IOV_MAX vectors, 1..CAP bytes) on
 *   a descriptor whose open file is the personality's OpenFile over a
 *   sequential Channel backed by a regular host file or /dev/null (FdBacking,
 *   direct: a call that never waits nor stops short) or by a FileBacking --
 *   or a write of at most PIPE_BUF bytes to a pipe or FIFO (FdBacking, pipe:
 *   such a write is all or nothing, so with RWF_NOWAIT one that would wait
 *   moves no byte and is handed on, and Python waits) or a write to a
 *   TailBacking (a batch node's kept output: its bytearray ends with the last
 *   `keep` bytes written, as TailBacking.write leaves it) -- when the channel's
 *   quota lets the whole call through and every guest buffer lies in one
 *   region of the protection table with the needed access.  It reads the
 *   personality's objects (guest.fds, the channel, its quota, counters, MD5
 *   states, the backing's cursor) once after any Python code ran, serves the
 *   next calls from that copy, and writes it back, exactly as Channel.read and
 *   Channel.write would have left it, before any Python code runs again
 *   ("the channels the loop serves", below): Python and the report see the
 *   personality's state.
 *
 * What it never decides: every error and edge -- an unknown or closed
 * descriptor, the wrong access, a bad pointer, a refused or clipped quota, a
 * recorded run, a pipe, a failed host call before any byte moved, a length
 * over CAP, zero lengths -- is declined, and the personality answers the
 * call as if this file did not exist.  Guest memory is read and written
 * with process_vm_readv/writev (and /proc/PID/mem, memory.py), or in a region
 * the supervisor maps too (a spawned guest's stack and data: ProcessMemory.share)
 * from and to that mapping, after the protection table says so, as ProcessMemory
 * does.
 *
 * The thread that runs serve() carries the guest's faulting flags (rdtsc, and
 * cpuid where the CPU can) while it serves, and only then (or across the serve()s
 * of a hold: a batch's nodes): Linux rewrites them
 * (CR4.TSD, the CPUID-faulting MSR: a VM exit each under a hypervisor) at every
 * switch between threads whose flags differ, four times per mediated call if
 * the supervisor were plain.  The flags make only this thread's own rdtsc and
 * cpuid fault; they grant the guest nothing and change nothing it sees.  Why
 * that is safe for the worker: "the guest's faulting flags", below.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "md5.h"                /* zvm_core/md5.h: the channels' running MD5 */

#include <errno.h>
#include <limits.h>
#include <linux/seccomp.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define NR_READ 0
#define NR_CLOSE 3
#define NR_WRITE 1
#define NR_READV 19
#define NR_WRITEV 20
#define NR_IOCTL 16
#define NR_EXIT 60
#define NR_EXIT_GROUP 231
#define NR_ARCH_PRCTL 158
#define VSYSCALL 0xFFFFFFFFFF600000ULL  /* supervisor.py: a call from there is a fault */
#define NR_CLOCK_GETTIME 228
#define KNOWN_CLOCKS 12         /* time.py: KNOWN_CLOCKS, range(0, 12) */
#define NS 1000000000LL
#define ARCH_SET_GS 0x1001      /* proc.py: the codes the personality lets the kernel do */
#define ARCH_SET_FS 0x1002
#define USER_TOP 0x7ffffffff000ULL /* proc.py: a base at or above it is EPERM (4-level paging) */
#define MAX_IOV 1024            /* io.py: IOV_MAX */
#define MAX_FD 1024             /* io.py: MAX_FDS */
#define CAP (1 << 20)           /* larger calls go to Python: their round trip is amortised */
#define MAX_IO (1ULL << 30)     /* io.py: MAX_IO, what a read moves at most (a larger one
                                   is Python's); one over CAP is served only where it ends
                                   a regular file within CAP bytes (serve_one) */
#define PAGE 4096ULL
#define PROT_R 1
#define PROT_W 2
#define CH_READ 1               /* channels.py: READ, WRITE */
#define CH_WRITE 2
#define MAX_REGIONS 32
#define MAX_CONSTANTS 64
#define ARCH_SET_CPUID 0x1012   /* loader.c: the guest's cpuid faults where the CPU can */

enum { STOPPED = 0, EXITED = 1, DEADLINE = 2, HUNGUP = 3, EXIT_CALL = 4 };

static PyObject *s_recorder, *s_fds, *s_syscalls, *s_access, *s_channel, *s_random, *s_backing,
    *s_direct, *s_fd, *s_cursor, *s_end, *s_quota, *s_counters, *s_gets, *s_get_size, *s_puts,
    *s_put_size, *s_reads, *s_read_bytes, *s_writes, *s_write_bytes, *s_appending, *s_md5,
    *s_appended, *s_read_md5, *s_pipe, *s_nowait, *s_clock, *s_clock_ns, *s_data,
    *s_keep, *s_seekable, *s_tracer, *s_mode, *s_dev, *s_ino;

static pthread_key_t scratch;       /* a thread's buffer, freed when the thread ends */

/* host: where this process maps the region (a spawned guest's stack and data
 * segments, memory.py ProcessMemory.share), or NULL */
struct region { uint64_t start, end; long prot; unsigned char *host; };
struct constant { int nr; long long value; };

struct ctx {
    PyObject *guest, *prot, *openfile, *channel, *fdbacking, *filebacking, *tailbacking;
    unsigned char *buffer;              /* this thread's CAP + 2 * OBUF + IBUF bytes */
    int memfd, pid, nregions, nconstants;
    int own_memfd, peeks;               /* memfd opened here (memfd_of), peeks without */
    int defer;                          /* no tracer: the call count kept here ... */
    long long calls;                    /* ... these calls not yet added to guest.syscalls */
    struct region regions[MAX_REGIONS];
    struct constant constants[MAX_CONSTANTS];
};

/* -- reading the personality's objects: -1 (and no exception) means "decline" */

static long long get_ll(PyObject *obj, PyObject *name)
{
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        PyErr_Clear();
        return -1;
    }
    long long x = PyLong_Check(v) ? PyLong_AsLongLong(v) : -1;
    Py_DECREF(v);
    if (x == -1 && PyErr_Occurred())
        PyErr_Clear();          /* an int beyond 63 bits (a huge quota): Python's */
    return x;
}

static int set_ll(PyObject *obj, PyObject *name, long long x)
{
    PyObject *v = PyLong_FromLongLong(x);
    if (v == NULL)
        return -1;
    int r = PyObject_SetAttr(obj, name, v);
    Py_DECREF(v);
    return r;
}

static int add_ll(PyObject *obj, PyObject *name, long long x)
{
    long long old = get_ll(obj, name);
    if (old < 0) {
        PyErr_SetString(PyExc_RuntimeError, "fastcall: a counter is not an int");
        return -1;
    }
    return set_ll(obj, name, old + x);
}

/* The attributes one call reads, referenced until it is answered (whatever the
 * objects are: a property's fresh result stays alive too). */
struct held {
    PyObject *refs[24];
    int n;
};

static PyObject *attr(struct held *h, PyObject *obj, PyObject *name)
{
    if (obj == NULL || h->n == (int)(sizeof h->refs / sizeof h->refs[0]))
        return NULL;
    PyObject *v = PyObject_GetAttr(obj, name);
    if (v == NULL) {
        PyErr_Clear();
        return NULL;
    }
    return h->refs[h->n++] = v;
}

/* -- the protection table (memory.py ProcessMemory._check) --------------------- */

/* Whether the table lets the guest's [addr, addr + size) be used with need (all of
 * it in one region), and where this process maps those bytes: *host is our copy's
 * address in a shared region (ProcessMemory.share), else NULL (a system call moves
 * them).  One search of the regions serves the check and the copy. */
static int allowed(struct ctx *c, uint64_t addr, uint64_t size, long need,
                   unsigned char **host)
{
    for (int i = 0; i < c->nregions; i++) {
        struct region *r = &c->regions[i];
        if (addr < r->start || addr >= r->end)
            continue;
        if (size > r->end - addr)
            return 0;
        *host = r->host != NULL ? r->host + (addr - r->start) : NULL;
        if (PyDict_GET_SIZE(c->prot) == 0)
            return (r->prot & need) == need;
        for (uint64_t page = addr & ~(PAGE - 1); page < addr + size; page += PAGE) {
            PyObject *key = PyLong_FromUnsignedLongLong(page);
            if (key == NULL) {
                PyErr_Clear();
                return 0;
            }
            PyObject *p = PyDict_GetItemWithError(c->prot, key);
            Py_DECREF(key);
            long prot = r->prot;
            if (p != NULL)
                prot = PyLong_AsLong(p);
            if (PyErr_Occurred()) {
                PyErr_Clear();
                return 0;
            }
            if ((prot & need) != need)
                return 0;
        }
        return 1;
    }
    return 0;
}

/* The guest's /proc/PID/mem: the one ProcessMemory gave (a spawned guest's), else
 * one opened here now and closed when serve() ends, -1 if it cannot be.  A template's
 * child comes without one (supervisor.py: Template.start writes its run's bytes with
 * process_vm_writev): its open costs the worker ~7 us (the kernel makes the /proc
 * entries of a pid new to it), which a read through it repays by ~0.1 us (a 32-byte
 * read: pread 0.32-0.36 us, process_vm_readv 0.41-0.48 here): ~70 reads. */
#define NO_MEMFD (-2)              /* memfd: its open failed (no /proc): not tried again */
static int memfd_of(struct ctx *c)
{
    if (c->memfd == -1) {
        char path[32];
        snprintf(path, sizeof path, "/proc/%d/mem", c->pid);
        c->memfd = open(path, O_RDWR | O_CLOEXEC);
        c->own_memfd = c->memfd >= 0;
        if (c->memfd < 0)
            c->memfd = NO_MEMFD;
    }
    return c->memfd;
}

/* Read one guest range the table allows into buf: from our mapping (host, from
 * allowed()), else through /proc/PID/mem, as ProcessMemory reads: for one small range
 * (a writev's iovec array, a stdio caller's line in the heap) ~0.4 us cheaper than
 * process_vm_readv, whose cost is mostly per call (its access check; this file's was
 * made at its open), not per page.  Without that file (a template's child), the first
 * LAZY_PEEKS - 1 reads are process_vm_readv's, then the file is opened (memfd_of):
 * a short run never opens it (wc over 1 KiB reads once), a long one pays for it once
 * (at most ~6 us of reads, which a run that long spends in ~0.5 ms of its calls);
 * where it cannot be opened (no /proc), its reads stay process_vm_readv's, the open
 * tried once a run (NO_MEMFD). */
#define LAZY_PEEKS 64
static int guest_peek(struct ctx *c, void *buf, size_t size, uint64_t addr,
                      const unsigned char *host)
{
    if (host != NULL) {
        memcpy(buf, host, size);
        return 1;
    }
    if (c->memfd < 0 && (c->memfd == NO_MEMFD || ++c->peeks < LAZY_PEEKS
                         || memfd_of(c) < 0)) {
        struct iovec local = {buf, size}, remote = {(void *)(uintptr_t)addr, size};
        return process_vm_readv(c->pid, &local, 1, &remote, 1, 0) == (ssize_t)size;
    }
    return pread(c->memfd, buf, size, (off_t)addr) == (ssize_t)size;
}

/* Gather the guest's buffers into buf, after the table's check (hosts: where we map
 * each, from allowed()): those in a shared region (a C program's stdio buffers are in
 * its data segment, its iovec arrays on its stack) copied from our mapping; one other
 * range as guest_peek reads it; several with one process_vm_readv (no bounce page, as
 * a /proc/PID/mem read has; it also holds to the guest's page protections).  A short
 * read is declined, and Python reads it again. */
static int guest_read(struct ctx *c, void *buf, const struct iovec *remote,
                      unsigned char *const *hosts, int n)
{
    struct iovec local[MAX_IOV], rest[MAX_IOV];
    unsigned char *at = buf;
    size_t left = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (hosts[i] != NULL) {
            memcpy(at, hosts[i], remote[i].iov_len);
        } else {
            local[k] = (struct iovec){at, remote[i].iov_len};
            rest[k++] = remote[i];
            left += remote[i].iov_len;
        }
        at += remote[i].iov_len;
    }
    if (k == 1)
        return guest_peek(c, local[0].iov_base, left, (uintptr_t)rest[0].iov_base, NULL);
    return k == 0 || process_vm_readv(c->pid, local, k, rest, k, 0) == (ssize_t)left;
}

/* Scatter the first size bytes of buf into the guest's buffers, in order (what
 * ProcessMemory.flush does); where process_vm_writev stops short, /proc/PID/mem
 * as ProcessMemory writes it.  0 or -EFAULT. */
static int guest_write(struct ctx *c, const unsigned char *buf, size_t size,
                       const struct iovec *remote, unsigned char *const *hosts, int n)
{
    struct iovec local = {(void *)buf, size}, trimmed[MAX_IOV];
    int k = 0;
    for (size_t left = size; k < n && left; k++) {
        trimmed[k] = remote[k];
        if (trimmed[k].iov_len > left)
            trimmed[k].iov_len = left;
        left -= trimmed[k].iov_len;
    }
    if (k == 0)                 /* nothing to write (and nothing for the kernel to read) */
        return 0;
    int shared = 0;
    while (shared < k && hosts[shared] != NULL)
        shared++;
    if (shared == k) {          /* all in shared regions: into our mapping */
        for (int i = 0; i < k; i++) {
            memcpy(hosts[i], buf, trimmed[i].iov_len);
            buf += trimmed[i].iov_len;
        }
        return 0;
    }
    if (process_vm_writev(c->pid, &local, 1, trimmed, k, 0) == (ssize_t)size)
        return 0;
    if (memfd_of(c) < 0)
        return -EFAULT;
    for (int i = 0; i < k; i++) {
        const struct iovec *to = &trimmed[i];
        if (pwrite(c->memfd, buf, to->iov_len, (off_t)(uintptr_t)to->iov_base)
            != (ssize_t)to->iov_len)
            return -EFAULT;
        buf += to->iov_len;
    }
    return 0;
}

/* -- one call ---------------------------------------------------------------------- */

/* TailBacking.write of n bytes: its bytearray ends with the last keep bytes of what
 * it held and buf (held: no view of it is exported).  n, or -2 (an exception). */
static ssize_t tail_write(PyObject *data, long long keep, const unsigned char *buf, size_t n)
{
    Py_ssize_t old = PyByteArray_GET_SIZE(data);
    if ((unsigned long long)n >= (unsigned long long)keep) {
        if (PyByteArray_Resize(data, (Py_ssize_t)keep) < 0)
            return -2;
        memcpy(PyByteArray_AS_STRING(data), buf + n - keep, (size_t)keep);
        return (ssize_t)n;
    }
    Py_ssize_t drop = old + (Py_ssize_t)n > keep ? old + (Py_ssize_t)n - (Py_ssize_t)keep : 0;
    if (drop > old)
        drop = old;
    char *p = PyByteArray_AS_STRING(data);
    memmove(p, p + drop, (size_t)(old - drop));
    if (PyByteArray_Resize(data, old - drop + (Py_ssize_t)n) < 0)
        return -2;
    memcpy(PyByteArray_AS_STRING(data) + old - drop, buf, n);
    return (ssize_t)n;
}

/* The open file (borrowed) of the call's descriptor, args[0], in guest.fds, or NULL
 * when it is not open: 1; 0 when the call is Python's (a recorded run cuts its
 * prefix at channel calls; no plain descriptor table; a failed lookup); -1 on an
 * exception. */
static int open_file(struct ctx *c, const struct seccomp_notif *n, struct held *h,
                     PyObject **f)
{
    if (attr(h, c->guest, s_recorder) != Py_None)
        return 0;
    PyObject *fds = attr(h, c->guest, s_fds);
    if (fds == NULL || !PyDict_CheckExact(fds))
        return 0;
    PyObject *key = PyLong_FromUnsignedLongLong(n->data.args[0]);
    if (key == NULL)
        return -1;
    *f = PyDict_GetItemWithError(fds, key);
    Py_DECREF(key);
    if (*f == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* The calls answered here and not yet in guest.syscalls, added: before any Python
 * code (the virtual clock reads the count), and at the end.  With a tracer the
 * count is added per call: its thread reads the clock while this one waits. */
static int count_calls(struct ctx *c)
{
    long long n = c->calls;
    c->calls = 0;
    return n ? add_ll(c->guest, s_syscalls, n) : 0;
}

/* ioctl as io.py's sys_ioctl answers it: 1 and *ret, 0 (declined), -1 (an exception) */
static int serve_ioctl(struct ctx *c, const struct seccomp_notif *n, long long *ret,
                       struct held *h)
{
    PyObject *f;
    int got = open_file(c, n, h, &f);
    if (got == 1)
        *ret = f == NULL ? -EBADF : -ENOTTY;
    return got;
}

/* clock_gettime as time.py's sys_clock_gettime answers it: 1 (*ret 0), 0 (declined:
 * an unknown clock, a buffer the table refuses, a recorded run, a short write -- the
 * call count as before), -1 (an exception) */
static int serve_clock(struct ctx *c, const struct seccomp_notif *n, long long *ret,
                       struct held *h)
{
    uint64_t clock = n->data.args[0], ts = n->data.args[1];
    unsigned char *host;
    if (clock >= KNOWN_CLOCKS || !allowed(c, ts, 16, PROT_W, &host)
        || attr(h, c->guest, s_recorder) != Py_None)
        return 0;
    PyObject *vclock = attr(h, c->guest, s_clock);
    if (vclock == NULL)
        return 0;
    /* the personality counts the call before its handler reads the clock; the loop
     * counts an answered call after: counted for the read, then given back */
    if (count_calls(c) < 0 || add_ll(c->guest, s_syscalls, 1) < 0)
        return -1;
    PyObject *id = PyLong_FromUnsignedLongLong(clock);
    PyObject *v = id == NULL ? NULL : PyObject_CallMethodOneArg(vclock, s_clock_ns, id);
    Py_XDECREF(id);
    long long now = v == NULL ? -1 : PyLong_AsLongLong(v);
    Py_XDECREF(v);
    if (add_ll(c->guest, s_syscalls, -1) < 0 || (now == -1 && PyErr_Occurred()))
        return -1;
    if (now < 0)
        return 0;
    int64_t value[2] = {now / NS, now % NS};
    struct iovec remote = {(void *)(uintptr_t)ts, sizeof value};
    if (guest_write(c, (const unsigned char *)value, sizeof value, &remote, &host, 1) < 0)
        return 0;
    *ret = 0;
    return 1;
}

/* -- the channels the loop serves, held in C between two calls into Python ------------
 *
 * The first plain read or write of a descriptor after any Python code ran reads
 * the personality's objects (guest.fds, the open file, its channel, backing,
 * quota, counters, MD5 states, cursor) into a struct chan; the next calls use
 * that copy, and release() writes the counters, cursor, end and _appended back
 * before any Python code runs again: before answer(), and at every way out of
 * serve().  Python code is the only thing that changes the descriptor table or a
 * channel, and it reads them only in answer() or after the run (the report), so
 * the personality's objects are the same as if each call had updated them.
 * (The call count, guest.syscalls, is still updated per call: the rdtsc tracer's
 * thread reads the virtual clock while this one waits.)
 *
 * A sequential write to a regular file (FdBacking of a file, FileBacking) is
 * gathered in an output buffer of OBUF bytes and written to the file, and
 * hashed into the etag's MD5, once it holds HANDOFF bytes or the next write does
 * not fit, before a call to another channel or any read served here, and by
 * release(): one host write and one MD5 update per HANDOFF bytes or so instead
 * of one each per call.  The file holds every byte the guest was told was
 * written whenever Python or anyone after the run looks.
 *
 * The MD5 states are zvm_core._md5.MD5 objects (md5.h), updated here in place
 * without the GIL.  A buffer of HANDOFF bytes or more is handed to a helper
 * thread of this one ("writing and hashing off the serving thread", below),
 * which writes it to its file and hashes it (the etag's ~1.5 us a KiB) on the
 * other CPU while the guest runs on; the next bytes are gathered in a second
 * buffer.  Every other host write and hash, and every read but a read-ahead
 * (of a read-only file no other chan has: never one the helper writes, fill_chan),
 * is done here, after the helper's: release() waits for the helper before any Python code runs, so
 * Python sees the file and each state as if they had been updated call by
 * call. */

#define OBUF (256 << 10)
#define HANDOFF (64 << 10)              /* gathered bytes handed to the helper from here */
#define IBUF (256 << 10)                /* a read-only regular file's bytes read ahead */
#define MAX_CHANS 8
#define MAX_SLOTS 16
enum { K_DIRECT, K_FILE, K_PIPE, K_TAIL };

struct chan {
    PyObject *channel, *backing, *counters, *md5, *read_md5, *kept;    /* strong */
    struct md5 *hash, *read_hash;       /* the states of md5 and read_md5, or NULL */
    int kind, hostfd, regular, appending, dirty, ahead;
    dev_t dev;
    ino_t ino;
    long long keep, ops[2], bytes[2], max_ops[2], max_bytes[2], cursor, end, appended;
};

struct slot { int fd, chan; long long access; };

struct cache {
    int nchans, nslots, out;          /* out: the chan whose bytes obuf holds, or -1 */
    const char *outcall;              /* the guest's call that gathered them (its failure's) */
    size_t fill;
    long long at;                     /* a FileBacking's offset of obuf[0] */
    unsigned char *obuf, *spare;      /* gathering into obuf; spare: the other buffer
                                         (the helper may be hashing it) */
    int in;                           /* the chan whose next bytes ibuf holds, or -1 */
    size_t have, used;                /* ibuf[used, have): read from the file, not given */
    unsigned char *ibuf;
    struct chan chans[MAX_CHANS];
    struct slot slots[MAX_SLOTS];
};

static PyObject *HostIOError;         /* _fastcall.HostIOError: a buffered write failed */
static PyTypeObject *md5_type;        /* zvm_core._md5.MD5: the states hashed here */

static int hashed(void);
static int write_later(int fd, long long at, struct md5 *m, const unsigned char *data,
                       size_t n, const char *call);

static int host_error(int err, const char *call)
{
    PyObject *e = PyObject_CallFunction(HostIOError, "is", err, strerror(err));
    PyObject *name = e != NULL ? PyUnicode_FromString(call) : NULL;
    if (name != NULL && PyObject_SetAttrString(e, "call", name) == 0)
        PyErr_SetObject(HostIOError, e);
    Py_XDECREF(name);
    Py_XDECREF(e);
    return -1;
}

/* Whether a read of more than CAP bytes from ch is Python's (the read over CAP in
 * serve_one): more than CAP bytes left in its file, or no regular file.  Asked again
 * after the flush and the read-ahead given back, which only make the rest longer. */
static int over_cap(const struct chan *ch)
{
    if (ch->kind == K_FILE)
        return ch->end - ch->cursor > (long long)CAP;
    struct stat st;
    off_t at;
    return !ch->regular || (at = lseek(ch->hostfd, 0, SEEK_CUR)) < 0
           || fstat(ch->hostfd, &st) < 0 || st.st_size - at > (off_t)CAP;
}

/* Give back the bytes read ahead and not given to the guest: a FileBacking's cursor
 * is where the guest is already; an FdBacking's file offset is moved back to it. */
static int unread(struct cache *k)
{
    if (k->in < 0)
        return 0;
    struct chan *ch = &k->chans[k->in];
    off_t left = (off_t)(k->have - k->used);
    k->in = -1;
    k->have = k->used = 0;
    if (left && ch->kind != K_FILE && lseek(ch->hostfd, -left, SEEK_CUR) < 0)
        return host_error(errno, "read");
    return 0;
}

/* Write n bytes of data to fd (at offset at; -1: at its file offset): 0 or errno. */
static int write_all(int fd, long long at, const unsigned char *data, size_t n)
{
    for (size_t done = 0; done < n;) {
        ssize_t w = at >= 0 ? pwrite(fd, data + done, n - done, (off_t)(at + (long long)done))
                            : write(fd, data + done, n - done);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : ENOSPC;
        done += (size_t)w;
    }
    return 0;
}

/* Write the buffered bytes to their file and hash them (later: a full buffer, on
 * the helper thread if there is one), after the helper's buffer before them: 0, or
 * -1 with HostIOError (errno, strerror) set: the bytes were acknowledged to the
 * guest, so the run ends as the personality ends it when a host write fails.  A
 * failed write of the helper's drops the bytes gathered after it (never written:
 * no hole in the file, and nothing left for a later flush). */
static int flush(struct cache *k, int later)
{
    if (hashed() < 0) {                 /* the spare buffer is free, the file current */
        k->fill = 0;
        return -1;
    }
    if (k->fill == 0 || k->out < 0)
        return 0;
    struct chan *ch = &k->chans[k->out];
    size_t n = k->fill;
    long long at = ch->kind == K_FILE ? k->at : -1;
    k->fill = 0;
    if (later && write_later(ch->hostfd, at, ch->hash, k->obuf, n, k->outcall)) {
        unsigned char *full = k->obuf;
        k->obuf = k->spare;
        k->spare = full;
        return 0;
    }
    int err = write_all(ch->hostfd, at, k->obuf, n);
    if (err)
        return host_error(err, k->outcall);
    if (ch->hash != NULL)
        md5_update(ch->hash, k->obuf, n);
    return 0;
}

/* Give back what was read ahead, flush, write the copies back to the personality's
 * objects, forget them.  Each is done whatever the others did (a failure is a
 * HostIOError: the run ends, and the first exception is the one raised): the
 * read-ahead given back (a caller's shared descriptor is read on after the run),
 * the gathered bytes written, every counter written back (the report counts what
 * the guest did; a channel whose write failed counts the bytes the host refused,
 * as the guest was told they were written). */
static int release(struct cache *k)
{
    int failed = unread(k) < 0, r = 0;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (flush(k, 0) < 0) {
        failed = 1;
        if (type == NULL)
            PyErr_Fetch(&type, &value, &tb);
        else
            PyErr_Clear();
    }
    for (int i = 0; i < k->nchans; i++) {
        struct chan *ch = &k->chans[i];
        if (ch->dirty && r == 0
            && (set_ll(ch->counters, s_reads, ch->ops[0]) < 0
                || set_ll(ch->counters, s_read_bytes, ch->bytes[0]) < 0
                || set_ll(ch->counters, s_writes, ch->ops[1]) < 0
                || set_ll(ch->counters, s_write_bytes, ch->bytes[1]) < 0
                || (ch->appending && set_ll(ch->channel, s_appended, ch->appended) < 0)
                || (ch->kind == K_FILE && (set_ll(ch->backing, s_cursor, ch->cursor) < 0
                                           || set_ll(ch->backing, s_end, ch->end) < 0))))
            r = -1;
        Py_XDECREF(ch->channel);
        Py_XDECREF(ch->backing);
        Py_XDECREF(ch->counters);
        Py_XDECREF(ch->md5);
        Py_XDECREF(ch->read_md5);
        Py_XDECREF(ch->kept);
    }
    k->nchans = k->nslots = 0;
    k->out = -1;
    k->fill = 0;                        /* (written, or dropped with its failure) */
    if (type != NULL) {
        PyErr_Clear();
        PyErr_Restore(type, value, tb);
    }
    return r < 0 || failed ? -1 : 0;
}

/* The chan of a channel (borrowed objects in h), filled from its objects: its index,
 * or -1 (declined: not one the loop serves, or no room), -2 (an exception). */
static int fill_chan(struct ctx *c, struct cache *k, struct held *h, PyObject *chobj)
{
    for (int i = 0; i < k->nchans; i++)
        if (k->chans[i].channel == chobj)
            return i;
    if (k->nchans == MAX_CHANS || attr(h, chobj, s_random) != Py_False)
        return -1;
    PyObject *backing = attr(h, chobj, s_backing);
    if (backing == NULL)
        return -1;
    for (int i = 0; i < k->nchans; i++)
        if (k->chans[i].backing == backing)
            return -1;                  /* one backing, two channels: Python's */
    struct chan ch = {.hostfd = -1};
    PyTypeObject *type = Py_TYPE(backing);
    if (type == (PyTypeObject *)c->tailbacking) {
        ch.kind = K_TAIL;
        PyObject *kept = attr(h, backing, s_data);
        ch.keep = get_ll(backing, s_keep);
        if (kept == NULL || !PyByteArray_CheckExact(kept) || ch.keep < 1)
            return -1;
        ch.kept = kept;
    } else if (type == (PyTypeObject *)c->filebacking) {
        ch.kind = K_FILE;
        ch.regular = 1;
        ch.cursor = get_ll(backing, s_cursor);
        ch.end = get_ll(backing, s_end);
        if (ch.cursor < 0 || ch.end < 0)
            return -1;
    } else if (type == (PyTypeObject *)c->fdbacking) {
        if (attr(h, backing, s_direct) == Py_True) {
            ch.kind = K_DIRECT;
            ch.regular = attr(h, backing, s_seekable) == Py_True;
        } else if (attr(h, backing, s_pipe) == Py_True && attr(h, backing, s_nowait) == Py_True) {
            ch.kind = K_PIPE;           /* writes of at most PIPE_BUF only (serve_one) */
        } else {
            return -1;                  /* a stream waits and reads fully: Python's */
        }
    } else {
        return -1;
    }
    if (ch.kind != K_TAIL && ((ch.hostfd = (int)get_ll(backing, s_fd)) < 0
                              || get_ll(backing, s_fd) > INT32_MAX))
        return -1;
    PyObject *quota = attr(h, chobj, s_quota), *counters = attr(h, chobj, s_counters);
    if (quota == NULL || counters == NULL)
        return -1;
    if (ch.regular) {       /* read ahead: a read-only channel whose file no other has */
        /* the file's identity, as the FdBacking's fstat found it when made (an open
         * descriptor's never changes): two system calls a batch's node less; fstat'd
         * here if it has none (or one beyond 63 bits) */
        long long dev = get_ll(backing, s_dev), ino = get_ll(backing, s_ino);
        if (dev < 0 || ino < 0) {
            struct stat st;
            if (fstat(ch.hostfd, &st) < 0)
                return -1;
            dev = (long long)st.st_dev;
            ino = (long long)st.st_ino;
        }
        ch.dev = (dev_t)dev;
        ch.ino = (ino_t)ino;
        ch.ahead = get_ll(chobj, s_mode) == CH_READ;
        for (int i = 0; i < k->nchans; i++) {
            struct chan *other = &k->chans[i];
            if (other->regular && other->dev == ch.dev && other->ino == ch.ino) {
                if (k->in == i && unread(k) < 0)
                    return -2;
                ch.ahead = other->ahead = 0;
            }
        }
    }
    ch.ops[0] = get_ll(counters, s_reads);
    ch.bytes[0] = get_ll(counters, s_read_bytes);
    ch.ops[1] = get_ll(counters, s_writes);
    ch.bytes[1] = get_ll(counters, s_write_bytes);
    ch.max_ops[0] = get_ll(quota, s_gets);
    ch.max_bytes[0] = get_ll(quota, s_get_size);
    ch.max_ops[1] = get_ll(quota, s_puts);
    ch.max_bytes[1] = get_ll(quota, s_put_size);
    for (int i = 0; i < 2; i++)
        if (ch.ops[i] < 0 || ch.bytes[i] < 0 || ch.max_ops[i] < 0 || ch.max_bytes[i] < 0)
            return -1;              /* (a quota beyond 63 bits too: Python's) */
    PyObject *appending = attr(h, chobj, s_appending);
    ch.appending = appending == Py_True;
    if (ch.appending) {                 /* (an MD5 of another type: Python's) */
        PyObject *md5 = attr(h, chobj, s_md5);
        if (md5 == NULL || Py_TYPE(md5) != md5_type
                || (ch.appended = get_ll(chobj, s_appended)) < 0)
            return -1;
        ch.md5 = Py_NewRef(md5);
        ch.hash = &((MD5Object *)md5)->md5;
    }
    PyObject *read_md5 = attr(h, chobj, s_read_md5);
    if (read_md5 != NULL && read_md5 != Py_None) {
        if (Py_TYPE(read_md5) != md5_type) {
            Py_XDECREF(ch.md5);
            return -1;
        }
        ch.read_md5 = Py_NewRef(read_md5);
        ch.read_hash = &((MD5Object *)read_md5)->md5;
    }
    ch.channel = Py_NewRef(chobj);
    ch.backing = Py_NewRef(backing);
    ch.counters = Py_NewRef(counters);
    Py_XINCREF(ch.kept);
    k->chans[k->nchans] = ch;
    return k->nchans++;
}

/* The slot of the call's descriptor: 1 and *s, 0 (declined), -1 (an exception). */
static int slot_of(struct ctx *c, struct cache *k, const struct seccomp_notif *n,
                   struct held *h, struct slot **s)
{
    int fd = (int)n->data.args[0];
    for (int i = 0; i < k->nslots; i++)
        if (k->slots[i].fd == fd) {
            *s = &k->slots[i];
            return 1;
        }
    if (k->nslots == MAX_SLOTS)
        return 0;
    PyObject *f;
    int got = open_file(c, n, h, &f);
    if (got <= 0)
        return got;
    if (f == NULL || Py_TYPE(f) != (PyTypeObject *)c->openfile
        || h->n == (int)(sizeof h->refs / sizeof h->refs[0]))
        return 0;
    h->refs[h->n++] = Py_NewRef(f);
    long long access = get_ll(f, s_access);
    PyObject *chobj = attr(h, f, s_channel);
    if (access < 0 || chobj == NULL || Py_TYPE(chobj) != (PyTypeObject *)c->channel)
        return 0;                       /* an image node, not a channel */
    int i = fill_chan(c, k, h, chobj);
    if (i < 0)
        return i == -2 ? -1 : 0;
    *s = &k->slots[k->nslots++];
    **s = (struct slot){fd, i, access};
    return 1;
}

/* 1: answered (*ret: the value, or a negative errno); 0: declined (Python answers);
 * -1: an exception (a sandbox bug: the run ends). */
static int serve_one(struct ctx *c, struct cache *k, const struct seccomp_notif *n,
                     long long *ret, struct held *h)
{
    int nr = n->data.nr;
    if (nr == NR_IOCTL)
        return serve_ioctl(c, n, ret, h);
    if (nr == NR_CLOCK_GETTIME)
        return serve_clock(c, n, ret, h);
    int writing = nr == NR_WRITE || nr == NR_WRITEV;
    if (!(writing || nr == NR_READ || nr == NR_READV) || n->data.args[0] >= MAX_FD)
        return 0;
    struct slot *s;
    int got = slot_of(c, k, n, h, &s);
    if (got <= 0)
        return got;
    long long need = writing ? CH_WRITE : CH_READ;
    struct chan *ch = &k->chans[s->chan];
    if ((s->access & need) != need || (!writing && (ch->kind == K_TAIL || ch->kind == K_PIPE)))
        return 0;
    if (ch->kind == K_TAIL && ((PyByteArrayObject *)ch->kept)->ob_exports > 0)
        return 0;                       /* (a view of its bytes: Python's BufferError) */

    /* the guest's buffers: [buf, count) or its iovec array; a read of more than CAP
     * bytes that is Python's anyway (over_cap) is declined before its buffer's pages
     * are looked up (up to MAX_IO / PAGE of them, allowed()) */
    struct iovec segs[MAX_IOV];
    unsigned char *hosts[MAX_IOV], *host;   /* where we map each (allowed()), or NULL */
    int nsegs = 0;
    uint64_t total = 0;
    long prot = writing ? PROT_R : PROT_W;
    uint64_t most = writing ? CAP : MAX_IO;
    if (nr == NR_READ || nr == NR_WRITE) {
        uint64_t len = n->data.args[2];
        if (len == 0 || len > most || (!writing && len > CAP && over_cap(ch))
            || !allowed(c, n->data.args[1], len, prot, &host))
            return 0;
        hosts[nsegs] = host;
        segs[nsegs++] = (struct iovec){(void *)(uintptr_t)n->data.args[1], len};
        total = len;
    } else {
        uint64_t count = n->data.args[2], iov = n->data.args[1];
        uint64_t raw[2 * MAX_IOV];
        if (count == 0 || count > MAX_IOV || !allowed(c, iov, 16 * count, PROT_R, &host)
            || !guest_peek(c, raw, 16 * count, iov, host))
            return 0;
        for (uint64_t i = 0; i < count; i++) {     /* the bound, before any page is looked up */
            if (raw[2 * i + 1] > most - total)
                return 0;
            total += raw[2 * i + 1];
        }
        if (!writing && total > CAP && over_cap(ch))
            return 0;
        for (uint64_t i = 0; i < count; i++) {
            uint64_t base = raw[2 * i], len = raw[2 * i + 1];
            if (len == 0)
                continue;
            if (!allowed(c, base, len, prot, &host))
                return 0;
            hosts[nsegs] = host;
            segs[nsegs++] = (struct iovec){(void *)(uintptr_t)base, len};
        }
        if (total == 0)
            return 0;
    }
    if (ch->kind == K_PIPE && total > PIPE_BUF)
        return 0;

    /* the quota lets the whole call through (else Python refuses or clips it) */
    int w = writing;
    if (ch->ops[w] >= ch->max_ops[w] || ch->bytes[w] >= ch->max_bytes[w]
        || (uint64_t)(ch->max_bytes[w] - ch->bytes[w]) < total)
        return 0;

    ssize_t done;
    unsigned char *buffer = c->buffer;
    if (writing) {
        int gather = ch->regular && total <= OBUF;
        if (k->fill && (k->out != s->chan || !gather || k->fill + total > OBUF
                        || k->fill >= HANDOFF)
            && flush(k, k->out == s->chan && gather && k->fill >= HANDOFF) < 0)
            return -1;
        if (!gather && hashed() < 0)    /* the helper's write comes first */
            return -1;
        if (gather)
            buffer = k->obuf + k->fill;
        if (!guest_read(c, buffer, segs, hosts, nsegs))
            return 0;                   /* not readable after all: Python's EFAULT */
        if (gather) {
            if (k->fill == 0)
                k->at = ch->cursor;
            k->fill += total;
            k->out = s->chan;
            const char *call = nr == NR_WRITEV ? "writev" : "write";
            k->outcall = k->fill == total || !strcmp(k->outcall, call) ? call
                                                                      : "write and writev";
            done = (ssize_t)total;
        } else {
            struct iovec whole = {buffer, total};
            done = ch->kind == K_TAIL ? tail_write(ch->kept, ch->keep, buffer, total)
                 : ch->kind == K_PIPE ? pwritev2(ch->hostfd, &whole, 1, -1, RWF_NOWAIT)
                 : ch->kind == K_FILE ? pwrite(ch->hostfd, buffer, total, ch->cursor)
                                      : write(ch->hostfd, buffer, total);
            if (done == -2)
                return -1;              /* no memory for the tail */
            if (done < 0)
                return 0;               /* nothing written (a full pipe: EAGAIN): Python
                                           waits, retries or fails the run */
            if (ch->hash != NULL)
                md5_update(ch->hash, buffer, (size_t)done);
        }
        if (ch->appending)
            ch->appended += done;
    } else if (ch->ahead && total <= IBUF) {
        if (k->in != s->chan && unread(k) < 0)
            return -1;
        k->in = s->chan;
        size_t left = k->have - k->used;
        if (left < total) {             /* as much as the file has, as one read gives */
            memmove(k->ibuf, k->ibuf + k->used, left);
            k->have = left;
            k->used = 0;
            long long at = ch->cursor + (long long)left;        /* (a FileBacking's) */
            size_t room = IBUF - left;
            if (ch->kind == K_FILE)
                room = ch->end > at ? (uint64_t)(ch->end - at) < room ? (size_t)(ch->end - at)
                                                                       : room : 0;
            ssize_t got = 0;
            if (room)
                got = ch->kind == K_FILE ? pread(ch->hostfd, k->ibuf + left, room, at)
                                         : read(ch->hostfd, k->ibuf + left, room);
            if (got < 0)
                return unread(k) < 0 ? -1 : 0;  /* Python reads it and sees the error */
            k->have += (size_t)got;
        }
        done = (ssize_t)(k->have - k->used < total ? k->have - k->used : total);
        buffer = k->ibuf + k->used;
        k->used += (size_t)done;
        if (ch->read_hash != NULL)      /* (a read-only channel's: never the helper's) */
            md5_update(ch->read_hash, buffer, (size_t)done);
    } else {
        if (flush(k, 0) < 0)            /* (the file read may be the one written) */
            return -1;
        if (k->in == s->chan && unread(k) < 0)
            return -1;
        uint64_t want = total;
        if (ch->kind == K_FILE)
            want = ch->end > ch->cursor ? (uint64_t)(ch->end - ch->cursor) < total
                                        ? (uint64_t)(ch->end - ch->cursor) : total : 0;
        /* over CAP: a regular file read to its end within CAP bytes is served (the
         * read of a growing buffer that finds the end: Python would stage the whole
         * buffer for it).  A FileBacking's end is known; a descriptor's is its size
         * (a file with more left is Python's at once, never read here first), and
         * where a read of CAP bytes stops short (one that does not -- the file grew
         * meanwhile -- is given back, and is Python's) */
        int over = want > CAP;
        if (over && over_cap(ch))
            return 0;
        done = 0;
        if (want) {
            done = ch->kind == K_FILE ? pread(ch->hostfd, buffer, want, ch->cursor)
                                      : read(ch->hostfd, buffer, over ? CAP : want);
            if (done < 0)
                return 0;
        }
        if (over && done == (ssize_t)CAP) {     /* the file goes on: Python's */
            if (lseek(ch->hostfd, -done, SEEK_CUR) < 0)
                return host_error(errno, "read");
            return 0;
        }
        if (ch->read_hash != NULL)      /* (a read-only channel's: never the helper's) */
            md5_update(ch->read_hash, buffer, (size_t)done);
    }
    ch->ops[w] += 1;
    ch->bytes[w] += done;
    ch->dirty = 1;
    if (ch->kind == K_FILE) {
        ch->cursor += done;
        if (writing && ch->cursor > ch->end)
            ch->end = ch->cursor;
    }
    *ret = done;
    if (!writing && guest_write(c, buffer, done, segs, hosts, nsegs) < 0)
        *ret = -EFAULT;                 /* as ProcessMemory.flush: the call has happened */
    return 1;
}

/* -- the guest's faulting flags, carried by the serving thread ----------------------
 *
 * The guest's rdtsc and (where the CPU can) cpuid fault (loader.c).  Linux keeps
 * those flags per thread and, at every switch between a thread that has them and
 * one that has not, rewrites CR4.TSD and the CPUID-faulting MSR: under a
 * hypervisor each is a VM exit, four per mediated call (guest -> this thread ->
 * guest).  So the thread that serves the guest carries exactly the guest's flags
 * while it serves (carry(), drop()): the switches between them then change
 * nothing.  The flags make only this thread's own rdtsc, rdtscp and cpuid fault;
 * they grant the guest nothing.
 *
 * While it carries them this thread must execute none of those: the loop reads
 * its deadline's clock from the vDSO's coarse clock, or with the system call, never
 * the vDSO's CLOCK_MONOTONIC (time_left(), monotonic()).  What it cannot
 * see -- CPython reading the clock in a contended GIL wait, Python code in
 * answer() or a signal handler -- the net catches: a SIGSEGV handler that, for a
 * kernel-sent fault (SI_KERNEL) at one of those instructions in a thread that
 * carries the flags, drops them (two async-signal-safe calls), counts it and
 * returns, and the instruction runs again; any other SIGSEGV goes to the handler
 * installed before it.  A missed source costs a few microseconds, never the
 * worker.  The loop carries them again before its next wait, at most REARMS times
 * in one serve(). */

enum { CARRY_TSC = 1, CARRY_CPUID = 2 };
#define REARMS 16

static __thread int carried __attribute__((tls_model("initial-exec")));  /* CARRY_* */
static __thread int held;               /* carried across serve()s: hold() */
static struct sigaction s_before;       /* the SIGSEGV handler before the net */
static unsigned long s_caught;          /* faults the net answered (atomic) */

static void drop(void)
{
    if (carried & CARRY_TSC)
        prctl(PR_SET_TSC, PR_TSC_ENABLE, 0, 0, 0);
    if (carried & CARRY_CPUID)
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
    carried = 0;
}

static int trapping(const unsigned char *ip)
{
    return (ip[0] == 0x0f && (ip[1] == 0x31 || ip[1] == 0xa2))
        || (ip[0] == 0x0f && ip[1] == 0x01 && ip[2] == 0xf9);
}

static void net(int sig, siginfo_t *info, void *context)
{
    ucontext_t *uc = context;
    if (carried && info->si_code == SI_KERNEL
            && trapping((const unsigned char *)uc->uc_mcontext.gregs[REG_RIP])) {
        int saved = errno;
        drop();
        __atomic_fetch_add(&s_caught, 1, __ATOMIC_RELAXED);
        errno = saved;
        return;                 /* it runs again, without the flags */
    }
    if (s_before.sa_flags & SA_SIGINFO) {
        s_before.sa_sigaction(sig, info, context);
    } else if (s_before.sa_handler == SIG_DFL || s_before.sa_handler == SIG_IGN) {
        sigaction(SIGSEGV, &s_before, NULL);    /* the fault comes again: its own end */
    } else {
        s_before.sa_handler(sig);
    }
}

static int is_net(const struct sigaction *sa)
{
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == net;
}

static int install_net(void)
{
    struct sigaction now;
    if (sigaction(SIGSEGV, NULL, &now) == 0 && is_net(&now))
        return 0;               /* installed already: never chained to itself */
    struct sigaction sa = {.sa_sigaction = net, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGSEGV, &sa, &s_before);
}

/* The guest's flags on this thread: PR_SET_TSC always (loader.c fails without it),
 * ARCH_SET_CPUID where the kernel takes it (the loader's ENODEV is ours too) --
 * only while the net is the process's SIGSEGV handler: installed again over the
 * default action (faulthandler.disable() restores the handler it found before
 * the net), never over another handler installed since (it could chain back to
 * the net, and it sees the fault first). */
static void carry(void)
{
    struct sigaction now;
    if (sigaction(SIGSEGV, NULL, &now) < 0)
        return;
    if (!is_net(&now) && (now.sa_flags & SA_SIGINFO || now.sa_handler != SIG_DFL
                          || install_net() < 0))
        return;
    if (prctl(PR_SET_TSC, PR_TSC_SIGSEGV, 0, 0, 0) == 0)
        carried |= CARRY_TSC;
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) == 0)
        carried |= CARRY_CPUID;
}

/* -- writing and hashing off the serving thread --------------------------------------
 *
 * A gathered buffer's host write and MD5 (~20 and ~100 us for 64 KiB) would be
 * on the guest's critical path: the guest and this thread take turns on one CPU
 * (a call is a round trip), and the other CPU is idle.  So each serving thread
 * has a helper thread, made once, to which write_later() gives a buffer (after
 * the one before is done): it writes it to its file, then hashes it in pieces
 * of PIECE bytes, in order, while the guest runs on.  hashed() waits until the
 * buffer is written and hashed, and does itself what the helper has not begun
 * (the write, or the rest of the hash, while the helper writes): on a busy host
 * the helper may not get a CPU soon, and the serving thread then waits at most
 * for the step under way, never for the helper to be scheduled.  One piece is
 * hashed at a time, by one thread or the other, so the state sees the bytes in
 * order; a failed write's errno is hashed()'s HostIOError.  The helper touches
 * nothing but the descriptor, the state and the buffer it was given (no Python
 * object, no GIL), carries none of the guest's flags (made while this thread
 * has dropped them) and takes no signal.  Where it cannot be made, the buffer
 * is written and hashed here, as any other is.  A child of fork has no helper:
 * it makes its own.
 *
 * The helper is also the run's watchdog where serve() waits in the RECV ioctl
 * itself ("the wait", below): that wait ends only with a notification, a signal
 * or the guest's end, so at the run's deadline the helper kills the guest
 * (SIGKILL through its pidfd, as the supervisor's timeout does), and serve()
 * says DEADLINE.  watch() arms it for a run, unwatch() disarms it before serve()
 * returns (after which it never touches that pidfd); it kills only once
 * CLOCK_MONOTONIC has reached the deadline (never earlier), and at most a step's
 * writing or hashing later.  Should the kill fail, it interrupts the serving
 * thread's RECV instead (WAKE, a handled no-op signal: EINTR), every NUDGE
 * seconds until unwatch(), and serve() sees the deadline itself; only while WAKE's
 * handler is still ours (code may reset it: SIG_DFL would end the whole process),
 * the serving thread does not block it (a blocked one would pile up pending) and
 * no answer() runs (the personality's Python is not interrupted).  Else it disarms,
 * as before WAKE (nothing ends the wait). */

#define PIECE (16 << 10)
#define WAKE (SIGRTMAX - 1)
#define NUDGE 0.01

static void woken(int sig)
{
    (void)sig;                          /* only to end a system call with EINTR */
}

struct helper {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    int busy, hashing, quit;            /* busy: bytes given not yet hashed; hashing: a
                                           piece is being hashed (by either thread) */
    int armed, fired, pidfd;            /* the watchdog: armed for pidfd's run; fired:
                                           it killed the guest at the deadline */
    int blocked, answering;             /* the serving thread blocks WAKE; it runs answer() */
    double deadline, until;             /* until: the deadline it waits for (or INFINITY) */
    pthread_t server;                   /* the serving thread of the armed run */
    struct md5 *md5;                    /* NULL: nothing to hash */
    const unsigned char *data;
    size_t n, at;                       /* data[at, n): not begun */
    int fd, writing, err;               /* writing: UNWRITTEN, WRITING or 0 (written);
                                           err: the write's errno */
    long long offset;                   /* where (write_all's at) */
    const char *call;                   /* the guest's call that gathered it (err's) */
    pthread_t thread;
};

enum { UNWRITTEN = 1, WRITING = 2 };

static pthread_key_t helpers;           /* the serving thread's helper, ended with it */

static void settle(struct helper *h)   /* (the lock held) a step of the buffer is done */
{
    if (h->at == h->n && !h->writing)
        __atomic_store_n(&h->busy, 0, __ATOMIC_RELEASE);
    pthread_cond_signal(&h->done);
}

/* Write the buffer (whichever thread comes first), with the lock held on entry and
 * on return; its bytes are hashed after. */
static void write_it(struct helper *h)
{
    h->writing = WRITING;
    pthread_mutex_unlock(&h->lock);
    int err = write_all(h->fd, h->offset, h->data, h->n);
    pthread_mutex_lock(&h->lock);
    h->err = err;
    h->writing = 0;
    settle(h);
}

/* Hash the next piece (the helper) or all the rest (the serving thread), with the
 * lock held on entry and on return. */
static void hash_next(struct helper *h, size_t most)
{
    size_t take = h->n - h->at < most ? h->n - h->at : most;
    const unsigned char *p = h->data + h->at;
    h->at += take;
    h->hashing = 1;
    pthread_mutex_unlock(&h->lock);
    md5_update(h->md5, p, take);
    pthread_mutex_lock(&h->lock);
    h->hashing = 0;
    settle(h);
}

/* CLOCK_MONOTONIC (Python's time.monotonic): the vDSO's reads the TSC, so while
 * this thread carries the flags, the system call's */
static double monotonic(void)
{
    struct timespec ts;
    if (carried)
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
    else
        clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Interrupt the serving thread's wait with WAKE if that is safe (see above): 1, or 0 */
static int nudge(const struct helper *h)
{
    struct sigaction cur;
    return !h->blocked && sigaction(WAKE, NULL, &cur) == 0 && cur.sa_handler == woken
           && pthread_kill(h->server, WAKE) == 0;
}

/* Wait for work, or for the armed run's deadline (the lock held): the guest killed
 * once CLOCK_MONOTONIC has reached it. */
static void idle(struct helper *h)
{
    if (!h->armed) {
        pthread_cond_wait(&h->work, &h->lock);
        return;
    }
    double now = monotonic(), until = h->deadline;
    if (now >= h->deadline) {
        if (syscall(SYS_pidfd_send_signal, h->pidfd, SIGKILL, NULL, 0) == 0) {
            h->armed = 0;
            __atomic_store_n(&h->fired, 1, __ATOMIC_RELEASE);
            return;
        }
        if (!h->answering && !nudge(h)) {
            h->armed = 0;               /* (no way to end the wait: as before) */
            return;
        }
        until = now + NUDGE;            /* again, until serve() unwatches */
    }
    double whole = floor(until);
    struct timespec at = {(time_t)whole, (long)((until - whole) * 1e9)};
    h->until = until;
    pthread_cond_timedwait(&h->work, &h->lock, &at);
    h->until = INFINITY;
}

static void *helping(void *arg)
{
    struct helper *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (h->writing != UNWRITTEN && (h->at == h->n || h->hashing || h->writing)
               && !h->quit)
            idle(h);
        if (h->quit)
            break;
        if (h->writing == UNWRITTEN)
            write_it(h);
        else
            hash_next(h, PIECE);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

static void end_helper(void *arg)       /* the serving thread ends: its helper too */
{
    struct helper *h = arg;
    pthread_mutex_lock(&h->lock);
    h->quit = 1;
    pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->lock);
    pthread_join(h->thread, NULL);
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->work);
    pthread_cond_destroy(&h->done);
    free(h);
}

static void forget_helper(void)         /* fork's child: the helper thread is not there */
{
    pthread_setspecific(helpers, NULL);
}

static struct helper *new_helper(void)
{
    struct helper *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    pthread_condattr_t monotonic;       /* the watchdog's deadline is CLOCK_MONOTONIC */
    pthread_condattr_init(&monotonic);
    pthread_condattr_setclock(&monotonic, CLOCK_MONOTONIC);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->work, &monotonic);
    pthread_cond_init(&h->done, NULL);
    pthread_condattr_destroy(&monotonic);
    h->until = INFINITY;
    sigset_t all, before;
    sigfillset(&all);
    int was = carried;
    if (was)
        drop();                         /* flags are inherited: it gets none */
    pthread_sigmask(SIG_BLOCK, &all, &before);
    int failed = pthread_create(&h->thread, NULL, helping, h);
    pthread_sigmask(SIG_SETMASK, &before, NULL);
    if (was)
        carry();
    if (failed || pthread_setspecific(helpers, h)) {
        if (!failed)
            end_helper(h);
        else
            free(h);
        return NULL;
    }
    return h;
}

/* Wait until the helper's buffer is written and hashed, doing what it has not
 * begun: 0, or -1 with HostIOError set if its write failed. */
static int hashed(void)
{
    struct helper *h = pthread_getspecific(helpers);
    if (h == NULL)
        return 0;
    if (!__atomic_load_n(&h->busy, __ATOMIC_ACQUIRE))
        return h->err ? host_error(h->err, h->call) : 0;
    pthread_mutex_lock(&h->lock);
    while (h->busy) {
        if (h->writing == UNWRITTEN)
            write_it(h);
        else if (h->hashing || h->at == h->n)   /* (or the helper's write under way) */
            pthread_cond_wait(&h->done, &h->lock);
        else
            hash_next(h, h->n);
    }
    int err = h->err;
    pthread_mutex_unlock(&h->lock);
    return err ? host_error(err, h->call) : 0;
}

/* A run begins: a failed write of the helper's in a run before is forgotten (within
 * a run it stays: every later hashed() fails, and nothing more is written). */
static void fresh(void)
{
    struct helper *h = pthread_getspecific(helpers);
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    h->err = 0;
    pthread_mutex_unlock(&h->lock);
}

/* This thread's helper, made if it has none yet: NULL where it cannot be made. */
static struct helper *helper(void)
{
    struct helper *h = pthread_getspecific(helpers);
    return h != NULL ? h : new_helper();
}

/* Arm the helper's watchdog for a run (its guest's pidfd and deadline): woken only
 * if it waits for a later deadline (a run after another waits for none sooner). */
static void watch(struct helper *h, int pidfd, double deadline)
{
    pthread_mutex_lock(&h->lock);
    h->pidfd = pidfd;
    h->deadline = deadline;
    h->server = pthread_self();
    sigset_t mask;
    h->blocked = pthread_sigmask(SIG_SETMASK, NULL, &mask) != 0 || sigismember(&mask, WAKE) != 0;
    h->answering = 0;
    h->armed = 1;
    __atomic_store_n(&h->fired, 0, __ATOMIC_RELEASE);
    if (deadline < h->until)
        pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->lock);
}

/* Pause (1) or resume (0) its nudges while the personality's answer() runs. */
static void answering(struct helper *h, int on)
{
    pthread_mutex_lock(&h->lock);
    h->answering = on;
    pthread_mutex_unlock(&h->lock);
}

/* Disarm it (it touches the pidfd no more): whether it killed the guest. */
static int unwatch(struct helper *h)
{
    pthread_mutex_lock(&h->lock);
    int fired = h->fired;
    h->armed = 0;
    __atomic_store_n(&h->fired, 0, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&h->lock);
    return fired;
}

/* 1: the helper writes n bytes of data to fd (at: write_all's), then hashes them
 * into m if not NULL (hashed() waits for both, after the buffer before: the caller
 * has waited); 0: there is no helper (the caller writes and hashes them). */
static int write_later(int fd, long long at, struct md5 *m, const unsigned char *data,
                       size_t n, const char *call)
{
    struct helper *h = helper();
    if (h == NULL)
        return 0;
    pthread_mutex_lock(&h->lock);
    h->fd = fd;
    h->offset = at;
    h->md5 = m;
    h->data = data;
    h->n = n;
    h->at = m != NULL ? 0 : n;
    h->call = call;
    h->writing = UNWRITTEN;
    h->busy = 1;
    pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->lock);
    return 1;
}

/* -- the loop ------------------------------------------------------------------------ */

static int load_ctx(PyObject *tuple, struct ctx *c)
{
    PyObject *regions, *constants;
    if (!PyArg_ParseTuple(tuple, "OiiO!O!OOOOOO!", &c->guest, &c->memfd, &c->pid,
                          &PyTuple_Type, &regions, &PyDict_Type, &c->prot, &c->openfile,
                          &c->channel, &c->fdbacking, &c->filebacking, &c->tailbacking,
                          &PyTuple_Type, &constants))
        return -1;
    c->own_memfd = c->peeks = 0;
    c->buffer = pthread_getspecific(scratch);
    if (c->buffer == NULL) {        /* malloc: its pages are touched only when used */
        if ((c->buffer = malloc(CAP + 2 * OBUF + IBUF)) == NULL
                || pthread_setspecific(scratch, c->buffer)) {
            free(c->buffer);
            PyErr_NoMemory();
            return -1;
        }
    }
    Py_ssize_t count = PyTuple_GET_SIZE(regions), nconst = PyTuple_GET_SIZE(constants);
    if (count > MAX_REGIONS || nconst > MAX_CONSTANTS) {
        PyErr_SetString(PyExc_ValueError, "fastcall: too many regions or constant calls");
        return -1;
    }
    c->nregions = (int)count;
    for (Py_ssize_t i = 0; i < count; i++) {
        struct region *r = &c->regions[i];
        unsigned long long host;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(regions, i), "KKlK", &r->start, &r->end, &r->prot,
                              &host))
            return -1;
        r->host = (unsigned char *)(uintptr_t)host;
    }
    c->nconstants = (int)nconst;
    for (Py_ssize_t i = 0; i < nconst; i++) {
        struct constant *k = &c->constants[i];
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(constants, i), "iL", &k->nr, &k->value))
            return -1;
    }
    return 0;
}

/* The personality's answer to a call that reads nothing but the process's fixed
 * identity (computed by its own handler for this run): 1 and *ret, or 0. */
static int constant(const struct ctx *c, int nr, long long *ret)
{
    for (int i = 0; i < c->nconstants; i++)
        if (c->constants[i].nr == nr) {
            *ret = c->constants[i].value;
            return 1;
        }
    return 0;
}


/* How long the loop may wait for its deadline (CLOCK_MONOTONIC), at most the time
 * left: <= 0 when it has passed.  While this thread carries the flags, far from
 * the deadline, without a system call (monotonic(): 600 ns, one per mediated
 * call): the vDSO's CLOCK_MONOTONIC_COARSE reads no TSC (5-17 ns), only the
 * time of the last timekeeping update -- never ahead of CLOCK_MONOTONIC, behind it
 * by up to 6.7 ms on this KVM guest (2e6 reads, load 4; its resolution, the tick,
 * is 4 ms; a host that stalls the ticking CPU, more: Linux lets another CPU take
 * the update over after 5 ticks) -- so the time left from it, less s_slack (six
 * ticks), bounds the time left from below.  Within s_slack of the deadline, the
 * precise clock: the deadline fires when it did (a long wait ends s_slack early and
 * looks again, in the run's last s_slack only). */
static double s_slack = INFINITY;       /* 6 ticks; INFINITY: no coarse clock */

static double time_left(double deadline)
{
    struct timespec ts;
    if (carried && clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0) {
        double left = deadline - (ts.tv_sec + ts.tv_nsec * 1e-9) - s_slack;
        if (left > 0)
            return left;
    }
    return deadline - monotonic();
}

#define POLLED 16       /* a run's waits with poll before serve() makes its epoll */

/* The wait.  Where the kernel ends a blocked SECCOMP_IOCTL_NOTIF_RECV when the
 * filter's last task exits (Linux 6.11: "seccomp: interrupt
 * SECCOMP_IOCTL_NOTIF_RECV when all users have exited"), serve() waits in RECV
 * itself: one system call less per mediated call than poll or epoll and RECV,
 * and the wake-up is the one SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP puts on the
 * guest's CPU (an epoll's wait is woken through the epoll's own queue, which
 * drops that: the two then ran on different CPUs at each call).  RECV has no
 * timeout: the helper's watchdog kills the guest at the deadline, which ends
 * the wait.  Before 6.11 a guest that died outside a call would leave RECV
 * blocked, so serve() polls the listener and the pidfd as before. */
static int s_recv_waits;

static int recv_waits(void)
{
    struct utsname u;
    int major = 0, minor = 0;
    return uname(&u) == 0 && sscanf(u.release, "%d.%d", &major, &minor) == 2
           && (major > 6 || (major == 6 && minor >= 11));
}

/* An epoll of the listener (0) and the pidfd (1) for a run past its POLLED waits;
 * -1 where one cannot be made (the run polls on), -2 with an OSError set if adding
 * them failed otherwise. */
static int waiter(int listener, int pidfd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -1;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = 0};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev) < 0
        || (ev.data.u32 = 1, epoll_ctl(ep, EPOLL_CTL_ADD, pidfd, &ev)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        close(ep);
        return -2;
    }
    return ep;
}

static PyObject *serve(PyObject *self, PyObject *args)
{
    int listener, pidfd;
    double deadline;
    Py_buffer out;
    PyObject *ctx_tuple, *answer, *gate = Py_None;
    struct ctx c;
    if (!PyArg_ParseTuple(args, "iidw*OO|O", &listener, &pidfd, &deadline, &out, &ctx_tuple,
                          &answer, &gate))
        return NULL;
    if (out.len != (Py_ssize_t)sizeof(struct seccomp_notif) || load_ctx(ctx_tuple, &c) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "fastcall: the notification buffer's size");
        PyBuffer_Release(&out);
        return NULL;
    }
    struct pollfd fds[2] = {{listener, POLLIN, 0}, {pidfd, POLLIN, 0}};
    struct seccomp_notif notif;
    struct seccomp_notif_resp resp;
    struct cache k = {.out = -1, .obuf = c.buffer + CAP, .spare = c.buffer + CAP + OBUF,
                      .in = -1, .ibuf = c.buffer + CAP + 2 * OBUF};
    PyObject *tracer = PyObject_GetAttr(c.guest, s_tracer);
    c.defer = tracer == Py_None;
    c.calls = 0;
    Py_XDECREF(tracer);
    PyErr_Clear();
    int pending = 0;            /* resp is the answer to send before waiting again */
    if (gate != Py_None) {      /* a template child's close at the gate: let it through */
        resp = (struct seccomp_notif_resp){.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE};
        resp.id = PyLong_AsUnsignedLongLong(gate);
        if (PyErr_Occurred()) {
            PyBuffer_Release(&out);
            return NULL;
        }
        pending = 1;
    }
    long result = -1;
    /* the waits: poll for a run's first POLLED waits, then epoll, its two descriptors
     * added once (poll registers both at every wait: ~0.4 us of this thread's CPU a
     * round trip, floor.c; an epoll made, filled and closed costs four system calls,
     * ~5-10 us here: more than a short run's waits save -- musl hello makes six) */
    int ep = -1, waits = 0;
    fresh();
    struct helper *dog = s_recv_waits ? helper() : NULL;    /* NULL: poll (above) */
    if (dog != NULL)
        watch(dog, pidfd, deadline);
    if (!held || !carried)
        carry();                /* dropped at the end, whatever way out (but held) */
    int carrying = carried, rearms = REARMS;
    for (;;) {
        if (PyErr_CheckSignals() < 0)   /* a handler's exception (the Python loop's too) */
            break;
        if (carried != carrying && rearms > 0) {     /* the net dropped them */
            rearms--;
            carry();
        }
        double left = time_left(deadline);
        if (left <= 0) {
            result = DEADLINE;  /* an answer not sent: the guest is killed in its call */
            break;
        }
        if (dog == NULL && ep < 0 && ++waits > POLLED && (ep = waiter(listener, pidfd)) == -2)
            break;
        /* one release of the GIL (the rdtsc tracer thread needs it) for the answer,
         * the wait and the next notification */
        int sent = 0, send_err = 0, ready, err, r = -1;
        Py_BEGIN_ALLOW_THREADS
        if (pending) {
            sent = ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &resp);
            send_err = errno;
        }
        int ms = (int)fmin(ceil(left * 1000), INT32_MAX);
        if (dog != NULL) {
            memset(&notif, 0, sizeof notif);
            r = ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &notif);
            err = errno;
            ready = 1;
            fds[0].revents = r == 0 ? POLLIN : 0;  /* (pid 0: a task outside our pid
                                                      namespace, still a call to answer) */
            fds[1].revents = 0;
        } else if (ep < 0) {
            ready = poll(fds, 2, ms);
            err = errno;
        } else {
            struct epoll_event got[2];
            ready = epoll_wait(ep, got, 2, ms);
            err = errno;
            fds[0].revents = fds[1].revents = 0;
            for (int i = 0; i < ready; i++)
                fds[got[i].data.u32].revents = (short)got[i].events;
        }
        if (dog == NULL && ready > 0 && !fds[1].revents && (fds[0].revents & POLLIN)) {
            memset(&notif, 0, sizeof notif);
            r = ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &notif);
            err = errno;
        }
        Py_END_ALLOW_THREADS
        pending = 0;
        if (sent < 0 && send_err != ENOENT) {   /* ENOENT: it died (killed) while we answered */
            errno = send_err;
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
        if (ready < 0) {
            if (err == EINTR && PyErr_CheckSignals() == 0)
                continue;
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            break;
        }
        if (ready == 0)
            continue;
        if (dog != NULL && !fds[0].revents) {   /* RECV gave no call */
            if (r < 0 && err == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    break;
                continue;
            }
            if (r < 0 && err != ENOENT) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
                break;
            }
            if (__atomic_load_n(&dog->fired, __ATOMIC_ACQUIRE)) {
                result = DEADLINE;      /* the watchdog killed it */
                break;
            }
            /* the guest has ended (RECV returns at once when the filter has no task)
             * or a call was withdrawn (ENOENT: a signal ended it): poll says which;
             * a call withdrawn, or a new one, and the next RECV waits or takes it */
            if (poll(fds, 2, 0) <= 0 || !(fds[1].revents || (fds[0].revents & ~POLLIN)))
                continue;
            fds[0].revents &= ~POLLIN;  /* on to EXITED or HUNGUP, as after a poll */
        }
        if ((fds[0].revents | fds[1].revents) & POLLNVAL) {     /* as epoll_ctl would */
            errno = EBADF;
            PyErr_SetFromErrno(PyExc_OSError);
            break;
        }
        if (fds[1].revents) {
            result = EXITED;            /* no call of it is pending any more */
            break;
        }
        if (!(fds[0].revents & POLLIN)) {
            result = HUNGUP;            /* it is exiting: Python waits for the pidfd alone */
            break;
        }
        if (r < 0) {
            if (err == ENOENT || (err == EINTR && PyErr_CheckSignals() == 0))
                continue;               /* the guest died between poll and receive */
            if (err != EINTR) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            break;
        }
        long long ret = 0;
        int served = constant(&c, notif.data.nr, &ret), performed = 0;
        if (!served && notif.data.nr == NR_ARCH_PRCTL
                && (notif.data.args[0] == ARCH_SET_FS || notif.data.args[0] == ARCH_SET_GS)
                && notif.data.args[1] < USER_TOP)
            served = performed = 1;     /* the kernel sets the base (checked: code, base) */
        if (!served && (notif.data.nr == NR_EXIT || notif.data.nr == NR_EXIT_GROUP)
                && notif.data.instruction_pointer - VSYSCALL >= PAGE) {
            /* the run's end: counted as the personality counts it, left unanswered (the
             * guest runs no instruction more), and handed to Python (proc.py sys_exit) */
            memcpy(out.buf, &notif, sizeof notif);
            if (count_calls(&c) == 0 && add_ll(c.guest, s_syscalls, 1) == 0)
                result = EXIT_CALL;
            break;
        }
        if (!served) {
            struct held h = {.n = 0};
            served = serve_one(&c, &k, &notif, &ret, &h);
            while (h.n)
                Py_DECREF(h.refs[--h.n]);
        }
        if (served < 0)
            break;
        if (served == 0) {              /* the personality answers it */
            memcpy(out.buf, &notif, sizeof notif);
            if (count_calls(&c) < 0 || release(&k) < 0)    /* the personality's objects
                                                              are its own again */
                break;
            /* with the flags: a call answered in Python skips the four rewrites too
             * (measured: the Lua filter ~2x faster than dropping them around it) */
            if (dog != NULL)
                answering(dog, 1);
            PyObject *sent_back = PyObject_CallNoArgs(answer);
            if (dog != NULL)
                answering(dog, 0);
            if (sent_back == NULL)
                break;
            if (sent_back == Py_None) { /* the run is over: the call stays unanswered */
                Py_DECREF(sent_back);
                result = STOPPED;
                break;
            }
            resp = (struct seccomp_notif_resp){0};
            int ok = PyArg_ParseTuple(sent_back, "KLiI;fastcall: answer() must give "
                                      "(id, val, error, flags)", &resp.id, &resp.val,
                                      &resp.error, &resp.flags);
            Py_DECREF(sent_back);
            if (!ok)
                break;
            pending = 1;
            continue;
        }
        if (c.defer)
            c.calls++;
        else if (add_ll(c.guest, s_syscalls, 1) < 0)
            break;
        resp = (struct seccomp_notif_resp){.id = notif.id};
        if (performed)
            resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
        else if (ret < 0)
            resp.error = (int32_t)ret;
        else
            resp.val = ret;
        pending = 1;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (count_calls(&c) < 0 || release(&k) < 0) {
        result = -1;
        if (type != NULL)       /* the first exception is the one to see */
            PyErr_Clear();
    }
    if (type != NULL)
        PyErr_Restore(type, value, tb);
    if (!held)
        drop();
    if (ep >= 0)
        close(ep);
    if (c.own_memfd)
        close(c.memfd);
    if (dog != NULL && unwatch(dog) && (result == EXITED || result == HUNGUP))
        result = DEADLINE;      /* (the watchdog killed it just as the loop looked) */
    PyBuffer_Release(&out);
    return result < 0 ? NULL : PyLong_FromLong(result);
}

/* A template's child, once its listener came (supervisor.py: Template._collect),
 * up to its gate in one call: a pidfd for it, the listener's wake-ups on this
 * CPU (Linux 6.6; before, the same a little slower) and its close at the gate (a
 * notification, left pending: the run lets it continue).  OSError if the child
 * does not reach its gate within timeout. */
static PyObject *gate(PyObject *self, PyObject *args)
{
    int pid, listener;
    double timeout;
    if (!PyArg_ParseTuple(args, "iid", &pid, &listener, &timeout))
        return NULL;
    int pidfd = -1, err = 0, ready = 0;
    struct seccomp_notif notif;
    memset(&notif, 0, sizeof notif);
    Py_BEGIN_ALLOW_THREADS
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        err = errno;
    } else {
        /* SECCOMP_IOCTL_NOTIF_SET_FLAGS takes the flags as its argument's value:
         * SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP */
        ioctl(listener, _IOW('!', 4, uint64_t), 1UL);
        struct pollfd p = {listener, POLLIN, 0};
        double left = fmax(0.0, timeout) * 1000;
        do {
            ready = poll(&p, 1, (int)fmin(ceil(left), INT32_MAX));
        } while (ready < 0 && errno == EINTR);
        if (ready > 0 && ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &notif) < 0)
            err = errno;
    }
    Py_END_ALLOW_THREADS
    if (pidfd < 0 || err) {
        if (pidfd >= 0)
            close(pidfd);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (ready <= 0 || notif.data.nr != NR_CLOSE) {
        close(pidfd);
        PyErr_Format(PyExc_OSError, "the child did not reach the gate");
        return NULL;
    }
    return Py_BuildValue("iK", pidfd, (unsigned long long)notif.id);
}

/* A template's child given its run in one call: each (address, bytes) of writes
 * into its memory with one process_vm_writev (the user manifest too: its region is
 * writable in the template, and the child makes it read-only after the gate, before
 * the guest's first instruction; loader.c: MANIFEST_PAGE, start), then
 * its CPU limit (soft, hard). */
#define MAX_STARTS 8
static PyObject *start(PyObject *self, PyObject *args)
{
    int pid;
    PyObject *writes;
    unsigned long long soft, hard;
    if (!PyArg_ParseTuple(args, "iO!KK", &pid, &PyList_Type, &writes, &soft, &hard))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(writes);
    if (n > MAX_STARTS) {
        PyErr_SetString(PyExc_ValueError, "start: too many writes");
        return NULL;
    }
    struct iovec local[MAX_STARTS], remote[MAX_STARTS];
    Py_buffer data[MAX_STARTS];
    size_t total = 0;
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        unsigned long long addr;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(writes, got), "Ky*;start: (address, bytes)",
                              &addr, &data[got]))
            break;
        local[got] = (struct iovec){data[got].buf, (size_t)data[got].len};
        remote[got] = (struct iovec){(void *)(uintptr_t)addr, (size_t)data[got].len};
        total += (size_t)data[got].len;
    }
    ssize_t done = got < n ? 0 : process_vm_writev(pid, local, (unsigned long)n, remote,
                                                    (unsigned long)n, 0);
    int err = errno;
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&data[i]);
    if (got < n)
        return NULL;
    if (done < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if ((size_t)done != total) {
        errno = EIO;
        PyErr_Format(PyExc_OSError, "short write into the guest");
        return NULL;
    }
    struct rlimit cpu = {soft, hard};
    if (prlimit(pid, RLIMIT_CPU, &cpu, NULL) < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    Py_RETURN_NONE;
}

/* hold(True): this thread carries the guest's flags from now on, across serve()s
 * (the nodes of a batch), until hold(False) drops them; the net still drops them at
 * an rdtsc or cpuid of this thread, and the next serve() carries them again. */
static PyObject *hold(PyObject *self, PyObject *on)
{
    held = PyObject_IsTrue(on);
    if (held)
        carry();
    else
        drop();
    return PyBool_FromLong(carried != 0);
}

/* Whether this thread is in a hold (hold(True) ... hold(False)): a template's fork
 * request says so (supervisor.py Template.fork, loader.c carry_as). */
static PyObject *py_held(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(held);
}

/* CLOCK_MONOTONIC in seconds, as time.monotonic(), without an rdtsc while this
 * thread carries the flags (the Python code between the serve()s of a hold). */
static PyObject *py_monotonic(PyObject *self, PyObject *unused)
{
    return PyFloat_FromDouble(monotonic());
}

/* CLOCK_MONOTONIC_COARSE in seconds: the vDSO's, no rdtsc and no system call even
 * while this thread carries the flags, a few ms behind monotonic() (time_left):
 * for the expiries of the worker's Python between a hold's serve()s. */
static PyObject *py_coarse(PyObject *self, PyObject *unused)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return PyFloat_FromDouble(ts.tv_sec + ts.tv_nsec * 1e-9);
}

/* Whether fd is readable within timeout seconds (1), not (0), or -1 with an
 * exception set: a wait that, unlike select's, reads no clock (a template's next
 * hello, in a hold; time_left's coarse clock gives a lower bound: wait again). */
static int readable_within(int fd, double timeout)
{
    struct pollfd p = {fd, POLLIN, 0};
    double left = fmax(0.0, timeout), deadline = monotonic() + left;
    for (;;) {
        int ready;
        Py_BEGIN_ALLOW_THREADS
        ready = poll(&p, 1, (int)fmin(ceil(left * 1000), INT32_MAX));
        Py_END_ALLOW_THREADS
        if (ready > 0)
            return 1;
        if (ready < 0 && errno != EINTR) {
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (ready < 0 && PyErr_CheckSignals() < 0)  /* as select: a handler's exception */
            return -1;
        left = time_left(deadline);
        if (left <= 0)
            return 0;
    }
}

#define HELLO 9     /* loader.c start(): 'N' or 'L', then where it reads its stack pointer */

/* hello(fd, seconds) -> (pid, descriptor or -1, bytes): the next message on a
 * template's socket (supervisor.py: Template._hello), at most HELLO bytes, with its
 * sender's pid (SCM_CREDENTIALS: the kernel's, which no process can claim for
 * another) and the descriptor it passed (close-on-exec; any more are closed),
 * waited for up to seconds (readable_within): TimeoutError if none came.  No bytes:
 * the socket's end.  One call for what Python's recvmsg made of lists, tuples and
 * a parse of its ancillary data, at each child taken in. */
static PyObject *hello(PyObject *self, PyObject *args)
{
    int fd;
    double timeout;
    if (!PyArg_ParseTuple(args, "id", &fd, &timeout))
        return NULL;
    char data[HELLO];
    union {
        char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct ucred))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {data, sizeof data};
    struct msghdr msg;
    ssize_t n;
    int waited = 0;
    for (;;) {
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.buf;
        msg.msg_controllen = sizeof control.buf;
        n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n >= 0)
            break;
        if (errno == EINTR) {
            if (PyErr_CheckSignals() < 0)
                return NULL;
            continue;
        }
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || waited)
            return PyErr_SetFromErrno(PyExc_OSError);
        int ready = readable_within(fd, timeout);
        if (ready < 0)
            return NULL;
        if (ready == 0) {
            PyErr_SetString(PyExc_TimeoutError, "timed out");
            return NULL;
        }
        waited = 1;     /* readable now: what comes is read, or fails, at once */
    }
    int pid = 0, passed = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
            struct ucred cred;
            memcpy(&cred, CMSG_DATA(c), sizeof cred);
            pid = cred.pid;
        } else if (c->cmsg_type == SCM_RIGHTS) {
            size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < count; i++) {
                int got;
                memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
                if (passed < 0)
                    passed = got;
                else
                    close(got);
            }
        }
    }
    return Py_BuildValue("iiy#", pid, passed, data, (Py_ssize_t)n);
}

/* recv_waits([on]) -> whether serve() waits in RECV itself ("the wait"): on, if given,
 * sets it (True only where the kernel can: tests run both waits). */
static PyObject *py_recv_waits(PyObject *self, PyObject *args)
{
    int on = -1;
    if (!PyArg_ParseTuple(args, "|p", &on))
        return NULL;
    if (on >= 0)
        s_recv_waits = on && recv_waits();
    return PyBool_FromLong(s_recv_waits);
}

static PyObject *caught(PyObject *self, PyObject *unused)
{
    return PyLong_FromUnsignedLong(__atomic_load_n(&s_caught, __ATOMIC_RELAXED));
}

static PyMethodDef methods[] = {
    {"serve", serve, METH_VARARGS,
     "serve(listener, pidfd, deadline, notif, ctx, answer, gate=None) -> STOPPED, EXITED, "
     "DEADLINE, HUNGUP or EXIT_CALL (the guest's exit or exit_group, counted, unanswered, "
     "in notif).\n\ngate: the id of a notification to let continue with the first "
     "wait (a template child's close at the gate).  A call it does not serve is put in notif and answer() is called: it gives "
     "the response to send, (id, val, error, flags), or None when the run is over "
     "(STOPPED).\n\nctx: (guest, memfd (-1: opened if needed), pid, "
     "regions ((start, end, prot), ...), page protections {page: prot}, OpenFile, Channel, "
     "FdBacking, FileBacking, TailBacking, constant calls ((nr, answer), ...))."},
    {"gate", gate, METH_VARARGS,
     "gate(pid, listener, timeout) -> (pidfd, gate id): a template's child "
     "up to its gate."},
    {"start", start, METH_VARARGS,
     "start(pid, [(address, bytes), ...], cpu soft, cpu hard): a template's child "
     "given its run."},
    {"hold", hold, METH_O,
     "hold(on) -> whether this thread carries the guest's flags now: on, across serve()s "
     "until hold(False)."},
    {"held", py_held, METH_NOARGS,
     "held() -> whether this thread is in a hold (hold(True), until hold(False))."},
    {"monotonic", py_monotonic, METH_NOARGS,
     "monotonic() -> time.monotonic()'s clock, read without rdtsc while the flags are "
     "carried."},
    {"coarse", py_coarse, METH_NOARGS,
     "coarse() -> CLOCK_MONOTONIC_COARSE (the vDSO's: no rdtsc, no system call), behind "
     "monotonic() by up to a few ms."},
    {"hello", hello, METH_VARARGS,
     "hello(fd, seconds) -> (sender's pid, descriptor passed or -1, its bytes): the next "
     "message of a template's socket, waited for with no clock read (TimeoutError)."},
    {"recv_waits", py_recv_waits, METH_VARARGS,
     "recv_waits([on]) -> whether serve() waits in the RECV ioctl (Linux 6.11), else with "
     "poll and epoll; on: set it (True only where the kernel can)."},
    {"caught", caught, METH_NOARGS,
     "caught() -> how many rdtsc, rdtscp or cpuid of a serving thread the net let "
     "run again without the guest's flags (this process, so far)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcall",
                                    "The native supervisor's notification loop (fastcall.c).",
                                    -1, methods};

PyMODINIT_FUNC PyInit__fastcall(void)
{
    struct { PyObject **slot; const char *name; } names[] = {
        {&s_recorder, "recorder"}, {&s_fds, "fds"}, {&s_syscalls, "syscalls"},
        {&s_access, "access"}, {&s_channel, "channel"}, {&s_random, "random"},
        {&s_backing, "backing"}, {&s_direct, "direct"}, {&s_fd, "fd"},
        {&s_cursor, "cursor"}, {&s_end, "end"}, {&s_quota, "quota"},
        {&s_counters, "counters"}, {&s_gets, "gets"}, {&s_get_size, "get_size"},
        {&s_puts, "puts"}, {&s_put_size, "put_size"}, {&s_reads, "reads"},
        {&s_read_bytes, "read_bytes"}, {&s_writes, "writes"}, {&s_write_bytes, "write_bytes"},
        {&s_appending, "_appending"}, {&s_md5, "_md5"}, {&s_appended, "_appended"},
        {&s_read_md5, "_read_md5"}, {&s_pipe, "pipe"},
        {&s_nowait, "nowait"}, {&s_clock, "clock"}, {&s_clock_ns, "clock_ns"},
        {&s_data, "data"}, {&s_keep, "keep"}, {&s_seekable, "seekable"}, {&s_tracer, "tracer"}, {&s_mode, "mode"},
        {&s_dev, "dev"}, {&s_ino, "ino"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if ((*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL)
            return NULL;
    if (pthread_key_create(&scratch, free) != 0 || pthread_key_create(&helpers, end_helper) != 0
        || pthread_atfork(NULL, NULL, forget_helper) != 0)
        return PyErr_NoMemory();
    PyObject *md5 = PyImport_ImportModule("zvm_core._md5");
    if (md5 == NULL)
        return NULL;
    md5_type = (PyTypeObject *)PyObject_GetAttrString(md5, "MD5");
    Py_DECREF(md5);
    if (md5_type == NULL)
        return NULL;
    if (install_net() < 0)
        return PyErr_SetFromErrno(PyExc_OSError);
    s_recv_waits = recv_waits();
    struct sigaction wake;              /* WAKE: taken only if no one else uses it */
    if (sigaction(WAKE, NULL, &wake) == 0 && wake.sa_handler == SIG_DFL) {
        struct sigaction sa = {.sa_handler = woken, .sa_flags = SA_ONSTACK};    /* no
                                                   SA_RESTART: EINTR */
        sigemptyset(&sa.sa_mask);
        sigaction(WAKE, &sa, NULL);     /* nudge() checks that it is ours */
    }
    struct timespec tick;       /* 4 ms at HZ=250; none above 10 ms is trusted */
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &tick) == 0 && tick.tv_sec == 0
            && tick.tv_nsec <= 10000000)
        s_slack = 6 * tick.tv_nsec * 1e-9;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    HostIOError = PyErr_NewExceptionWithDoc(
        "_fastcall.HostIOError", "A write the loop had gathered failed on the host (errno, "
        "strerror; .call: the guest's call that gathered it): the guest was told it was "
        "written.", PyExc_OSError, NULL);
    if (HostIOError == NULL || PyModule_AddObjectRef(m, "HostIOError", HostIOError) < 0)
        return NULL;
    if (PyModule_AddIntConstant(m, "STOPPED", STOPPED) < 0
        || PyModule_AddIntConstant(m, "CAP", CAP) < 0
        || PyModule_AddIntConstant(m, "EXITED", EXITED) < 0
        || PyModule_AddIntConstant(m, "DEADLINE", DEADLINE) < 0
        || PyModule_AddIntConstant(m, "HUNGUP", HUNGUP) < 0
        || PyModule_AddIntConstant(m, "EXIT_CALL", EXIT_CALL) < 0)
        return NULL;
    return m;
}
