/* rng.h - small deterministic PRNG (splitmix64 seeding + xoshiro256**).
 *
 * Same seed -> same stream on every machine (no floating-point library calls except log/sqrt/cos
 * in kp_rng_normal, which are correctly rounded enough for init purposes). Not cryptographic.
 */
#ifndef KP_RNG_H
#define KP_RNG_H

#include <stdint.h>

typedef struct kp_rng {
    uint64_t s[4];
    int has_spare; /* Box-Muller produces pairs: the second one is kept here */
    double spare;
} kp_rng;

/* Seeds the generator; any seed (including 0) is valid. */
void kp_rng_seed(kp_rng *r, uint64_t seed);

/* Next raw 64-bit value. */
uint64_t kp_rng_next(kp_rng *r);

/* Uniform in [0, 1) with 24 bits of precision (float) / 53 bits (double). */
float kp_rng_uniform(kp_rng *r);
double kp_rng_uniform_d(kp_rng *r);

/* Uniform integer in [0, n); n == 0 returns 0. Unbiased (rejection sampling). */
uint64_t kp_rng_below(kp_rng *r, uint64_t n);

/* Standard normal N(0, 1) (Box-Muller). */
float kp_rng_normal(kp_rng *r);

/* One splitmix64 step on *state: also usable as a 64-bit mixing function. */
uint64_t kp_splitmix64(uint64_t *state);

/* Stateless 64-bit finaliser (splitmix64 mix), bijective. */
uint64_t kp_mix64(uint64_t x);

#endif
