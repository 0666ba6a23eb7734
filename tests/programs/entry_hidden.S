/* entry_hidden (hostile): the ELF entry point itself is inside an instruction:
 * _start is hidden+3, where the movabs immediate holds `syscall` (exit_group
 * with whatever the registers hold).  The ELF check must refuse an entry that
 * is not a validated instruction boundary. */
        .text
        .globl  _start
        .set    _start, hidden+3
visible:
        mov     $231, %eax
        xor     %edi, %edi
hidden:
        movabs  $0x90909002eb050f90, %rbx       /* 48 bb 90 | 0f 05 | eb 02 | 90 90 90 */
        syscall
