/* ivf.c - spherical k-means coarse quantizer and list-major IVF search (see ivf.h). */
#include "model/ivf.h"

#include <cblas.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/quant.h"
#include "model/rng.h"
#include "model/topk.h"

struct kp_ivf {
    int n, dim, nlist, maxlen;
    float *cent; /* [nlist x dim], unit rows (a dead centroid is zero) */
    int *off;    /* [nlist + 1]: list l is ids[off[l] .. off[l+1]) */
    int *ids;    /* [n] row ids, ascending within a list */
};

#define ASSIGN_CHUNK 2048

void kp_ivf_free(kp_ivf *v)
{
    if (!v) return;
    KP_FREE_ALL(v->cent, v->off, v->ids, v);
}

int kp_ivf_nlist(const kp_ivf *v)
{
    return v ? v->nlist : 0;
}

const int *kp_ivf_ids(const kp_ivf *v)
{
    return v ? v->ids : NULL;
}

const int *kp_ivf_offsets(const kp_ivf *v)
{
    return v ? v->off : NULL;
}

int kp_ivf_permute_rows(float *x, int n, int dim, const int *src)
{
    unsigned char *done = calloc((size_t)n + 1, 1);
    float *tmp = malloc(sizeof(float) * (size_t)dim);
    if (!done || !tmp) {
        KP_FREE_ALL(done, tmp);
        return -1;
    }
    size_t rb = sizeof(float) * (size_t)dim;
    for (int p = 0; p < n; p++) { /* follow the cycle of p: row j takes row src[j] */
        if (done[p]) continue;
        memcpy(tmp, x + (size_t)p * dim, rb);
        int j = p;
        while (src[j] != p) {
            memcpy(x + (size_t)j * dim, x + (size_t)src[j] * dim, rb);
            done[j] = 1;
            j = src[j];
        }
        memcpy(x + (size_t)j * dim, tmp, rb);
        done[j] = 1;
    }
    KP_FREE_ALL(done, tmp);
    return 0;
}

int kp_ivf_list_size(const kp_ivf *v, int l)
{
    return v && l >= 0 && l < v->nlist ? v->off[l + 1] - v->off[l] : 0;
}

/* The first index of the largest of r[0..n) (NaN never wins; 0 if all are NaN). The maximum is
 * a 4-lane SIMD reduction, then one pass finds its first position: no dependent compare chain. */
static int argmax(const float *r, int n)
{
    int c = 0;
#ifdef __SSE2__
    __m128 m4 = _mm_set1_ps(-INFINITY);
    for (; c + 4 <= n; c += 4)
        m4 = _mm_max_ps(_mm_loadu_ps(r + c), m4); /* a NaN in r loses (second operand wins) */
    float l[4], mx;
    _mm_storeu_ps(l, m4);
    mx = l[0] > l[1] ? l[0] : l[1];
    mx = mx > l[2] ? mx : l[2];
    mx = mx > l[3] ? mx : l[3];
#else
    float mx = -INFINITY;
#endif
    for (; c < n; c++)
        mx = r[c] > mx ? r[c] : mx;
    for (int i = 0; i < n; i++)
        if (r[i] == mx) return i;
    return 0;
}

/* best[i] = argmax_c <x_i, cent_c> (lowest c on ties) for the m rows x [m x dim]; S is scratch
 * [ASSIGN_CHUNK x nlist]. */
static void assign(const kp_ivf *v, const float *x, int m, int *best, float *S)
{
    for (int i0 = 0; i0 < m; i0 += ASSIGN_CHUNK) {
        int nb = m - i0 < ASSIGN_CHUNK ? m - i0 : ASSIGN_CHUNK;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, v->nlist, v->dim, 1.0f,
                    x + (size_t)i0 * v->dim, v->dim, v->cent, v->dim, 0.0f, S, v->nlist);
        for (int i = 0; i < nb; i++) {
            best[i0 + i] = argmax(S + (size_t)i * v->nlist, v->nlist);
        }
    }
}

/* Centroid c = the normalised mean of its rows; an empty one takes a random sample row. */
static void update(kp_ivf *v, const float *x, int m, const int *best, int *cnt, kp_rng *rng)
{
    int d = v->dim;
    memset(v->cent, 0, sizeof(float) * (size_t)v->nlist * d);
    memset(cnt, 0, sizeof(int) * (size_t)v->nlist);
    for (int i = 0; i < m; i++) {
        float *c = v->cent + (size_t)best[i] * d;
        const float *r = x + (size_t)i * d;
        for (int j = 0; j < d; j++)
            c[j] += r[j];
        cnt[best[i]]++;
    }
    for (int l = 0; l < v->nlist; l++) {
        float *c = v->cent + (size_t)l * d;
        if (!cnt[l]) memcpy(c, x + (size_t)kp_rng_below(rng, (uint64_t)m) * d, sizeof(float) * d);
        double s = 0;
        for (int j = 0; j < d; j++)
            s += (double)c[j] * c[j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0.0f;
        for (int j = 0; j < d; j++)
            c[j] *= inv;
    }
}

kp_ivf *kp_ivf_build(const float *emb, int n, int dim, int nlist, uint64_t seed)
{
    if (!emb || n <= 0 || dim <= 0 || nlist < 0) return NULL;
    if (nlist == 0) nlist = (int)lround(sqrt((double)n));
    if (nlist < 1) nlist = 1;
    if (nlist > n) nlist = n;
    kp_ivf *v = calloc(1, sizeof(*v));
    int *perm = NULL, *best = NULL, *cnt = NULL;
    float *sample = NULL, *S = NULL;
    if (!v) return NULL;
    v->n = n, v->dim = dim, v->nlist = nlist;
    int64_t want = (int64_t)KP_IVF_SAMPLE_PER_LIST * nlist;
    int ns = want < n ? (int)want : n;
    v->cent = malloc(sizeof(float) * (size_t)nlist * dim);
    v->off = calloc((size_t)nlist + 1, sizeof(int));
    v->ids = malloc(sizeof(int) * (size_t)n);
    perm = malloc(sizeof(int) * (size_t)n);
    best = malloc(sizeof(int) * (size_t)n);
    cnt = malloc(sizeof(int) * (size_t)nlist);
    sample = malloc(sizeof(float) * (size_t)ns * dim);
    S = malloc(sizeof(float) * (size_t)ASSIGN_CHUNK * nlist);
    if (!v->cent || !v->off || !v->ids || !perm || !best || !cnt || !sample || !S) goto err;
    /* the sample: the first ns of a seeded partial Fisher-Yates shuffle, kept in row order */
    kp_rng rng;
    kp_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++)
        perm[i] = i;
    for (int i = 0; i < ns; i++) {
        int j = i + (int)kp_rng_below(&rng, (uint64_t)(n - i));
        int t = perm[i];
        perm[i] = perm[j], perm[j] = t;
    }
    for (int i = 0; i < ns; i++)
        memcpy(sample + (size_t)i * dim, emb + (size_t)perm[i] * dim, sizeof(float) * dim);
    /* init: the first nlist sample rows (a random subset), normalised */
    for (int l = 0; l < nlist; l++)
        best[l] = l;
    update(v, sample, nlist, best, cnt, &rng);
    for (int it = 0; it < KP_IVF_KMEANS_ITERS; it++) {
        assign(v, sample, ns, best, S);
        update(v, sample, ns, best, cnt, &rng);
    }
    /* every row into the list of its best centroid, ascending ids (counting sort) */
    assign(v, emb, n, best, S);
    for (int i = 0; i < n; i++)
        v->off[best[i] + 1]++;
    for (int l = 0; l < nlist; l++) {
        int len = v->off[l + 1];
        if (len > v->maxlen) v->maxlen = len;
        v->off[l + 1] += v->off[l];
    }
    memcpy(cnt, v->off, sizeof(int) * (size_t)nlist);
    for (int i = 0; i < n; i++)
        v->ids[cnt[best[i]]++] = i;
    KP_FREE_ALL(perm, best, cnt, sample, S);
    return v;
err:
    KP_FREE_ALL(perm, best, cnt, sample, S);
    kp_ivf_free(v);
    return NULL;
}

static int check_args(const kp_ivf *v, const float *emb, const float *q, int nq, int k, int nprobe,
                      const int *ids, const float *scores, const int *counts)
{
    if (!v || !emb || nq < 0 || k <= 0 || nprobe <= 0) return -1;
    if (nq > 0 && (!q || !ids || !scores || !counts)) return -1;
    return 0;
}

/* ---- fast path: one coarse sgemm per query tile, then list by list: the tile's queries that
 * probe the list (gathered) against the list's rows in place (one sgemm), each score row into its
 * query's selector. A list is read once per tile whatever the number of its queries. ---- */

#define IVF_QUERY_TILE 256

/* The coarse step of one query tile Q [nb x d]: C [nb x L] centroid scores (one sgemm), each
 * query's np best lists (probe [nb x np], -1 padded; a NaN query probes none), and the inverse:
 * the queries of list l are qlist[start[l] .. start[l + 1]), ascending. cnt: scratch [L + 1]. */
static void probe_tile(const kp_ivf *v, const float *Q, int nb, int np, float *C, void *pmem,
                       const kp_topk_cfg *cp, int *probe, int *cnt, int *start, int *qlist)
{
    int d = v->dim, L = v->nlist;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nb, L, d, 1.0f, Q, d, v->cent, d, 0.0f, C,
                L);
    memset(cnt, 0, sizeof(int) * ((size_t)L + 1));
    for (int b = 0; b < nb; b++) {
        kp_topk ps;
        kp_topk_init(&ps, cp, pmem, -INFINITY);
        kp_topk_scan(&ps, cp, C + (size_t)b * L, L, 0);
        kp_topk_reduce(&ps, cp);
        int *pr = probe + (size_t)b * np;
        for (int j = 0; j < np; j++) {
            pr[j] = j < ps.m ? ps.buf[j].id : -1;
            if (pr[j] >= 0) cnt[pr[j]]++;
        }
    }
    start[0] = 0;
    for (int l = 0; l < L; l++)
        start[l + 1] = start[l] + cnt[l];
    memcpy(cnt, start, sizeof(int) * (size_t)L);
    for (int b = 0; b < nb; b++)
        for (int j = 0; j < np; j++) {
            int l = probe[(size_t)b * np + j];
            if (l >= 0) qlist[cnt[l]++] = b;
        }
}

int kp_ivf_topk(const kp_ivf *v, const float *rows, const uint64_t *keys, const float *q, int nq,
                int k, float min_score, int nprobe, int *ids, float *scores, int *counts)
{
    if (check_args(v, rows, q, nq, k, nprobe, ids, scores, counts) != 0) return -1;
    if (nq == 0) return 0;
    int d = v->dim, L = v->nlist, np = nprobe < L ? nprobe : L;
    int kk = k < v->n ? k : v->n, qt = nq < IVF_QUERY_TILE ? nq : IVF_QUERY_TILE;
    kp_topk_cfg cs = kp_topk_config(kk, 0, keys), cp = kp_topk_config(np, 0, NULL);
    size_t bs = kp_topk_bytes(&cs), bp = kp_topk_bytes(&cp);
    size_t f_coarse = (size_t)qt * L, f_qg = (size_t)qt * d;
    size_t f_s = (size_t)qt * v->maxlen;
    size_t bytes = (size_t)qt * bs + bp + (size_t)qt * sizeof(kp_topk) +
                   (f_coarse + f_qg + f_s + 1) * sizeof(float) +
                   ((size_t)qt * np + 2 * (size_t)L + 2 + (size_t)qt * np) * sizeof(int);
    char *mem = malloc(bytes);
    if (!mem) return -1;
    char *smem = mem, *pmem = smem + (size_t)qt * bs;
    kp_topk *sel = (kp_topk *)(pmem + bp);
    float *C = (float *)(sel + qt), *Qg = C + f_coarse, *S = Qg + f_qg;
    int *probe = (int *)(S + f_s + 1), *cnt = probe + (size_t)qt * np, *start = cnt + L + 1;
    int *qlist = start + L + 1;
    for (int q0 = 0; q0 < nq; q0 += qt) {
        int nb = nq - q0 < qt ? nq - q0 : qt;
        const float *Q = q + (size_t)q0 * d;
        probe_tile(v, Q, nb, np, C, pmem, &cp, probe, cnt, start, qlist);
        for (int b = 0; b < nb; b++)
            kp_topk_init(&sel[b], &cs, smem + (size_t)b * bs, min_score);
        for (int l = 0; l < L; l++) {
            int m = start[l + 1] - start[l], len = v->off[l + 1] - v->off[l];
            if (m == 0 || len == 0) continue;
            const int *lid = v->ids + v->off[l], *lq = qlist + start[l];
            const float *R = rows + (size_t)v->off[l] * d;
            for (int j = 0; j < m; j++)
                memcpy(Qg + (size_t)j * d, Q + (size_t)lq[j] * d, sizeof(float) * d);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, len, d, 1.0f, Qg, d, R, d, 0.0f,
                        S, len);
            for (int j = 0; j < m; j++)
                kp_topk_scan_ids(&sel[lq[j]], &cs, S + (size_t)j * len, len, lid);
        }
        for (int b = 0; b < nb; b++) {
            size_t o = (size_t)(q0 + b) * k;
            kp_topk_finish(&sel[b], &cs, k, ids + o, scores + o, counts + q0 + b);
        }
    }
    free(mem);
    return 0;
}

/* fp32 dot with 8 partial sums (the rescoring of a few hundred candidates per query). */
static float dot8(const float *a, const float *b, int n)
{
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    for (; i < n; i++)
        s[0] += a[i] * b[i];
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* The candidate count of the quantized pass: rescore x kk, at most n. */
static int cand_count(const kp_ivf *v, int kk, int rescore)
{
    int64_t c = (int64_t)(rescore > 1 ? rescore : 1) * kk;
    return c < v->n ? (int)c : v->n;
}

/* ---- quantized first pass: as kp_ivf_topk, but each list is scored from z (reduced precision,
 * the tile's queries of the list gathered, one kernel call), into selectors of cand positions (no
 * de-dup, no min_score); then each query's cand are rescored exactly from the fp32 rows and the
 * final selector applies de-dup and min_score. ---- */

int kp_ivf_topk_quant(const kp_ivf *v, const kp_quant *z, const float *rows, const uint64_t *keys,
                      const float *q, int nq, int k, float min_score, int nprobe, int rescore,
                      int *ids, float *scores, int *counts)
{
    if (check_args(v, rows, q, nq, k, nprobe, ids, scores, counts) != 0 || !z || rescore < 1)
        return -1;
    if (nq == 0) return 0;
    int d = v->dim, L = v->nlist, np = nprobe < L ? nprobe : L;
    int kk = k < v->n ? k : v->n, qt = nq < IVF_QUERY_TILE ? nq : IVF_QUERY_TILE;
    int cand = cand_count(v, kk, rescore);
    kp_topk_cfg c1 = kp_topk_config(cand, 0, NULL), cp = kp_topk_config(np, 0, NULL);
    kp_topk_cfg c2 = kp_topk_config(kk, cand + 1, keys);
    size_t b1 = kp_topk_bytes(&c1), bp = kp_topk_bytes(&cp), b2 = kp_topk_bytes(&c2);
    size_t qb = kp_quant_qbytes(z), qbp = (qb + 63) / 64 * 64;
    size_t bytes =
        (size_t)qt * b1 + bp + b2 + (size_t)qt * sizeof(kp_topk) +
        ((size_t)qt * L + (size_t)qt * v->maxlen + 3 * (size_t)cand + 1) * sizeof(float) +
        ((size_t)qt * np * 2 + 2 * (size_t)L + 2 + 2 * (size_t)cand) * sizeof(int) +
        2 * (size_t)qt * qbp + 64;
    char *mem = malloc(bytes);
    if (!mem) return -1;
    char *smem = mem, *pmem = smem + (size_t)qt * b1, *fmem = pmem + bp;
    kp_topk *sel = (kp_topk *)(fmem + b2);
    float *C = (float *)(sel + qt), *S = C + (size_t)qt * L, *cs = S + (size_t)qt * v->maxlen;
    float *ex = cs + cand;
    int *probe = (int *)(ex + 2 * (size_t)cand + 1), *cnt = probe + (size_t)qt * np;
    int *start = cnt + L + 1, *qlist = start + L + 1, *cpos = qlist + (size_t)qt * np;
    int *cid = cpos + cand;
    uintptr_t a = (uintptr_t)(cid + cand);
    unsigned char *qp = (unsigned char *)((a + 63) / 64 * 64), *qg = qp + (size_t)qt * qbp;
    for (int q0 = 0; q0 < nq; q0 += qt) {
        int nb = nq - q0 < qt ? nq - q0 : qt;
        const float *Q = q + (size_t)q0 * d;
        probe_tile(v, Q, nb, np, C, pmem, &cp, probe, cnt, start, qlist);
        for (int b = 0; b < nb; b++) {
            kp_quant_prep(z, Q + (size_t)b * d, qp + (size_t)b * qbp);
            kp_topk_init(&sel[b], &c1, smem + (size_t)b * b1, -INFINITY);
        }
        for (int l = 0; l < L; l++) {
            int m = start[l + 1] - start[l], len = v->off[l + 1] - v->off[l];
            if (m == 0 || len == 0) continue;
            const int *lq = qlist + start[l];
            for (int j = 0; j < m; j++)
                memcpy(qg + (size_t)j * qb, qp + (size_t)lq[j] * qbp, qb);
            kp_quant_scan(z, l, qg, m, S, len);
            for (int j = 0; j < m; j++)
                kp_topk_scan(&sel[lq[j]], &c1, S + (size_t)j * len, len, v->off[l]);
        }
        for (int b = 0; b < nb; b++) {
            int nc = 0;
            kp_topk_finish(&sel[b], &c1, cand, cpos, cs, &nc);
            for (int i = 0; i < nc; i++) {
                ex[i] = dot8(Q + (size_t)b * d, rows + (size_t)cpos[i] * d, d);
                cid[i] = v->ids[cpos[i]];
            }
            kp_topk fin;
            kp_topk_init(&fin, &c2, fmem, min_score);
            kp_topk_scan_ids(&fin, &c2, ex, nc, cid);
            size_t o = (size_t)(q0 + b) * k;
            kp_topk_finish(&fin, &c2, k, ids + o, scores + o, counts + q0 + b);
        }
    }
    free(mem);
    return 0;
}

/* ---- reference ------------------------------------------------------------------------------- */

static float dot_plain(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

int kp_ivf_topk_ref(const kp_ivf *v, const float *rows, const uint64_t *keys, const float *q,
                    int nq, int k, float min_score, int nprobe, int *ids, float *scores,
                    int *counts)
{
    if (check_args(v, rows, q, nq, k, nprobe, ids, scores, counts) != 0) return -1;
    int d = v->dim, L = v->nlist, np = nprobe < L ? nprobe : L;
    kp_hit *lists = malloc(sizeof(kp_hit) * (size_t)L), *all = malloc(sizeof(kp_hit) * v->n);
    kp_hit *out = malloc(sizeof(kp_hit) * ((size_t)k + 1));
    if (!lists || !all || !out) {
        KP_FREE_ALL(lists, all, out);
        return -1;
    }
    for (int b = 0; b < nq; b++) {
        const float *qv = q + (size_t)b * d;
        int nl = 0, m = 0, got = 0;
        for (int l = 0; l < L; l++) {
            float s = dot_plain(qv, v->cent + (size_t)l * d, d);
            if (s == s) lists[nl].s = s, lists[nl].id = l, nl++;
        }
        qsort(lists, (size_t)nl, sizeof(kp_hit), kp_hit_cmp_desc);
        for (int j = 0; j < nl && j < np; j++) {
            int l = lists[j].id;
            for (int i = v->off[l]; i < v->off[l + 1]; i++) {
                float s = dot_plain(qv, rows + (size_t)i * d, d);
                if (s == s) all[m].s = s, all[m].id = v->ids[i], m++;
            }
        }
        qsort(all, (size_t)m, sizeof(kp_hit), kp_hit_cmp_desc);
        for (int i = 0; i < m && got < k; i++) {
            if (!(all[i].s >= min_score)) continue;
            int dup = 0;
            for (int j = 0; keys && j < got && !dup; j++)
                dup = keys[out[j].id] == keys[all[i].id];
            if (!dup) out[got++] = all[i];
        }
        kp_topk_write(out, got, k, ids + (size_t)b * k, scores + (size_t)b * k, counts + b);
    }
    KP_FREE_ALL(lists, all, out);
    return 0;
}

int kp_ivf_topk_quant_ref(const kp_ivf *v, const kp_quant *z, const float *rows,
                          const uint64_t *keys, const float *q, int nq, int k, float min_score,
                          int nprobe, int rescore, int *ids, float *scores, int *counts)
{
    if (check_args(v, rows, q, nq, k, nprobe, ids, scores, counts) != 0 || !z || rescore < 1)
        return -1;
    int d = v->dim, L = v->nlist, np = nprobe < L ? nprobe : L;
    int kk = k < v->n ? k : v->n, cand = cand_count(v, kk, rescore);
    kp_hit *lists = malloc(sizeof(kp_hit) * (size_t)L), *all = malloc(sizeof(kp_hit) * v->n);
    kp_hit *out = malloc(sizeof(kp_hit) * ((size_t)k + 1));
    float *s = malloc(sizeof(float) * ((size_t)v->maxlen + 1));
    void *qp = malloc(kp_quant_qbytes(z));
    if (!lists || !all || !out || !s || !qp) {
        KP_FREE_ALL(lists, all, out, s, qp);
        return -1;
    }
    for (int b = 0; b < nq; b++) {
        const float *qv = q + (size_t)b * d;
        int nl = 0, m = 0, got = 0;
        for (int l = 0; l < L; l++) {
            float c = dot_plain(qv, v->cent + (size_t)l * d, d);
            if (c == c) lists[nl].s = c, lists[nl].id = l, nl++;
        }
        qsort(lists, (size_t)nl, sizeof(kp_hit), kp_hit_cmp_desc);
        kp_quant_prep(z, qv, qp);
        for (int j = 0; j < nl && j < np; j++) {
            int l = lists[j].id, len = v->off[l + 1] - v->off[l];
            kp_quant_scan_ref(z, l, qp, 1, s, len);
            for (int i = 0; i < len; i++)
                if (s[i] == s[i]) all[m].s = s[i], all[m].id = v->off[l] + i, m++;
        }
        qsort(all, (size_t)m, sizeof(kp_hit), kp_hit_cmp_desc);
        m = m < cand ? m : cand;
        for (int i = 0; i < m; i++) { /* rescored exactly, now by key id */
            int p = all[i].id;
            all[i].s = dot_plain(qv, rows + (size_t)p * d, d), all[i].id = v->ids[p];
        }
        qsort(all, (size_t)m, sizeof(kp_hit), kp_hit_cmp_desc);
        for (int i = 0; i < m && got < k; i++) {
            if (!(all[i].s >= min_score)) continue;
            int dup = 0;
            for (int j = 0; keys && j < got && !dup; j++)
                dup = keys[out[j].id] == keys[all[i].id];
            if (!dup) out[got++] = all[i];
        }
        kp_topk_write(out, got, k, ids + (size_t)b * k, scores + (size_t)b * k, counts + b);
    }
    KP_FREE_ALL(lists, all, out, s, qp);
    return 0;
}
