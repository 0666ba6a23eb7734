/*
 * Runtime guard for the zvm_core sandbox: unicorn hooks that must not run in
 * Python because they fire on every translated block or on instructions that
 * must be answered deterministically.
 *
 *  - zg_block   (UC_HOOK_BLOCK): stop when a block starts on an address the
 *                validator did not decode as an instruction start (catches
 *                instructions hidden inside other instructions), and charge
 *                the block's code bytes to a deterministic budget ("fuel").
 *  - zg_syscall (UC_HOOK_INSN/SYSCALL): read the argument registers in one
 *                batch, set RCX and R11 as the instruction does, call the
 *                Python dispatcher (a callable, not a ctypes callback), write
 *                RAX back.
 *  - zg_cpuid   (UC_HOOK_INSN/CPUID): answer from a fixed, versioned table.
 *  - zg_rdtsc / zg_rdtscp: a virtual time-stamp counter (fuel used).
 *  - zg_x87     (UC_HOOK_CODE on one address each): the x87 instructions that
 *                unicorn's QEMU 5.0 computes through host doubles (fprem,
 *                fprem1, f2xm1, fyl2x, fyl2xp1, fpatan, fptan, fsin, fcos,
 *                fsincos, fscale, fxtract) run on the host's FPU with the
 *                guest's x87 state, and the guest skips them.
 *  - zg_flags   (UC_HOOK_CODE on one address each): rflags as the CPU leaves
 *                them where unicorn does not: clear OF, SF and AF before each
 *                fcomi/fucomi(p) (which set ZF, PF, CF only, in QEMU), and set
 *                IF and clear IOPL after each popf (which user mode cannot
 *                change; unicorn runs the guest at CPL 0).
 *  - zg_cmpxchg (UC_HOOK_CODE on each, to the next instruction): a 32-bit cmpxchg as the CPU
 *                runs it: RAX keeps its upper half when the comparison succeeds,
 *                a register destination when it fails (QEMU zero-extends both
 *                every time).  The hook saves them before it runs and puts
 *                back what the CPU left at the next instruction.  A
 *                program's sites are hooked when zg_block first meets a block
 *                on their 64-byte line (the rest when the machine runs again):
 *                every code hook costs each instruction unicorn translates a
 *                look at it.
 *
 * The library is not linked against unicorn: the host passes the few unicorn
 * entry points it needs as function pointers in struct zg_state, whose layout
 * is mirrored by zvm_core/guard.py.
 */
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef void uc_engine;
typedef int (*uc_emu_stop_fn)(uc_engine *);
typedef int (*uc_reg_read_batch_fn)(uc_engine *, int *, void **, int);
typedef int (*uc_reg_write_fn)(uc_engine *, int, const void *);

enum { ZG_STOP_NONE = 0, ZG_STOP_BOUNDARY = 1, ZG_STOP_FUEL = 2, ZG_STOP_HOST = 3,
       ZG_STOP_SITES = 4 };

/* Register slots in zg_state.reg_ids; syscall arguments come first, then what the
 * syscall instruction itself reads. */
enum { R_RAX, R_RDI, R_RSI, R_RDX, R_R10, R_R8, R_R9, R_RIP, R_EFLAGS, R_RBX, R_RCX, R_R11,
       R_NREGS };

#define ZG_CPUID_MAX 32

struct zg_cpuid_entry { uint32_t leaf, subleaf, any_subleaf, eax, ebx, ecx, edx, pad; };

struct zg_state {
    const uint8_t *bitmap;     /* 1 bit per guest byte: instruction starts */
    uint64_t bitmap_limit;     /* addresses >= this are never valid starts */
    int64_t fuel;              /* code bytes left before the run stops */
    uint64_t used;             /* code bytes executed so far */
    uc_emu_stop_fn emu_stop;
    uc_reg_read_batch_fn reg_read_batch;
    uc_reg_write_fn reg_write;
    PyObject *syscall;         /* the dispatcher (call_syscall) */
    uc_engine *uc;             /* the instance, for zvm_core._guard.reg_write */
    int32_t reg_ids[R_NREGS];
    uint32_t stop;             /* ZG_STOP_* */
    uint64_t stop_addr;
    uint64_t args[7];          /* rax (number), rdi, rsi, rdx, r10, r8, r9 */
    int64_t ret;               /* syscall result written to RAX */
    uint64_t syscalls;
    uint32_t cpuid_count;
    uint32_t pad;
    struct zg_cpuid_entry cpuid[ZG_CPUID_MAX];
    /* the 32-bit cmpxchg that started and has not reached its next instruction */
    uint64_t cx_next;          /* that instruction's address; 0: none */
    uint64_t cx_rax, cx_dest;  /* RAX and the destination register before it */
    int32_t cx_dest_id;        /* the destination register's id, or -1 (memory) */
    uint32_t cx_pad;
    /* the 64-byte lines of [lazy_lo, lazy_lo + lazy_len) with cmpxchg sites not
     * hooked yet (a bit each, to stay in the L1 cache; the map goes on a block's size
     * past the end, and
     * starts that much before the first such line): a block on one stops the run
     * (ZG_STOP_SITES; its end in lazy_stop_end) until guard.py hooks them */
    const uint8_t *lazy;
    uint64_t lazy_lo, lazy_len, lazy_stop_end;
};

static inline int is_start(const struct zg_state *g, uint64_t a)
{
    return a < g->bitmap_limit && (g->bitmap[a >> 3] >> (a & 7)) & 1;
}

static void halt(uc_engine *uc, struct zg_state *g, uint32_t why, uint64_t addr)
{
    if (g->stop == ZG_STOP_NONE) {
        g->stop = why;
        g->stop_addr = addr;
    }
    g->emu_stop(uc);
}

void zg_block(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct zg_state *g = ud;
    if (!is_start(g, addr)) {
        halt(uc, g, ZG_STOP_BOUNDARY, addr);
        return;
    }
    /* fuel is code bytes, not instructions: counting instructions per block
     * costs more than the rest of the guard together (bench/sandbox.py) */
    uint64_t n = size ? size : 1;
    /* a block on a line with sites not hooked yet runs once they are (translated
     * again); one compare outside the lines' range (all of it without such sites) */
    uint64_t off = addr - g->lazy_lo;
    if (off < g->lazy_len)
        for (uint64_t i = off >> 6, last = (off + n - 1) >> 6; i <= last; i++) {
            if (i > g->lazy_len >> 6)               /* past the last line with sites */
                break;
            if (g->lazy[i >> 3] >> (i & 7) & 1) {
                g->lazy_stop_end = addr + n;
                halt(uc, g, ZG_STOP_SITES, addr);
                return;
            }
        }
    g->used += n;
    g->fuel -= (int64_t)n;
    if (g->fuel < 0)
        halt(uc, g, ZG_STOP_FUEL, addr);
}

/* The Python dispatcher called directly with the call's number and arguments (the
 * GIL is not held in a hook: unicorn is called through ctypes): a ctypes callback,
 * and the dispatcher reading them from the ctypes array, cost ~1 us more a call.
 * It returns the result for RAX, or None to stop the run; anything else escaping it
 * (it catches every Exception) stops the run too.  0: go on with *ret. */
static int call_syscall(struct zg_state *g, int64_t *ret)
{
    PyGILState_STATE gil = PyGILState_Ensure();
    PyObject *argv[7];
    int n, stop = 1;
    for (n = 0; n < 7; n++)
        if ((argv[n] = PyLong_FromUnsignedLongLong(g->args[n])) == NULL)
            break;
    if (n == 7) {
        PyObject *res = PyObject_Vectorcall(g->syscall, argv, 7, NULL);
        if (res != NULL) {
            if (res != Py_None) {
                *ret = (int64_t)PyLong_AsUnsignedLongLongMask(res);   /* as ctypes did */
                stop = PyErr_Occurred() != NULL;
            }
            Py_DECREF(res);
        }
    }
    while (n > 0)
        Py_DECREF(argv[--n]);
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(g->syscall);
        stop = 1;
    }
    PyGILState_Release(gil);
    return stop;
}

/* The syscall instruction as the CPU runs it: RCX = the next instruction's address
 * (the validator's next start: the instruction may have prefixes), R11 = rflags.
 * Set before the call, so that a start-up snapshot taken in it has them. */
void zg_syscall(uc_engine *uc, void *ud)
{
    struct zg_state *g = ud;
    uint64_t rip = 0, flags = 0;
    void *ptrs[9];
    for (int i = 0; i < 7; i++)
        ptrs[i] = &g->args[i];
    ptrs[R_RIP] = &rip;
    ptrs[R_EFLAGS] = &flags;
    g->reg_read_batch(uc, g->reg_ids, ptrs, 9);
    uint64_t next = rip + 2;                   /* 0f 05 */
    for (uint64_t k = 2; k <= 15; k++)
        if (is_start(g, rip + k)) {
            next = rip + k;
            break;
        }
    g->reg_write(uc, g->reg_ids[R_RCX], &next);
    g->reg_write(uc, g->reg_ids[R_R11], &flags);
    g->syscalls++;
    if (call_syscall(g, &g->ret) != 0) {
        if (g->stop == ZG_STOP_NONE)
            g->stop = ZG_STOP_HOST;
        g->emu_stop(uc);
        return;
    }
    g->reg_write(uc, g->reg_ids[R_RAX], &g->ret);
}

static void write4(uc_engine *uc, struct zg_state *g, uint64_t a, uint64_t b, uint64_t c,
                   uint64_t d)
{
    g->reg_write(uc, g->reg_ids[R_RAX], &a);
    g->reg_write(uc, g->reg_ids[R_RBX], &b);
    g->reg_write(uc, g->reg_ids[R_RCX], &c);
    g->reg_write(uc, g->reg_ids[R_RDX], &d);
}

int zg_cpuid(uc_engine *uc, void *ud)
{
    struct zg_state *g = ud;
    uint64_t leaf = 0, sub = 0;
    int ids[2] = {g->reg_ids[R_RAX], g->reg_ids[R_RCX]};
    void *ptrs[2] = {&leaf, &sub};
    g->reg_read_batch(uc, ids, ptrs, 2);
    leaf &= 0xffffffffu;
    sub &= 0xffffffffu;
    for (uint32_t i = 0; i < g->cpuid_count && i < ZG_CPUID_MAX; i++) {
        const struct zg_cpuid_entry *e = &g->cpuid[i];
        if (e->leaf == leaf && (e->any_subleaf || e->subleaf == sub)) {
            write4(uc, g, e->eax, e->ebx, e->ecx, e->edx);
            return 1;
        }
    }
    write4(uc, g, 0, 0, 0, 0);
    return 1;
}

static void write_tsc(uc_engine *uc, struct zg_state *g)
{
    uint64_t lo = g->used & 0xffffffffu, hi = g->used >> 32;
    g->reg_write(uc, g->reg_ids[R_RAX], &lo);
    g->reg_write(uc, g->reg_ids[R_RDX], &hi);
}

int zg_rdtsc(uc_engine *uc, void *ud)
{
    write_tsc(uc, ud);
    return 1;
}

int zg_rdtscp(uc_engine *uc, void *ud)
{
    struct zg_state *g = ud;
    uint64_t aux = 0;
    write_tsc(uc, g);
    g->reg_write(uc, g->reg_ids[R_RCX], &aux);
    return 1;
}

/* One x87 site: which registers to move (ids from guard.py) and the opcode. */
enum { X_FPCW, X_FPSW, X_FPTAG, X_FP0, X_RIP = X_FP0 + 8, X_NREGS };

struct zg_x87 {
    struct zg_state *g;
    int32_t ids[X_NREGS];
    uint32_t op;               /* second byte of D9 xx */
};

struct fp80 { uint64_t mant; uint16_t exp; uint8_t pad[6]; };

void zg_x87(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct zg_x87 *x = ud;
    struct zg_state *g = x->g;
    uint64_t cw = 0, sw = 0, tag = 0;
    struct fp80 fp[8];
    void *ptrs[3 + 8] = {&cw, &sw, &tag};
    for (int i = 0; i < 8; i++)
        ptrs[3 + i] = &fp[i];
    g->reg_read_batch(uc, x->ids, ptrs, 3 + 8);
    /* the guest's x87 state as an FXSAVE image, exceptions masked on the host */
    uint8_t host[512] __attribute__((aligned(16)));
    uint8_t area[512] __attribute__((aligned(16)));
    __asm__ volatile("fxsave %0" : "=m"(host));
    memset(area, 0, sizeof area);
    uint16_t fcw = (uint16_t)cw | 0x3f, fsw = (uint16_t)sw;
    unsigned top = (sw >> 11) & 7;
    uint8_t ftw = 0;
    for (int i = 0; i < 8; i++)
        if (((tag >> (2 * i)) & 3) != 3)
            ftw |= 1u << i;
    memcpy(area, &fcw, 2);
    memcpy(area + 2, &fsw, 2);
    area[4] = ftw;
    memcpy(area + 24, host + 24, 8);          /* MXCSR and its mask: the host's */
    for (int j = 0; j < 8; j++)
        memcpy(area + 32 + 16 * j, &fp[(top + j) & 7], 10);
    __asm__ volatile("fxrstor %0" : : "m"(area));
    switch (x->op) {
    case 0xf0: __asm__ volatile("f2xm1"); break;
    case 0xf1: __asm__ volatile("fyl2x"); break;
    case 0xf2: __asm__ volatile("fptan"); break;
    case 0xf3: __asm__ volatile("fpatan"); break;
    case 0xf4: __asm__ volatile("fxtract"); break;
    case 0xf5: __asm__ volatile("fprem1"); break;
    case 0xf8: __asm__ volatile("fprem"); break;
    case 0xf9: __asm__ volatile("fyl2xp1"); break;
    case 0xfb: __asm__ volatile("fsincos"); break;
    case 0xfd: __asm__ volatile("fscale"); break;
    case 0xfe: __asm__ volatile("fsin"); break;
    case 0xff: __asm__ volatile("fcos"); break;
    default: break;
    }
    __asm__ volatile("fxsave %0" : "=m"(area));
    __asm__ volatile("fxrstor %0" : : "m"(host));
    memcpy(&fsw, area + 2, 2);
    fsw &= 0x7f7f;                             /* the host's ES/B: recomputed below */
    if (fsw & ~(uint16_t)cw & 0x3f)            /* unmasked for the guest: pending */
        fsw |= 0x8080;
    top = (fsw >> 11) & 7;
    tag = 0;
    for (int i = 0; i < 8; i++)
        if (!(area[4] >> i & 1))
            tag |= 3ull << (2 * i);
    for (int j = 0; j < 8; j++)
        memcpy(&fp[(top + j) & 7], area + 32 + 16 * j, 10);
    sw = fsw;
    g->reg_write(uc, x->ids[X_FPSW], &sw);
    g->reg_write(uc, x->ids[X_FPTAG], &tag);
    for (int i = 0; i < 8; i++)
        g->reg_write(uc, x->ids[X_FP0 + i], &fp[i]);
    uint64_t next = addr + size;
    g->reg_write(uc, x->ids[X_RIP], &next);
}

size_t zg_x87_size(void) { return sizeof(struct zg_x87); }

/* One kind of rflags fix, shared by its sites: rflags = rflags & ~clear | set. */
struct zg_flags {
    struct zg_state *g;
    int32_t id;                /* the EFLAGS register's id */
    uint32_t pad;
    uint64_t clear, set;
};

void zg_flags(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct zg_flags *f = ud;
    uint64_t flags = 0;
    int id = f->id;
    void *ptr = &flags;
    (void)addr;
    (void)size;
    f->g->reg_read_batch(uc, &id, &ptr, 1);
    flags = (flags & ~f->clear) | f->set;
    f->g->reg_write(uc, f->id, &flags);
}

size_t zg_flags_size(void) { return sizeof(struct zg_flags); }

/* One 32-bit cmpxchg, hooked from its (first) start to the instruction after it: the
 * only instruction starts in that range are its own (after prefixes, or not) and that
 * one.  Any hook there may run first: each puts back what the cmpxchg before left. */
struct zg_cmpxchg {
    struct zg_state *g;
    uint64_t next;             /* the next instruction's address */
    int32_t dest;              /* the destination register's id, or -1 (memory) */
    uint32_t pad;
};

void zg_cmpxchg(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct zg_cmpxchg *c = ud;
    struct zg_state *g = c->g;
    (void)size;
    if (g->cx_next == addr) {      /* the cmpxchg before ran: what it left is the CPU's? */
        uint64_t flags = 0;
        int id = g->reg_ids[R_EFLAGS];
        void *ptr = &flags;
        g->reg_read_batch(uc, &id, &ptr, 1);
        if (flags & 0x40)                       /* ZF: equal, the accumulator unwritten */
            g->reg_write(uc, g->reg_ids[R_RAX], &g->cx_rax);
        else if (g->cx_dest_id >= 0)            /* not: the register destination is */
            g->reg_write(uc, g->cx_dest_id, &g->cx_dest);
        g->cx_next = 0;
    }
    if (addr != c->next) {         /* this one is about to run */
        int ids[2] = {g->reg_ids[R_RAX], c->dest};
        void *ptrs[2] = {&g->cx_rax, &g->cx_dest};
        g->reg_read_batch(uc, ids, ptrs, c->dest >= 0 ? 2 : 1);
        g->cx_dest_id = c->dest;
        g->cx_next = c->next;
    }
}

size_t zg_cmpxchg_size(void) { return sizeof(struct zg_cmpxchg); }

/* Lets guard.py check that its ctypes mirror has the same layout. */
size_t zg_state_size(void) { return sizeof(struct zg_state); }

/* The state a Python call names (its first argument, an address), or NULL and an
 * exception: ``usage`` when it has not ``want`` arguments. */
static struct zg_state *state_arg(PyObject *const *args, Py_ssize_t nargs, Py_ssize_t want,
                                  const char *usage)
{
    if (nargs != want) {
        PyErr_SetString(PyExc_TypeError, usage);
        return NULL;
    }
    struct zg_state *g = PyLong_AsVoidPtr(args[0]);
    if (g == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_ValueError, "no guard state at address 0");
    return g;
}

/* reg_write(state address, register id, value): one register of the state's
 * instance, a 64-bit value (cut to it); what unicorn's Python reg_write does in
 * ~4 us, for the registers a run sets every time (its RSP, arch_prctl's FS base). */
static PyObject *py_reg_write(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    struct zg_state *g = state_arg(args, nargs, 3, "reg_write(state, reg, value)");
    if (g == NULL)
        return NULL;
    int reg = PyLong_AsLong(args[1]);
    uint64_t value = PyLong_AsUnsignedLongLongMask(args[2]);
    if (PyErr_Occurred())
        return NULL;
    if (g->uc == NULL || g->reg_write == NULL) {
        PyErr_SetString(PyExc_ValueError, "reg_write: no instance in this state");
        return NULL;
    }
    int err = g->reg_write(g->uc, reg, &value);
    if (err != 0) {
        PyErr_Format(PyExc_RuntimeError, "uc_reg_write(%d) failed: %d", reg, err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* arm(state address, fuel): the per-run state of a new run (Guard.arm). */
static PyObject *py_arm(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    struct zg_state *g = state_arg(args, nargs, 2, "arm(state, fuel)");
    if (g == NULL)
        return NULL;
    long long fuel = PyLong_AsLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    g->fuel = fuel;
    g->used = g->stop_addr = g->syscalls = g->cx_next = 0;
    g->stop = ZG_STOP_NONE;
    Py_RETURN_NONE;
}

/* The offset of the first opcode first, second (a table, or NULL: one byte) at or
 * after at in c, or len: memchr for its rarer byte, the second when it is the only
 * one (only, else -1; 0F B1: CPython's code has 154,740 0F bytes, 2,281 B1). */
static size_t next_opcode(const uint8_t *c, size_t len, size_t at, int first,
                          const uint8_t *second, int only)
{
    size_t width = second != NULL ? 2 : 1;
    while (at + width <= len) {
        if (only >= 0 && only != first) {
            const uint8_t *hit = memchr(c + at + 1, only, len - at - 1);
            if (hit == NULL)
                return len;
            size_t m = (size_t)(hit - c) - 1;
            if (c[m] == first)
                return m;
            at = m + 1;
            continue;
        }
        const uint8_t *hit = memchr(c + at, first, len - at - width + 1);
        if (hit == NULL)
            return len;
        size_t m = (size_t)(hit - c);
        if (second == NULL || second[c[m + 1]])
            return m;
        at = m + 1;
    }
    return len;
}

/* sites(code, base, bitmap, prefixes, first, seconds): {address: offset of the opcode}
 * of each instruction start the validator decoded (its bit set in bitmap, indexed by
 * address) whose opcode is the byte first, then (seconds: a 256-byte table, or None
 * for a one-byte opcode) a byte whose entry is non-zero, found as re.finditer finds
 * the pattern; the starts are the opcode's and each up to 14 bytes of prefixes
 * (prefixes: a 256-byte table) before it.  guard._sites in C: CPython's code has
 * ~11,000 such bytes for a handful of sites, ~8 ms a machine in Python. */
static PyObject *py_sites(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "sites(code, base, bitmap, prefixes, first, seconds)");
        return NULL;
    }
    unsigned long long base = PyLong_AsUnsignedLongLong(args[1]);
    long first = PyLong_AsLong(args[4]);
    if (PyErr_Occurred())
        return NULL;
    if (first < 0 || first > 255) {
        PyErr_SetString(PyExc_ValueError, "sites: first is not a byte");
        return NULL;
    }
    Py_buffer code = {0}, bitmap = {0}, pre = {0}, sec = {0};
    PyObject *found = NULL;
    if (PyObject_GetBuffer(args[0], &code, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[2], &bitmap, PyBUF_SIMPLE) < 0 ||
        PyObject_GetBuffer(args[3], &pre, PyBUF_SIMPLE) < 0 ||
        (args[5] != Py_None && PyObject_GetBuffer(args[5], &sec, PyBUF_SIMPLE) < 0))
        goto done;
    if (pre.len != 256 || (args[5] != Py_None && sec.len != 256)) {
        PyErr_SetString(PyExc_ValueError, "sites: prefixes and seconds are 256-byte tables");
        goto done;
    }
    found = PyDict_New();
    if (found == NULL)
        goto done;
    const uint8_t *c = code.buf, *bits = bitmap.buf, *isprefix = pre.buf, *second = sec.buf;
    size_t len = (size_t)code.len, width = second != NULL ? 2 : 1, m;
    int only = -1;
    for (int b = 0; second != NULL && b < 256; b++)
        if (second[b])
            only = only == -1 ? b : -2;
    for (size_t at = 0; (m = next_opcode(c, len, at, (int)first, second, only)) < len;) {
        at = m + width;                 /* matches do not overlap (re.finditer) */
        for (size_t i = m;; i--) {      /* back over prefixes to each of its starts */
            unsigned long long a = base + i;
            if (a / 8 >= (unsigned long long)bitmap.len) {
                PyErr_Format(PyExc_IndexError, "sites: %#llx is past the bitmap", a);
                Py_CLEAR(found);
                goto done;
            }
            if (bits[a / 8] >> (a % 8) & 1) {
                PyObject *key = PyLong_FromUnsignedLongLong(a), *value = PyLong_FromSize_t(m);
                int err = key == NULL || value == NULL || PyDict_SetItem(found, key, value) < 0;
                Py_XDECREF(key);
                Py_XDECREF(value);
                if (err) {
                    Py_CLEAR(found);
                    goto done;
                }
            }
            if (i == 0 || !isprefix[c[i - 1]] || m - i >= 14)
                break;
        }
    }
done:
    if (code.obj != NULL)
        PyBuffer_Release(&code);
    if (bitmap.obj != NULL)
        PyBuffer_Release(&bitmap);
    if (pre.obj != NULL)
        PyBuffer_Release(&pre);
    if (sec.obj != NULL)
        PyBuffer_Release(&sec);
    return found;
}

static PyMethodDef guard_methods[] = {
    {"arm", (PyCFunction)(void (*)(void))py_arm, METH_FASTCALL,
     "arm(state, fuel): fuel set, the counters and the stop reason cleared."},
    {"reg_write", (PyCFunction)(void (*)(void))py_reg_write, METH_FASTCALL,
     "reg_write(state, reg, value): set one register of the guard state's instance."},
    {"sites", (PyCFunction)(void (*)(void))py_sites, METH_FASTCALL,
     "sites(code, base, bitmap, prefixes, first, seconds): {start: opcode offset}."},
    {NULL, NULL, 0, NULL},
};

/* Loaded with ctypes for its hooks; imported as a module for reg_write (and its path). */
static struct PyModuleDef guard_module = {PyModuleDef_HEAD_INIT, "_guard",
                                          "C hooks for zvm_core (loaded with ctypes).", -1,
                                          guard_methods};

PyMODINIT_FUNC PyInit__guard(void) { return PyModule_Create(&guard_module); }
