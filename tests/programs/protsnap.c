/* protsnap: page protections and the break set in the prefix (before the first
 * channel access), used after it, where a start-up snapshot resumes.  The prefix
 * is long (a table), maps a read-only page (mmap's own protection: the
 * personality's table only, natively the page stays read+write), lowers one page
 * of another mapping and one of its own data with mprotect, raises one of its
 * read-only data, makes a third page of the mapping PROT_NONE and unmaps it (it
 * keeps PROT_NONE), and moves the break up and back.
 * After the prefix, argv[1]: "store" stores into the read-only mapping (a fault
 * emulated; natively stored), "held" into the page mprotect lowered, "data" into
 * the data page, "unmapped" reads the unmapped one (a fault under both engines),
 * and "calls" (the default) hands those pages to
 * system calls and stores where the guest may: what each engine does must be the
 * same whether the run is fresh, reused or resumed (tests/sandbox/test_equivalence.py). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PG 4096L

static void say(const char *s)
{
    write(1, s, strlen(s));             /* unbuffered: the lines before a fault are out */
}

static unsigned table[1 << 16];
static const char constants[3 * PG] = "constant";

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "calls";
    unsigned x = 2166136261u;
    for (unsigned i = 0; i < 400000; i++) {     /* a prefix worth a snapshot */
        x = (x ^ i) * 16777619u;
        table[i & 0xffff] ^= x;
    }
    char *a = mmap(0, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *r = mmap(0, PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (a == MAP_FAILED || r == MAP_FAILED)
        return 2;
    memset(a, 'a', 4 * PG);
    int lowered = mprotect(a + PG, PG, PROT_READ);
    int none = mprotect(a + 2 * PG, PG, PROT_NONE);
    int unmapped = munmap(a + 2 * PG, PG);
    char *data = (char *)(((uintptr_t)table + sizeof table / 2) & -PG);
    int data_lowered = mprotect(data, PG, PROT_READ);
    char *raised_data = (char *)(((uintptr_t)constants + PG) & -PG);
    int data_raised = mprotect(raised_data, PG, PROT_READ | PROT_WRITE);
    uintptr_t brk0 = syscall(SYS_brk, 0);
    uintptr_t up = syscall(SYS_brk, brk0 + 3 * PG);
    ((char *)brk0)[2 * PG] = 'b';
    uintptr_t down = syscall(SYS_brk, brk0 + PG);
    char line[160];
    snprintf(line, sizeof line, "prefix %08x mprotect %d %d %d %d munmap %d brk +%ld +%ld\n",
             table[x & 0xffff], lowered, none, data_lowered, data_raised, unmapped,
             (long)(up - brk0), (long)(down - brk0));
    say(line);                          /* the first channel access: the prefix ends */
    if (!strcmp(how, "store")) {
        r[0] = 'x';
        say(r[0] == 'x' ? "stored into the read-only mapping\n" : "store lost\n");
        return 0;
    }
    if (!strcmp(how, "held")) {
        a[PG] = 'x';
        say("stored into the lowered page\n");
        return 0;
    }
    if (!strcmp(how, "data")) {
        data[1] = 'x';
        say("stored into the lowered data page\n");
        return 0;
    }
    if (!strcmp(how, "unmapped")) {
        snprintf(line, sizeof line, "read %d\n", a[2 * PG]);
        say(line);
        return 0;
    }
    long into_r = getrandom(r, 8, 0), into_lowered = getrandom(a + PG, 8, 0);
    long into_a = getrandom(a + 3 * PG, 8, 0), from_r = write(1, r, 1);
    a[3 * PG + 8] = 'y';
    raised_data[0] = 'r';               /* read-only data mprotect raised: a store */
    ((char *)brk0)[PG - 1] = 'c';
    int raised = mprotect(a + PG, PG, PROT_READ | PROT_WRITE);
    a[PG] = 'z';
    char *again = mmap(a + 2 * PG, PG, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    snprintf(line, sizeof line, "\ngetrandom %ld %ld %ld write %ld mprotect %d %c %c mmap %d "
             "brk %ld above %d\n", into_r, into_lowered, into_a, from_r, raised, a[PG],
             raised_data[0], again == a + 2 * PG, (long)(syscall(SYS_brk, 0) - brk0),
             ((char *)brk0)[2 * PG]);
    say(line);
    again[0] = 'w';                     /* PROT_NONE through munmap and mmap: a fault */
    say("stored into the remapped page\n");
    return 0;
}
