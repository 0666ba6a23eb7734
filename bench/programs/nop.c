/* nop: a trivial program: returns 0 at once (what an execution costs when
 * the guest does nothing). */
int main(void)
{
    return 0;
}
