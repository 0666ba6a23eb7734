/* The native engine's trusted loader: turns a fresh process into a contained guest.
 *
 * The supervisor (zvm_core/engines/native/supervisor.py) spawns this static,
 * libc-free program with the run's spec on fd 3 and a unix socket on fd 4.
 * Everything happens before any guest instruction runs, in this order:
 *
 *   0. where unprivileged user namespaces exist (and the spec asks), join the
 *      supervisor's empty user, network, IPC, UTS and mount namespaces (passed
 *      as descriptors NS_FD..: namespaces.py), else enter new ones with an
 *      empty, read-only root, and hold no capability in them (defence in depth);
 *   1. read the spec: the guest mappings (address, size, final protection),
 *      the bytes to copy into them (segments, initial stack, user manifest),
 *      the entry point and stack pointer, the limits and the seccomp filter;
 *   2. map the guest (fixed addresses below 4 GiB, never writable and
 *      executable), copy its bytes, give each mapping its final protection;
 *   3. unmap everything else the kernel gave this process except this
 *      loader's own image (its original stack, vDSO, vvar, brk area), so the
 *      address space is the same on every run and has no clock page;
 *   4. keep no descriptor but the socket (moved to CTL_FD, above every
 *      descriptor number the personality hands out), reset signals, the fault
 *      signals to the trap stub (the supervisor reports the fault from the frame);
 *   5. resource limits (address space, no core, no files, no processes, CPU
 *      seconds), no_new_privs, no later executable memory (PR_SET_MDWE, where
 *      the kernel has it), rdtsc faults (PR_SET_TSC), so does cpuid where
 *      the CPU can (ARCH_SET_CPUID; cpuid.py), killed with its
 *      parent (PR_SET_PDEATHSIG);
 *   6. install the default-deny filter with a user-notification listener as
 *      the last step, pass the listener to the supervisor over the socket
 *      (sendmsg on CTL_FD is the one call the filter lets through for this, and
 *      nanosleep between its tries while the kernel refuses it: ETOOMANYREFS),
 *      close it (the supervisor lets that one notification continue), close
 *      the socket, and jump to the entry point with Linux's initial state.
 *
 * A template (the spec says so; the pool's warm native starts) stops after
 * step 3 and what of steps 4 and 5 a fork inherits (signals, limits but
 * descriptors, processes and CPU time, no_new_privs; not the faulting rdtsc
 * and cpuid, which each child sets just before its filter: fault_counters(); the
 * template carries those only while its requests say its supervisor does): it
 * keeps no descriptor but its spec and socket, dies with the supervisor, and
 * forks a child per run from that never-run state, which does the rest of
 * steps 4 and 5 itself and step 6, and waits at the gate for the run's bytes
 * (see serve()).
 *
 * A spec may also resume a start-up snapshot (engines/native/snapshot.py):
 * its copies are then the guest's memory at its first channel access, its
 * protections the page protections the guest had set, and its resume block
 * the guest's registers there; instead of the entry point, the guest goes on
 * at the pending system call (re-executed: the supervisor answers it).  Its
 * prefaults are the ranges each child of such a template copies ahead of its
 * run, before anything else (prefault()).
 *
 * Any failure before the filter is reported as one line on the socket and
 * exit status 127; the supervisor turns it into a report.  The loader is
 * linked at LOADER_BASE, far above the guest: its pages stay mapped, hold no
 * secret nor anything of the host (start() clears what did), and any system
 * call made from them passes the same filter (which lets close and sendmsg of
 * CTL_FD through from there: EBADF once the guest runs, the socket is closed; and,
 * a template's child's, the mprotect of the user manifest's region to read-only,
 * which it is then).
 */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdint.h>

#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_mmap 9
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_pread64 17
#define SYS_dup2 33
#define SYS_nanosleep 35
#define SYS_chdir 80
#define SYS_sendmsg 46
#define SYS_clone 56
#define SYS_exit 60
#define SYS_getrlimit 97
#define SYS_getppid 110
#define SYS_personality 135
#define SYS_pivot_root 155
#define SYS_prctl 157
#define SYS_arch_prctl 158
#define ARCH_SET_GS 0x1001
#define ARCH_SET_FS 0x1002
#define SYS_setrlimit 160
#define SYS_mount 165
#define SYS_umount2 166
#define SYS_unshare 272
#define SYS_setns 308
#define SYS_capset 126
#define SYS_seccomp 317
#define SYS_close_range 436
#define SYS_ppoll 271
#define SYS_madvise 28
#define MADV_POPULATE_WRITE 23
#define MADV_HUGEPAGE 14
#define MADV_DONTFORK 10
/* A map's flag beside its protection (loader.py: HUGE): the heap arena, whose interior
 * -- all of it but its first and last HUGE_EDGE bytes, where brk and the first
 * mappings of a small heap lie -- may be backed by transparent huge pages (see load()) */
#define MAP_HUGE_HINT 0x100
#define HUGE_EDGE 0x200000ULL
/* Another (loader.py: SHARED): a spawned guest's stack or data segment, mapped shared
 * from the supervisor's memfd at MEM_FD (these maps one after another from offset 0),
 * which the supervisor maps too and reads the guest's stdio buffers and iovec arrays
 * from without a system call (fastcall.c).  Closed before the filter (prepare()); a
 * template's spec never has it (its MEM_FD is closed before load(): the map fails). */
#define MAP_SHARED_HINT 0x200
#define MEM_FD 10

#define TRAP_ENTRY 0x10000      /* memory.TRAP_PAGE: the ZeroVM trap stub (fault signals) */
#define STACK_TOP 0x100000000UL /* memory.STACK_TOP and STACK_SIZE: the signal stack */
#define STACK_SIZE 0x1000000UL
/* memory.MANIFEST_PAGE and the region up to the stack (trap.MANIFEST_SIZE, then the
 * pointer to it): read-only to the guest.  A template maps it writable (its spec says
 * so: supervisor.py Guest.image_spec), for the supervisor to write each child's run's
 * manifest at the gate with process_vm_writev; the child makes it read-only just after
 * the gate, before the guest's first instruction (its filter, a template's child's,
 * lets that one call through from the loader's pages: seccomp.py) */
#define MANIFEST_PAGE (STACK_TOP - STACK_SIZE - 0x10000UL)
#define MANIFEST_REGION 0x10000UL
#define SYS_sigaltstack 131
#define SPEC_FD 3
#define SOCK_FD 4
#define NS_FD 5              /* NS_JOIN: the namespaces to join, at NS_FD..NS_FD+4 */
#define NS_OWN 1             /* the spec's namespaces (namespaces.py): make new ones, */
#define NS_JOIN 2            /* join those at NS_FD.., */
#define NS_HOLD 3            /* make new ones, say so and wait (a holder: namespaces.py) */
#define CTL_FD 1030          /* above MAX_FDS (1024) of the personality */
#define MAGIC 0x35764e4d565a4e4eULL   /* "NNZVMNv5" */
#define MAX_MAPS 64
#define MAX_COPIES 1024
#define MAX_PROTECTS 1024
#define MAX_PREFAULTS 1024
#define XSAVE_MAX 16384
#define MAX_FILTER 512
#define GUEST_TOP (1ULL << 32)
#define USER_TOP 0x7ffffffff000ULL

typedef uint64_t u64;

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
    long ret;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10),
                     "r"(r8), "r"(r9) : "rcx", "r11", "memory");
    return ret;
}
#define sys3(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

struct header {
    u64 magic, entry, sp, as_limit, cpu_seconds, parent, nmaps, ncopies, nfilter, namespaces,
        template, nprotects, resume, nprefaults;
};
struct map { u64 addr, size, prot; };
struct range { u64 addr, size; };
struct copy { u64 dest, offset, length; };

static struct header hdr;
static struct map maps[MAX_MAPS];
static struct copy copies[MAX_COPIES];
static struct map protects[MAX_PROTECTS];
static struct range prefaults[MAX_PREFAULTS];

/* A snapshot's registers (loader.py: RESUME; resume() pops them in this order)
 * and its x87/SSE/AVX state as XSAVE (xsave = 1) or FXSAVE (0) writes it. */
struct resume {
    u64 regs[16];           /* rax rbx rcx rdx rsi rdi rbp r8-r15, rflags */
    u64 rsp, rip, fs_base, gs_base, xsave, xsize;
};
struct resume resume_state;
unsigned char resume_area[XSAVE_MAX] __attribute__((aligned(64)));
static struct sock_filter filter[MAX_FILTER];
static u64 filter_len;

extern char __executable_start[], _end[];

static u64 slen(const char *s) { u64 n = 0; while (s[n]) n++; return n; }

/* One line on the socket: "loader: what (errno N)" */
static void say(const char *what, long err) {
    char line[160];
    u64 n = 0;
    for (const char *p = "loader: "; *p; p++) line[n++] = *p;
    for (u64 i = 0; i < slen(what) && n < 120; i++) line[n++] = what[i];
    if (err < 0) {
        char digits[24];
        int d = 0;
        u64 v = (u64)-err;
        for (const char *p = " (errno "; *p; p++) line[n++] = *p;
        do { digits[d++] = (char)('0' + v % 10); v /= 10; } while (v);
        while (d) line[n++] = digits[--d];
        line[n++] = ')';
    }
    line[n++] = '\n';
    /* sendmsg: the one call on CTL_FD the filter lets the loader make, once installed */
    struct { void *base; u64 len; } iov = {line, n};
    struct { void *name; int namelen; void *iov; u64 iovlen; void *control; u64 controllen;
             int flags; } msg = {0, 0, &iov, 1, 0, 0, 0};
    if (sys3(SYS_sendmsg, CTL_FD, &msg, 0) < 0)     /* before the dup2: still SOCK_FD */
        sys3(SYS_write, SOCK_FD, line, n);
}

static void __attribute__((noreturn)) fail(const char *what, long err) {
    say(what, err);
    sys3(SYS_exit, 127, 0, 0);
    __builtin_unreachable();
}

static void check(long ret, const char *what) { if (ret < 0) fail(what, ret); }

static void pread_all(void *dest, u64 length, u64 offset, const char *what) {
    char *p = dest;
    while (length) {
        long n = sys6(SYS_pread64, SPEC_FD, (long)p, (long)length, (long)offset, 0, 0);
        if (n <= 0) fail(what, n < 0 ? n : -5);
        p += n; length -= (u64)n; offset += (u64)n;
    }
}

struct rlim { u64 cur, max; };
static void limit(int resource, u64 cur, u64 max, const char *what) {
    struct rlim r = {cur, max};
    check(sys3(SYS_setrlimit, resource, &r, 0), what);
}

/* The loader's pages stay readable to the guest, which must find the same bytes
 * there however it was started (spawned, a template's child, a snapshot's child):
 * the top of the loader's stack, where the set-up's frames were (a few hundred
 * bytes deep; the test dumps every page), is zeroed on the way to the guest, and
 * so is each word of a resume block once it is read (ZPOP: a store of an
 * immediate needs no register); the last jump goes through rcx, which the resumed
 * `syscall` (the jump's target: snapshot.py checks) overwrites with its return
 * address, as it did in the recorded run. */
#define STACK_WIPE 2048
#define WIPE_STACK "lea loader_stack+65536-" XSTR(STACK_WIPE) "(%%rip), %%rdi\n\t" \
    "mov $" XSTR(STACK_WIPE) ", %%ecx\n\txor %%eax, %%eax\n\tcld\n\trep stosb\n\t"
#define ZPOP(r) "pop %%" r "\n\tmovq $0, -8(%%rsp)\n\t"
#define STR(x) #x
#define XSTR(x) STR(x)

/* Linux's initial state for a static program: registers zero, rsp at argc,
 * the FPU as after fninit (FCW 0x037F), MXCSR 0x1F80, RFLAGS 0x202 (IF only:
 * the xors above set ZF and PF, popfq clears them). */
static void __attribute__((noreturn)) enter(u64 entry, u64 sp) {
    static const uint32_t mxcsr = 0x1F80;
    __asm__ volatile(
        "fninit\n\tldmxcsr %2\n\tcld\n\t"
        "mov %0, %%rsp\n\tpush %1\n\t"
        WIPE_STACK
        "xor %%eax, %%eax\n\txor %%ebx, %%ebx\n\txor %%ecx, %%ecx\n\txor %%edx, %%edx\n\t"
        "xor %%esi, %%esi\n\txor %%edi, %%edi\n\txor %%ebp, %%ebp\n\t"
        "xor %%r8d, %%r8d\n\txor %%r9d, %%r9d\n\txor %%r10d, %%r10d\n\txor %%r11d, %%r11d\n\t"
        "xor %%r12d, %%r12d\n\txor %%r13d, %%r13d\n\txor %%r14d, %%r14d\n\t"
        "xor %%r15d, %%r15d\n\t"
        "pxor %%xmm0, %%xmm0\n\tpxor %%xmm1, %%xmm1\n\tpxor %%xmm2, %%xmm2\n\t"
        "pxor %%xmm3, %%xmm3\n\tpxor %%xmm4, %%xmm4\n\tpxor %%xmm5, %%xmm5\n\t"
        "pxor %%xmm6, %%xmm6\n\tpxor %%xmm7, %%xmm7\n\tpxor %%xmm8, %%xmm8\n\t"
        "pxor %%xmm9, %%xmm9\n\tpxor %%xmm10, %%xmm10\n\tpxor %%xmm11, %%xmm11\n\t"
        "pxor %%xmm12, %%xmm12\n\tpxor %%xmm13, %%xmm13\n\tpxor %%xmm14, %%xmm14\n\t"
        "pxor %%xmm15, %%xmm15\n\t"
        "pushq $0x202\n\tpopfq\n\t"
        "ret\n\t"       /* pops the entry point: rsp is the initial stack pointer again */
        : : "r"(sp), "r"(entry), "m"(mxcsr) : "memory");
    __builtin_unreachable();
}

/* A snapshot's guest state, then its pending system call again: the vector
 * state first (xrstor with every component asked: those the block does not
 * hold are initialised), then every register from resume_state, rflags last
 * (pop and mov leave the flags alone), rsp, and a jump through rcx (above). */
static void __attribute__((noreturn)) resume(void) {
    __asm__ volatile(
        WIPE_STACK
        "lea resume_area(%%rip), %%rcx\n\t"
        "cmpq $0, resume_state+160(%%rip)\n\t"
        "je 1f\n\t"
        "mov $-1, %%eax\n\tmov $-1, %%edx\n\txrstor64 (%%rcx)\n\tjmp 2f\n"
        "1:\n\tfxrstor64 (%%rcx)\n"
        "2:\n\tlea resume_area(%%rip), %%rdi\n\tmov resume_state+168(%%rip), %%rcx\n\t"
        "xor %%eax, %%eax\n\trep stosb\n\t"
        "movq $0, resume_state+144(%%rip)\n\tmovq $0, resume_state+152(%%rip)\n\t"
        "movq $0, resume_state+160(%%rip)\n\tmovq $0, resume_state+168(%%rip)\n\t"
        "lea resume_state(%%rip), %%rsp\n\t"
        ZPOP("rax") ZPOP("rbx") ZPOP("rcx") ZPOP("rdx") ZPOP("rsi") ZPOP("rdi") ZPOP("rbp")
        ZPOP("r8") ZPOP("r9") ZPOP("r10") ZPOP("r11") ZPOP("r12") ZPOP("r13") ZPOP("r14")
        ZPOP("r15") "popfq\n\tmovq $0, -8(%%rsp)\n\t"
        "mov resume_state+136(%%rip), %%rcx\n\tmovq $0, resume_state+136(%%rip)\n\t"
        "mov resume_state+128(%%rip), %%rsp\n\tmovq $0, resume_state+128(%%rip)\n\t"
        "jmp *%%rcx\n\t" : : : "memory");
    __builtin_unreachable();
}

/* Defence in depth where unprivileged user namespaces exist: no network, an
 * empty mount namespace (a tmpfs root, the old one detached), private IPC and
 * host name.  Containment does not depend on it: nothing reaches the kernel
 * but what the filter lets through.  Returns whether it was done. */
static int make_own(void) {
    if (sys3(SYS_unshare, 0x10000000 | 0x00020000 | 0x40000000 | 0x08000000 | 0x04000000, 0,
             0) < 0)              /* NEWUSER | NEWNS | NEWNET | NEWIPC | NEWUTS */
        return 0;
    check(sys6(SYS_mount, 0, (long)"/", 0, 0x4000 | 0x40000, 0, 0), "mount private");
    check(sys6(SYS_mount, (long)"zvm", (long)"/", (long)"tmpfs", 0x1 | 0x2 | 0x8 | 0x4,
               (long)"size=4k,nr_inodes=1,mode=0111", 0), "mount tmpfs");   /* RDONLY NOSUID NODEV NOEXEC */
    check(sys3(SYS_chdir, "/..", 0, 0), "chdir");     /* "..": onto the mount over "/" */
    check(sys3(SYS_pivot_root, ".", ".", 0), "pivot_root");
    check(sys3(SYS_umount2, ".", 2, 0), "umount2");       /* MNT_DETACH */
    check(sys3(SYS_chdir, "/", 0, 0), "chdir");
    return 1;
}

/* The same namespaces, made once by the supervisor's holder (namespaces.py,
 * NS_HOLD below): a setns per namespace instead of ~1 ms of making a network
 * namespace.  The user namespace first (its owner gets every capability in it,
 * which the others need to be joined), the mount namespace last (root and
 * working directory become its root, the empty tmpfs).  Each is checked to be
 * of its kind.  Returns 0 when the user namespace cannot be joined (nothing
 * changed: make_own then does as without them). */
static int join(void) {
    static const long kinds[] = {0x10000000, 0x40000000, 0x08000000, 0x04000000, 0x00020000};
    if (sys3(SYS_setns, NS_FD, kinds[0], 0) < 0) return 0;   /* user net IPC UTS mount */
    for (int i = 1; i < 5; i++) check(sys3(SYS_setns, NS_FD + i, kinds[i], 0), "setns");
    return 1;
}

/* 0. the spec's namespaces: joined or made, the descriptors closed, and no
 * capability kept in them (a guest that got past the filter could neither
 * mount over the shared root nor configure the shared network).  The kernel
 * keeps this process dumpable: its new credentials are in a namespace its own
 * user owns (so the supervisor still reads its /proc/PID/mem). */
static int isolate(u64 mode) {
    int done = mode == NS_JOIN && join();
    for (int fd = NS_FD; mode == NS_JOIN && fd < NS_FD + 5; fd++) sys3(SYS_close, fd, 0, 0);
    if (!done) done = make_own();
    if (done) {
        struct { uint32_t version; int pid; } who = {0x20080522, 0};   /* _LINUX_CAPABILITY_VERSION_3 */
        struct { uint32_t effective, permitted, inheritable; } none[2] = {{0, 0, 0}, {0, 0, 0}};
        check(sys3(SYS_capset, &who, none, 0), "capset");
    }
    return done;
}

/* A holder (namespaces.py): makes the namespaces, says whether it could ('N'
 * or 'L'), and waits for the end of its socket; the supervisor opens them
 * meanwhile from /proc/PID/ns and kills it. */
static void __attribute__((noreturn)) hold(void) {
    char said = isolate(NS_OWN) ? 'N' : 'L', byte;
    sys3(SYS_write, SOCK_FD, &said, 1);
    while (sys3(SYS_read, SOCK_FD, &byte, 1) == -4) {}      /* EINTR */
    sys3(SYS_exit, 0, 0, 0);
    __builtin_unreachable();
}

static int isolated;

/* 1. a spec: its header (which must be sound), mappings, copies and filter */
static void read_spec(struct header *h) {
    pread_all(h, sizeof *h, 0, "cannot read the spec");
    if (h->magic != MAGIC || h->nmaps > MAX_MAPS || h->ncopies > MAX_COPIES ||
            h->nfilter > MAX_FILTER || h->nprotects > MAX_PROTECTS ||
            h->nprefaults > MAX_PREFAULTS)
        fail("bad spec", 0);
    u64 off = sizeof *h;
    pread_all(maps, h->nmaps * sizeof maps[0], off, "cannot read the maps");
    off += h->nmaps * sizeof maps[0];
    pread_all(copies, h->ncopies * sizeof copies[0], off, "cannot read the copies");
    off += h->ncopies * sizeof copies[0];
    pread_all(protects, h->nprotects * sizeof protects[0], off, "cannot read the protections");
    off += h->nprotects * sizeof protects[0];
    pread_all(prefaults, h->nprefaults * sizeof prefaults[0], off, "cannot read the prefaults");
    off += h->nprefaults * sizeof prefaults[0];
    if (h->nfilter)
        pread_all(filter, h->nfilter * sizeof filter[0], off, "cannot read the filter");
    off += h->nfilter * sizeof filter[0];
    if (h->resume) {
        pread_all(&resume_state, sizeof resume_state, off, "cannot read the resume block");
        struct resume *r = &resume_state;
        if (r->xsize < 512 || r->xsize > XSAVE_MAX || r->rip >= GUEST_TOP)
            fail("bad resume block", 0);
        pread_all(resume_area, r->xsize, off + sizeof resume_state, "cannot read the resume block");
    }
}

/* 2. the guest's mappings, their bytes, then their final protections */
static void load(const struct header *h) {
    u64 shared = 0;             /* the next shared map's offset in MEM_FD */
    for (u64 i = 0; i < h->nmaps; i++) {
        struct map *m = &maps[i];
        if ((m->prot & 2) && (m->prot & 4)) fail("a mapping both writable and executable", 0);
        if (m->addr + m->size > GUEST_TOP || m->addr + m->size < m->addr)
            fail("a mapping outside the guest's 4 GiB", 0);
        long a = (m->prot & MAP_SHARED_HINT)
            ? sys6(SYS_mmap, (long)m->addr, (long)m->size, 3, 0x01 | 0x100000, MEM_FD,
                   (long)shared)                                /* SHARED NOREPLACE */
            : sys6(SYS_mmap, (long)m->addr, (long)m->size, 3,
                   0x02 | 0x20 | 0x100000 | 0x4000, -1, 0);   /* PRIVATE ANON NOREPLACE NORESERVE */
        if (a != (long)m->addr) fail("cannot map guest memory", a < 0 ? a : -17);
        if (m->prot & MAP_SHARED_HINT) shared += m->size;
        /* A big heap's pages as 2 MiB pages where the host gives them (THP "madvise"
         * or "always"; else nothing changes): a guest's page fault is ~3 us on a
         * VM, and a heap that grows by realloc touches each new page once (mremap
         * is not the kernel's here: musl copies), ~1,000 faults in the line sort of
         * 2 MiB.  Only the interior: a small heap (brk from the bottom, mappings
         * from the top) never pays for zeroing 2 MiB it does not use.  Nothing the
         * guest can see changes (the bytes are the same; no call reports it). */
        if ((m->prot & MAP_HUGE_HINT) && m->size > 2 * HUGE_EDGE)
            sys3(SYS_madvise, m->addr + HUGE_EDGE, m->size - 2 * HUGE_EDGE, MADV_HUGEPAGE);
        m->prot &= ~(u64)(MAP_HUGE_HINT | MAP_SHARED_HINT);
    }
    for (u64 i = 0; i < h->ncopies; i++)
        pread_all((void *)copies[i].dest, copies[i].length, copies[i].offset,
                  "cannot copy the guest's bytes");
    for (u64 i = 0; i < h->nmaps; i++)
        check(sys3(SYS_mprotect, maps[i].addr, maps[i].size, maps[i].prot), "mprotect");
    for (u64 i = 0; i < h->nprotects; i++) {     /* a snapshot's pages that the guest changed */
        struct map *m = &protects[i];
        if ((m->prot & 2) && (m->prot & 4)) fail("a protection both writable and executable", 0);
        if (m->addr + m->size > GUEST_TOP || m->addr + m->size < m->addr)
            fail("a protection outside the guest's 4 GiB", 0);
        check(sys3(SYS_mprotect, m->addr, m->size, m->prot), "mprotect");
    }
}

/* 3. nothing else: the kernel's stack (we run on .bss), vDSO, vvar, brk */
static void strip(void) {
    u64 lo = (u64)__executable_start & ~0xFFFULL, hi = ((u64)_end + 0xFFF) & ~0xFFFULL;
    check(sys3(SYS_munmap, GUEST_TOP, lo - GUEST_TOP, 0), "munmap below the loader");
    check(sys3(SYS_munmap, hi, USER_TOP - hi, 0), "munmap above the loader");
    if (sys3(SYS_personality, 0xffffffff, 0, 0) & 0x0400000)   /* READ_IMPLIES_EXEC */
        fail("personality READ_IMPLIES_EXEC is set", 0);
}

/* 4.-5. signals, limits but descriptors, processes and CPU time, process
 * attributes: all inherited across fork, so a template sets them once for
 * every child it forks */
static void restrict_all(const struct header *h) {
    /* 4. signals */
    u64 none = 0;
    check(sys6(SYS_rt_sigprocmask, 2, (long)&none, 0, 8, 0, 0), "rt_sigprocmask");
    u64 dfl[4] = {0, 0, 0, 0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != 9 && sig != 19) sys6(SYS_rt_sigaction, sig, (long)dfl, 0, 8, 0, 0);
    /* the fault signals (SIGILL, SIGTRAP, SIGBUS, SIGFPE, SIGSEGV) enter the trap stub with
     * the kernel's frame: its call is then a trap with the signal number as its request
     * pointer, which no trap request can be (no guest page is that low), and the
     * supervisor reads the fault's kind, address and rip from the frame and ends the run
     * (supervisor.py: _fault).  Nothing returns there: every signal is blocked in the
     * handler and its restorer is 0, so a fault before the filter (the stub's call then
     * fails) or while the frame is written kills as without it.  The signal stack is
     * the guest's stack: a fault there pushes the frame below its stack pointer as
     * usual; one with the stack pointer elsewhere, below the stack (an overflow) or in
     * the heap, at the stack's top (the initial stack, never used again: the guest is
     * ended there), so a stack overflow is reported too. */
    struct { u64 sp; int flags, pad; u64 size; } signal_stack =
        {STACK_TOP - STACK_SIZE, 0, 0, STACK_SIZE};
    check(sys3(SYS_sigaltstack, &signal_stack, 0, 0), "sigaltstack");
    u64 fault[4] = {TRAP_ENTRY, 0x04000004UL | 0x80000000UL | 0x08000000UL, 0, ~0UL};
                    /* SA_SIGINFO, SA_RESTORER, SA_RESETHAND, SA_ONSTACK */
    static const int faults[] = {4, 5, 7, 8, 11};
    for (unsigned i = 0; i < sizeof faults / sizeof faults[0]; i++)
        check(sys6(SYS_rt_sigaction, faults[i], (long)fault, 0, 8, 0, 0), "rt_sigaction");

    /* 5. limits and process attributes */
    struct rlim as;         /* lower only: a worker's own limit may be below ours */
    check(sys3(SYS_getrlimit, 9, &as, 0), "getrlimit AS");
    u64 cap = h->as_limit < as.max ? h->as_limit : as.max;
    limit(9, cap, cap, "setrlimit AS");
    limit(4, 0, 0, "setrlimit CORE");
    limit(1, 0, 0, "setrlimit FSIZE");
    limit(8, 0, 0, "setrlimit MEMLOCK");
    limit(12, 0, 0, "setrlimit MSGQUEUE");
    /* NOFILE (inherited across fork: a template raises it once for its children):
     * its hard limit as it came (at least CTL_FD + 1, for the dup2 below), soft
     * raised to it.  It bounds nothing of the guest's: no call of the guest makes a
     * descriptor (the supervisor answers them all, adds none, continues none that
     * does), and it keeps none but CTL_FD, closed before its first instruction.
     * What it does bound is the sendmsg of the listener below: the kernel refuses
     * it (ETOOMANYREFS) while the descriptors this process's user has in flight
     * over unix sockets, host-wide (every worker and template of that user),
     * exceed the sender's soft limit.  A limit of CTL_FD + 1 made runs fail under
     * load; the inherited hard one is what any process of the user may give
     * itself, so no bound of the host's is loosened. */
    struct rlim files;
    check(sys3(SYS_getrlimit, 7, &files, 0), "getrlimit NOFILE");
    u64 most = files.max > CTL_FD + 1 ? files.max : CTL_FD + 1;
    limit(7, most, most, "setrlimit NOFILE");
    check(sys6(SYS_prctl, 38, 1, 0, 0, 0, 0), "PR_SET_NO_NEW_PRIVS");
    /* after load()'s last mprotect: the kernel itself refuses any later gain of
     * PROT_EXEC (and W+X), whatever the supervisor continues (seccomp.may_continue);
     * inherited by a template's children.  EINVAL: a kernel before 6.3, without it. */
    long mdwe = sys6(SYS_prctl, 65, 1, 0, 0, 0, 0);   /* PR_SET_MDWE REFUSE_EXEC_GAIN */
    if (mdwe < 0 && mdwe != -22) fail("PR_SET_MDWE", mdwe);
}

/* 5. rdtsc faults (PR_SET_TSC), so does cpuid where the CPU can (ARCH_SET_CPUID):
 * set by each guest process itself just before its filter, whatever it inherited.
 * Linux rewrites CR4.TSD and the CPUID-faulting MSR at every switch between a
 * thread that has these flags and one that has not (a VM exit each under a
 * hypervisor, ~13 us together here).  A template runs no guest instruction, so
 * its flags only decide those rewrites at its wake-ups (a fork per run): it has
 * them while its supervisor does (a pool worker holds them across a batch's
 * nodes: fastcall.c hold), and not otherwise (serve(): the request says which). */
static void fault_counters(void) {
    check(sys6(SYS_prctl, 26, 2, 0, 0, 0, 0), "PR_SET_TSC");        /* PR_TSC_SIGSEGV */
    long cpuid = sys3(SYS_arch_prctl, 0x1012, 0, 0);     /* ARCH_SET_CPUID 0: cpuid faults */
    if (cpuid < 0 && cpuid != -19) fail("ARCH_SET_CPUID", cpuid);   /* ENODEV: no CPU support */
}

/* A template's flags as its supervisor's (a fork request's byte: 'H' it holds
 * them, 'F' not), changed only when that changes: a batch's forks wake a template
 * with the flags of the worker that asks and of the children, a single run's one
 * without, like the worker between its runs.  A performance matter only: each
 * child sets the flags itself (start()); a template that cannot is no worse off. */
static void carry_as(int held, long *carried) {
    if (held == *carried) return;
    *carried = held;
    sys6(SYS_prctl, 26, held ? 2 : 1, 0, 0, 0, 0);     /* PR_TSC_SIGSEGV : PR_TSC_ENABLE */
    sys3(SYS_arch_prctl, 0x1012, held ? 0 : 1, 0);      /* ARCH_SET_CPUID */
}

/* 4.-5. what each guest process does itself: descriptors, no processes (a
 * template must fork), killed with its parent (not inherited: a template's child
 * sets it first thing after the fork, serve(), so `forked` skips it here) */
static void prepare(const struct header *h, int forked) {
    /* every descriptor but the socket closed while the table is small (a template's
     * child holds two: spec and socket), then the socket moved up.  Closed after the
     * dup2, which grows the table past CTL_FD, close_range walked some 2000 slots:
     * a tenth of a child's set-up (perf) */
    long r = sys3(SYS_close_range, 0, SOCK_FD - 1, 0);
    if (r == -38) { for (int fd = 0; fd < SOCK_FD; fd++) sys3(SYS_close, fd, 0, 0); }
    else check(r, "close_range");
    check(sys3(SYS_close_range, SOCK_FD + 1, ~0U, 0), "close_range");
    check(sys3(SYS_dup2, SOCK_FD, CTL_FD, 0), "dup2 of the control socket (setrlimit NOFILE)");
    check(sys3(SYS_close, SOCK_FD, 0, 0), "close of the socket");
    limit(6, 0, 0, "setrlimit NPROC");
    if (forked) return;
    check(sys6(SYS_prctl, 1, 9, 0, 0, 0, 0), "PR_SET_PDEATHSIG");
    if ((u64)sys3(SYS_getppid, 0, 0, 0) != h->parent) fail("the supervisor is gone", 0);
}

/* A template's child starts the guest here: the supervisor writes the run's
 * initial stack pointer while the child waits at the gate (see serve()), into the
 * last 8 bytes of the guest's stack, which no initial stack reaches (its strings
 * end 16 bytes below the top: executor.initial_stack), so that one write carries
 * the stack and its pointer; the slot is zero again before the guest's first
 * instruction, as the emulator's stack is there.  A resumed child's stack is its
 * snapshot's: it names run_sp instead (written, never read). */
#define SP_SLOT (STACK_TOP - 8)
static volatile u64 run_sp;
extern char loader_stack[1 << 16];

static void wipe(void *p, u64 n) {
    __asm__ volatile("cld\n\trep stosb" : "+D"(p), "+c"(n) : "a"(0) : "memory");
}

/* The loader's pages stay readable: nothing of the host may stay in them (the
 * supervisor's pid, the template's replies and request bytes: those are on the
 * template's own stack, which no child has, see serve()), nor anything that
 * differs with how the guest was started (the spec's tables of a spawned loader,
 * a template's or a snapshot's, the run's stack pointer, the hello): the used
 * entries are zeroed (only those: a template's child copies each page it writes).
 * A template zeroes the tables of its load once (forget_load, they are done with),
 * its children zero the rest before their hello (start): each page a child writes
 * after the gate was a copy-on-write fault on the run's path, four per run. */
static void forget_load(void) {
    wipe(maps, hdr.nmaps * sizeof maps[0]);
    wipe(copies, hdr.ncopies * sizeof copies[0]);
    wipe(protects, hdr.nprotects * sizeof protects[0]);
    hdr.nmaps = hdr.ncopies = hdr.nprotects = 0;
}

static void forget(void) {
    forget_load();
    wipe(prefaults, hdr.nprefaults * sizeof prefaults[0]);
    wipe(filter, filter_len * sizeof filter[0]);
    wipe(&hdr, sizeof hdr);
    filter_len = 0;
    isolated = 0;
    /* the first bytes the way to the guest zeroes on the stack (WIPE_STACK): its
     * page, below the set-up's frames, made now, not at the guest's first step */
    ((volatile char *)loader_stack)[sizeof loader_stack - STACK_WIPE] = 0;
}

/* 5. (CPU time) and 6. the filter, last; then the guest */
static void __attribute__((noreturn)) start(const struct header *h, int forked) {
    if (h->cpu_seconds) limit(0, h->cpu_seconds, h->cpu_seconds + 1, "setrlimit CPU");
    if (filter_len == 0) fail("no filter", 0);
    fault_counters();
    if (h->resume) {
        check(sys3(SYS_arch_prctl, ARCH_SET_FS, resume_state.fs_base, 0), "ARCH_SET_FS");
        check(sys3(SYS_arch_prctl, ARCH_SET_GS, resume_state.gs_base, 0), "ARCH_SET_GS");
    }
    struct sock_fprog prog = {(unsigned short)filter_len, filter};
    long listener = sys3(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                         SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    check(listener, "seccomp");
    union { char buf[24]; u64 align; } cmsg = {{0}};
    struct { u64 len; int level, type; int fd; } *c = (void *)cmsg.buf;
    c->len = 20; c->level = 1; c->type = 1; c->fd = (int)listener;    /* SOL_SOCKET SCM_RIGHTS */
    char hello[9] = {isolated ? 'N' : 'L'};         /* N: in its own namespaces */
    u64 where = h->resume ? (u64)&run_sp : SP_SLOT;
    for (int i = 0; i < 8; i++) hello[1 + i] = (char)(where >> (8 * i));
    struct { void *base; u64 len; } iov = {hello, sizeof hello};
    struct { void *name; int namelen; void *iov; u64 iovlen; void *control; u64 controllen;
             int flags; } msg = {0, 0, &iov, 1, cmsg.buf, 24, 0};
    u64 entry = h->entry, sp = h->sp, resuming = h->resume;
    /* before the hello, off the run's path: the gate follows the hello at once (the
     * worker taking the child in waits for both; one that came later woke it twice) */
    forget();
    /* ETOOMANYREFS: its user's descriptors in flight, for now (a worker's request not
     * read yet).  8 tries at once, then after a pause of 1 ms, doubled up to 16 ms, for
     * about a second (~70 tries): the filter lets the loader's pages sleep (nanosleep
     * without a remainder, seccomp.py).  100,000 tries back to back burnt 1-11 s of CPU
     * per run on a host over the limit. */
    struct { long sec, nsec; } pause = {0, 1000000};
    long sent, slept = 0;
    for (int tries = 0; (sent = sys3(SYS_sendmsg, CTL_FD, &msg, 0)) == -109
                        && slept < 1000000000L; tries++) {
        if (tries < 8) continue;
        sys3(SYS_nanosleep, (long)&pause, 0, 0);
        slept += pause.nsec;
        if (pause.nsec < 16000000L) pause.nsec *= 2;
    }
    if (sent != sizeof hello) {
        /* exit is the supervisor's now, and no supervisor holds the listener: a
         * trap would wait on it for good.  A line instead (the supervisor learns
         * who sent it, kills and reaps it), and an i386 call, one the filter kills
         * the process for (a kernel without IA32 emulation: SIGSEGV, the trap) */
        say("cannot pass the listener", sent);
        __asm__ volatile("int $0x80" : : "a"(1L), "b"(127L) : "memory");
        __builtin_trap();
    }
    sys3(SYS_close, listener, 0, 0);     /* the gate: the supervisor lets it continue */
    sys3(SYS_close, CTL_FD, 0, 0);       /* the filter allows close of CTL_FD only */
    /* the run's manifest is written: read-only for good (the filter lets this call
     * through).  If it cannot be, the guest does not start: killed as above */
    if (forked && sys3(SYS_mprotect, MANIFEST_PAGE, MANIFEST_REGION, 1) != 0)
        __asm__ volatile("int $0x80" : : "a"(1L), "b"(127L) : "memory");
    if (forked && !resuming) {
        volatile u64 *slot = (volatile u64 *)SP_SLOT;
        sp = *slot;
        *slot = 0;
    }
    if (run_sp) run_sp = 0;     /* a resumed child's, written at the gate (a look first:
                                 * its page is not copied for the others) */
    if (resuming) resume();
    enter(entry, sp);
}

/* A snapshot template's child copies now, ahead of its run, the pages its run
 * will write (snapshot.py: the snapshot's writable pages): one madvise per range
 * breaks copy on write page by page without a fault each.  The bytes are the
 * template's either way; a range not populated (an older kernel: EINVAL) is
 * copied at the guest's first write, as without it. */
static void prefault(const struct header *h) {
    for (u64 i = 0; i < h->nprefaults; i++)
        sys3(SYS_madvise, prefaults[i].addr, prefaults[i].size, MADV_POPULATE_WRITE);
}

static void reply(long value) {
    if (sys3(SYS_write, SOCK_FD, &value, sizeof value) != sizeof value)
        sys3(SYS_exit, 0, 0, 0);         /* the supervisor is gone: so is the template */
}

/* A template's child, on the loader's stack (fork_child): its own set-up, the
 * filter, the gate, the guest. */
static void __attribute__((noreturn, used)) child_main(void) {
    check(sys6(SYS_prctl, 1, 9, 0, 0, 0, 0), "PR_SET_PDEATHSIG");
    if ((u64)sys3(SYS_getppid, 0, 0, 0) != hdr.parent) sys3(SYS_exit, 0, 0, 0);
    prefault(&hdr);
    prepare(&hdr, 1);
    start(&hdr, 1);
}

/* clone(CLONE_PARENT | SIGCHLD): the child's pid, or a negative errno.  The child
 * does not return: the template's stack is not its (serve()), so it goes on at once,
 * touching no memory, on the top of the loader's stack, as a spawned loader starts. */
static long fork_child(void) {
    long ret;
    __asm__ volatile("xor %%r10d, %%r10d\n\t"         /* no child tid, no TLS */
                     "xor %%r8d, %%r8d\n\t"
                     "syscall\n\t"
                     "test %%rax, %%rax\n\t"
                     "jnz 1f\n\t"
                     "lea loader_stack+65536(%%rip), %%rsp\n\t"
                     "xor %%ebp, %%ebp\n\t"
                     "call child_main\n\t"
                     "hlt\n"
                     "1:"
                     : "=a"(ret)
                     : "a"((long)SYS_clone), "D"(0x00008000L | 17), "S"(0L), "d"(0L)
                     : "rcx", "r8", "r10", "r11", "memory");
    return ret;
}

/* A template (a fork server): the program is mapped once, no guest instruction
 * ever runs here.  Each byte on SOCK_FD asks for a child ('H' while the
 * supervisor holds the faulting flags, else 'F': carry_as): the template forks
 * it with CLONE_PARENT (so the supervisor is its parent: it waits for it, and
 * the child dies with it) and forgets it (a fork that fails is a line on the
 * socket).  The child makes the template's socket its CTL_FD (the supervisor
 * asks for one child at a time, and learns its pid from the kernel's
 * credentials of its message: SO_PASSCRED), keeps the limits and attributes
 * it inherited (restrict_all), does its own part of steps 4 and 5 (prepare),
 * installs the filter, passes its listener on the template's socket and
 * waits at the gate (its close of the listener) -- the
 * supervisor may fork it ahead of the run.  For the run, the supervisor writes
 * the run's initial stack and user manifest into the child (process_vm_writev: the
 * manifest's region is writable until the gate, see MANIFEST_PAGE), with the stack pointer
 * (SP_SLOT), sets its CPU limit and lets the gate continue.  The template
 * never sees a run's bytes, and every child starts from the same never-run
 * state.  EOF on SOCK_FD ends the template.
 *
 * Everything the template writes between forks (its frames, the poll and the
 * request byte, its replies and flags) is on a stack of its own that no child
 * gets (MADV_DONTFORK, made by serve_on_own_stack): a fork leaves every page the
 * template writes its own, not shared with the child it just made, so the template
 * takes no copy-on-write fault per fork (it took two: its stack's page and the
 * request's), and nothing of it is in a child's memory to zero. */
static void __attribute__((noreturn, used)) serve(void) {
    long carried = 0;                    /* the faulting flags it has (carry_as) */
    reply(0);                            /* ready */
    for (;;) {
        /* poll for input first: read() sleeps on the socket's one wait queue, which
         * the kernel also wakes when a child's hello is read (the sender's write
         * space): a wake-up per run for nothing.  poll's wait is for POLLIN alone */
        struct { int fd; short events, revents; } ready = {SOCK_FD, 1, 0};    /* POLLIN */
        if (sys6(SYS_ppoll, (long)&ready, 1, 0, 0, 8, 0) == -4) continue;      /* EINTR */
        char request;
        long n = sys3(SYS_read, SOCK_FD, &request, 1);
        if (n == -4) continue;                               /* EINTR */
        if (n <= 0) sys3(SYS_exit, 0, 0, 0);
        carry_as(request == 'H', &carried);
        long pid = fork_child();
        if (pid < 0) say("cannot fork", pid);
    }
}

/* serve() on a stack of its own, which a fork does not give the child (above) */
#define SERVE_STACK 0x4000
static void __attribute__((noreturn)) serve_on_own_stack(void) {
    long base = sys6(SYS_mmap, 0, SERVE_STACK, 3, 0x02 | 0x20, -1, 0);    /* PRIVATE ANON */
    check(base, "cannot map the template's stack");
    check(sys3(SYS_madvise, base, SERVE_STACK, MADV_DONTFORK), "MADV_DONTFORK");
    __asm__ volatile("mov %0, %%rsp\n\txor %%ebp, %%ebp\n\tcall serve\n\thlt"
                     : : "r"(base + SERVE_STACK) : "memory");
    __builtin_unreachable();
}

void __attribute__((noreturn, used)) loader_main(void) {
    read_spec(&hdr);
    if (hdr.namespaces == NS_HOLD) hold();
    isolated = hdr.namespaces && isolate(hdr.namespaces);
    if (hdr.template) {
        /* a long-lived template keeps nothing of the worker's but its spec and socket */
        long r = sys3(SYS_close_range, 0, SPEC_FD - 1, 0);
        if (r == 0) r = sys3(SYS_close_range, SOCK_FD + 1, ~0U, 0);
        check(r, "close_range");
    }
    if (hdr.nfilter == 0) fail("bad spec", 0);
    filter_len = hdr.nfilter;
    load(&hdr);
    if (hdr.template) forget_load();     /* once: no child copies their pages to zero them */
    strip();
    restrict_all(&hdr);
    if (!hdr.template) {
        prepare(&hdr, 0);
        start(&hdr, 0);
    }
    check(sys6(SYS_prctl, 1, 9, 0, 0, 0, 0), "PR_SET_PDEATHSIG");
    if ((u64)sys3(SYS_getppid, 0, 0, 0) != hdr.parent) fail("the supervisor is gone", 0);
    serve_on_own_stack();
}

char loader_stack[1 << 16] __attribute__((aligned(16)));

__asm__(".globl _start\n_start:\n\t"
        "lea loader_stack+65536(%rip), %rsp\n\t"
        "xor %ebp, %ebp\n\t"
        "call loader_main\n\t"
        "hlt\n");
