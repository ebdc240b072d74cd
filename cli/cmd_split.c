/* kprec split: deterministic train/validation split of items and judgments by a hash of the
 * item id (offline/split.h: kp_split_tsv does the work, this file parses the options). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "common/util.h"
#include "offline/split.h"

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
            "invalid input, 2 usage error.\n"
            "Example:\n"
            "  kprec split --items items.tsv --judgments judgments.tsv --out split/\n",
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
            if (kp_parse_double(optarg, 0.0, 1.0, &frac) != 0) {
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
    kp_split_counts ci, cj;
    snprintf(tr, sizeof tr, "%s/train_items.tsv", dir);
    snprintf(va, sizeof va, "%s/valid_items.tsv", dir);
    if (kp_split_tsv(items_path, "item_id", frac, seed, tr, va, &ci, err, sizeof err)) goto fail;
    snprintf(tr, sizeof tr, "%s/train_judgments.tsv", dir);
    snprintf(va, sizeof va, "%s/valid_judgments.tsv", dir);
    if (kp_split_tsv(judg_path, "item_id", frac, seed, tr, va, &cj, err, sizeof err)) goto fail;
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
