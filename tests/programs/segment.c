/* segment (hostile): load %fs with a selector.  Segment state belongs to the
 * sandbox (TLS is set with arch_prctl): rule I6. */
int main(int argc, char **argv)
{
    (void)argv;
    unsigned short sel = (unsigned short)argc;
    __asm__ volatile("mov %0, %%fs" : : "r"(sel));
    return 0;
}
