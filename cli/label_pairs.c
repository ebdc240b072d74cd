/* label_pairs.c -- the pairs kprec label judges (see label_pairs.h). */
#include "cli/label_pairs.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/bm25.h"

/* ---- a set of (item row, keyphrase row) pairs ---- */

static uint64_t pair_key(int item, int key)
{
    return ((uint64_t)(uint32_t)item << 32 | (uint32_t)key) + 1;
}

static size_t pair_hash(uint64_t k, size_t cap)
{
    return (size_t)(kp_fnv1a(&k, sizeof k) & (cap - 1));
}

/* Adds (item, key). Returns 1 if added, 0 if present, -1 on OOM. */
int kp_pairset_add(kp_pairset *s, int item, int key)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slot = calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) {
                size_t h = pair_hash(s->slot[i], cap);
                while (slot[h])
                    h = (h + 1) & (cap - 1);
                slot[h] = s->slot[i];
            }
        free(s->slot);
        s->slot = slot, s->cap = cap;
    }
    uint64_t k = pair_key(item, key);
    size_t h = pair_hash(k, s->cap);
    for (; s->slot[h]; h = (h + 1) & (s->cap - 1))
        if (s->slot[h] == k) return 0;
    s->slot[h] = k;
    s->n++;
    return 1;
}

int kp_pairset_has(const kp_pairset *s, int item, int key)
{
    if (!s->cap) return 0;
    uint64_t k = pair_key(item, key);
    for (size_t h = pair_hash(k, s->cap); s->slot[h]; h = (h + 1) & (s->cap - 1))
        if (s->slot[h] == k) return 1;
    return 0;
}

/* ---- the pairs to judge ---- */

int kp_pairlist_add(kp_pairlist *l, kp_pairset *seen, int item, int key)
{
    int r = kp_pairset_add(seen, item, key);
    if (r <= 0) return r;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 1024;
        int *it = realloc(l->item, sizeof(int) * (size_t)cap);
        if (!it) return -1;
        l->item = it;
        int *k = realloc(l->key, sizeof(int) * (size_t)cap);
        if (!k) return -1;
        l->key = k;
        l->cap = cap;
    }
    l->item[l->n] = item;
    l->key[l->n++] = key;
    return 1;
}

/* Reads item_id<TAB>keyphrase_id rows; unknown ids are counted in *unknown. */
int kp_pairs_load(const char *path, const kp_texts *items, const kp_texts *keys, kp_pairlist *l,
                  kp_pairset *seen, long *unknown, char *err, size_t errlen)
{
    char *b = NULL;
    size_t len;
    int rc = -1;
    if (kp_tsv_read_all(path, &b, &len, err, errlen)) return -1;
    kp_tsv_lines it = {b, b + len, 0};
    char *line, *f[3];
    if (kp_tsv_skip_header(&it, path, NULL, err, errlen)) goto err;
    while ((line = kp_tsv_next_line(&it))) {
        if (!line[0]) continue;
        if (kp_tsv_split(line, f, 3) < 2) {
            kp_errf(err, errlen, "%s:%d: expected item_id<TAB>keyphrase_id", path, it.lineno);
            goto err;
        }
        int i = kp_texts_find(items, f[0]), k = kp_texts_find(keys, f[1]);
        if (i < 0 || k < 0) {
            (*unknown)++;
            continue;
        }
        if (kp_pairlist_add(l, seen, i, k) < 0) {
            kp_errf(err, errlen, "out of memory");
            goto err;
        }
    }
    rc = 0;
err:
    free(b);
    return rc;
}

/* For every item: its n_bm25 best BM25 keyphrases, then n_random other random ones. */
int kp_pairs_generate(const kp_texts *items, const kp_texts *keys, int n_bm25, int n_random,
                      uint64_t seed, kp_pairlist *l, kp_pairset *seen, char *err, size_t errlen)
{
    int rc = -1;
    kp_bm25 *bm = NULL;
    int *doc = NULL;
    float *score = NULL;
    if (n_bm25 > 0) {
        if (!(bm = kp_bm25_build((const char *const *)keys->text, keys->n, KP_BM25_K1, KP_BM25_B,
                                 err, errlen)))
            goto err;
        doc = malloc(sizeof *doc * (size_t)n_bm25);
        score = malloc(sizeof *score * (size_t)n_bm25);
        if (!doc || !score) goto oom;
    }
    int want_random = n_random < keys->n ? n_random : keys->n;
    for (int i = 0; i < items->n; i++) {
        int got = 0;
        if (n_bm25 > 0) {
            got = kp_bm25_topk(bm, items->text[i], n_bm25, doc, score);
            if (got < 0) goto oom;
            for (int r = 0; r < got; r++)
                if (kp_pairlist_add(l, seen, i, doc[r]) < 0) goto oom;
        }
        uint64_t s = kp_fnv1a_step(kp_fnv1a_str(items->id[i]), seed) | 1;
        /* distinct random keyphrases not already among this item's candidates */
        for (int added = 0, tries = 0; added < want_random && tries < 64 * (want_random + 1);
             tries++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            int k = (int)(s % (uint64_t)keys->n);
            int r = kp_pairlist_add(l, seen, i, k);
            if (r < 0) goto oom;
            added += r;
        }
    }
    rc = 0;
    goto err;
oom:
    kp_errf(err, errlen, "out of memory");
err:
    free(doc);
    free(score);
    kp_bm25_free(bm);
    return rc;
}
