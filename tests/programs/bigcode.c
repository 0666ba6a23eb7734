/* bigcode (hostile): a valid program with 8 MiB of one-byte instructions, which take
 * seconds to validate (every byte is an instruction the validator decodes and checks).
 * A pool's worker must end it as the run's timeout when the validation does not
 * finish within it, not go silent until it is killed as the host's failure. */
__asm__(".section .text.big,\"ax\"\n"
        ".globl bigcode\n"
        "bigcode:\n"
        ".fill 8388608,1,0x90\n"
        "ret\n"
        ".text\n");

int main(void)
{
    return 0;
}
