/* rdtsc_hidden (hostile, sandbox-research 1.7): `rdtsc` hidden inside the
 * immediate of a movabs.  A linear sweep sees only `movabs`; the computed
 * jump lands on hidden+2 = 0f 31 (rdtsc), then eb 04 jumps back into the
 * stream, and exit_group returns the host TSC as the status.  The runtime
 * guard must stop execution at hidden+2, not an instruction boundary. */
        .text
        .globl  _start
_start:
        lea     hidden+2(%rip), %rax
        jmp     *%rax
hidden:
        movabs  $0x9090909004eb310f, %rbx       /* 48 bb | 0f 31 | eb 04 | 90 90 90 90 */
        mov     %eax, %edi                      /* low bits of the TSC */
        mov     $231, %eax                      /* exit_group */
        syscall
        hlt
