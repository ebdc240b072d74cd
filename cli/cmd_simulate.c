/* kprec simulate-clicks: turns judged pairs into the position-biased click log the old search
 * engine would have produced (model/clicksim.h), optionally restricted to a list of items (the
 * benchmark simulates clicks on its train items only), and prints a summary. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/data.h"
#include "cli/opts.h"
#include "model/bm25.h"
#include "offline/clicksim.h"
#include "offline/datasets.h"

#define SIM_POSITIONS 5
#define WHO           "kprec simulate-clicks"

static void sim_usage(FILE *f)
{
    kp_clicksim_config d;
    kp_clicksim_config_default(&d);
    fprintf(f,
            "usage: kprec simulate-clicks --items I --keyphrases K --judgments J --out FILE\n"
            "                  [--sessions N] [--eta X] [--noise X] [--eps X] [--gamma X]\n"
            "                  [--max-shown N] [--seed S] [--items-filter F] [--lexical-top N]\n"
            "                  [--grades MIN:MAX]\n"
            "Simulates, for every judged item, N sessions of the old search engine: its judged\n"
            "keyphrases ranked by relevance + N(0, noise^2), position r examined with probability\n"
            "1/r^eta, an examined pair clicked with probability eps + (1-eps)u^gamma, where\n"
            "u = (g-MIN)/(MAX-MIN) is the grade g on the --grades scale (default 1:3) mapped to\n"
            "0..1 (noise is in units of the 1..3 scale). --lexical-top N: a lexical old engine\n"
            "that only shows keyphrases among its BM25 top N of the item (offline/bm25): judged\n"
            "keyphrases outside that list are never shown, never clicked.\n"
            "Writes the click log (item_id, keyphrase_id, kind, position, ts) to FILE and prints\n"
            "events, clicks and CTR by position. --items-filter F keeps only the items listed in\n"
            "the first column of the TSV file F (one header row).\n"
            "Defaults: --sessions %d --eta %g --noise %g --eps %g --gamma %g --max-shown %d (0 =\n"
            "all) --seed %llu. Exit status: 0 ok, 1 unreadable or invalid input, 2 usage error.\n"
            "Example:\n"
            "  kprec simulate-clicks --items items.tsv --keyphrases keyphrases.tsv \\\n"
            "      --judgments split/train_judgments.tsv --out clicks.tsv --lexical-top 10\n",
            d.sessions_per_item, (double)d.eta, (double)d.noise_sd, (double)d.eps, (double)d.gamma,
            d.max_shown, (unsigned long long)d.seed);
}

/* Marks in keep[n_items] the items listed in the first column of path (header skipped).
 * *n_listed / *n_unknown count the listed ids and those not in items. 0, or -1 with err. */
static int load_filter(const char *path, const kp_texts *items, char *keep, long *n_listed,
                       long *n_unknown, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long lineno = 0;
    *n_listed = *n_unknown = 0;
    while ((n = getline(&line, &cap, f)) > 0) {
        if (++lineno == 1) continue; /* header */
        line[strcspn(line, "\t\r\n")] = 0;
        if (!line[0]) continue;
        int row = kp_texts_find(items, line);
        (*n_listed)++;
        if (row < 0)
            (*n_unknown)++;
        else
            keep[row] = 1;
    }
    int bad = ferror(f);
    free(line);
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "%s: read error", path);
        return -1;
    }
    if (lineno == 0) {
        snprintf(err, errlen, "%s: empty file (expected a header row)", path);
        return -1;
    }
    return 0;
}

typedef struct {
    kp_cli_paths in; /* items, keyphrases, judgments */
    const char *out, *filter;
    int lexical_top; /* 0 = off */
    kp_clicksim_config sc;
} sim_args;

/* Parses the command line into a. KP_OPTS_GO, or the exit status (message printed). */
static int sim_parse(int argc, char **argv, sim_args *a)
{
    memset(a, 0, sizeof *a);
    kp_clicksim_config *sc = &a->sc;
    kp_clicksim_config_default(sc);
    const kp_opt opts[] = {
        KP_CLI_DATA_OPTS(&a->in, 'K', 1),
        KP_CLI_GRADES_OPT(&a->in),
        {"out", 'o', KP_OPT_STR, &a->out, .required = 1},
        {"sessions", 'S', KP_OPT_INT, &sc->sessions_per_item, .lo = 1, .hi = 1000000},
        {"eta", 'e', KP_OPT_FLOAT, &sc->eta, .lo = 0, .hi = 100},
        {"noise", 'n', KP_OPT_FLOAT, &sc->noise_sd, .lo = 0, .hi = 100},
        {"eps", 'E', KP_OPT_FLOAT, &sc->eps, .lo = 0, .hi = 1},
        {"gamma", 'g', KP_OPT_FLOAT, &sc->gamma, .lo = 0, .hi = 100},
        {"max-shown", 'x', KP_OPT_INT, &sc->max_shown, .lo = 0, .hi = 1000000},
        {"seed", 's', KP_OPT_U64, &sc->seed, .lo = 0, .hi = -1},
        {"items-filter", 'f', KP_OPT_STR, .out = &a->filter},
        {"lexical-top", 'L', KP_OPT_INT, &a->lexical_top, .lo = 1, .hi = 1000000},
        {NULL}};
    return kp_opts_parse(WHO, sim_usage, opts, argc, argv, NULL);
}

/* The judgments of the items listed in the filter file, into *sub. 0, or -1 with err. */
static int filter_judgments(const sim_args *a, const kp_cli_data *d, kp_judgments *sub, char *err,
                            size_t errlen)
{
    long listed, unknown;
    const kp_judgments *j = &d->judg;
    char *keep = calloc((size_t)d->items.n + 1, 1);
    int rc = -1;
    if (!keep) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (load_filter(a->filter, &d->items, keep, &listed, &unknown, err, errlen)) goto out;
    if (unknown)
        fprintf(stderr, WHO ": %ld of %ld filter id(s) are not in %s\n", unknown, listed,
                a->in.items);
    sub->item = malloc(sizeof(int) * ((size_t)j->n + 1));
    sub->key = malloc(sizeof(int) * ((size_t)j->n + 1));
    sub->rel = malloc(sizeof(float) * ((size_t)j->n + 1));
    if (!sub->item || !sub->key || !sub->rel) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    for (int p = 0; p < j->n; p++)
        if (keep[j->item[p]]) {
            sub->item[sub->n] = j->item[p];
            sub->key[sub->n] = j->key[p];
            sub->rel[sub->n++] = j->rel[p];
        }
    rc = 0;
out:
    free(keep);
    return rc;
}

/* Prints the summary of the click log written. */
static void sim_report(const sim_args *a, const kp_judgments *use, const kp_clicklog *log)
{
    long imp[SIM_POSITIONS + 1] = {0}, clk[SIM_POSITIONS + 1] = {0}, n_imp = 0, n_clk = 0;
    for (int e = 0; e < log->n; e++) {
        int pos = log->ev[e].position, is_click = log->ev[e].kind == KP_EV_CLICK;
        n_clk += is_click;
        n_imp += !is_click;
        if (pos >= 1 && pos <= SIM_POSITIONS) (is_click ? clk : imp)[pos]++;
    }
    printf("%-14s %d\n", "judged pairs", use->n);
    printf("%-14s %d\n", "events", log->n);
    printf("%-14s %ld\n", "impressions", n_imp);
    printf("%-14s %ld\n", "clicks", n_clk);
    printf("%-14s %.4f\n", "ctr", n_imp ? (double)n_clk / (double)n_imp : 0.0);
    printf("ctr by position:");
    for (int p = 1; p <= SIM_POSITIONS; p++)
        printf("  %d: %.4f", p, imp[p] ? (double)clk[p] / (double)imp[p] : 0.0);
    printf("\n");
    printf("%-14s %s\n", "written", a->out);
}

int kp_cmd_simulate_clicks(int argc, char **argv)
{
    sim_args a;
    int rc = sim_parse(argc, argv, &a);
    if (rc != KP_OPTS_GO) return rc;
    char err[512];
    kp_cli_data d;
    kp_judgments sub = {0}, lex = {0};
    kp_bm25 *bm = NULL;
    kp_clicklog log = {0};
    rc = 1;
    if (kp_cli_data_load(WHO, &a.in, &d)) goto out;
    const kp_judgments *use = &d.judg;
    if (a.filter) {
        if (filter_judgments(&a, &d, &sub, err, sizeof err)) goto fail;
        use = &sub;
    }
    if (a.lexical_top > 0) {
        int dropped = 0;
        bm = kp_bm25_build((const char *const *)d.keys.text, d.keys.n, KP_BM25_K1, KP_BM25_B, err,
                           sizeof err);
        if (!bm ||
            kp_clicksim_lexical(use, bm, &d.items, a.lexical_top, &lex, &dropped, err, sizeof err))
            goto fail;
        fprintf(stderr,
                WHO ": lexical engine (BM25 top %d): %d of %d judged pair(s) can be shown, %d "
                    "never\n",
                a.lexical_top, lex.n, use->n, dropped);
        use = &lex;
    }
    if (kp_clicksim_run(use, d.items.n, d.keys.n, &a.sc, &log, err, sizeof err) ||
        kp_clicklog_write(a.out, &log, &d.items, &d.keys, err, sizeof err))
        goto fail;
    sim_report(&a, use, &log);
    rc = 0;
    goto out;
fail:
    kp_cli_fail(WHO, err);
out:
    kp_judgments_free(&sub);
    kp_judgments_free(&lex);
    kp_bm25_free(bm);
    kp_clicklog_free(&log);
    kp_cli_data_free(&d);
    return rc;
}
