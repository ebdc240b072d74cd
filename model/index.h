/* index.h - exact top-K keyphrase index over normalised embeddings.
 *
 * The keyphrase embeddings are one row-major float matrix [n x dim] (an owned copy). A batch of
 * queries is scored tile by tile: one sgemm per (query tile x key block) (queries x keys^T, so the
 * packing of each key block is shared by a whole query tile), then a scan that skips blocks of
 * scores below each query's running k-th best and a quickselect over the survivors, so memory
 * stays O(query_tile x key_block). Optionally a first pass ranks by the Matryoshka prefix (first
 * prefix_dim dims, keys re-normalised; the normalised [n x prefix_dim] matrix is built on the
 * first query that uses that size and kept) and keeps cand_factor * k candidates, which are then
 * rescored at full size. Keys sharing a de-duplication key (kp_feat_tokenset_key) count
 * once: the best-scoring one is kept. Queries may run from several threads at once; the storage
 * functions below (add, remove, reserve) change the index in place and must not run while any
 * query does (the owner serialises them, e.g. between two micro-batches).
 *
 * Live inventory: rows are appended (kp_index_add, capacity grows by doubling) and removed by
 * moving the last row into the hole (kp_index_remove), so the matrix stays dense and the search
 * kernels need no mask; the prefix matrices already built are updated row by row. Row ids are
 * positions: a removal renumbers the last row (the caller keeps its own tables in step).
 */
#ifndef KP_INDEX_H
#define KP_INDEX_H

#include <stdint.h>

#include "model/ivf.h"

typedef struct kp_index kp_index;

#define KP_INDEX_DEFAULT_CAND_FACTOR 4
#define KP_INDEX_DEFAULT_QUERY_TILE  256
#define KP_INDEX_DEFAULT_KEY_BLOCK   1024
#define KP_INDEX_DEFAULT_RESCORE     2 /* IVF reduced-precision first pass: candidates = 2 k */

/* Copies emb [n x dim] (and dedup_keys [n] if not NULL). n may be 0. NULL on OOM or bad args
 * (n < 0, dim <= 0, emb NULL with n > 0). */
kp_index *kp_index_new(const float *emb, int n, int dim, const uint64_t *dedup_keys);
/* As kp_index_new, but takes ownership of emb (malloc'ed [n x dim]; freed with the index, also
 * on error) instead of copying it: no second copy of a large inventory, even for a moment. */
kp_index *kp_index_adopt(float *emb, int n, int dim, const uint64_t *dedup_keys);
void kp_index_free(kp_index *ix); /* accepts NULL */
int kp_index_size(const kp_index *ix);
int kp_index_dim(const kp_index *ix);
/* Row i of the embedding matrix (owned by ix); NULL if i is out of range. */
const float *kp_index_row(const kp_index *ix, int i);
/* Candidates kept by the prefix pass = c * k (c >= 1). Not thread-safe: set before sharing. */
void kp_index_set_cand_factor(kp_index *ix, int c);
/* Tiling of kp_index_topk: queries per sgemm and keys per sgemm (<= 0: the default). Results do
 * not depend on it (tuning and tests only). Not thread-safe: set before sharing. */
void kp_index_set_tiles(kp_index *ix, int query_tile, int key_block);

/* Appends n rows emb [n x dim] (and their de-dup keys, which must be given iff the index has
 * them; an index created empty takes keys from its first add). 0, or -1 on bad args or OOM (the
 * index is then unchanged, though maybe with more capacity). Not concurrent with queries. */
int kp_index_add(kp_index *ix, const float *emb, int n, const uint64_t *dedup_keys);
/* Removes row i by moving the last row into it. Returns the old position of the row now at i (==
 * i when i was the last), or -1 when i is out of range. Never allocates. Not concurrent with
 * queries. */
int kp_index_remove(kp_index *ix, int i);
/* Makes room for n rows in total, so that adds up to n cannot fail for lack of memory. 0 / -1. */
int kp_index_reserve(kp_index *ix, int n);
/* Switches kp_index_topk's full-size pass (prefix_dim 0) to the inverted file (model/ivf.h):
 * nlist lists (0: about sqrt(n)) built now with seed, nprobe lists scored per query (nprobe >=
 * nlist: the exact pass). The rows are reordered in place into list order (kp_index_row still
 * takes the key id; ids and results do not change). Replaces an earlier ivf. Not thread-safe: set
 * before sharing. 0, or -1 on OOM / bad args (nlist < 0, nprobe < 1; on OOM the index may be left
 * exact). An empty index stays exact. */
int kp_index_set_ivf(kp_index *ix, int nlist, int nprobe, uint64_t seed);
/* The IVF's first pass: kind KP_QUANT_FP32 (the default: lists scored exactly from the rows) or
 * KP_QUANT_INT8 / KP_QUANT_BF16 (lists scored from a reduced-precision copy of the rows,
 * model/quant.h, built now if there is an ivf and again by each kp_index_set_ivf; the rescore x k
 * best per query rescored exactly; rescore >= 1). The copy adds about 1/4 (int8) or 1/2 (bf16) of
 * the rows' bytes. Not thread-safe: set before sharing. 0, or -1 on bad args / OOM (then fp32). */
int kp_index_set_first_pass(kp_index *ix, int kind, int rescore);
/* The reduced-precision copy in use, or NULL. */
const kp_quant *kp_index_quant(const kp_index *ix);
/* Lists probed per query (>= 1; with an ivf). Not thread-safe: set before sharing. */
void kp_index_set_nprobe(kp_index *ix, int nprobe);
/* The inverted file, or NULL (exact). */
const kp_ivf *kp_index_ivf(const kp_index *ix);

/* For nq queries q [nq x dim] (normalised): writes up to k results per query into ids[q*k..] and
 * scores[q*k..] (score = dot product = cosine) sorted by score desc, ties by lower id; counts[q] =
 * how many (slots after that hold id -1, score 0). Only scores >= min_score are returned (NaN
 * scores never). prefix_dim 0 (or dim) = full size only; else 1..dim-1 enables the prefix pass.
 * One scratch allocation per call. Returns 0, or -1 on OOM / bad args (k <= 0, nq < 0, NULLs,
 * prefix_dim out of range). */
int kp_index_topk(const kp_index *ix, const float *q, int nq, int k, float min_score,
                  int prefix_dim, int *ids, float *scores, int *counts);

/* Plain-loop reference (no BLAS, full sort) with the same contract, for tests and checks. */
int kp_index_topk_ref(const kp_index *ix, const float *q, int nq, int k, float min_score,
                      int prefix_dim, int *ids, float *scores, int *counts);

#endif
