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

#include <stddef.h>
#include <stdint.h>

/* The benchmark's hold-out: 20% of the items, seed 0. Never train or tune on these. */
#define KP_SPLIT_BENCH_FRAC 0.2
#define KP_SPLIT_BENCH_SEED 0u

/* 1 if item_id (NUL-terminated) falls in the validation part of the split (frac, seed), else 0.
 * frac <= 0 (or NaN) -> always 0, frac >= 1 -> always 1. A NULL id is never in validation. */
int kp_split_is_valid(const char *item_id, double frac, uint64_t seed);

/* Rows of one kp_split_tsv call: data rows read (empty lines not counted), and how many went to
 * each part. */
typedef struct {
    long rows, train, valid;
} kp_split_counts;

/* Splits the TSV file in_path by the value of its column named `column` (looked up in the header
 * row): copies the header to both outputs, then every data row verbatim to valid_path when
 * kp_split_is_valid(value, frac, seed) and to train_path otherwise. Empty lines are dropped, a
 * missing final newline is added, CR LF endings become LF. Both outputs are created or truncated
 * (only once the header is read); *cn receives the counts (zeroed first). Returns 0, or -1 with a
 * message naming the file (and line) in err: unreadable or empty input, no such column, a row
 * without a value in it, a write error, out of memory. On failure the outputs may be left partly
 * written. Reads and writes stdio files only; the caller owns every path. */
int kp_split_tsv(const char *in_path, const char *column, double frac, uint64_t seed,
                 const char *train_path, const char *valid_path, kp_split_counts *cn, char *err,
                 size_t errlen);

#endif
