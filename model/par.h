/* par.h -- the model's own two-way fan-out: a call that has enough independent work (the
 * featurizing and embedding-bag gathers of a batch, the queries of a top-k pass) splits it in two,
 * one half on a thread made for the call and one on the caller, when the width is 2. Separate from
 * the BLAS threads (model/blas.h): the halves run no multi-threaded BLAS at once. Width 1 (the
 * default) splits nothing, so results never depend on it: each half computes exactly what the
 * whole would have for its rows.
 */
#ifndef KP_PAR_H
#define KP_PAR_H

/* Sets the width: 1 or 2 (n >= 2 is taken as 2, n <= 0 leaves it). Process-wide, atomic. */
void kp_par_set_threads(int n);

/* The width in use (1 or 2). */
int kp_par_threads(void);

/* Runs fn(a) on the caller and fn(b) on a thread of its own, and returns when both are done; if
 * the thread cannot be made, fn(b) runs on the caller after fn(a). fn must not fail silently: a
 * half reports its errors through its argument. */
void kp_par_run2(void (*fn)(void *), void *a, void *b);

#endif
