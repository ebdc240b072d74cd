/* cli.c -- what the verbs share: loading the configuration, the -c FILE-only option parser. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

int kp_cli_config(kp_config *c, const char *path)
{
    char err[1024];
    kp_config_defaults(c);
    if (path) {
        if (kp_config_load(c, path, err, sizeof err)) {
            fprintf(stderr, "kprec: %s\n", err);
            kp_config_free(c);
            return -1;
        }
    } else {
        extern char **environ;
        if (kp_config_apply_env(c, environ, err, sizeof err)) {
            fprintf(stderr, "kprec: environment: %s\n", err);
            kp_config_free(c);
            return -1;
        }
    }
    return 0;
}

int kp_cli_config_only_opts(int argc, char **argv, const char *usage, const char **path)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    *path = NULL;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (ch != 'c') {
            fputs(usage, ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
        *path = optarg;
    }
    return -1;
}
