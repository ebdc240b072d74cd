/* rng.c - splitmix64 + xoshiro256** (see rng.h). */
#include "model/rng.h"

#include <math.h>

uint64_t kp_mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t kp_splitmix64(uint64_t *state)
{
    *state += 0x9e3779b97f4a7c15ULL;
    return kp_mix64(*state);
}

void kp_rng_seed(kp_rng *r, uint64_t seed)
{
    uint64_t st = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = kp_splitmix64(&st);
    r->has_spare = 0;
    r->spare = 0.0;
}

static uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t kp_rng_next(kp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return result;
}

float kp_rng_uniform(kp_rng *r)
{
    return (float)(kp_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

double kp_rng_uniform_d(kp_rng *r)
{
    return (double)(kp_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

uint64_t kp_rng_below(kp_rng *r, uint64_t n)
{
    if (n == 0) return 0;
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* values >= limit would bias the result */
    uint64_t x;
    do {
        x = kp_rng_next(r);
    } while (x >= limit);
    return x % n;
}

float kp_rng_normal(kp_rng *r)
{
    if (r->has_spare) {
        r->has_spare = 0;
        return (float)r->spare;
    }
    double u1 = kp_rng_uniform_d(r);
    double u2 = kp_rng_uniform_d(r);
    if (u1 < 1e-300) u1 = 1e-300;
    double rad = sqrt(-2.0 * log(u1));
    double th = 6.283185307179586 * u2;
    r->spare = rad * sin(th);
    r->has_spare = 1;
    return (float)(rad * cos(th));
}
