/* report_plot: the report's plots. Every plot is a data file NAME.tsv (gnuplot blocks, one per
 * series, separated by two blank lines) and a script NAME.gp drawing NAME.png, both in the
 * report directory; gnuplot runs there on each script. See report.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/util.h"
#include "offline/report_internal.h"

const char *const kp_report_plot_name[KP_PLOT_N_FIXED] = {"recall", "matryoshka", "calibration",
                                                          "never_shown"};

#define PLOT_W 1000
#define PLOT_H 620

/* Line colours by model (or grade): dark enough to read on white, told apart in print. */
static const char *const colour[] = {"#1f60a8", "#c0392b", "#239b56", "#7d3c98",
                                     "#d35400", "#6e4b2a", "#c2185b", "#117a8b"};
#define COLOUR(i) colour[(i) % (int)(sizeof colour / sizeof colour[0])]

/* s as a gnuplot double-quoted string (backslash and quote escaped). */
static void gp_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void gp_header(FILE *f, const char *stem, const char *title, const char *xlabel,
                      const char *ylabel)
{
    fprintf(f,
            "# written by kprec eval --report; redraw with: gnuplot %s.gp\n"
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
            "  set terminal pngcairo size %d,%d font 'DejaVu Sans,13' noenhanced\n"
            "} else {\n"
            "  set terminal png size %d,%d noenhanced\n"
            "}\n"
            "set output '%s.png'\n"
            "set datafile separator tab\n"
            "set datafile missing 'NaN'\n"
            "set grid\n"
            "set key outside right top vertical Left reverse noautotitle\n",
            stem, PLOT_W, PLOT_H, PLOT_W, PLOT_H, stem);
    fputs("set title ", f);
    gp_str(f, title);
    fputs("\nset xlabel ", f);
    gp_str(f, xlabel);
    fputs("\nset ylabel ", f);
    gp_str(f, ylabel);
    fputc('\n', f);
}

/* Plot clause separator: "plot " first, ", \\\n     " after. */
static void gp_sep(FILE *f, int *first)
{
    fputs(*first ? "plot " : ", \\\n     ", f);
    *first = 0;
}

/* ---- running gnuplot ------------------------------------------------------------------------- */

/* Runs `gnuplot SCRIPT` in dir, output appended to dir/gnuplot.log. 0, or -1 with err. */
static int run_gnuplot(const char *dir, const char *stem, char *err, size_t errlen)
{
    char script[300];
    snprintf(script, sizeof script, "%s.gp", stem);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        kp_errf(err, errlen, "report: fork: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (chdir(dir)) _exit(126);
        int fd = open("gnuplot.log", O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execlp("gnuplot", "gnuplot", script, (char *)NULL);
        _exit(errno == ENOENT ? 127 : 126);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            kp_errf(err, errlen, "report: waitpid: %s", strerror(errno));
            return -1;
        }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        kp_errf(err, errlen,
                "report: gnuplot is not installed (apt-get install gnuplot-nox); the data "
                "files and gnuplot scripts are in %s",
                dir);
        return -1;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        kp_errf(err, errlen, "report: gnuplot failed on %s/%s (see %s/gnuplot.log)", dir, script,
                dir);
        return -1;
    }
    char png[1200];
    struct stat sb;
    snprintf(png, sizeof png, "%s/%s.png", dir, stem);
    if (stat(png, &sb) || sb.st_size == 0) {
        kp_errf(err, errlen, "report: gnuplot wrote no %s", png);
        return -1;
    }
    return 0;
}

/* ---- the plots ------------------------------------------------------------------------------- */

typedef struct {
    const char *dir;
    const kp_report_rows *rows;
    FILE *data, *gp;
    char stem[64];
} plot;

static int plot_open(plot *p, const char *dir, const kp_report_rows *rows, const char *stem,
                     char *err, size_t errlen)
{
    char path[1200];
    memset(p, 0, sizeof *p);
    p->dir = dir;
    p->rows = rows;
    snprintf(p->stem, sizeof p->stem, "%s", stem);
    snprintf(path, sizeof path, "%s/%s.tsv", dir, stem);
    p->data = fopen(path, "w");
    snprintf(path, sizeof path, "%s/%s.gp", dir, stem);
    p->gp = p->data ? fopen(path, "w") : NULL;
    if (p->gp) return 0;
    if (p->data) fclose(p->data);
    kp_errf(err, errlen, "report: %s: cannot create: %s", path, strerror(errno));
    return -1;
}

/* Closes p's files; 0, or -1 with err on a write error. */
static int plot_close(plot *p, char *err, size_t errlen)
{
    int bad = ferror(p->data) | ferror(p->gp);
    bad |= fclose(p->data) != 0;
    bad |= fclose(p->gp) != 0;
    if (!bad) return 0;
    kp_errf(err, errlen, "report: %s/%s: write failed", p->dir, p->stem);
    return -1;
}

/* Starts data block *block (two blank lines before every block but the first). */
static void block_start(plot *p, int *block, const char *title)
{
    if (*block > 0) fputs("\n\n", p->data);
    fprintf(p->data, "# %s\n", title);
    (*block)++;
}

static void put_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("NaN", f);
}

/* recall@k against k: a block per model, columns k, recall, never-shown recall. */
static int plot_recall(plot *p)
{
    int block = 0, first = 1;
    gp_header(p->gp, p->stem, "recall@k over the whole inventory", "k (keyphrases retrieved)",
              "recall@k (judged items with a relevant keyphrase)");
    fputs("set logscale x\nset yrange [0:1]\nset format x '%g'\n", p->gp);
    for (int m = 0; m < p->rows->n_model; m++) {
        const char *lab = p->rows->model[m];
        int n = 0, slice = 0;
        for (int i = 0; i < p->rows->n; i++) {
            const kp_report_row *r = &p->rows->row[i];
            if (!kp_report_row_is(r, lab, "recall") || !isfinite(kp_report_num(r, KP_RR_B)))
                continue;
            if (!n) block_start(p, &block, lab);
            n++;
            slice |= isfinite(kp_report_num(r, KP_RR_C));
            fprintf(p->data, "%s\t%s\t%s\n", r->f[KP_RR_A], r->f[KP_RR_B], r->f[KP_RR_C]);
        }
        if (!n) continue;
        gp_sep(p->gp, &first);
        fprintf(p->gp, "'%s.tsv' index %d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title ",
                p->stem, block - 1, COLOUR(m));
        gp_str(p->gp, lab);
        if (slice) {
            gp_sep(p->gp, &first);
            fprintf(p->gp,
                    "'' index %d using 1:3 with linespoints lw 2 dt 2 pt 6 lc rgb '%s' title ",
                    block - 1, COLOUR(m));
            char t[600];
            snprintf(t, sizeof t, "%s (never shown)", lab);
            gp_str(p->gp, t);
        }
    }
    fputc('\n', p->gp);
    return block;
}

/* recall@k against the Matryoshka prefix size: a block per (model, k). */
static int plot_matryoshka(plot *p)
{
    int block = 0, first = 1;
    gp_header(p->gp, p->stem, "Matryoshka: recall@k by embedding prefix size",
              "embedding dimensions used (prefix, re-normalised)", "recall@k");
    fputs("set logscale x 2\nset yrange [0:1]\nset format x '%g'\n", p->gp);
    for (int m = 0; m < p->rows->n_model; m++) {
        const char *lab = p->rows->model[m];
        int ks[64], nk = 0;
        for (int i = 0; i < p->rows->n; i++) { /* the model's ks, in row order */
            const kp_report_row *r = &p->rows->row[i];
            if (!kp_report_row_is(r, lab, "prefix")) continue;
            int k = (int)kp_report_num(r, KP_RR_B), seen = 0;
            for (int e = 0; e < nk; e++)
                seen |= ks[e] == k;
            if (!seen && nk < 64) ks[nk++] = k;
        }
        for (int e = 0; e < nk; e++) {
            char t[600];
            snprintf(t, sizeof t, "%s recall@%d", lab, ks[e]);
            block_start(p, &block, t);
            for (int i = 0; i < p->rows->n; i++) {
                const kp_report_row *r = &p->rows->row[i];
                if (kp_report_row_is(r, lab, "prefix") && (int)kp_report_num(r, KP_RR_B) == ks[e])
                    fprintf(p->data, "%s\t%s\n", r->f[KP_RR_A], r->f[KP_RR_C]);
            }
            gp_sep(p->gp, &first);
            fprintf(
                p->gp,
                "'%s.tsv' index %d using 1:2 with linespoints lw 2 pt %d dt %d lc rgb '%s' title ",
                p->stem, block - 1, 5 + 2 * (e % 4), 1 + e % 5, COLOUR(m));
            gp_str(p->gp, t);
        }
    }
    fputc('\n', p->gp);
    return block;
}

/* Reliability of the published p: a block per model, columns mean p, observed, pairs. */
static int plot_calibration(plot *p)
{
    int block = 0, first = 1;
    gp_header(p->gp, p->stem,
              "calibration of the published probability (10 bins of p; pairs per bin)",
              "published p (mean of the bin)", "observed share of relevant pairs");
    fputs("set xrange [-0.03:1.03]\nset yrange [-0.03:1.09]\nset xtics 0,0.2,1\nset ytics 0,0.2,1\n"
          "set size ratio -1\n",
          p->gp);
    gp_sep(p->gp, &first);
    fputs("x with lines dt 3 lw 2 lc 'gray40' title 'perfectly calibrated'", p->gp);
    for (int m = 0; m < p->rows->n_model; m++) {
        const char *lab = p->rows->model[m];
        int n = 0;
        for (int i = 0; i < p->rows->n; i++) {
            const kp_report_row *r = &p->rows->row[i];
            if (!kp_report_row_is(r, lab, "calib")) continue;
            if (!n++) block_start(p, &block, lab);
            fprintf(p->data, "%s\t%s\t%s\n", r->f[KP_RR_A], r->f[KP_RR_B], r->f[KP_RR_C]);
        }
        if (!n) continue;
        gp_sep(p->gp, &first);
        fprintf(p->gp, "'%s.tsv' index %d using 1:2 with linespoints lw 2 pt 7 lc rgb '%s' title ",
                p->stem, block - 1, COLOUR(m));
        gp_str(p->gp, lab);
        /* each bin's number of pairs next to its point */
        gp_sep(p->gp, &first);
        fprintf(p->gp,
                "'' index %d using 1:2:(sprintf('%%d', int($3))) with labels offset 0,0.9 "
                "font ',10' tc rgb '%s' notitle",
                block - 1, COLOUR(m));
    }
    fputc('\n', p->gp);
    return block;
}

/* Every metric (not counts) of the models with a never-shown slice, all pairs beside the slice:
 * one row per metric, two columns per model. */
static int plot_never_shown(plot *p)
{
    const kp_report_rows *R = p->rows;
    int *with = calloc((size_t)R->n_model + 1, sizeof(int)), n_with = 0, n_names = 0;
    const char **names = malloc(sizeof(char *) * ((size_t)R->n + 1));
    if (!with || !names) {
        free(with);
        free((void *)names);
        return -1;
    }
    for (int i = 0; i < R->n; i++) {
        const kp_report_row *r = &R->row[i];
        if (strcmp(r->f[KP_RR_SEC], "metric") || !isfinite(kp_report_num(r, KP_RR_C))) continue;
        for (int m = 0; m < R->n_model; m++)
            if (!strcmp(R->model[m], r->f[KP_RR_LABEL])) with[m] = 1;
        int seen = 0;
        for (int e = 0; e < n_names; e++)
            seen |= !strcmp(names[e], r->f[KP_RR_A]);
        if (!seen) names[n_names++] = r->f[KP_RR_A];
    }
    gp_header(p->gp, p->stem, "never-shown slice beside all judged pairs", "metric", "value");
    fputs("set style data histogram\nset style histogram clustered gap 1\n"
          "set boxwidth 0.9 relative\nset xzeroaxis lt -1\nset xtics rotate by -30\n"
          "set grid noxtics ytics\n",
          p->gp);
    double lo = 0; /* the bars start at 0: the axis too (or below, for a negative value) */
    fputs("# metric", p->data);
    for (int m = 0; m < R->n_model; m++)
        if (with[m]) fprintf(p->data, "\t%s (all)\t%s (never shown)", R->model[m], R->model[m]);
    fputc('\n', p->data);
    for (int e = 0; e < n_names; e++) {
        fputs(names[e], p->data);
        for (int m = 0; m < R->n_model; m++) {
            if (!with[m]) continue;
            double a = NAN, s = NAN;
            for (int i = 0; i < R->n; i++)
                if (kp_report_row_is(&R->row[i], R->model[m], "metric") &&
                    !strcmp(R->row[i].f[KP_RR_A], names[e])) {
                    a = kp_report_num(&R->row[i], KP_RR_B);
                    s = kp_report_num(&R->row[i], KP_RR_C);
                }
            if (a < lo) lo = a;
            if (s < lo) lo = s;
            fputc('\t', p->data);
            put_num(p->data, a);
            fputc('\t', p->data);
            put_num(p->data, s);
        }
        fputc('\n', p->data);
    }
    fprintf(p->gp, "set yrange [%g:1]\n", lo < 0 ? floor(lo * 10 - 0.5) / 10 : 0.0);
    int first = 1, col = 2;
    for (int m = 0; m < R->n_model; m++) {
        if (!with[m]) continue;
        char t[600];
        n_with++;
        gp_sep(p->gp, &first);
        fprintf(p->gp, "'%s.tsv' using %d%s fs solid 0.9 border -1 lc rgb '%s' title ", p->stem,
                col, col == 2 ? ":xtic(1)" : "", COLOUR(m));
        snprintf(t, sizeof t, "%s: all pairs", R->model[m]);
        gp_str(p->gp, t);
        gp_sep(p->gp, &first);
        fprintf(p->gp, "'' using %d fs pattern 4 border -1 lc rgb '%s' title ", col + 1, COLOUR(m));
        snprintf(t, sizeof t, "%s: never shown", R->model[m]);
        gp_str(p->gp, t);
        col += 2;
    }
    fputc('\n', p->gp);
    free(with);
    free((void *)names);
    return n_with && n_names ? 1 : 0;
}

/* Model m's pair-score distribution: a block per grade (hist rows, in row order). */
static int plot_scores(plot *p, int m)
{
    const kp_report_rows *R = p->rows;
    const char *lab = R->model[m], *score = "score";
    for (int i = 0; i < R->n; i++)
        if (kp_report_row_is(&R->row[i], lab, "info") && !strcmp(R->row[i].f[KP_RR_A], "score"))
            score = R->row[i].f[KP_RR_B];
    char title[600];
    snprintf(title, sizeof title, "%s: pair scores per relevance grade", lab);
    gp_header(p->gp, p->stem, title, score, "share of the judged pairs of that grade");
    fputs("set yrange [0:*]\n", p->gp);
    int block = 0, first = 1;
    const char *cur = NULL;
    for (int i = 0; i < R->n; i++) {
        const kp_report_row *r = &R->row[i];
        if (!kp_report_row_is(r, lab, "hist")) continue;
        if (!cur || strcmp(cur, r->f[KP_RR_A])) {
            cur = r->f[KP_RR_A];
            block_start(p, &block, cur);
            gp_sep(p->gp, &first);
            fprintf(p->gp,
                    "'%s.tsv' index %d using 1:2 with linespoints lw 2 pt 7 ps 0.8 lc rgb '%s' "
                    "title ",
                    p->stem, block - 1, COLOUR(block - 1));
            gp_str(p->gp, cur);
        }
        fprintf(p->data, "%s\t%s\n", r->f[KP_RR_B], r->f[KP_RR_C]);
    }
    fputc('\n', p->gp);
    return block;
}

int kp_report_plots_draw(const char *dir, const kp_report_rows *rows, kp_report_plots *out,
                         char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->scores_drawn = calloc((size_t)rows->n_model + 1, sizeof(int));
    if (!out->scores_drawn) {
        kp_errf(err, errlen, "report: out of memory");
        return -1;
    }
    int has[KP_PLOT_N_FIXED], *has_scores = calloc((size_t)rows->n_model + 1, sizeof(int));
    if (!has_scores) {
        kp_errf(err, errlen, "report: out of memory");
        return -1;
    }
    int (*const fixed[KP_PLOT_N_FIXED])(plot *) = {plot_recall, plot_matryoshka, plot_calibration,
                                                   plot_never_shown};
    int rc = -1;
    plot p;
    /* every data file and script first, so that they are all there when gnuplot is missing */
    for (int i = 0; i < KP_PLOT_N_FIXED; i++) {
        if (plot_open(&p, dir, rows, kp_report_plot_name[i], err, errlen)) goto done;
        has[i] = fixed[i](&p);
        if (plot_close(&p, err, errlen)) goto done;
        if (has[i] < 0) {
            kp_errf(err, errlen, "report: out of memory");
            goto done;
        }
    }
    for (int m = 0; m < rows->n_model; m++) {
        char stem[32];
        snprintf(stem, sizeof stem, "scores_%d", m + 1);
        if (plot_open(&p, dir, rows, stem, err, errlen)) goto done;
        has_scores[m] = plot_scores(&p, m);
        if (plot_close(&p, err, errlen)) goto done;
    }
    for (int i = 0; i < KP_PLOT_N_FIXED; i++)
        if (has[i] > 0) {
            if (run_gnuplot(dir, kp_report_plot_name[i], err, errlen)) goto done;
            out->drawn[i] = 1;
        }
    for (int m = 0; m < rows->n_model; m++)
        if (has_scores[m] > 0) {
            char stem[32];
            snprintf(stem, sizeof stem, "scores_%d", m + 1);
            if (run_gnuplot(dir, stem, err, errlen)) goto done;
            out->scores_drawn[m] = 1;
        }
    rc = 0;
done:
    free(has_scores);
    return rc;
}
