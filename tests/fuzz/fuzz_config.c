/* The configuration (common/config.c): any INI text, then any KPREC_* environment. Input: the
 * INI text, optionally followed by a NUL byte and environment entries separated by '\n'
 * ("KPREC_REDIS_PORT=1"). The effective configuration is then dumped (as `kprec config` does)
 * and its [kafka] keys looked up. The text is read from memory (kp_config_load_stream over
 * fmemopen; the worker's kp_config_load is that over fopen). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static FILE *devnull;
    if (!devnull && !(devnull = fopen("/dev/null", "w"))) abort();
    const uint8_t *nul = memchr(d, 0, n);
    size_t ini_len = nul ? (size_t)(nul - d) : n;
    char err[1024];
    kp_config c;
    kp_config_defaults(&c);
    /* from memory (fmemopen): the worker's parser without a file per input; an empty text
     * through a file (fmemopen may refuse size 0) */
    FILE *f = ini_len ? fmemopen((void *)d, ini_len, "r") : NULL;
    int rc = f ? kp_config_load_stream(&c, f, "fuzz.ini", err, sizeof err)
               : kp_config_load(&c, fz_file("ini", d, ini_len), err, sizeof err);
    if (f) fclose(f);
    if (rc == 0 && nul) {
        size_t elen = n - ini_len - 1;
        char *env = malloc(elen + 1);
        memcpy(env, nul + 1, elen);
        env[elen] = 0;
        char *envp[64];
        int ne = 0;
        for (char *s = env, *e; s && ne < 63; s = e) {
            e = strchr(s, '\n');
            if (e) *e++ = 0;
            envp[ne++] = s;
        }
        envp[ne] = NULL;
        kp_config_apply_env(&c, envp, err, sizeof err);
        free(env);
    }
    kp_config_dump(&c, devnull);
    kp_config_kafka(&c, "bootstrap.servers");
    kp_config_free(&c);
    return 0;
}
