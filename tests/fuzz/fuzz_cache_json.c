/* The cached suggestion JSON (cache/json.c), as read back from Redis by `kprec get`: any text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char err[256];
    char *z = malloc(n + 1);
    memcpy(z, d, n);
    z[n] = 0;
    kp_cache_suggestions s;
    if (!kp_cache_suggestions_parse(z, &s, err, sizeof err)) kp_cache_suggestions_clear(&s);
    free(kp_cache_entry_json("item", 1, 2, z, err, sizeof err));
    free(z);
    return 0;
}
