/* calib.h - calibration of a ranking score into p(relevant | score), fitted on held-out judgments.
 *
 * Two methods:
 *   isotonic  pool-adjacent-violators (PAV): the non-decreasing step function minimising the
 *             weighted squared error to the 0/1 labels. Points with equal scores are merged first
 *             (so the fit is a function of the score). The fit is stored as blocks
 *             (lo, hi, value): a score inside a block gets its value, a score between two blocks
 *             is interpolated linearly between the end of one and the start of the next, a score
 *             outside every block gets the nearest block's value. Monotone non-decreasing.
 *   platt     p = sigmoid(a * score + b), fitted by Newton's method on the log-loss with Platt's
 *             smoothed targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2).
 * Which one a model uses is chosen by measurement (log-loss on a held-out fold; kprec calibrate).
 *
 * File: a model/ckpt.h container of kind "calib" (magic, format version, CRC of the container)
 * with keys calib_version (KP_CALIB_VERSION), method ("isotonic" | "platt"), input (the score it
 * calibrates: "ce" = the cross-encoder's, "be" = the bi-encoder's cosine), a, b (Platt, "%.9g"),
 * and for isotonic a tensor "blocks" [n_blocks x 3] (lo, hi, value). Extra keys (the fit's
 * measurements) are kept as text and ignored on load.
 *
 * Everything here is deterministic; a loaded kp_calib is read-only and may be shared by threads. */
#ifndef KP_CALIB_H
#define KP_CALIB_H

#include <stddef.h>

#define KP_CALIB_KIND       "calib"
#define KP_CALIB_VERSION    1u
#define KP_CALIB_MAX_BLOCKS (1 << 20)

typedef enum { KP_CALIB_ISOTONIC = 1, KP_CALIB_PLATT = 2 } kp_calib_method;

/* The score a calibration applies to. */
typedef enum { KP_CALIB_INPUT_BE = 1, KP_CALIB_INPUT_CE = 2 } kp_calib_input;

typedef struct kp_calib kp_calib;

/* ---- PAV (exposed for tests) ----------------------------------------------------------------- */

/* Isotonic regression of y on x with weights w (NULL = all 1; each w > 0): writes the fitted
 * value of every input point to fit[n] (in input order). Fast path: sort + one stack pass,
 * O(n log n). Returns the number of blocks, or -1 on bad arguments / NaN / OOM. */
int kp_calib_pav(const float *x, const float *y, const float *w, int n, double *fit);
/* Plain reference: merge the first violating adjacent pair of blocks until none is left (O(n^2)),
 * same contract. */
int kp_calib_pav_ref(const float *x, const float *y, const float *w, int n, double *fit);

/* ---- fit, apply ------------------------------------------------------------------------------ */

/* Fits on n (score, label) points (label 0/1, or a probability in [0, 1]). NULL on bad arguments
 * (n < 1, NaN) or OOM. */
kp_calib *kp_calib_fit_isotonic(const float *score, const float *label, int n,
                                kp_calib_input input);
kp_calib *kp_calib_fit_platt(const float *score, const float *label, int n, kp_calib_input input);
/* A Platt calibration with given parameters (tests, identity-like maps). NULL on OOM. */
kp_calib *kp_calib_new_platt(double a, double b, kp_calib_input input);
void kp_calib_free(kp_calib *c); /* accepts NULL */

kp_calib_method kp_calib_get_method(const kp_calib *c);
kp_calib_input kp_calib_get_input(const kp_calib *c);
const char *kp_calib_method_name(kp_calib_method m); /* "isotonic" | "platt" */
const char *kp_calib_input_name(kp_calib_input in);  /* "be" | "ce" */
/* Platt parameters (0, 0 for isotonic); number of isotonic blocks (0 for Platt). */
void kp_calib_platt_params(const kp_calib *c, double *a, double *b);
int kp_calib_n_blocks(const kp_calib *c);

/* p(relevant | score) in [0, 1]; NaN gives NaN. */
float kp_calib_apply(const kp_calib *c, float score);
/* out[i] = kp_calib_apply(c, score[i]) (out may alias score). */
void kp_calib_apply_n(const kp_calib *c, const float *score, int n, float *out);

/* Mean log-loss (probabilities clipped to [1e-6, 1 - 1e-6]) and Brier score of probabilities p
 * against labels y. NAN for n < 1. */
double kp_calib_logloss(const float *p, const float *y, int n);
double kp_calib_brier(const float *p, const float *y, int n);

/* ---- file ------------------------------------------------------------------------------------ */

/* Saves c; extra_keys/extra_vals (n_extra pairs, may be 0) are stored as text records.
 * 0, or -1 with a message in err. */
int kp_calib_save(const kp_calib *c, const char *path, const char *const *extra_keys,
                  const char *const *extra_vals, int n_extra, char *err, size_t errlen);
/* Loads and validates a calibration (kind, version, method, input, finite parameters, monotone
 * blocks). NULL with a message in err. */
kp_calib *kp_calib_load(const char *path, char *err, size_t errlen);

#endif
