/* kprec get: the cached recommendations of items, read from Redis (cache/). */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cli/cli.h"
#include "cli/opts.h"
#include "common/util.h"

/* `kprec get --json`: one line per item. 0, or 1 when the cached text is not valid JSON. */
static int print_entry_json(const char *item, uint64_t ver, int64_t gen, const char *sugg)
{
    char err[512];
    char *line = kp_cache_entry_json(item, ver, gen, sugg, err, sizeof err);
    if (!line) {
        fprintf(stderr, "kprec get: %s: cached suggestions are %s\n", item, err);
        return 1;
    }
    puts(line);
    free(line);
    return 0;
}

/* `kprec get`: the item, its model version and time, one numbered line per suggestion. */
static int print_entry_text(const char *item, const char *title, uint64_t ver, int64_t gen,
                            const char *sugg)
{
    char err[512], when[64];
    kp_cache_suggestions s;
    if (kp_cache_suggestions_parse(sugg, &s, err, sizeof err)) {
        fprintf(stderr, "kprec get: %s: cached suggestions are %s\n", item, err);
        return 1;
    }
    time_t t = (time_t)(gen / 1000);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    printf("%s  %s\n  model version %" PRIu64 ", generated %s\n", item, title ? title : "", ver,
           when);
    for (int i = 0; i < s.n; i++)
        printf("  %3d. %6.3f  %s\n", i + 1, s.items[i].score,
               s.items[i].keyphrase ? s.items[i].keyphrase : "(null)");
    if (s.n == 0) printf("  (none: no keyphrase passed the gate)\n");
    kp_cache_suggestions_clear(&s);
    return 0;
}

int kp_cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"json", no_argument, 0, 'j'},
                                         {"wait-ms", required_argument, 0, 'w'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    int ch, as_json = 0;
    long wait_ms = 0;
    while ((ch = getopt_long(argc, argv, "c:jw:h", opts, NULL)) != -1) {
        if (ch == 'c')
            path = optarg;
        else if (ch == 'j')
            as_json = 1;
        else if (ch == 'w' && kp_opt_long("kprec get", "wait-ms", optarg, 0, 86400000L, &wait_ms))
            return 2;
        else if (ch != 'w') {
            fprintf(
                ch == 'h' ? stdout : stderr,
                "usage: kprec get [-c FILE] [--json] [--wait-ms N] ITEM_ID...\n"
                "Prints the cached recommendations of each item from Redis: the item, its\n"
                "title, the model version and time, then one numbered line per suggestion\n"
                "(--json: one JSON object per item). Exit 1 if an item has none.\n"
                "  -c FILE       the worker's config ([redis]); default: defaults + environment\n"
                "  --json        one JSON line per item instead of text\n"
                "  --wait-ms N   wait up to N ms for an item that is not cached yet (default 0)\n"
                "Example:\n"
                "  kprec get -c /tmp/kp/kprec.ini --wait-ms 30000 B07XYZ\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "kprec get: ITEM_ID is required\n");
        return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    kp_cache *k = kp_cache_new(&c);
    int rc = 0;
    for (int a = optind; k && a < argc; a++) {
        uint64_t ver;
        int64_t gen;
        char *sugg = NULL, *title = NULL, err[512];
        int64_t deadline = kp_mono_ms() + wait_ms;
        int f;
        while ((f = kp_cache_get(k, argv[a], &ver, &gen, &sugg, &title, err, sizeof err)) == 0 &&
               kp_mono_ms() < deadline)
            nanosleep(&(struct timespec){0, 200 * 1000 * 1000}, NULL); /* 200 ms between looks */
        if (f < 0) {
            fprintf(stderr, "kprec get: %s\n", err);
            rc = 1;
            break;
        }
        if (f == 0) {
            fprintf(stderr, "kprec get: %s: no recommendations cached\n", argv[a]);
            rc = 1;
            continue;
        }
        if (as_json)
            rc |= print_entry_json(argv[a], ver, gen, sugg);
        else
            rc |= print_entry_text(argv[a], title, ver, gen, sugg);
        free(sugg);
        free(title);
    }
    kp_cache_free(k);
    kp_config_free(&c);
    return rc;
}
