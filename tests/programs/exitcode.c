/* exitcode: exit with the status given as argv[1] (through exit(), or through
 * _exit() when argv[2] is "raw", or by returning from main when it is "ret"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int code = argc > 1 ? atoi(argv[1]) : 0;
    const char *how = argc > 2 ? argv[2] : "exit";
    printf("exiting with %d via %s\n", code, how);
    fflush(stdout);
    if (strcmp(how, "raw") == 0)
        _exit(code);
    if (strcmp(how, "ret") == 0)
        return code;
    exit(code);
}
