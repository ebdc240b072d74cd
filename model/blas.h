/* blas.h -- the BLAS thread pool. OpenBLAS spins its threads between calls; in the worker the
 * GEMMs are small and the cores are shared with Kafka and Redis, so serving uses one thread. */
#ifndef KP_BLAS_H
#define KP_BLAS_H

/* Sets the number of BLAS threads (n >= 1); n <= 0 leaves OpenBLAS's default. */
void kp_blas_set_threads(int n);

/* The number of BLAS threads in use. */
int kp_blas_threads(void);

/* The model's own two-way split, separate from the BLAS threads: with width 2, a call with enough
 * independent rows runs them in two halves on two threads (kp_parallel_for): an embedding batch's
 * chunks (featurizing, bags, dense layers), the queries of kp_index_topk when BLAS is
 * single-threaded, and the pieces of a training step (model/train_step.h). The embeddings and the
 * trained parameters are the same bit for bit at either width (test_embed_fanout,
 * test_step_split_is_bit_identical): their GEMMs run over the same chunks or parts at width 1 too
 * (kp_parallel_parts), since a BLAS may compute an element differently by its row's place in a
 * call (OpenBLAS 0.3.21's Zen kernels do, in the last bits; its SkylakeX ones do not). The top-k
 * halves tile their queries differently: the same ids, scores to a few ulp (test_fanout). n: 1 or
 * 2 (n >= 2 is 2; n <= 0 leaves it); process-wide, atomic; default 1. */
void kp_par_set_threads(int n);

/* The width in use (1 or 2). */
int kp_par_threads(void);

#endif
