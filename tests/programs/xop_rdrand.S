/* xop_rdrand (hostile, issue 15): rdrand behind an AMD XOP cover.  capstone
 * decodes the 11 bytes at `cover` as one XOP instruction (vpmacssww with a
 * SIB and a 32-bit displacement) that no privilege rule names.  unicorn has
 * no XOP: it runs 8f 88 <disp32> as `pop [rax+disp32]`, then the displacement
 * capstone saw, 0f c7 f0, as `rdrand eax`, then two nops, and meets the
 * validated stream again after the cover, inside one translated block whose
 * start the guard checked.  The status would be a host-random number; the
 * validator must refuse the cover (rule I13 at `cover`). */
        .text
        .globl  _start, cover
_start:
        lea     slot(%rip), %rax
        sub     $0x24848578, %rax               /* rax + disp32 = slot */
        push    $0
cover:
        .byte   0x8f, 0x88, 0x78, 0x85          /* XOP map 8, vpmacssww ...  | pop [rax+disp32] */
        .byte   0x84, 0x24                      /* ModRM, SIB                 | (the disp32)    */
        .byte   0x0f, 0xc7, 0xf0, 0x90          /* disp32                     | rdrand eax; nop */
        .byte   0x90                            /* is4 register               | nop             */
        mov     %eax, %edi                      /* low bits of the random number */
        mov     $231, %eax                      /* exit_group */
        syscall
        hlt

        .bss
slot:   .quad   0
