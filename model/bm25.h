/* bm25: Okapi BM25 lexical retrieval over the keyphrase inventory (documents = keyphrases,
 * queries = item titles): the retrieval a user would try first, and the lexical half of the
 * serving pipeline's hybrid candidates (model/recommender.h).
 *
 * Tokens: maximal runs of ASCII letters/digits and of non-ASCII bytes (UTF-8 passes through
 * untouched), ASCII lowercased; every other ASCII byte separates tokens.
 *
 * Score (distinct query terms t, document d):
 *   score(q, d) = Σ_t idf(t) · tf(t,d)·(k1+1) / (tf(t,d) + k1·(1 − b + b·|d|/avgdl))
 *   idf(t)      = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))     (Lucene's non-negative idf)
 * with |d| the document's token count and avgdl the mean over the N documents.
 *
 * Index: vocabulary hash map + inverted index in CSR form (postings sorted by document). The
 * index is read-only after kp_bm25_build, so queries may run concurrently. */
#ifndef KP_BM25_H
#define KP_BM25_H

#include <stddef.h>

#define KP_BM25_K1 1.2f
#define KP_BM25_B  0.75f

typedef struct kp_bm25 kp_bm25;

/* Indexes docs[0 .. n_docs) (NUL-terminated; NULL counts as empty) with parameters k1 >= 0 and
 * b in [0, 1] (use KP_BM25_K1, KP_BM25_B). Returns NULL with a message in err on bad arguments or
 * out of memory. The caller owns the index (kp_bm25_free); docs are not retained. */
kp_bm25 *kp_bm25_build(const char *const *docs, int n_docs, float k1, float b, char *err,
                       size_t errlen);

/* Frees the index. Accepts NULL. */
void kp_bm25_free(kp_bm25 *m);

int kp_bm25_n_docs(const kp_bm25 *m);
int kp_bm25_n_terms(const kp_bm25 *m);

/* Top-k documents for query (k >= 0): writes up to k (doc, score) pairs to out_doc/out_score in
 * decreasing score, ties by increasing doc index; only documents sharing a term with the query
 * (score > 0) are returned. Returns the number written, or -1 on bad arguments / out of memory. */
int kp_bm25_topk(const kp_bm25 *m, const char *query, int k, int *out_doc, float *out_score);

/* kp_bm25_topk for nq queries at once (NULL queries count as empty), with one scratch allocation
 * for the whole batch: query q's results go to out_doc/out_score[q*k .. q*k + counts[q]), the same
 * as kp_bm25_topk's for that query. Returns 0, or -1 on bad arguments / out of memory. */
int kp_bm25_topk_batch(const kp_bm25 *m, const char *const *queries, int nq, int k, int *out_doc,
                       float *out_score, int *counts);

/* BM25 score of one (query, doc) pair: the same value kp_bm25_topk reports. Returns NAN when m or
 * query is NULL, doc is out of range, or out of memory. */
float kp_bm25_score(const kp_bm25 *m, const char *query, int doc);

/* Writes the tokens of text to out, separated by single spaces, NUL-terminated (truncated to
 * outlen − 1 bytes). Returns the number of tokens, or -1 if an argument is NULL. For tests and
 * debugging. */
int kp_bm25_tokenize(const char *text, char *out, size_t outlen);

#endif /* KP_BM25_H */
