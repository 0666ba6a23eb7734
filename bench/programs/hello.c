/* hello: the smallest ordinary program (stdio, exit 0).  -DVARIANT=N makes
 * a binary that differs only in one string, for "N different templates". */
#include <stdio.h>

#ifndef VARIANT
#define VARIANT 0
#endif
#define STR2(x) #x
#define STR(x) STR2(x)

int main(void)
{
    static const char tag[] __attribute__((used)) = "bench hello variant " STR(VARIANT);
    (void)tag;
    puts("Hello, world!");
    return 0;
}
