/* split.h - deterministic train/validation splits of items by a hash of their id.
 *
 * An item is in the validation part when mix(FNV-1a(item_id) ^ seed) < frac * 2^64. The answer
 * depends only on the id bytes, frac and seed (no order, no platform dependence), so every verb
 * (train-ce, train, eval, bench) agrees on which items are held out. Different seeds give
 * independent splits: use one seed for the benchmark hold-out and another one for a validation
 * part inside the training items.
 */
#ifndef KP_SPLIT_H
#define KP_SPLIT_H

#include <stdint.h>

/* The benchmark's hold-out: 20% of the items, seed 0. Never train or tune on these. */
#define KP_SPLIT_BENCH_FRAC 0.2
#define KP_SPLIT_BENCH_SEED 0u

/* 1 if item_id (NUL-terminated) falls in the validation part of the split (frac, seed), else 0.
 * frac <= 0 (or NaN) -> always 0, frac >= 1 -> always 1. A NULL id is never in validation. */
int kp_split_is_valid(const char *item_id, double frac, uint64_t seed);

#endif
