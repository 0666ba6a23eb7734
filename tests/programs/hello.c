/* hello: the smallest ordinary program (stdio, exit 0). */
#include <stdio.h>

int main(void)
{
    puts("Hello, world!");
    return 0;
}
