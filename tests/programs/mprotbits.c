/* mprotbits: mprotect a read-only data page with flags the kernel refuses for it
 * (PROT_GROWSDOWN, PROT_GROWSUP, unknown bits): the sandbox must refuse them too,
 * or its page table says writable where the page is not, and read() can fill a
 * read-only page the program itself cannot store to. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char text[8192] __attribute__((aligned(4096))) = "read-only text";

static void show(const char *what, long r)
{
    printf("%s = %ld%s%s\n", what, r, r < 0 ? " " : "", r < 0 ? strerror(errno) : "");
}

int main(void)
{
    void *page = (void *)((uintptr_t)text & ~(uintptr_t)4095);
    show("mprotect(rw|growsdown)", mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_GROWSDOWN));
    show("read(into it)", read(0, page, 2));
    show("mprotect(rw|growsup)", mprotect(page, 4096, PROT_READ | PROT_WRITE | PROT_GROWSUP));
    show("read(into it)", read(0, page, 2));
    show("mprotect(rw|0x100)", mprotect(page, 4096, PROT_READ | PROT_WRITE | 0x100));
    show("read(into it)", read(0, page, 2));
    show("mprotect(r|sem)", mprotect(page, 4096, PROT_READ | 0x8));    /* PROT_SEM: ignored */
    printf("text: %s\n", text);
    return 0;
}
