/* The hidden-instruction attack of sandbox-research §1.7.
 *
 * A linear sweep sees only the movabs at `hidden`.  Its immediate holds
 * 0f 31 (rdtsc) and eb 04 (a jmp back to the instruction after the movabs),
 * and a computed jump lands on hidden+2.  Static validation must accept this
 * program (nothing forbidden is on the sweep) and must not mark hidden+2 as
 * an instruction start, so that the runtime guard stops the jump.  Unstopped,
 * the program exits with the low byte of the host's time-stamp counter.
 */
    .globl _start, hidden
    .text
_start:
    lea     hidden+2(%rip), %rax
    jmp     *%rax
hidden:
    movabs  $0x9090909004eb310f, %rbx
    mov     %eax, %edi
    mov     $60, %eax
    syscall
