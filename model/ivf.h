/* ivf.h - inverted-file (IVF) first pass of model/index: a coarse quantizer of nlist centroids
 * (spherical k-means over the normalised keyphrase embeddings), every key in the list of its best
 * centroid. A query scores the centroids, takes its nprobe best lists and scores only their keys,
 * exactly (fp32, the same dot products as the exact pass), so what it can miss is a key outside
 * the probed lists; with nprobe = nlist the result is the exact one. The ivf holds centroids and
 * row ids only (4 bytes per key); the key vectors stay with the caller, who stores them in list
 * order (kp_ivf_permute_rows: row p is key kp_ivf_ids()[p]), so a list is one contiguous block
 * that sgemm reads in place.
 * Immutable after kp_ivf_build; may be searched from several threads at once.
 */
#ifndef KP_IVF_H
#define KP_IVF_H

#include <stdint.h>

#include "model/quant.h"

typedef struct kp_ivf kp_ivf;

#define KP_IVF_KMEANS_ITERS    10
#define KP_IVF_SAMPLE_PER_LIST 64

/* Builds the quantizer over emb [n x dim] (normalised rows; read during the build only): nlist
 * lists (0: about sqrt(n); clamped to 1..n), k-means trained for KP_IVF_KMEANS_ITERS rounds on a
 * sample of at most KP_IVF_SAMPLE_PER_LIST * nlist rows drawn with seed, then every row assigned.
 * Deterministic for (emb, nlist, seed) given the BLAS. NULL on OOM / bad args (n <= 0, dim <= 0,
 * emb NULL, nlist < 0). */
kp_ivf *kp_ivf_build(const float *emb, int n, int dim, int nlist, uint64_t seed);
void kp_ivf_free(kp_ivf *v); /* accepts NULL */
int kp_ivf_nlist(const kp_ivf *v);
/* Keys in list l (0 if out of range); for tests and the bench's balance line. */
int kp_ivf_list_size(const kp_ivf *v, int l);

/* Row p of the list order holds key ids[p] (ascending within a list); [n], owned by v. */
const int *kp_ivf_ids(const kp_ivf *v);
/* List l is rows offsets[l] .. offsets[l + 1] of the list order; [nlist + 1], owned by v (the
 * layout kp_quant_build takes). */
const int *kp_ivf_offsets(const kp_ivf *v);
/* In place: row p of x [n x dim] becomes the old row src[p] (src a permutation of 0..n-1). With
 * src = kp_ivf_ids a key-order matrix goes to list order; with the inverse, back. 0, or -1 on
 * OOM (x unchanged). */
int kp_ivf_permute_rows(float *x, int n, int dim, const int *src);

/* kp_index_topk's contract (sorted by score desc, ties by lower id, de-dup by keys [n] if not NULL,
 * scores >= min_score, count per query, -1 / 0 padding) over the keys of each query's nprobe best
 * lists (1..nlist; larger is clamped). rows: the keys in list order (see above). One scratch
 * allocation per call. Returns 0, or -1 on OOM / bad args. */
int kp_ivf_topk(const kp_ivf *v, const float *rows, const uint64_t *keys, const float *q, int nq,
                int k, float min_score, int nprobe, int *ids, float *scores, int *counts);

/* Plain-loop reference of kp_ivf_topk (no BLAS, full sorts), same contract, for tests. */
int kp_ivf_topk_ref(const kp_ivf *v, const float *rows, const uint64_t *keys, const float *q,
                    int nq, int k, float min_score, int nprobe, int *ids, float *scores,
                    int *counts);

/* kp_ivf_topk with a reduced-precision first pass: the probed lists are scored from z (built by
 * kp_quant_build over rows with kp_ivf_offsets), each query keeps its rescore x k best (rescore >=
 * 1; no de-dup or min_score yet), and those are rescored exactly (fp32 dot over rows) into the
 * final top-k (de-dup, min_score). Where de-dup folds candidates, fewer than k may be left. Same
 * contract otherwise; -1 also for z NULL or rescore < 1. */
int kp_ivf_topk_quant(const kp_ivf *v, const kp_quant *z, const float *rows, const uint64_t *keys,
                      const float *q, int nq, int k, float min_score, int nprobe, int rescore,
                      int *ids, float *scores, int *counts);
/* Plain-loop reference of kp_ivf_topk_quant (kp_quant_scan_ref, full sorts). */
int kp_ivf_topk_quant_ref(const kp_ivf *v, const kp_quant *z, const float *rows,
                          const uint64_t *keys, const float *q, int nq, int k, float min_score,
                          int nprobe, int rescore, int *ids, float *scores, int *counts);

#endif
