/* remap (hostile): try to replace or remove the validated code by memory
 * calls: munmap the text page, mmap MAP_FIXED over it (RW and RX),
 * madvise(MADV_DONTNEED) it, mprotect it writable, brk below the heap, and
 * mmap MAP_FIXED over the stack.  Every attempt must fail and main must be
 * intact afterwards. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

static void show(const char *what, long r)
{
    printf("%s: %s\n", what, r < 0 ? strerror(errno) : "succeeded");
    errno = 0;
}

int main(void)
{
    unsigned char before[64];
    uintptr_t page = (uintptr_t)(void *)main & ~(uintptr_t)4095;
    int local;
    uintptr_t stack = (uintptr_t)&local & ~(uintptr_t)4095;
    memcpy(before, (void *)main, sizeof before);

    show("munmap text", syscall(SYS_munmap, page, 4096L));
    show("mmap fixed rw over text",
         syscall(SYS_mmap, page, 4096L, (long)(PROT_READ | PROT_WRITE),
                 (long)(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -1L, 0L));
    show("mmap fixed rx over text",
         syscall(SYS_mmap, page, 4096L, (long)(PROT_READ | PROT_EXEC),
                 (long)(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -1L, 0L));
    show("mprotect text rw", syscall(SYS_mprotect, page, 4096L, (long)(PROT_READ | PROT_WRITE)));
    show("mremap text", syscall(SYS_mremap, page, 4096L, 8192L, 0L, 0L));
    long r = syscall(SYS_madvise, page, 4096L, (long)MADV_DONTNEED);
    printf("madvise text: returned %ld\n", r);
    long brk0 = syscall(SYS_brk, 0L);
    printf("brk to text moved: %d\n", syscall(SYS_brk, (long)page) != brk0);
    show("mmap fixed over stack",
         syscall(SYS_mmap, stack, 4096L, (long)(PROT_READ | PROT_WRITE),
                 (long)(MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED), -1L, 0L));
    printf("code %s\n", memcmp(before, (void *)main, sizeof before) ? "CHANGED" : "unchanged");
    printf("local still %d\n", local = 7);
    return 0;
}
