/* quant.h - a reduced-precision, list-ordered copy of the IVF rows for a fast first pass
 * (model/ivf.h kp_ivf_topk_quant): int8 (per-row scale) or bf16, 4x or 2x fewer bytes per key than
 * the fp32 rows, so a scan that touches most lists reads 128 or 256 MB instead of 512 MB at 1M x
 * 128. Scores are approximate; the caller rescores the best candidates from the fp32 rows.
 *
 * Layout: each list's rows in blocks of 16 (the last one zero-padded), a block stored interleaved
 * by groups of 4 dims (int8) or 2 dims (bf16): one 64-byte vector holds one group of 16 rows, so a
 * query's group broadcast against it gives 16 row partial sums at once (AVX-512 VNNI vpdpbusd /
 * BF16 vdpbf16ps) without horizontal reductions. int8: row r ~ scale_r * i8[r] (-127..127); a
 * query q ~ scale_q * (u8[q] - 64) (7-bit codes, so AVX2's saturating vpmaddubsw is exact), and
 * dot = scale_q * scale_r * (sum u8*i8 - 64 * sum i8[r]).
 * The kernel is chosen once at build time from the CPU (__builtin_cpu_supports): int8 AVX-512 VNNI,
 * else AVX2, else plain; bf16 AVX-512 BF16, else plain. Every kernel has a plain-C twin
 * (kp_quant_scan_ref) giving bit-identical int8 scores and bf16 scores within fp32 rounding.
 * Immutable after kp_quant_build; may be scanned from several threads at once.
 */
#ifndef KP_QUANT_H
#define KP_QUANT_H

#include <stddef.h>

typedef enum { KP_QUANT_FP32 = 0, KP_QUANT_INT8 = 1, KP_QUANT_BF16 = 2 } kp_quant_kind;

typedef struct kp_quant kp_quant;

#define KP_QUANT_BLOCK 16 /* rows per interleaved block */

/* "fp32" / "int8" / "bf16" -> kind; -1 for anything else (NULL included). */
int kp_quant_parse(const char *s);
const char *kp_quant_name(int kind); /* "fp32", "int8", "bf16" or "?" */

/* Builds the copy of rows [n x dim] (list order: list l is rows off[l] .. off[l+1], off [nlist +
 * 1] ascending from 0 to n) in kind (INT8 or BF16). simd 0 forces the plain kernel (tests and
 * measurements), 1 picks the fastest this CPU runs, 2 the same but never AVX-512 VNNI (int8: the
 * AVX2 kernel where the CPU has AVX2; tests). NULL on OOM / bad args. */
kp_quant *kp_quant_build(const float *rows, int n, int dim, const int *off, int nlist, int kind,
                         int simd);
void kp_quant_free(kp_quant *z); /* accepts NULL */
int kp_quant_kind_of(const kp_quant *z);
/* Bytes held (blocks, scales, offsets): what the copy adds to the index. */
size_t kp_quant_bytes(const kp_quant *z);
/* Name of the kernel kp_quant_scan uses: "avx512vnni", "avx2", "avx512bf16" or "plain". */
const char *kp_quant_kernel(const kp_quant *z);

/* Bytes of one prepared query (kp_quant_prep). */
size_t kp_quant_qbytes(const kp_quant *z);
/* Prepares query q [dim] into out [kp_quant_qbytes] (int8: its scale and u8 codes; bf16: the
 * rounded values). A non-finite q gives scores that are NaN or meaningless: the caller skips it. */
void kp_quant_prep(const kp_quant *z, const float *q, void *out);

/* Approximate scores of m prepared queries qp [m x kp_quant_qbytes] against the rows of list l:
 * S[j * ld + i] for row i (0 .. list size) and query j. ld >= the list size. */
void kp_quant_scan(const kp_quant *z, int l, const void *qp, int m, float *S, int ld);
/* The plain-C kernel, same contract. */
void kp_quant_scan_ref(const kp_quant *z, int l, const void *qp, int m, float *S, int ld);

#endif
