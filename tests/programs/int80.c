/* int80 (hostile): the 32-bit system-call gate, `int $0x80` with eax=1
 * (exit in the i386 table).  Only `syscall` is a system call: rule I7. */
int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 0)
        __asm__ volatile("int $0x80" : : "a"(1), "b"(7));
    return 0;
}
