/* bigspin (hostile): bigcode's one-byte instructions (1.5 MiB of them: seconds to
 * validate), then a loop that runs until the run's timeout.  Validation and run end
 * within one timeout together: the caller kills a worker that has not answered at
 * timeout + KILL_GRACE, as the host's failure. */
__asm__(".section .text.big,\"ax\"\n"
        ".globl bigspin\n"
        "bigspin:\n"
        ".fill 1572864,1,0x90\n"
        "ret\n"
        ".text\n");

int main(void)
{
    for (volatile unsigned long i = 0;; i++)
        ;
}
