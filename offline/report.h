/* report.h - the evaluation report: `kprec eval --report DIR` writes an HTML page with PNG plots.
 *
 * One run of kprec eval evaluates one model; the report of a directory collects every run that
 * named it: DIR/report.tsv holds one model's rows per label (a run replaces the rows of its own
 * label and keeps the others), and each run redraws every plot and DIR/index.html from the whole
 * of report.tsv. So `for m in a b c; do kprec eval --model $m ... --report DIR; done` gives one
 * page comparing a, b and c.
 *
 * report.tsv: no header; tab-separated rows label, kind, section, a, b, c (numbers "%.9g", "NaN"
 * for undefined). Sections:
 *   info    a = "score": b = the name of the pair score (x of the distributions)
 *   metric  a = metric name, b = value (all judged pairs), c = value on the never-shown slice
 *   count   as metric, for counts (items, pairs)
 *   recall  a = k, b = recall@k, c = recall@k on the never-shown slice
 *   prefix  a = Matryoshka prefix size, b = k, c = recall@k at that size
 *   hist    a = grade legend, b = score bin centre, c = share of that grade's pairs in the bin
 *   calib   a = mean published p of a bin, b = observed share relevant, c = pairs in the bin
 * Plots (DIR/NAME.png, drawn by gnuplot from DIR/NAME.tsv and DIR/NAME.gp): recall (recall@k
 * against k per model, never-shown slice dashed), matryoshka (recall@k against the prefix size),
 * calibration (reliability of the published p), never_shown (every metric, all pairs beside the
 * never-shown slice) and scores_N (model N's pair-score distribution per relevance grade). A plot
 * without data in any run is left out of the page with a note saying which option adds it. */
#ifndef KP_REPORT_H
#define KP_REPORT_H

#include <stddef.h>

/* One run's contribution. Every array part is optional (n = 0 / NULL leaves it out). */
typedef struct {
    const char *label; /* the model's name on the page (its key in report.tsv); not NULL */
    const char *kind;  /* "bi-encoder", "bm25", "cross-encoder", "pipeline", ... */
    const char *score; /* name of the pair score ("cosine", "bm25", "p", ...) */
    /* metrics as kprec eval prints them: names[n_metrics], values, slice (NULL or NAN = none),
     * is_count[] nonzero for counts (printed as integers) */
    int n_metrics;
    const char *const *metric_names;
    const double *metric_values;
    const double *metric_slice;
    const int *metric_is_count;
    /* recall@k curve: k[n_k], recall[n_k], slice_recall[n_k] (NULL = no slice) */
    int n_k;
    const int *k;
    const double *recall;
    const double *slice_recall;
    /* Matryoshka sweep: prefix[n_prefix] sizes (ascending), cutoffs prefix_k[n_prefix_k],
     * prefix_recall[n_prefix x n_prefix_k] */
    int n_prefix, n_prefix_k;
    const int *prefix, *prefix_k;
    const double *prefix_recall;
    /* pair scores and their grades (on the judgments' own scale), [n_pairs] */
    int n_pairs;
    const float *pair_score;
    const float *pair_grade;
    /* the published probability and its label (1 relevant, 0 not), [n_calib] */
    int n_calib;
    const float *calib_p;
    const float *calib_y;
} kp_report_model;

/* Adds run m to the report in dir (created if missing, its parent must exist): merges m into
 * dir/report.tsv, writes every plot's data (.tsv) and gnuplot script (.gp), runs gnuplot
 * (`gnuplot` on PATH; its messages go to dir/gnuplot.log) and writes dir/index.html (plain
 * HTML + CSS, every text escaped). 0, or -1 with a message in err: bad arguments, an unreadable
 * or malformed report.tsv, a write failure, gnuplot missing or failing (the data files, scripts
 * and report.tsv are written before gnuplot runs, so they are there in that case too). */
int kp_report_add(const char *dir, const kp_report_model *m, char *err, size_t errlen);

/* Escapes s for HTML text and attribute values (& < > " ') into out[cap] (NUL-terminated, cut
 * when it does not fit). Returns out. */
char *kp_report_html_escape(const char *s, char *out, size_t cap);

#endif
