/* hidden_ret (hostile): like rdtsc_hidden, but the hidden instruction is a
 * `syscall` (exit_group(42) with eax/edi set up by the visible code) and it is
 * reached by `ret` to a pushed address instead of an indirect jmp.  The guard
 * must stop at hidden+3; if it does not, the program exits with 42.  The
 * visible path exits with 0. */
        .text
        .globl  _start
_start:
        mov     $231, %eax                      /* exit_group */
        mov     $42, %edi
        lea     hidden+3(%rip), %rcx
        push    %rcx
        ret
hidden:
        movabs  $0x90909002eb050f90, %rbx     /* 48 bb 90 | 0f 05 | eb 02 | 90 90 90 */
        xor     %edi, %edi
        syscall
