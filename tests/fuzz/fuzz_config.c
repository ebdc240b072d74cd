/* The configuration (common/config.c): any INI text, then any KPREC_* environment. Input: the
 * INI text, optionally followed by a NUL byte and environment entries separated by '\n'
 * ("KPREC_REDIS_PORT=1"). The effective configuration is then dumped (as `kprec config` does)
 * and its [kafka] keys looked up. */
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
    const char *path = fz_file("ini", d, ini_len);
    char err[1024];
    kp_config c;
    kp_config_defaults(&c);
    if (kp_config_load(&c, path, err, sizeof err) == 0 && nul) {
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
