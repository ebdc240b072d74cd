/* kprec split: deterministic train/validation split of items and judgments by a hash of the
 * item id (model/split.h). Rows are copied verbatim; judgments follow their item because they
 * are split on their own item_id column with the same function. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "offline/split.h"

typedef struct {
    long rows, train, valid;
} split_counts;

/* Field `col` (0-based) of line[0..len) into *f, *fl. 0, or -1 if the line has fewer columns. */
static int field(const char *line, size_t len, int col, const char **f, size_t *fl)
{
    size_t a = 0;
    for (int c = 0; c < col; c++) {
        const char *t = memchr(line + a, '\t', len - a);
        if (!t) return -1;
        a = (size_t)(t - line) + 1;
    }
    const char *t = memchr(line + a, '\t', len - a);
    *f = line + a;
    *fl = (t ? (size_t)(t - line) : len) - a;
    return 0;
}

static size_t chomp_len(const char *line, size_t n)
{
    if (n && line[n - 1] == '\n') n--;
    if (n && line[n - 1] == '\r') n--;
    return n;
}

/* Copies the header of in_path to both outputs and every data row to out_valid when
 * kp_split_is_valid(its `column` value) else to out_train (empty lines dropped, a missing final
 * newline added). 0, or -1 with a message naming the file and line in err. */
static int split_tsv(const char *in_path, const char *column, double frac, uint64_t seed,
                     const char *train_path, const char *valid_path, split_counts *cn, char *err,
                     size_t errlen)
{
    FILE *in = NULL, *out[2] = {NULL, NULL};
    const char *paths[2] = {train_path, valid_path};
    char *line = NULL, *key = NULL;
    size_t cap = 0, kcap = 0;
    long lineno = 1;
    int rc = -1, col = -1;
    memset(cn, 0, sizeof *cn);
    if (!(in = fopen(in_path, "rb"))) {
        snprintf(err, errlen, "%s: cannot open: %s", in_path, strerror(errno));
        goto done;
    }
    ssize_t n = getline(&line, &cap, in);
    if (n <= 0) {
        snprintf(err, errlen, "%s:1: empty file (expected a header row)", in_path);
        goto done;
    }
    size_t hl = chomp_len(line, (size_t)n), cl = strlen(column);
    const char *f;
    size_t fl;
    for (int c = 0; col < 0 && !field(line, hl, c, &f, &fl); c++)
        if (fl == cl && !memcmp(f, column, cl)) col = c;
    if (col < 0) {
        snprintf(err, errlen, "%s:1: no column named '%s' in the header", in_path, column);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        if (!(out[i] = fopen(paths[i], "wb"))) {
            snprintf(err, errlen, "%s: cannot create: %s", paths[i], strerror(errno));
            goto done;
        }
        if (fwrite(line, 1, hl, out[i]) != hl || fputc('\n', out[i]) == EOF) goto werr;
    }
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        size_t ll = chomp_len(line, (size_t)n);
        if (ll == 0) continue;
        if (field(line, ll, col, &f, &fl) || fl == 0) {
            snprintf(err, errlen, "%s:%ld: no '%s' value (column %d)", in_path, lineno, column,
                     col + 1);
            goto done;
        }
        if (fl + 1 > kcap) {
            char *k = realloc(key, fl + 1);
            if (!k) {
                snprintf(err, errlen, "split: out of memory");
                goto done;
            }
            key = k;
            kcap = fl + 1;
        }
        memcpy(key, f, fl);
        key[fl] = 0;
        int v = kp_split_is_valid(key, frac, seed);
        if (fwrite(line, 1, ll, out[v]) != ll || fputc('\n', out[v]) == EOF) goto werr;
        cn->rows++;
        if (v)
            cn->valid++;
        else
            cn->train++;
    }
    if (ferror(in)) {
        snprintf(err, errlen, "%s:%ld: read error", in_path, lineno + 1);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        int e = fclose(out[i]);
        out[i] = NULL;
        if (e) {
            snprintf(err, errlen, "%s: write error: %s", paths[i], strerror(errno));
            goto done;
        }
    }
    rc = 0;
    goto done;
werr:
    snprintf(err, errlen, "split: write error: %s", strerror(errno));
done:
    if (in) fclose(in);
    for (int i = 0; i < 2; i++)
        if (out[i]) fclose(out[i]);
    free(line);
    free(key);
    return rc;
}

static void split_usage(FILE *f)
{
    fprintf(f,
            "usage: kprec split --items I --judgments J --out DIR [--valid-frac 0.2] [--seed S]\n"
            "Splits the items of I and the judgments of J (by their item_id column) into\n"
            "DIR/train_items.tsv, DIR/valid_items.tsv, DIR/train_judgments.tsv and\n"
            "DIR/valid_judgments.tsv. An item is in the validation part when a hash of its id\n"
            "and the seed falls below --valid-frac: deterministic, independent of row order,\n"
            "and judgments follow their item. Defaults: --valid-frac %g --seed %u (the\n"
            "benchmark hold-out). DIR is created if missing. Exit status: 0 ok, 1 unreadable or\n"
            "invalid input, 2 usage error.\n",
            KP_SPLIT_BENCH_FRAC, (unsigned)KP_SPLIT_BENCH_SEED);
}

int kp_cmd_split(int argc, char **argv)
{
    static const struct option opts[] = {{"items", required_argument, 0, 'i'},
                                         {"judgments", required_argument, 0, 'j'},
                                         {"out", required_argument, 0, 'o'},
                                         {"valid-frac", required_argument, 0, 'v'},
                                         {"seed", required_argument, 0, 's'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *items_path = NULL, *judg_path = NULL, *dir = NULL;
    double frac = KP_SPLIT_BENCH_FRAC;
    uint64_t seed = KP_SPLIT_BENCH_SEED;
    int ch;
    char *end;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "i:j:o:v:s:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'i':
            items_path = optarg;
            break;
        case 'j':
            judg_path = optarg;
            break;
        case 'o':
            dir = optarg;
            break;
        case 'v':
            errno = 0;
            frac = strtod(optarg, &end);
            if (end == optarg || *end || errno || !(frac >= 0.0 && frac <= 1.0)) {
                fprintf(stderr, "kprec split: --valid-frac wants a number in [0, 1], got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 's':
            errno = 0;
            seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end || errno || optarg[0] == '-') {
                fprintf(stderr, "kprec split: --seed wants a non-negative integer, got '%s'\n",
                        optarg);
                return 2;
            }
            break;
        case 'h':
            split_usage(stdout);
            return 0;
        default:
            split_usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kprec split: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!items_path || !judg_path || !dir) {
        fprintf(stderr, "kprec split: --items, --judgments and --out are required (kprec split "
                        "--help)\n");
        return 2;
    }
    if (mkdir(dir, 0777) && errno != EEXIST) {
        fprintf(stderr, "kprec split: %s: cannot create: %s\n", dir, strerror(errno));
        return 1;
    }
    char tr[4096], va[4096], err[512];
    split_counts ci, cj;
    snprintf(tr, sizeof tr, "%s/train_items.tsv", dir);
    snprintf(va, sizeof va, "%s/valid_items.tsv", dir);
    if (split_tsv(items_path, "item_id", frac, seed, tr, va, &ci, err, sizeof err)) goto fail;
    snprintf(tr, sizeof tr, "%s/train_judgments.tsv", dir);
    snprintf(va, sizeof va, "%s/valid_judgments.tsv", dir);
    if (split_tsv(judg_path, "item_id", frac, seed, tr, va, &cj, err, sizeof err)) goto fail;
    printf("%-10s %8s %8s %8s\n", "", "rows", "train", "valid");
    printf("%-10s %8ld %8ld %8ld\n", "items", ci.rows, ci.train, ci.valid);
    printf("%-10s %8ld %8ld %8ld\n", "judgments", cj.rows, cj.train, cj.valid);
    printf("valid fraction of items %.4f (asked %g, seed %llu) -> %s/\n",
           ci.rows ? (double)ci.valid / (double)ci.rows : 0.0, frac, (unsigned long long)seed, dir);
    return 0;
fail:
    fprintf(stderr, "kprec split: %s\n", err);
    return 1;
}
