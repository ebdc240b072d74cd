/* opts.c -- table-driven getopt_long for the kprec verbs (see opts.h). */
#include "cli/opts.h"

#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

enum { MAX_OPTS = 64, LONG_ONLY = 1000, HELP_KEY = 'h' };

void kp_opt_bad(const char *who, const char *name, const char *value, const char *want)
{
    fprintf(stderr, "%s: bad value '%s' for --%s (wants %s)\n", who, value, name, want);
}

static int bad_integer(const char *who, const char *name, const char *value, long long lo,
                       long long hi)
{
    char want[96];
    snprintf(want, sizeof want, "an integer in %lld..%lld", lo, hi);
    kp_opt_bad(who, name, value, want);
    return -1;
}

static int bad_number(const char *who, const char *name, const char *value, double lo, double hi)
{
    char want[96];
    if (lo <= -FLT_MAX && hi >= FLT_MAX)
        snprintf(want, sizeof want, "a number");
    else
        snprintf(want, sizeof want, "a number in %g..%g", lo, hi);
    kp_opt_bad(who, name, value, want);
    return -1;
}

int kp_opt_long(const char *who, const char *name, const char *value, long lo, long hi, long *out)
{
    if (kp_parse_long(value, lo, hi, out) == 0) return 0;
    return bad_integer(who, name, value, lo, hi);
}

int kp_opt_int(const char *who, const char *name, const char *value, int lo, int hi, int *out)
{
    if (kp_parse_int(value, lo, hi, out) == 0) return 0;
    return bad_integer(who, name, value, lo, hi);
}

int kp_opt_u64(const char *who, const char *name, const char *value, uint64_t lo, uint64_t hi,
               uint64_t *out)
{
    /* kp_parse_i64 stops at INT64_MAX; a seed may use all 64 bits */
    char *end;
    errno = 0;
    unsigned long long v = value[0] >= '0' && value[0] <= '9' ? strtoull(value, &end, 10) : 0;
    if (value[0] >= '0' && value[0] <= '9' && !errno && !*end && v >= lo && v <= hi) {
        *out = (uint64_t)v;
        return 0;
    }
    char want[96];
    if (hi == UINT64_MAX)
        snprintf(want, sizeof want, "an integer >= %llu", (unsigned long long)lo);
    else
        snprintf(want, sizeof want, "an integer in %llu..%llu", (unsigned long long)lo,
                 (unsigned long long)hi);
    kp_opt_bad(who, name, value, want);
    return -1;
}

int kp_opt_double(const char *who, const char *name, const char *value, double lo, double hi,
                  double *out)
{
    if (kp_parse_double(value, lo, hi, out) == 0) return 0;
    return bad_number(who, name, value, lo, hi);
}

int kp_opt_float(const char *who, const char *name, const char *value, float lo, float hi,
                 float *out)
{
    double v;
    if (kp_opt_double(who, name, value, lo, hi, &v)) return -1;
    *out = (float)v;
    return 0;
}

static int opt_choice(const char *who, const kp_opt *o, const char *value)
{
    char want[256] = "";
    size_t n = 0;
    for (const kp_opt_choice *c = o->choices; c->name; c++) {
        if (!strcmp(c->name, value)) {
            *(int *)o->out = c->value;
            return 0;
        }
        const char *sep = c == o->choices ? "" : c[1].name ? ", " : " or ";
        n +=
            (size_t)snprintf(want + n, n < sizeof want ? sizeof want - n : 0, "%s%s", sep, c->name);
        if (n >= sizeof want) n = sizeof want - 1;
    }
    kp_opt_bad(who, o->name, value, want);
    return -1;
}

/* Stores value in o's target. 0, or -1 after printing a message. */
static int opt_set(const char *who, const kp_opt *o, const char *v)
{
    uint64_t u;
    switch (o->type) {
    case KP_OPT_FLAG:
        *(int *)o->out = 1;
        return 0;
    case KP_OPT_STR:
        *(const char **)o->out = v;
        return 0;
    case KP_OPT_INT:
        return kp_opt_int(who, o->name, v, (int)o->lo, (int)o->hi, o->out);
    case KP_OPT_LONG:
        return kp_opt_long(who, o->name, v, (long)o->lo, (long)o->hi, o->out);
    case KP_OPT_U32:
        if (kp_opt_u64(who, o->name, v, (uint64_t)o->lo, (uint64_t)o->hi, &u)) return -1;
        *(uint32_t *)o->out = (uint32_t)u;
        return 0;
    case KP_OPT_U64:
        return kp_opt_u64(who, o->name, v, (uint64_t)o->lo,
                          o->hi < 0 ? UINT64_MAX : (uint64_t)o->hi, o->out);
    case KP_OPT_FLOAT:
        return kp_opt_float(who, o->name, v, (float)o->lo, (float)o->hi, o->out);
    case KP_OPT_DOUBLE:
        return kp_opt_double(who, o->name, v, o->lo, o->hi, o->out);
    case KP_OPT_CHOICE:
        return opt_choice(who, o, v);
    case KP_OPT_FN:
        return o->fn(who, v, o->out);
    }
    return -1;
}

/* Builds getopt_long's tables from opts; returns the number of entries of opts. */
static int build_tables(const kp_opt *opts, struct option *lo, char *shorts, size_t cap)
{
    int n = 0;
    size_t s = 0;
    for (; opts[n].name && n < MAX_OPTS - 2; n++) {
        int arg = opts[n].type == KP_OPT_FLAG ? no_argument : required_argument;
        int key = opts[n].key ? opts[n].key : LONG_ONLY + n;
        lo[n] = (struct option){opts[n].name, arg, NULL, key};
        if (opts[n].key && s + 3 < cap) {
            shorts[s++] = (char)opts[n].key;
            if (arg == required_argument) shorts[s++] = ':';
        }
    }
    lo[n] = (struct option){"help", no_argument, NULL, HELP_KEY};
    lo[n + 1] = (struct option){NULL, 0, NULL, 0};
    shorts[s++] = HELP_KEY;
    shorts[s] = 0;
    return n;
}

static int find_key(const kp_opt *opts, int n, int ch)
{
    if (ch >= LONG_ONLY && ch < LONG_ONLY + n) return ch - LONG_ONLY;
    for (int i = 0; i < n; i++)
        if (opts[i].key == ch) return i;
    return -1;
}

/* "WHO: --a, --b and --c are required (WHO --help)" when one of them is missing. */
static int check_required(const char *who, const kp_opt *opts, int n, const char *given)
{
    int n_req = 0, missing = 0;
    for (int i = 0; i < n; i++)
        if (opts[i].required) n_req++, missing |= !given[i];
    if (!missing) return 0;
    fprintf(stderr, "%s: ", who);
    for (int i = 0, k = 0; i < n; i++) {
        if (!opts[i].required) continue;
        k++;
        fprintf(stderr, "%s--%s", k == 1 ? "" : k == n_req ? " and " : ", ", opts[i].name);
    }
    fprintf(stderr, " %s required (%s --help)\n", n_req == 1 ? "is" : "are", who);
    return -1;
}

int kp_opts_parse(const char *who, void (*usage)(FILE *f), const kp_opt *opts, int argc,
                  char **argv, int *argi)
{
    struct option lo[MAX_OPTS];
    char shorts[3 * MAX_OPTS + 1];
    char given[MAX_OPTS] = {0};
    int n = build_tables(opts, lo, shorts, sizeof shorts), ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, shorts, lo, NULL)) != -1) {
        int i = ch == HELP_KEY ? -1 : find_key(opts, n, ch);
        if (ch == HELP_KEY) {
            usage(stdout);
            return 0;
        }
        if (i < 0) {
            usage(stderr);
            return 2;
        }
        if (opt_set(who, &opts[i], optarg)) return 2;
        given[i] = 1;
        if (opts[i].seen) *opts[i].seen = 1;
    }
    if (argi) {
        *argi = optind;
    } else if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s'\n", who, argv[optind]);
        return 2;
    }
    return check_required(who, opts, n, given) ? 2 : KP_OPTS_GO;
}
