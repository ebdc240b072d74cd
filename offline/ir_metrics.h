/* ir_metrics: offline evaluation metrics (recall@k, Pearson, Spearman, ROC AUC).
 *
 * Each metric has a fast path and a plain reference (suffix _ref: O(n^2) or the textbook formula)
 * that the tests compare it against. All return NAN when the metric is undefined (no evaluable
 * item, fewer than 2 points, zero variance, a single class, a NaN input) or when scratch memory
 * cannot be allocated. Inputs are never modified; nothing is kept. */
#ifndef KP_IR_METRICS_H
#define KP_IR_METRICS_H

/* Mean recall@k over items with at least one relevant keyphrase.
 * retrieved: [n_items, k] row-major, the top-k keyphrases of each item (entries < 0 or >= n_keys
 *            are ignored, so shorter lists can be padded with -1; duplicates count once).
 * rel_off, rel: the relevant keyphrases of item i are rel[rel_off[i] .. rel_off[i+1]) (CSR, as
 *            built by kp_judgments_relevant_csr; duplicates count once, out-of-range ignored).
 * Recall of item i = |relevant(i) ∩ top-k(i)| / |relevant(i)|. *n_evaluated (may be NULL)
 * receives the number of items averaged. */
double kp_recall_at_k(int n_items, int n_keys, int k, const int *retrieved, const int *rel_off,
                      const int *rel, int *n_evaluated);
double kp_recall_at_k_ref(int n_items, int n_keys, int k, const int *retrieved, const int *rel_off,
                          const int *rel, int *n_evaluated);

/* Pearson correlation of x[n] and y[n] (two-pass, double accumulation). */
double kp_pearson(const float *x, const float *y, int n);
double kp_pearson_ref(const float *x, const float *y, int n);

/* Ranks of x[n] into rank[n] (1-based; tied values get the average of their ranks).
 * Returns 0, or -1 on NaN input or out of memory. */
int kp_rank_average(const float *x, int n, double *rank);
int kp_rank_average_ref(const float *x, int n, double *rank);

/* Spearman correlation = Pearson correlation of the average ranks. */
double kp_spearman(const float *x, const float *y, int n);
double kp_spearman_ref(const float *x, const float *y, int n);

/* ROC AUC of score[n] against label[n] (nonzero = positive): the Mann-Whitney probability that a
 * random positive outscores a random negative, ties counting 1/2. */
double kp_roc_auc(const float *score, const int *label, int n);
double kp_roc_auc_ref(const float *score, const int *label, int n);

#endif /* KP_IR_METRICS_H */
