/* split.c - hashed item splits (see split.h). */
#include "offline/split.h"

#include "model/rng.h"

int kp_split_is_valid(const char *item_id, double frac, uint64_t seed)
{
    if (!item_id || !(frac > 0.0)) return 0;
    if (frac >= 1.0) return 1;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)item_id; *p; p++)
        h = (h ^ *p) * 0x100000001b3ULL;
    uint64_t u = kp_mix64(h ^ kp_mix64(seed + 0x9e3779b97f4a7c15ULL));
    /* compare the top 53 bits as a double in [0, 1) */
    return (double)(u >> 11) * (1.0 / 9007199254740992.0) < frac;
}
