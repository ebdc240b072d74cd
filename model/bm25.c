/* bm25: Okapi BM25 lexical baseline. See bm25.h. */
#include "model/bm25.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct kp_bm25 {
    int n_docs, n_terms;
    double k1, b, avgdl;
    int *doc_len;  /* [n_docs] tokens per document */
    double *idf;   /* [n_terms] */
    int *post_off; /* [n_terms + 1] postings of term t: post_off[t] .. post_off[t+1] */
    int *post_doc; /* [n_post] increasing within a term */
    int *post_tf;  /* [n_post] term frequency in that document */
    /* vocabulary: term strings (lowercased, NUL-separated) + open-addressing map */
    char *term_buf;
    size_t term_len, term_cap;
    size_t *term_at; /* [term_at_cap] offset of term t in term_buf */
    int term_at_cap;
    int *slot; /* [cap] term id or -1 */
    int cap;   /* power of two */
};

/* ------------------------------------------------------------------------------------------ */
/* tokenizer                                                                                  */

static int is_tok_byte(unsigned char c)
{
    return c >= 0x80 || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static unsigned char lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

/* Finds the next token at or after *p: sets *start and *len, advances *p past it; 0 at the end. */
static int next_token(const char **p, const char **start, size_t *len)
{
    const unsigned char *s = (const unsigned char *)*p;
    while (*s && !is_tok_byte(*s))
        s++;
    if (!*s) {
        *p = (const char *)s;
        return 0;
    }
    const unsigned char *e = s;
    while (*e && is_tok_byte(*e))
        e++;
    *start = (const char *)s;
    *len = (size_t)(e - s);
    *p = (const char *)e;
    return 1;
}

static uint64_t hash_lower(const char *s, size_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= lower((unsigned char)s[i]);
        h *= 1099511628211ULL;
    }
    return h;
}

/* 1 if the stored (lowercase) term equals the span s[0 .. len) lowercased */
static int term_eq(const char *term, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)term[i] != lower((unsigned char)s[i])) return 0;
    return term[len] == '\0';
}

int kp_bm25_tokenize(const char *text, char *out, size_t outlen)
{
    if (!text || !out || outlen == 0) return -1;
    const char *p = text, *s;
    size_t len, w = 0;
    int n = 0;
    while (next_token(&p, &s, &len)) {
        if (n > 0 && w + 1 < outlen) out[w++] = ' ';
        for (size_t i = 0; i < len && w + 1 < outlen; i++)
            out[w++] = (char)lower((unsigned char)s[i]);
        n++;
    }
    out[w] = '\0';
    return n;
}

/* ------------------------------------------------------------------------------------------ */
/* vocabulary                                                                                 */

static int vocab_find(const kp_bm25 *m, const char *s, size_t len)
{
    size_t mask = (size_t)m->cap - 1;
    for (size_t i = (size_t)hash_lower(s, len) & mask; m->slot[i] >= 0; i = (i + 1) & mask)
        if (term_eq(m->term_buf + m->term_at[m->slot[i]], s, len)) return m->slot[i];
    return -1;
}

static void slot_put(kp_bm25 *m, int t)
{
    const char *term = m->term_buf + m->term_at[t];
    size_t mask = (size_t)m->cap - 1;
    size_t i = (size_t)hash_lower(term, strlen(term)) & mask;
    while (m->slot[i] >= 0)
        i = (i + 1) & mask;
    m->slot[i] = t;
}

/* Term id of the span, inserting it if new; -1 on out of memory. */
static int vocab_intern(kp_bm25 *m, const char *s, size_t len)
{
    int t = vocab_find(m, s, len);
    if (t >= 0) return t;
    if (2 * (m->n_terms + 1) > m->cap) { /* keep load <= 1/2 */
        int cap = m->cap * 2;
        int *slot = malloc((size_t)cap * sizeof(int));
        if (!slot) return -1;
        free(m->slot);
        m->slot = slot;
        m->cap = cap;
        for (int i = 0; i < cap; i++)
            m->slot[i] = -1;
        for (int u = 0; u < m->n_terms; u++)
            slot_put(m, u);
    }
    if (m->n_terms == m->term_at_cap) {
        int c = m->term_at_cap * 2;
        size_t *a = realloc(m->term_at, (size_t)c * sizeof(size_t));
        if (!a) return -1;
        m->term_at = a;
        m->term_at_cap = c;
    }
    if (m->term_len + len + 1 > m->term_cap) {
        size_t c = m->term_cap * 2;
        while (c < m->term_len + len + 1)
            c *= 2;
        char *b = realloc(m->term_buf, c);
        if (!b) return -1;
        m->term_buf = b;
        m->term_cap = c;
    }
    char *dst = m->term_buf + m->term_len;
    for (size_t i = 0; i < len; i++)
        dst[i] = (char)lower((unsigned char)s[i]);
    dst[len] = '\0';
    t = m->n_terms++;
    m->term_at[t] = m->term_len;
    m->term_len += len + 1;
    slot_put(m, t);
    return t;
}

/* ------------------------------------------------------------------------------------------ */
/* build                                                                                      */

void kp_bm25_free(kp_bm25 *m)
{
    if (!m) return;
    KP_FREE_ALL(m->doc_len, m->idf, m->post_off, m->post_doc, m->post_tf, m->term_buf, m->term_at,
                m->slot, m);
}

int kp_bm25_n_docs(const kp_bm25 *m)
{
    return m ? m->n_docs : 0;
}

int kp_bm25_n_terms(const kp_bm25 *m)
{
    return m ? m->n_terms : 0;
}

kp_bm25 *kp_bm25_build(const char *const *docs, int n_docs, float k1, float b, char *err,
                       size_t errlen)
{
    int *tok = NULL, *doc_start = NULL, *last = NULL, *fill = NULL;
    size_t n_tok = 0, tok_cap = 1024;
    if (n_docs < 0 || (n_docs > 0 && !docs) || !(k1 >= 0.0f) || !(b >= 0.0f && b <= 1.0f)) {
        kp_errf(err, errlen, "kp_bm25_build: bad arguments (n_docs=%d, k1=%g, b=%g)", n_docs,
                (double)k1, (double)b);
        return NULL;
    }
    kp_bm25 *m = calloc(1, sizeof(*m));
    if (!m) goto oom;
    m->n_docs = n_docs;
    m->k1 = k1;
    m->b = b;
    m->cap = 1024;
    m->term_at_cap = 512;
    m->term_cap = 4096;
    m->slot = malloc((size_t)m->cap * sizeof(int));
    m->term_at = malloc((size_t)m->term_at_cap * sizeof(size_t));
    m->term_buf = malloc(m->term_cap);
    m->doc_len = malloc(((size_t)n_docs + 1) * sizeof(int));
    doc_start = malloc(((size_t)n_docs + 1) * sizeof(int));
    tok = malloc(tok_cap * sizeof(int));
    if (!m->slot || !m->term_at || !m->term_buf || !m->doc_len || !doc_start || !tok) goto oom;
    for (int i = 0; i < m->cap; i++)
        m->slot[i] = -1;

    /* pass 1: every document as a sequence of term ids */
    double total_len = 0.0;
    for (int d = 0; d < n_docs; d++) {
        size_t before = n_tok;
        doc_start[d] = (int)n_tok;
        const char *p = docs[d] ? docs[d] : "", *s;
        size_t len;
        while (next_token(&p, &s, &len)) {
            if (n_tok == tok_cap) {
                if (tok_cap > (size_t)INT32_MAX / 2) goto oom;
                int *t = realloc(tok, 2 * tok_cap * sizeof(int));
                if (!t) goto oom;
                tok = t;
                tok_cap *= 2;
            }
            int t = vocab_intern(m, s, len);
            if (t < 0) goto oom;
            tok[n_tok++] = t;
        }
        m->doc_len[d] = (int)(n_tok - before);
        total_len += m->doc_len[d];
    }
    doc_start[n_docs] = (int)n_tok;
    m->avgdl = n_docs > 0 ? total_len / n_docs : 0.0;

    /* pass 2: document frequencies -> CSR offsets */
    int T = m->n_terms;
    m->post_off = calloc((size_t)T + 1, sizeof(int));
    m->idf = malloc(((size_t)T + 1) * sizeof(double));
    last = malloc(((size_t)T + 1) * sizeof(int));
    fill = malloc(((size_t)T + 1) * sizeof(int));
    if (!m->post_off || !m->idf || !last || !fill) goto oom;
    for (int t = 0; t < T; t++)
        last[t] = -1;
    for (int d = 0; d < n_docs; d++)
        for (int i = doc_start[d]; i < doc_start[d + 1]; i++)
            if (last[tok[i]] != d) {
                last[tok[i]] = d;
                m->post_off[tok[i] + 1]++;
            }
    for (int t = 0; t < T; t++) {
        double df = m->post_off[t + 1];
        m->idf[t] = log(1.0 + (n_docs - df + 0.5) / (df + 0.5));
        m->post_off[t + 1] += m->post_off[t];
    }

    /* pass 3: postings (documents visited in order, so each list is sorted) */
    size_t n_post = (size_t)m->post_off[T];
    m->post_doc = malloc((n_post + 1) * sizeof(int));
    m->post_tf = malloc((n_post + 1) * sizeof(int));
    if (!m->post_doc || !m->post_tf) goto oom;
    for (int t = 0; t < T; t++) {
        last[t] = -1;
        fill[t] = m->post_off[t];
    }
    for (int d = 0; d < n_docs; d++)
        for (int i = doc_start[d]; i < doc_start[d + 1]; i++) {
            int t = tok[i];
            if (last[t] == d) {
                m->post_tf[fill[t] - 1]++;
            } else {
                last[t] = d;
                m->post_doc[fill[t]] = d;
                m->post_tf[fill[t]] = 1;
                fill[t]++;
            }
        }
    free(tok);
    free(doc_start);
    free(last);
    free(fill);
    return m;
oom:
    kp_errf(err, errlen, "kp_bm25_build: out of memory");
    free(tok);
    free(doc_start);
    free(last);
    free(fill);
    kp_bm25_free(m);
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* queries                                                                                    */

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Distinct known term ids of query, sorted, into a fresh array (*terms, caller frees).
 * Returns their count, or -1 on out of memory. */
static int query_terms(const kp_bm25 *m, const char *query, int **terms)
{
    const char *p = query, *s;
    size_t len;
    int n = 0;
    while (next_token(&p, &s, &len))
        n++;
    int *t = malloc(((size_t)n + 1) * sizeof(int));
    if (!t) return -1;
    int k = 0;
    p = query;
    while (next_token(&p, &s, &len)) {
        int id = vocab_find(m, s, len);
        if (id >= 0) t[k++] = id;
    }
    qsort(t, (size_t)k, sizeof(int), cmp_int);
    int u = 0;
    for (int i = 0; i < k; i++)
        if (u == 0 || t[u - 1] != t[i]) t[u++] = t[i];
    *terms = t;
    return u;
}

/* Contribution of one term with frequency tf to a document of length dl. */
static double term_weight(const kp_bm25 *m, int term, int tf, int dl)
{
    double norm = m->avgdl > 0.0 ? dl / m->avgdl : 0.0;
    return m->idf[term] * tf * (m->k1 + 1.0) / (tf + m->k1 * (1.0 - m->b + m->b * norm));
}

float kp_bm25_score(const kp_bm25 *m, const char *query, int doc)
{
    if (!m || !query || doc < 0 || doc >= m->n_docs) return NAN;
    int *terms;
    int nt = query_terms(m, query, &terms);
    if (nt < 0) return NAN;
    double s = 0.0;
    for (int i = 0; i < nt; i++) {
        int t = terms[i], lo = m->post_off[t], hi = m->post_off[t + 1];
        while (lo < hi) { /* binary search doc in the sorted postings */
            int mid = lo + (hi - lo) / 2;
            if (m->post_doc[mid] < doc)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < m->post_off[t + 1] && m->post_doc[lo] == doc)
            s += term_weight(m, t, m->post_tf[lo], m->doc_len[doc]);
    }
    free(terms);
    return (float)s;
}

/* 1 if (sa, da) ranks before (sb, db): higher score, then lower doc index */
static int better(double sa, int da, double sb, int db)
{
    return sa > sb || (sa == sb && da < db);
}

/* Restores the min-heap (worst at the root) below position i. */
static void heap_down(int *h, int n, int i, const double *acc)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(acc[h[w]], h[w], acc[h[l]], h[l])) w = l;
        if (r < n && better(acc[h[w]], h[w], acc[h[r]], h[r])) w = r;
        if (w == i) return;
        int t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* Adds the weights of terms[0..nt) to acc, term by term in the same order as kp_bm25_score (all
 * weights are > 0); touched gets every document acc first becomes non-zero for. Returns how many.
 */
static int accumulate(const kp_bm25 *m, const int *terms, int nt, double *acc, int *touched)
{
    int n_touched = 0;
    for (int i = 0; i < nt; i++) {
        int t = terms[i];
        for (int p = m->post_off[t]; p < m->post_off[t + 1]; p++) {
            int d = m->post_doc[p];
            if (acc[d] == 0.0) touched[n_touched++] = d;
            acc[d] += term_weight(m, t, m->post_tf[p], m->doc_len[d]);
        }
    }
    return n_touched;
}

/* Selects the k best of touched[0..n_touched) into a min-heap (heap[0] the worst); returns how many
 * it holds. */
static int heap_select(const int *touched, int n_touched, int k, int *heap, const double *acc)
{
    int n = 0;
    for (int i = 0; i < n_touched; i++) {
        int d = touched[i];
        if (n < k) {
            heap[n++] = d;
            if (n == k)
                for (int j = k / 2 - 1; j >= 0; j--)
                    heap_down(heap, n, j, acc);
        } else if (better(acc[d], d, acc[heap[0]], heap[0])) {
            heap[0] = d;
            heap_down(heap, n, 0, acc);
        }
    }
    if (n < k)
        for (int j = n / 2 - 1; j >= 0; j--)
            heap_down(heap, n, j, acc);
    return n;
}

/* Empties the heap of n into out_doc/out_score, best first, by repeatedly popping the worst. */
static void heap_drain(int *heap, int n, const double *acc, int *out_doc, float *out_score)
{
    for (int r = n - 1; r >= 0; r--) {
        int d = heap[0];
        out_doc[r] = d;
        out_score[r] = (float)acc[d];
        heap[0] = heap[r];
        heap_down(heap, r, 0, acc);
    }
}

int kp_bm25_topk(const kp_bm25 *m, const char *query, int k, int *out_doc, float *out_score)
{
    if (!m || !query || k < 0 || (k > 0 && (!out_doc || !out_score))) return -1;
    if (k == 0 || m->n_docs == 0) return 0;
    int *terms = NULL, *touched = NULL, *heap = NULL;
    double *acc = NULL;
    int nt = query_terms(m, query, &terms);
    if (nt < 0) return -1;
    acc = calloc((size_t)m->n_docs, sizeof(double));
    touched = malloc((size_t)m->n_docs * sizeof(int));
    heap = malloc((size_t)k * sizeof(int));
    int ret = -1;
    if (!acc || !touched || !heap) goto out;

    /* accumulate term by term, in the same order as kp_bm25_score (all weights are > 0) */
    int n_touched = accumulate(m, terms, nt, acc, touched);
    /* select the k best with a min-heap, then sort it by repeatedly popping the worst */
    int n = heap_select(touched, n_touched, k, heap, acc);
    heap_drain(heap, n, acc, out_doc, out_score);
    ret = n;
out:
    KP_FREE_ALL(terms, acc, touched, heap);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* batch top-k (the serving pipeline's hybrid retrieval)                                      */

int kp_bm25_topk_batch(const kp_bm25 *m, const char *const *queries, int nq, int k, int *out_doc,
                       float *out_score, int *counts)
{
    if (!m || nq < 0 || k < 0 || (nq > 0 && (!queries || !counts)) ||
        (k > 0 && nq > 0 && (!out_doc || !out_score)))
        return -1;
    if (nq == 0) return 0;
    for (int q = 0; q < nq; q++)
        counts[q] = 0;
    if (k == 0 || m->n_docs == 0) return 0;
    /* one scratch for the whole batch: acc is reset through touched after each query */
    double *acc = calloc((size_t)m->n_docs, sizeof(double));
    int *touched = malloc((size_t)m->n_docs * sizeof(int));
    int *heap = malloc((size_t)k * sizeof(int));
    int ret = -1;
    if (!acc || !touched || !heap) goto out;
    for (int q = 0; q < nq; q++) {
        int *terms = NULL;
        int nt = queries[q] ? query_terms(m, queries[q], &terms) : 0;
        if (nt < 0) goto out;
        int n_touched = accumulate(m, terms, nt, acc, touched);
        free(terms);
        int n = heap_select(touched, n_touched, k, heap, acc);
        heap_drain(heap, n, acc, out_doc + (size_t)q * (size_t)k,
                   out_score + (size_t)q * (size_t)k);
        counts[q] = n;
        for (int i = 0; i < n_touched; i++)
            acc[touched[i]] = 0.0;
    }
    ret = 0;
out:
    KP_FREE_ALL(acc, touched, heap);
    return ret;
}
