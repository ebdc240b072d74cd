/* report_internal.h - what offline/report.c (rows, merge, page) and offline/report_plot.c
 * (gnuplot data, scripts, runs) share. Not for other modules. */
#ifndef KP_REPORT_INTERNAL_H
#define KP_REPORT_INTERNAL_H

#include <stddef.h>

/* One row of report.tsv: fields label, kind, section, a, b, c (owned strings). */
typedef struct {
    char *f[6];
} kp_report_row;

enum { KP_RR_LABEL, KP_RR_KIND, KP_RR_SEC, KP_RR_A, KP_RR_B, KP_RR_C };

typedef struct {
    kp_report_row *row;
    int n, cap;
    const char **model; /* distinct labels in row order (pointers into row) */
    int n_model;
} kp_report_rows;

/* The plots: each drawn or left out. */
typedef enum {
    KP_PLOT_RECALL,
    KP_PLOT_MATRYOSHKA,
    KP_PLOT_CALIBRATION,
    KP_PLOT_NEVER_SHOWN,
    KP_PLOT_N_FIXED
} kp_plot_id;

typedef struct {
    int drawn[KP_PLOT_N_FIXED]; /* 1: NAME.png was written */
    int *scores_drawn;          /* [n_model]: scores_N.png (N = model index + 1) was written */
} kp_report_plots;

/* The fixed plots' file stems ("recall", ...). */
extern const char *const kp_report_plot_name[KP_PLOT_N_FIXED];

/* Does row r belong to model label and section sec? */
int kp_report_row_is(const kp_report_row *r, const char *label, const char *sec);
/* Field f of r as a number (NAN when not one). */
double kp_report_num(const kp_report_row *r, int f);

/* Writes every plot's .tsv and .gp into dir and runs gnuplot on each plot that has data; fills
 * p (p->scores_drawn allocated [rows->n_model], freed by the caller). 0, or -1 with err (a write
 * failure, gnuplot missing or failing); p says what was drawn either way. */
int kp_report_plots_draw(const char *dir, const kp_report_rows *rows, kp_report_plots *p, char *err,
                         size_t errlen);

#endif
