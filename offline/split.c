/* split.c - hashed item splits (see split.h). */
#include "offline/split.h"

#include "common/util.h"
#include "model/rng.h"

int kp_split_is_valid(const char *item_id, double frac, uint64_t seed)
{
    if (!item_id || !(frac > 0.0)) return 0;
    if (frac >= 1.0) return 1;
    uint64_t h = kp_fnv1a_str(item_id);
    uint64_t u = kp_mix64(h ^ kp_mix64(seed + 0x9e3779b97f4a7c15ULL));
    /* compare the top 53 bits as a double in [0, 1) */
    return (double)(u >> 11) * (1.0 / 9007199254740992.0) < frac;
}
