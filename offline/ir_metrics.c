/* ir_metrics: offline evaluation metrics. See ir_metrics.h. */
#include "offline/ir_metrics.h"

#include <math.h>
#include <stdlib.h>

/* ------------------------------------------------------------------------------------------ */
/* recall@k                                                                                   */

double kp_recall_at_k(int n_items, int n_keys, int k, const int *retrieved, const int *rel_off,
                      const int *rel, int *n_evaluated)
{
    if (n_evaluated) *n_evaluated = 0;
    if (n_items <= 0 || n_keys <= 0 || k < 0 || !rel_off || !rel || (k > 0 && !retrieved))
        return NAN;
    /* mark[key] == 2i+1: relevant to item i, not yet hit; == 2i+2: relevant and hit. Stamps of
     * earlier items never collide, so the array is cleared once. */
    long *mark = calloc((size_t)n_keys, sizeof(long));
    if (!mark) return NAN;
    double sum = 0.0;
    int n_eval = 0;
    for (int i = 0; i < n_items; i++) {
        long want = 2L * i + 1, hit = 2L * i + 2;
        int n_rel = 0, n_hit = 0;
        for (int p = rel_off[i]; p < rel_off[i + 1]; p++) {
            int key = rel[p];
            if (key < 0 || key >= n_keys || mark[key] == want) continue;
            mark[key] = want;
            n_rel++;
        }
        if (n_rel == 0) continue;
        const int *top = retrieved + (size_t)i * (size_t)k;
        for (int r = 0; r < k; r++) {
            int key = top[r];
            if (key < 0 || key >= n_keys || mark[key] != want) continue;
            mark[key] = hit;
            n_hit++;
        }
        sum += (double)n_hit / n_rel;
        n_eval++;
    }
    free(mark);
    if (n_evaluated) *n_evaluated = n_eval;
    return n_eval ? sum / n_eval : NAN;
}

/* 1 if v occurs in a[0 .. n) */
static int contains(const int *a, int n, int v)
{
    for (int i = 0; i < n; i++)
        if (a[i] == v) return 1;
    return 0;
}

double kp_recall_at_k_ref(int n_items, int n_keys, int k, const int *retrieved, const int *rel_off,
                          const int *rel, int *n_evaluated)
{
    if (n_evaluated) *n_evaluated = 0;
    if (n_items <= 0 || n_keys <= 0 || k < 0 || !rel_off || !rel || (k > 0 && !retrieved))
        return NAN;
    double sum = 0.0;
    int n_eval = 0;
    for (int i = 0; i < n_items; i++) {
        const int *r = rel + rel_off[i];
        int nr = rel_off[i + 1] - rel_off[i], n_rel = 0, n_hit = 0;
        for (int p = 0; p < nr; p++) {
            /* count each distinct in-range relevant key once: at its first occurrence */
            if (r[p] < 0 || r[p] >= n_keys || contains(r, p, r[p])) continue;
            n_rel++;
            if (contains(retrieved + (size_t)i * (size_t)k, k, r[p])) n_hit++;
        }
        if (n_rel == 0) continue;
        sum += (double)n_hit / n_rel;
        n_eval++;
    }
    if (n_evaluated) *n_evaluated = n_eval;
    return n_eval ? sum / n_eval : NAN;
}

/* ------------------------------------------------------------------------------------------ */
/* Pearson                                                                                    */

/* Pearson of n values read through at(), two-pass in double: the one body behind the float and
 * the double entry points (floats are widened exactly as a double loop would). */
typedef double (*value_at)(const void *v, int i);

static double at_float(const void *v, int i)
{
    return ((const float *)v)[i];
}

static double at_double(const void *v, int i)
{
    return ((const double *)v)[i];
}

static double pearson_of(const void *x, const void *y, int n, value_at at)
{
    if (n < 2) return NAN;
    double mx = 0.0, my = 0.0;
    for (int i = 0; i < n; i++) {
        mx += at(x, i);
        my += at(y, i);
    }
    mx /= n;
    my /= n;
    double sxy = 0.0, sxx = 0.0, syy = 0.0;
    for (int i = 0; i < n; i++) {
        double dx = at(x, i) - mx, dy = at(y, i) - my;
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if (!(sxx > 0.0) || !(syy > 0.0)) return NAN; /* also catches NaN input */
    return sxy / sqrt(sxx * syy);
}

static double pearson_d(const double *x, const double *y, int n)
{
    return pearson_of(x, y, n, at_double);
}

double kp_pearson(const float *x, const float *y, int n)
{
    if (!x || !y) return NAN;
    return pearson_of(x, y, n, at_float);
}

double kp_pearson_ref(const float *x, const float *y, int n)
{
    /* textbook one-pass: (n Σxy - Σx Σy) / sqrt((n Σx² - (Σx)²)(n Σy² - (Σy)²)) */
    if (!x || !y || n < 2) return NAN;
    double sx = 0, sy = 0, sxy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        sx += x[i];
        sy += y[i];
        sxy += (double)x[i] * y[i];
        sxx += (double)x[i] * x[i];
        syy += (double)y[i] * y[i];
    }
    double vx = n * sxx - sx * sx, vy = n * syy - sy * sy;
    if (!(vx > 0.0) || !(vy > 0.0)) return NAN;
    return (n * sxy - sx * sy) / sqrt(vx * vy);
}

/* ------------------------------------------------------------------------------------------ */
/* ranks and Spearman                                                                         */

typedef struct {
    float v;
    int i;
} val_idx;

static int cmp_val_idx(const void *a, const void *b)
{
    const val_idx *p = a, *q = b;
    if (p->v < q->v) return -1;
    if (p->v > q->v) return 1;
    return (p->i > q->i) - (p->i < q->i);
}

int kp_rank_average(const float *x, int n, double *rank)
{
    if (!x || !rank || n < 0) return -1;
    for (int i = 0; i < n; i++)
        if (isnan(x[i])) return -1;
    if (n == 0) return 0;
    val_idx *s = malloc((size_t)n * sizeof(*s));
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        s[i] = (val_idx){x[i], i};
    qsort(s, (size_t)n, sizeof(*s), cmp_val_idx);
    for (int a = 0; a < n;) {
        int b = a + 1;
        while (b < n && s[b].v == s[a].v)
            b++;
        double r = 0.5 * ((a + 1) + b); /* mean of 1-based ranks a+1 .. b */
        for (int t = a; t < b; t++)
            rank[s[t].i] = r;
        a = b;
    }
    free(s);
    return 0;
}

int kp_rank_average_ref(const float *x, int n, double *rank)
{
    if (!x || !rank || n < 0) return -1;
    for (int i = 0; i < n; i++)
        if (isnan(x[i])) return -1;
    for (int i = 0; i < n; i++) {
        int less = 0, equal = 0;
        for (int j = 0; j < n; j++) {
            less += x[j] < x[i];
            equal += x[j] == x[i];
        }
        rank[i] = less + 0.5 * (equal + 1); /* tied block occupies ranks less+1 .. less+equal */
    }
    return 0;
}

static double spearman_with(int (*ranker)(const float *, int, double *), const float *x,
                            const float *y, int n)
{
    if (!x || !y || n < 2) return NAN;
    double *r = malloc(2 * (size_t)n * sizeof(double));
    if (!r) return NAN;
    double out = NAN;
    if (ranker(x, n, r) == 0 && ranker(y, n, r + n) == 0) out = pearson_d(r, r + n, n);
    free(r);
    return out;
}

double kp_spearman(const float *x, const float *y, int n)
{
    return spearman_with(kp_rank_average, x, y, n);
}

double kp_spearman_ref(const float *x, const float *y, int n)
{
    return spearman_with(kp_rank_average_ref, x, y, n);
}

/* ------------------------------------------------------------------------------------------ */
/* ROC AUC                                                                                    */

double kp_roc_auc(const float *score, const int *label, int n)
{
    /* Mann-Whitney: U = (sum of positives' average ranks) - P(P+1)/2, AUC = U / (P N). */
    if (!score || !label || n < 2) return NAN;
    double *r = malloc((size_t)n * sizeof(double));
    if (!r) return NAN;
    if (kp_rank_average(score, n, r) != 0) {
        free(r);
        return NAN;
    }
    double rank_sum = 0.0, pos = 0.0;
    for (int i = 0; i < n; i++) {
        if (label[i]) {
            rank_sum += r[i];
            pos += 1.0;
        }
    }
    free(r);
    double neg = n - pos;
    if (pos == 0.0 || neg == 0.0) return NAN;
    return (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg);
}

double kp_roc_auc_ref(const float *score, const int *label, int n)
{
    if (!score || !label || n < 2) return NAN;
    double wins = 0.0, pairs = 0.0;
    for (int i = 0; i < n; i++) {
        if (isnan(score[i])) return NAN;
        if (!label[i]) continue;
        for (int j = 0; j < n; j++) {
            if (label[j]) continue;
            pairs += 1.0;
            if (score[i] > score[j])
                wins += 1.0;
            else if (score[i] == score[j])
                wins += 0.5;
        }
    }
    return pairs > 0.0 ? wins / pairs : NAN;
}
