/* topk.h - per-query top-k selection over streams of scores (used by model/index.c for the exact
 * pass and by model/ivf.c for the inverted-file pass).
 *
 * Scores above the running threshold are appended to a buffer of cap hits; when it fills, a
 * quickselect (three-way on the scores with AVX-512 or AVX2 where the CPU has it) keeps the best kk
 * and the threshold becomes the kk-th best score (faiss's "reservoir"). With de-dup keys the buffer
 * holds at most one hit per key (an open-addressing table of key -> buffer slot) and a hit whose
 * key is held replaces it only if better, so the kk best of the buffer are the kk best distinct
 * keys. Order: score desc, ties by lower id. A scan offers ids in increasing order (kp_topk_scan:
 * once kk are held an equal score loses the tie, so it is skipped) or in any order
 * (kp_topk_scan_ids: equal scores are offered and the tie is settled by id). Without de-dup, a
 * selector's first scan starts from a lower bound of its kk-th best (the kk-th largest of the
 * maxima of 2 kk groups, rounded up to 16, of that row), so few scores are pushed; a scan compacts
 * the positions reaching the threshold without branches (AVX-512 or AVX2 where the CPU has it, else
 * SSE2/C) and then offers them. Scores below min_score and NaN are never kept. The selector's
 * memory is the caller's (kp_topk_bytes); nothing here allocates.
 */
#ifndef KP_TOPK_H
#define KP_TOPK_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    float s;
    int id;
} kp_hit;

typedef struct {
    int kk, cap, hbits;
    const uint64_t *keys; /* [ids] de-dup keys, or NULL: no de-dup */
} kp_topk_cfg;

typedef struct {
    kp_hit *buf; /* [cap] */
    int *tab;    /* [1 << hbits] or NULL */
    int m;       /* hits in buf */
    int full;    /* kk distinct hits held: thr is the kk-th best score */
    float thr;
} kp_topk;

/* The configuration keeping kk (>= 1) hits with buffer cap (0: the default 2 kk + 64; else >= kk +
 * 1) and de-dup keys (NULL: none; borrowed, indexed by id). */
kp_topk_cfg kp_topk_config(int kk, int cap, const uint64_t *keys);
/* Bytes of one selector's buffer + table under c (align: kp_hit). */
size_t kp_topk_bytes(const kp_topk_cfg *c);
/* Starts a selector in mem [kp_topk_bytes(c)] with the threshold min_score. */
void kp_topk_init(kp_topk *s, const kp_topk_cfg *c, void *mem, float min_score);
/* Offers (v, id), which must already pass the threshold (v >= thr, and v > thr when full and ids
 * arrive in increasing order). */
void kp_topk_push(kp_topk *s, const kp_topk_cfg *c, float v, int id);
/* Offers row[0..len) with ids id0.. (increasing, above every id offered before). */
void kp_topk_scan(kp_topk *s, const kp_topk_cfg *c, const float *row, int len, int id0);
/* Offers row[0..len) with ids ids[0..len) (any order, each id offered once per selector). */
void kp_topk_scan_ids(kp_topk *s, const kp_topk_cfg *c, const float *row, int len, const int *ids);
/* Keeps the kk best (if more are held) and raises the threshold to the kk-th. */
void kp_topk_reduce(kp_topk *s, const kp_topk_cfg *c);
/* Sorts the kept hits best first and writes k slots: ids/scores (-1 / 0 after the count). */
void kp_topk_finish(kp_topk *s, const kp_topk_cfg *c, int k, int *ids, float *scores, int *count);

/* The kernels a scan and a reduce may use, at most: PLAIN, the portable SSE2/C compaction and the
 * scalar quickselect; AVX2, the AVX2 compaction and three-way select where the CPU has AVX2; BEST
 * (the default), AVX-512 (F + VL) where the CPU has it, else as AVX2. Results are identical at
 * every level. For tests and benchmarks; not thread-safe against scans running at the same time. */
enum { KP_TOPK_SIMD_PLAIN = 0, KP_TOPK_SIMD_AVX2 = 1, KP_TOPK_SIMD_BEST = 2 };
void kp_topk_set_simd(int level);

/* Sorting helpers shared with the references. */
int kp_hit_better(float sa, int ia, float sb, int ib);
int kp_hit_cmp_desc(const void *x, const void *y); /* qsort: best first */
void kp_topk_write(const kp_hit *h, int nh, int k, int *ids, float *scores, int *count);

#endif
