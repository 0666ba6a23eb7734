/* loop (hostile): spin forever without system calls.  Only fuel (or the
 * wall-clock timeout) can stop it. */
int main(void)
{
    volatile unsigned long n = 0;
    for (;;)
        n++;
}
