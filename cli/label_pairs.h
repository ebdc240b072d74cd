/* label_pairs.h -- the pairs `kprec label` judges: a set of (item row, keyphrase row) pairs and
 * the list to judge, read from a TSV or generated per item (BM25 candidates + random inventory
 * keyphrases). Rows index the kp_texts tables of model/tsv.h. Errors: 0, or -1 with err. */
#ifndef KP_CLI_LABEL_PAIRS_H
#define KP_CLI_LABEL_PAIRS_H

#include <stddef.h>
#include <stdint.h>

#include "model/tsv.h"

/* A set of pairs (open addressing). Zero-initialise; free slot with free(). */
typedef struct {
    uint64_t *slot; /* key + 1, 0 = empty */
    size_t cap, n;
} kp_pairset;

/* Adds (item, key): 1 when new, 0 when already in, -1 on OOM. */
int kp_pairset_add(kp_pairset *s, int item, int key);

/* 1 when (item, key) is in s. */
int kp_pairset_has(const kp_pairset *s, int item, int key);

/* The pairs to judge, in order. Zero-initialise; free item and key with free(). */
typedef struct {
    int n, cap;
    int *item, *key;
} kp_pairlist;

/* Appends (item, key) unless seen has it (then 0); adds it to seen. 1 appended, 0 duplicate, -1
 * OOM. */
int kp_pairlist_add(kp_pairlist *l, kp_pairset *seen, int item, int key);

/* Reads item_id<TAB>keyphrase_id rows (header row; extra columns ignored) of path into l, once
 * each; rows naming an unknown id are counted in *unknown. */
int kp_pairs_load(const char *path, const kp_texts *items, const kp_texts *keys, kp_pairlist *l,
                  kp_pairset *seen, long *unknown, char *err, size_t errlen);

/* For every item: its n_bm25 best BM25 keyphrases and n_random random ones (seeded by seed and
 * the item id), once each. */
int kp_pairs_generate(const kp_texts *items, const kp_texts *keys, int n_bm25, int n_random,
                      uint64_t seed, kp_pairlist *l, kp_pairset *seen, char *err, size_t errlen);

#endif
