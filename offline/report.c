/* report: the evaluation report's rows (DIR/report.tsv: a run's rows, merged by label) and its
 * page (DIR/index.html). The plots are offline/report_plot.c. See report.h. */
#define _POSIX_C_SOURCE 200809L
#include "offline/report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/util.h"
#include "offline/report_internal.h"

#define HIST_BINS  16
#define CALIB_BINS 10

int kp_report_row_is(const kp_report_row *r, const char *label, const char *sec)
{
    return !strcmp(r->f[KP_RR_LABEL], label) && !strcmp(r->f[KP_RR_SEC], sec);
}

double kp_report_num(const kp_report_row *r, int f)
{
    char *end;
    double v = strtod(r->f[f], &end);
    return end != r->f[f] && *end == 0 ? v : NAN;
}

char *kp_report_html_escape(const char *s, char *out, size_t cap)
{
    size_t o = 0;
    if (!cap) return out;
    for (; s && *s; s++) {
        const char *rep = *s == '&'    ? "&amp;"
                          : *s == '<'  ? "&lt;"
                          : *s == '>'  ? "&gt;"
                          : *s == '"'  ? "&quot;"
                          : *s == '\'' ? "&#39;"
                                       : NULL;
        size_t l = rep ? strlen(rep) : 1;
        if (o + l >= cap) break;
        if (rep)
            memcpy(out + o, rep, l);
        else
            out[o] = *s;
        o += l;
    }
    out[o] = 0;
    return out;
}

/* ---- rows ------------------------------------------------------------------------------------ */

static void rows_free(kp_report_rows *t)
{
    for (int i = 0; i < t->n; i++)
        for (int f = 0; f < 6; f++)
            free(t->row[i].f[f]);
    free(t->row);
    free((void *)t->model);
    memset(t, 0, sizeof *t);
}

/* Appends a row of copies of the six fields (a field's tabs and controls escaped). 0 / -1 OOM. */
static int rows_add(kp_report_rows *t, const char *const f[6])
{
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 256;
        kp_report_row *r = realloc(t->row, sizeof *r * (size_t)cap);
        if (!r) return -1;
        t->row = r;
        t->cap = cap;
    }
    kp_report_row *r = &t->row[t->n];
    for (int i = 0; i < 6; i++) {
        char buf[512];
        const char *s = f[i] ? f[i] : "";
        r->f[i] = strdup(kp_escape(s, strlen(s), buf, sizeof buf, 0));
        if (!r->f[i]) {
            while (i-- > 0)
                free(r->f[i]);
            return -1;
        }
    }
    t->n++;
    return 0;
}

static int rows_addv(kp_report_rows *t, const kp_report_model *m, const char *sec, double a,
                     double b, double c)
{
    char sa[40], sb[40], sc[40];
    double v[3] = {a, b, c};
    char *s[3] = {sa, sb, sc};
    for (int i = 0; i < 3; i++)
        if (isfinite(v[i]))
            snprintf(s[i], 40, "%.9g", v[i]);
        else
            snprintf(s[i], 40, "NaN");
    const char *f[6] = {m->label, m->kind, sec, sa, sb, sc};
    return rows_add(t, f);
}

/* Histogram rows of m's pair scores: HIST_BINS bins over [min, max], one series per grade. */
static int rows_hist(kp_report_rows *t, const kp_report_model *m)
{
    float lo = INFINITY, hi = -INFINITY;
    for (int p = 0; p < m->n_pairs; p++)
        if (isfinite(m->pair_score[p])) {
            if (m->pair_score[p] < lo) lo = m->pair_score[p];
            if (m->pair_score[p] > hi) hi = m->pair_score[p];
        }
    if (!(lo <= hi)) return 0;
    if (hi - lo < 1e-6f) lo -= 0.5f, hi += 0.5f;
    double w = ((double)hi - lo) / HIST_BINS;
    float done = INFINITY; /* grades from the highest down */
    for (;;) {
        float g = -INFINITY;
        for (int p = 0; p < m->n_pairs; p++)
            if (m->pair_grade[p] < done && m->pair_grade[p] > g) g = m->pair_grade[p];
        if (g == -INFINITY) break;
        done = g;
        long cnt[HIST_BINS] = {0}, n = 0;
        for (int p = 0; p < m->n_pairs; p++) {
            if (m->pair_grade[p] != g || !isfinite(m->pair_score[p])) continue;
            int b = (int)((m->pair_score[p] - lo) / w);
            cnt[b < 0 ? 0 : b >= HIST_BINS ? HIST_BINS - 1 : b]++;
            n++;
        }
        if (!n) continue;
        char legend[96];
        snprintf(legend, sizeof legend, "grade %.3g (%ld pairs)", (double)g, n);
        for (int b = 0; b < HIST_BINS; b++) {
            char sb[40], sc[40];
            snprintf(sb, sizeof sb, "%.9g", lo + (b + 0.5) * w);
            snprintf(sc, sizeof sc, "%.9g", (double)cnt[b] / (double)n);
            const char *f[6] = {m->label, m->kind, "hist", legend, sb, sc};
            if (rows_add(t, f)) return -1;
        }
    }
    return 0;
}

/* Reliability rows of m's published p: CALIB_BINS equal bins over [0, 1], empty ones left out. */
static int rows_calib(kp_report_rows *t, const kp_report_model *m)
{
    double sp[CALIB_BINS] = {0}, sy[CALIB_BINS] = {0};
    long n[CALIB_BINS] = {0};
    for (int i = 0; i < m->n_calib; i++) {
        float p = m->calib_p[i];
        if (!isfinite(p)) continue;
        int b = (int)(p * CALIB_BINS);
        b = b < 0 ? 0 : b >= CALIB_BINS ? CALIB_BINS - 1 : b;
        sp[b] += p;
        sy[b] += m->calib_y[i];
        n[b]++;
    }
    for (int b = 0; b < CALIB_BINS; b++)
        if (n[b] && rows_addv(t, m, "calib", sp[b] / n[b], sy[b] / n[b], (double)n[b])) return -1;
    return 0;
}

/* The rows of run m. 0, or -1 (out of memory). */
static int rows_of_model(kp_report_rows *t, const kp_report_model *m)
{
    const char *f[6] = {m->label, m->kind, "info", "score", m->score ? m->score : "score", ""};
    if (rows_add(t, f)) return -1;
    for (int i = 0; i < m->n_metrics; i++) {
        char v[40], s[40];
        double sv = m->metric_slice ? m->metric_slice[i] : NAN;
        snprintf(v, sizeof v, isfinite(m->metric_values[i]) ? "%.9g" : "NaN", m->metric_values[i]);
        snprintf(s, sizeof s, isfinite(sv) ? "%.9g" : "NaN", sv);
        const char *g[6] = {m->label,
                            m->kind,
                            m->metric_is_count && m->metric_is_count[i] ? "count" : "metric",
                            m->metric_names[i],
                            v,
                            s};
        if (rows_add(t, g)) return -1;
    }
    for (int i = 0; i < m->n_k; i++)
        if (rows_addv(t, m, "recall", m->k[i], m->recall[i],
                      m->slice_recall ? m->slice_recall[i] : NAN))
            return -1;
    for (int p = 0; p < m->n_prefix; p++)
        for (int i = 0; i < m->n_prefix_k; i++)
            if (rows_addv(t, m, "prefix", m->prefix[p], m->prefix_k[i],
                          m->prefix_recall[(size_t)p * m->n_prefix_k + i]))
                return -1;
    if (m->n_pairs > 0 && rows_hist(t, m)) return -1;
    if (m->n_calib > 0 && rows_calib(t, m)) return -1;
    return 0;
}

/* Reads path's rows into t but those of label skip (a missing file is no rows). 0 or -1. */
static int rows_load(kp_report_rows *t, const char *path, const char *skip, char *err,
                     size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno == ENOENT) return 0;
        kp_errf(err, errlen, "report: %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char line[4096];
    int ln = 0, rc = 0;
    while (fgets(line, sizeof line, f)) {
        ln++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\n') line[--l] = 0;
        if (!l) continue;
        const char *fld[6];
        char *p = line;
        int nf = 0;
        for (; nf < 6 && p; nf++) {
            fld[nf] = p;
            p = strchr(p, '\t');
            if (p) *p++ = 0;
        }
        if (nf != 6 || p) {
            kp_errf(err, errlen, "report: %s:%d: not a report row (6 tab-separated fields)", path,
                    ln);
            rc = -1;
            break;
        }
        if (!strcmp(fld[0], skip)) continue;
        if (rows_add(t, fld)) {
            kp_errf(err, errlen, "report: out of memory");
            rc = -1;
            break;
        }
    }
    fclose(f);
    return rc;
}

static int rows_save(const kp_report_rows *t, const char *dir, char *err, size_t errlen)
{
    char tmp[1100], path[1100];
    snprintf(tmp, sizeof tmp, "%s/report.tsv.tmp", dir);
    snprintf(path, sizeof path, "%s/report.tsv", dir);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        kp_errf(err, errlen, "report: %s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    for (int i = 0; i < t->n; i++)
        fprintf(f, "%s\t%s\t%s\t%s\t%s\t%s\n", t->row[i].f[0], t->row[i].f[1], t->row[i].f[2],
                t->row[i].f[3], t->row[i].f[4], t->row[i].f[5]);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        kp_errf(err, errlen, "report: %s: write failed", path);
        return -1;
    }
    return 0;
}

/* t->model: the distinct labels in row order. */
static int rows_index(kp_report_rows *t)
{
    t->model = malloc(sizeof(char *) * ((size_t)t->n + 1));
    if (!t->model) return -1;
    for (int i = 0; i < t->n; i++) {
        int seen = 0;
        for (int m = 0; m < t->n_model && !seen; m++)
            seen = !strcmp(t->model[m], t->row[i].f[KP_RR_LABEL]);
        if (!seen) t->model[t->n_model++] = t->row[i].f[KP_RR_LABEL];
    }
    return 0;
}

/* ---- the page -------------------------------------------------------------------------------- */

static void html(FILE *f, const char *s)
{
    char buf[2048];
    fputs(kp_report_html_escape(s, buf, sizeof buf), f);
}

static const char *model_kind(const kp_report_rows *t, const char *label)
{
    for (int i = 0; i < t->n; i++)
        if (!strcmp(t->row[i].f[KP_RR_LABEL], label)) return t->row[i].f[KP_RR_KIND];
    return "";
}

/* The value cell of (label, sec, name), field fld: "%.4f" (as kprec eval prints), "%.0f" for
 * counts, "-" when undefined or absent. */
static void cell(FILE *f, const kp_report_rows *t, const char *label, const char *sec,
                 const char *name, int fld)
{
    double v = NAN;
    for (int i = 0; i < t->n; i++)
        if (kp_report_row_is(&t->row[i], label, sec) && !strcmp(t->row[i].f[KP_RR_A], name))
            v = kp_report_num(&t->row[i], fld);
    if (!isfinite(v))
        fputs("<td>-</td>", f);
    else
        fprintf(f, strcmp(sec, "count") ? "<td>%.4f</td>" : "<td>%.0f</td>", v);
}

/* The metrics table: a row per (section, name, field) present in some model, a column per
 * model. */
static void metrics_table(FILE *f, const kp_report_rows *t)
{
    fputs("<table>\n<tr><th>metric</th>", f);
    for (int m = 0; m < t->n_model; m++) {
        fputs("<th>", f);
        html(f, t->model[m]);
        fputs("</th>", f);
    }
    fputs("</tr>\n", f);
    for (int fld = KP_RR_B; fld <= KP_RR_C; fld++)
        for (int i = 0; i < t->n; i++) {
            const kp_report_row *r = &t->row[i];
            const char *sec = r->f[KP_RR_SEC];
            if ((strcmp(sec, "metric") && strcmp(sec, "count")) ||
                (fld == KP_RR_C && !isfinite(kp_report_num(r, KP_RR_C))))
                continue;
            int dup = 0; /* first row of this (section, name, field) only */
            for (int e = 0; e < i && !dup; e++) {
                const kp_report_row *q = &t->row[e];
                dup = !strcmp(q->f[KP_RR_SEC], sec) && !strcmp(q->f[KP_RR_A], r->f[KP_RR_A]) &&
                      (fld == KP_RR_B || isfinite(kp_report_num(q, KP_RR_C)));
            }
            if (dup) continue;
            fputs("<tr><td>", f);
            html(f, r->f[KP_RR_A]);
            if (fld == KP_RR_C) fputs(" <span class=\"ns\">never shown</span>", f);
            fputs("</td>", f);
            for (int m = 0; m < t->n_model; m++)
                cell(f, t, t->model[m], sec, r->f[KP_RR_A], fld);
            fputs("</tr>\n", f);
        }
    fputs("</table>\n", f);
}

static void figure(FILE *f, const char *stem, const char *heading, const char *caption)
{
    fputs("<h2>", f);
    html(f, heading);
    fprintf(f, "</h2>\n<figure><img src=\"%s.png\" width=\"1000\" alt=\"", stem);
    html(f, heading);
    fprintf(f,
            "\"><figcaption>%s Data: <a href=\"%s.tsv\">%s.tsv</a>, script: "
            "<a href=\"%s.gp\">%s.gp</a>.</figcaption></figure>\n",
            caption, stem, stem, stem, stem);
}

static void missing(FILE *f, const char *heading, const char *how)
{
    fprintf(f, "<h2>%s</h2>\n<p class=\"none\">No run in this report has it: %s.</p>\n", heading,
            how);
}

static const struct {
    const char *heading, *caption, *how;
} plot_text[KP_PLOT_N_FIXED] = {
    {"Recall@k", "Each model's recall@k over the whole inventory; dashed: the never-shown slice.",
     "a bi-encoder or bm25 run of kprec eval"},
    {"Matryoshka size vs recall",
     "Recall@k of a bi-encoder's embedding prefixes (first P dimensions, re-normalised).",
     "a bi-encoder run of kprec eval"},
    {"Calibration of the published probability",
     "Judged pairs binned by the published p (10 bins): observed share of relevant pairs "
     "against the bin's mean p; on the dotted line p is exact.",
     "kprec eval --calibration F --report DIR"},
    {"Never-shown slice beside all pairs",
     "Every metric over all judged pairs (solid) and over the pairs whose keyphrase never "
     "appears in the click log (hatched).",
     "kprec eval --clicks LOG --report DIR"},
};

static int write_page(const char *dir, const kp_report_rows *t, const kp_report_plots *p, char *err,
                      size_t errlen)
{
    char path[1100], tmp[1100];
    snprintf(path, sizeof path, "%s/index.html", dir);
    snprintf(tmp, sizeof tmp, "%s/index.html.tmp", dir);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        kp_errf(err, errlen, "report: %s: cannot create: %s", tmp, strerror(errno));
        return -1;
    }
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<title>kprec evaluation report</title>\n<style>\n"
          "body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:24px;max-width:1040px;"
          "color:#222}\nh1{font-size:26px}h2{font-size:20px;margin-top:32px}\n"
          "table{border-collapse:collapse;font-size:15px}\n"
          "th,td{border:1px solid #bbb;padding:4px 10px;text-align:right}\n"
          "th:first-child,td:first-child{text-align:left}\nth{background:#eee}\n"
          ".ns{color:#a33;font-size:13px}.none{color:#777}\n"
          "figure{margin:0}img{max-width:100%;height:auto;border:1px solid #ddd}\n"
          "figcaption{font-size:14px;color:#444;margin-top:4px}\n"
          "</style></head><body>\n<h1>kprec evaluation report</h1>\n<p>Models:</p>\n<ol>\n",
          f);
    for (int m = 0; m < t->n_model; m++) {
        fputs("<li>", f);
        html(f, t->model[m]);
        fputs(" <span class=\"none\">(", f);
        html(f, model_kind(t, t->model[m]));
        fputs(")</span></li>\n", f);
    }
    fputs("</ol>\n<h2>Metrics</h2>\n", f);
    metrics_table(f, t);
    fputs("<p class=\"none\">As kprec eval prints them; all rows: <a href=\"report.tsv\">"
          "report.tsv</a>.</p>\n",
          f);
    for (int i = 0; i < KP_PLOT_N_FIXED; i++)
        if (p->drawn[i])
            figure(f, kp_report_plot_name[i], plot_text[i].heading, plot_text[i].caption);
        else
            missing(f, plot_text[i].heading, plot_text[i].how);
    for (int m = 0; m < t->n_model; m++) {
        if (!p->scores_drawn[m]) continue;
        char stem[32], heading[600],
            cap[] = "Share of each relevance grade's judged pairs per "
                    "score bin (16 bins over the score range).";
        snprintf(stem, sizeof stem, "scores_%d", m + 1);
        snprintf(heading, sizeof heading, "Score distributions per grade: %.500s", t->model[m]);
        figure(f, stem, heading, cap);
    }
    fputs("</body></html>\n", f);
    int bad = ferror(f);
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        kp_errf(err, errlen, "report: %s: write failed", path);
        return -1;
    }
    return 0;
}

int kp_report_add(const char *dir, const kp_report_model *m, char *err, size_t errlen)
{
    if (!dir || !*dir || !m || !m->label || !*m->label || strlen(dir) > 900 ||
        (m->n_metrics > 0 && (!m->metric_names || !m->metric_values)) ||
        (m->n_k > 0 && (!m->k || !m->recall)) ||
        (m->n_prefix > 0 && (!m->prefix || !m->prefix_k || !m->prefix_recall)) ||
        (m->n_pairs > 0 && (!m->pair_score || !m->pair_grade)) ||
        (m->n_calib > 0 && (!m->calib_p || !m->calib_y))) {
        kp_errf(err, errlen, "report: bad arguments");
        return -1;
    }
    if (mkdir(dir, 0755) && errno != EEXIST) {
        kp_errf(err, errlen, "report: %s: cannot create: %s", dir, strerror(errno));
        return -1;
    }
    kp_report_rows t = {0};
    kp_report_plots p = {0};
    char path[1100], key[512];
    int rc = -1;
    snprintf(path, sizeof path, "%s/report.tsv", dir);
    /* the label as stored (escaped), so that a rerun replaces its rows */
    kp_escape(m->label, strlen(m->label), key, sizeof key, 0);
    if (rows_load(&t, path, key, err, errlen)) goto done;
    if (rows_of_model(&t, m) || rows_index(&t)) {
        kp_errf(err, errlen, "report: out of memory");
        goto done;
    }
    if (rows_save(&t, dir, err, errlen)) goto done;
    if (kp_report_plots_draw(dir, &t, &p, err, errlen)) goto done;
    rc = write_page(dir, &t, &p, err, errlen);
done:
    free(p.scores_drawn);
    rows_free(&t);
    return rc;
}
