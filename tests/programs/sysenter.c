/* sysenter (hostile): the other fast system-call entry; rule I7. */
int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 0)
        __asm__ volatile("sysenter" : : "a"(60), "D"(7) : "rcx", "r11", "memory");
    return 0;
}
