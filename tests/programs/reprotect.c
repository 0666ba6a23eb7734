/* reprotect: mprotect the middle page of a mapping PROT_NONE, munmap that page,
 * map it again (argv[1]: "fixed" MAP_FIXED, "reuse" the allocator's next
 * address, "read" the same with PROT_READ) and touch it; or ("reserve") map
 * the three pages PROT_NONE and the middle one read+write over them with
 * MAP_FIXED: that page is read+write (mmap's protection is not mprotect's).  Natively only
 * mprotect reaches the kernel's page table, so the page the kernel keeps
 * PROT_NONE must be PROT_NONE under the emulator too: both engines end the run
 * with the same fault at the same address, never one a fault and one a store. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PG 4096L

static void say(const char *s)
{
    write(1, s, strlen(s));             /* unbuffered: the lines before a fault are out */
}

int main(int argc, char **argv)
{
    const char *how = argc > 1 ? argv[1] : "fixed";
    int prot = strcmp(how, "read") ? PROT_READ | PROT_WRITE : PROT_READ;
    int reserve = !strcmp(how, "reserve"), fixed = reserve || !strcmp(how, "fixed");
    char *p = mmap(0, 3 * PG, reserve ? PROT_NONE : PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return 2;
    if (!reserve) {
        p[PG] = 'x';
        say(mprotect(p + PG, PG, PROT_NONE) ? "mprotect failed\n" : "mprotect none\n");
        say(munmap(p + PG, PG) ? "munmap failed\n" : "munmap\n");
    }
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | (fixed ? MAP_FIXED : 0);
    char *q = mmap(fixed ? p + PG : 0, PG, prot, flags, -1, 0);
    say(q == MAP_FAILED ? "mmap failed\n" : q == p + PG ? "mmap: same page\n" : "mmap: elsewhere\n");
    if (q == MAP_FAILED)
        return 3;
    if (prot & PROT_WRITE) {
        *q = 'y';
        say(*q == 'y' ? "stored\n" : "store lost\n");
    } else {
        say(*q ? "read non-zero\n" : "read zero\n");
    }
    return 0;
}
