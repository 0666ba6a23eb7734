/* rdrand (hostile): hardware randomness cannot be replayed, so the validator
 * rejects the program (I3). */
#include <stdio.h>

int main(void)
{
    unsigned long long v;
    unsigned char ok;
    __asm__ volatile("rdrand %0; setc %1" : "=r"(v), "=qm"(ok));
    printf("rdrand %d %llx\n", ok, v);
    return 0;
}
