/* blas.h -- the BLAS thread pool. OpenBLAS spins its threads between calls; in the worker the
 * GEMMs are small and the cores are shared with Kafka and Redis, so serving uses one thread. */
#ifndef KP_BLAS_H
#define KP_BLAS_H

/* Sets the number of BLAS threads (n >= 1); n <= 0 leaves OpenBLAS's default. */
void kp_blas_set_threads(int n);

/* The number of BLAS threads in use. */
int kp_blas_threads(void);

#endif
