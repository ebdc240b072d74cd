/* kprec config: print the effective configuration (file + environment; secrets redacted). */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int kp_cmd_config(int argc, char **argv)
{
    const char *path = argc > 2 && !strcmp(argv[1], "-c") ? argv[2] : NULL;
    if (argc > 1 && !path) {
        fprintf(strcmp(argv[1], "--help") ? stderr : stdout,
                "usage: kprec config [-c FILE]\n"
                "Prints the effective configuration: FILE (or the defaults) with the\n"
                "KPREC_<SECTION>_<KEY> environment overrides applied, secrets redacted.\n"
                "Example:\n"
                "  KPREC_WORKER_TOP_K=5 kprec config -c /tmp/kp/kprec.ini\n");
        return strcmp(argv[1], "--help") ? 2 : 0;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    kp_config_dump(&c, stdout);
    kp_config_free(&c);
    return 0;
}
