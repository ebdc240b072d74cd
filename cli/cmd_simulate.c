/* kprec simulate-clicks: turns judged pairs into the position-biased click log the old search
 * engine would have produced (model/clicksim.h), optionally restricted to a list of items (the
 * benchmark simulates clicks on its train items only), and prints a summary. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "offline/clicksim.h"
#include "offline/datasets.h"

#define SIM_POSITIONS 5

static void sim_usage(FILE *f)
{
    kp_clicksim_config d;
    kp_clicksim_config_default(&d);
    fprintf(f,
            "usage: kprec simulate-clicks --items I --keyphrases K --judgments J --out FILE\n"
            "                  [--sessions N] [--eta X] [--noise X] [--eps X] [--gamma X]\n"
            "                  [--max-shown N] [--seed S] [--items-filter F]\n"
            "Simulates, for every judged item, N sessions of the old search engine: its judged\n"
            "keyphrases ranked by relevance + N(0, noise^2), position r examined with probability\n"
            "1/r^eta, an examined pair clicked with probability eps + (1-eps)((rel-1)/2)^gamma.\n"
            "Writes the click log (item_id, keyphrase_id, kind, position, ts) to FILE and prints\n"
            "events, clicks and CTR by position. --items-filter F keeps only the items listed in\n"
            "the first column of the TSV file F (one header row).\n"
            "Defaults: --sessions %d --eta %g --noise %g --eps %g --gamma %g --max-shown %d (0 =\n"
            "all) --seed %llu. Exit status: 0 ok, 1 unreadable or invalid input, 2 usage error.\n",
            d.sessions_per_item, (double)d.eta, (double)d.noise_sd, (double)d.eps, (double)d.gamma,
            d.max_shown, (unsigned long long)d.seed);
}

static int parse_f(const char *s, float lo, float hi, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < lo || v > hi) return -1;
    *out = (float)v;
    return 0;
}

static int parse_i(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
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

int kp_cmd_simulate_clicks(int argc, char **argv)
{
    static const struct option opts[] = {{"items", required_argument, 0, 'i'},
                                         {"keyphrases", required_argument, 0, 'K'},
                                         {"judgments", required_argument, 0, 'j'},
                                         {"out", required_argument, 0, 'o'},
                                         {"sessions", required_argument, 0, 'S'},
                                         {"eta", required_argument, 0, 'e'},
                                         {"noise", required_argument, 0, 'n'},
                                         {"eps", required_argument, 0, 'E'},
                                         {"gamma", required_argument, 0, 'g'},
                                         {"max-shown", required_argument, 0, 'x'},
                                         {"seed", required_argument, 0, 's'},
                                         {"items-filter", required_argument, 0, 'f'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *items_path = NULL, *keys_path = NULL, *judg_path = NULL, *out_path = NULL;
    const char *filter_path = NULL;
    kp_clicksim_config sc;
    kp_clicksim_config_default(&sc);
    int ch, bad = 0;
    const char *bad_opt = NULL;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:K:j:o:S:e:n:E:g:x:s:f:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            items_path = optarg;
            break;
        case 'K':
            keys_path = optarg;
            break;
        case 'j':
            judg_path = optarg;
            break;
        case 'o':
            out_path = optarg;
            break;
        case 'f':
            filter_path = optarg;
            break;
        case 'S':
            bad = parse_i(optarg, 1, 1000000, &sc.sessions_per_item), bad_opt = "--sessions";
            break;
        case 'x':
            bad = parse_i(optarg, 0, 1000000, &sc.max_shown), bad_opt = "--max-shown";
            break;
        case 'e':
            bad = parse_f(optarg, 0, 100, &sc.eta), bad_opt = "--eta";
            break;
        case 'n':
            bad = parse_f(optarg, 0, 100, &sc.noise_sd), bad_opt = "--noise";
            break;
        case 'E':
            bad = parse_f(optarg, 0, 1, &sc.eps), bad_opt = "--eps";
            break;
        case 'g':
            bad = parse_f(optarg, 0, 100, &sc.gamma), bad_opt = "--gamma";
            break;
        case 's': {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            bad = end == optarg || *end || errno || optarg[0] == '-';
            bad_opt = "--seed";
            sc.seed = v;
            break;
        }
        case 'h':
            sim_usage(stdout);
            return 0;
        default:
            sim_usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr,
                    "kprec simulate-clicks: bad value '%s' for %s (kprec simulate-clicks "
                    "--help)\n",
                    optarg, bad_opt);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kprec simulate-clicks: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!items_path || !keys_path || !judg_path || !out_path) {
        fprintf(stderr, "kprec simulate-clicks: --items, --keyphrases, --judgments and --out are "
                        "required (kprec simulate-clicks --help)\n");
        return 2;
    }
    char err[512];
    int rc = 1, skipped = 0;
    kp_texts items = {0}, keys = {0};
    kp_judgments j = {0}, sub = {0};
    kp_clicklog log = {0};
    char *keep = NULL;
    if (kp_texts_load(items_path, &items, err, sizeof err) ||
        kp_texts_load(keys_path, &keys, err, sizeof err) ||
        kp_judgments_load(judg_path, &items, &keys, &j, &skipped, err, sizeof err))
        goto fail;
    if (skipped)
        fprintf(stderr,
                "kprec simulate-clicks: %d judgment(s) skipped: unknown item or "
                "keyphrase id\n",
                skipped);
    const kp_judgments *use = &j;
    if (filter_path) {
        long listed, unknown;
        keep = calloc((size_t)items.n + 1, 1);
        if (!keep) {
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        if (load_filter(filter_path, &items, keep, &listed, &unknown, err, sizeof err)) goto fail;
        if (unknown)
            fprintf(stderr, "kprec simulate-clicks: %ld of %ld filter id(s) are not in %s\n",
                    unknown, listed, items_path);
        sub.item = malloc(sizeof(int) * ((size_t)j.n + 1));
        sub.key = malloc(sizeof(int) * ((size_t)j.n + 1));
        sub.rel = malloc(sizeof(float) * ((size_t)j.n + 1));
        if (!sub.item || !sub.key || !sub.rel) {
            snprintf(err, sizeof err, "out of memory");
            goto fail;
        }
        for (int p = 0; p < j.n; p++)
            if (keep[j.item[p]]) {
                sub.item[sub.n] = j.item[p];
                sub.key[sub.n] = j.key[p];
                sub.rel[sub.n++] = j.rel[p];
            }
        use = &sub;
    }
    if (kp_clicksim_run(use, items.n, keys.n, &sc, &log, err, sizeof err) ||
        kp_clicklog_write(out_path, &log, &items, &keys, err, sizeof err))
        goto fail;

    long imp[SIM_POSITIONS + 1] = {0}, clk[SIM_POSITIONS + 1] = {0}, n_imp = 0, n_clk = 0;
    for (int e = 0; e < log.n; e++) {
        int pos = log.ev[e].position, is_click = log.ev[e].kind == KP_EV_CLICK;
        n_clk += is_click;
        n_imp += !is_click;
        if (pos >= 1 && pos <= SIM_POSITIONS) (is_click ? clk : imp)[pos]++;
    }
    printf("%-14s %d\n", "judged pairs", use->n);
    printf("%-14s %d\n", "events", log.n);
    printf("%-14s %ld\n", "impressions", n_imp);
    printf("%-14s %ld\n", "clicks", n_clk);
    printf("%-14s %.4f\n", "ctr", n_imp ? (double)n_clk / (double)n_imp : 0.0);
    printf("ctr by position:");
    for (int p = 1; p <= SIM_POSITIONS; p++)
        printf("  %d: %.4f", p, imp[p] ? (double)clk[p] / (double)imp[p] : 0.0);
    printf("\n");
    printf("%-14s %s\n", "written", out_path);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "kprec simulate-clicks: %s\n", err);
out:
    free(keep);
    kp_judgments_free(&sub);
    kp_judgments_free(&j);
    kp_clicklog_free(&log);
    kp_texts_free(&items);
    kp_texts_free(&keys);
    return rc;
}
