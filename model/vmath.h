/* vmath.h -- elementwise tanh and exp over float arrays. Each has a plain scalar loop and, on
 * x86-64, AVX2 and AVX-512 forms of the same operations in the same order (no fused multiply-add:
 * kpmodel builds with -ffp-contract=off), so every form gives the same bits: results do not
 * depend on the CPU a model trains or serves on. The fast entry points take the widest form the
 * CPU has. In-place (out == inp) is allowed everywhere. */
#ifndef KP_VMATH_H
#define KP_VMATH_H

#include <stddef.h>

/* ---- tanh ------------------------------------------------------------------------------------
 * out[i] = tanh(inp[i]) for N elements. */
void kp_tanh_forward(float *out, const float *inp, size_t N);
/* The plain loop kp_tanh_forward is tested against (bit for bit: the fast path is its AVX-512
 * form where the CPU has it, else its AVX2 form where the CPU has that); within 2 ulp of tanh. */
void kp_tanh_forward_ref(float *out, const float *inp, size_t N);
/* The AVX2 form alone (the plain loop without AVX2), for tests on CPUs that take AVX-512. */
void kp_tanh_forward_avx2(float *out, const float *inp, size_t N);

/* ---- exp -------------------------------------------------------------------------------------
 * out[i] = e^inp[i] for N elements: within 2 ulp of exp (test_exp_accuracy), 0 below -104 (where
 * e^x rounds to 0 in float), +inf above 89 (past FLT_MAX), NaN for NaN; subnormal results are
 * rounded once from an exact product. The in-batch softmax's exponentials (model/loss.c). */
void kp_exp_forward(float *out, const float *inp, size_t N);
/* The plain loop kp_exp_forward is tested against, bit for bit. */
void kp_exp_forward_ref(float *out, const float *inp, size_t N);
/* The AVX2 form alone (the plain loop without AVX2), for tests on CPUs that take AVX-512. */
void kp_exp_forward_avx2(float *out, const float *inp, size_t N);

/* ---- sum of squares --------------------------------------------------------------------------
 * The sum of x[i]^2 in double: 8 interleaved partial sums (x[i] into sum i mod 8) joined
 * pairwise, a fixed order the AVX2 form keeps (4 doubles a vector), so the same bits on every
 * CPU. The gradient norm of the clip (model/bienc.c). */
double kp_sumsq(const float *x, size_t n);
/* The plain sequential sum kp_sumsq is tested against (to rounding: the order differs). */
double kp_sumsq_ref(const float *x, size_t n);

#endif
