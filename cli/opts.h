/* opts.h -- the command line of the kprec verbs: a table of options read with getopt_long, number
 * values checked by common/util.h's parsers, and one format for every message.
 *
 * A verb describes its options in a kp_opt table (terminated by {0}); kp_opts_parse fills the
 * targets, handles --help / -h, unknown options, stray arguments and required options, and tells
 * the verb whether to go on or which exit status to return. Messages go to stderr and start with
 * the verb's prefix `who` (e.g. "kprec train"). */
#ifndef KP_CLI_OPTS_H
#define KP_CLI_OPTS_H

#include <stdint.h>
#include <stdio.h>

typedef enum {
    KP_OPT_FLAG,   /* no argument: *(int *)out = 1 */
    KP_OPT_STR,    /* *(const char **)out = the argument (points into argv, not copied) */
    KP_OPT_INT,    /* int in [lo, hi] */
    KP_OPT_LONG,   /* long in [lo, hi] */
    KP_OPT_U32,    /* uint32_t in [lo, hi] */
    KP_OPT_U64,    /* uint64_t in [lo, hi]; hi < 0 means up to UINT64_MAX */
    KP_OPT_FLOAT,  /* float in [lo, hi] */
    KP_OPT_DOUBLE, /* double in [lo, hi] */
    KP_OPT_CHOICE, /* one of choices' names: *(int *)out = its value */
    KP_OPT_FN      /* fn(who, value, out) parses the value and prints its own message */
} kp_opt_type;

typedef struct {
    const char *name; /* NULL ends a list */
    int value;
} kp_opt_choice;

typedef struct {
    const char *name; /* long name without "--"; NULL ends a table */
    int key;          /* short option letter, or 0 for none */
    kp_opt_type type;
    void *out;                    /* where the value goes (type as above) */
    double lo, hi;                /* range of a number (inclusive) */
    int *seen;                    /* when not NULL, set to 1 when the option is given */
    int required;                 /* 1: the verb cannot run without it */
    const kp_opt_choice *choices; /* KP_OPT_CHOICE */
    int (*fn)(const char *who, const char *value, void *out); /* KP_OPT_FN: 0 or -1 */
} kp_opt;

/* kp_opts_parse's "go on" result; anything else is the verb's exit status. */
#define KP_OPTS_GO (-1)

/* Parses argv[1..argc) (argv[0] is the verb's name) against opts (terminated by an entry whose
 * name is NULL; --help / -h is always added). Returns KP_OPTS_GO when every option parsed and
 * every required one was given; 0 after printing usage(stdout) for --help; 2 after printing a
 * message (or usage(stderr) for an unknown option) on a usage error. When argi is NULL a
 * non-option argument is a usage error; otherwise *argi is set to the index of the first one.
 * Targets of options that were not given are left alone, so initialise them to the defaults. */
int kp_opts_parse(const char *who, void (*usage)(FILE *f), const kp_opt *opts, int argc,
                  char **argv, int *argi);

/* Prints "WHO: bad value 'VALUE' for --NAME (wants WANT)" to stderr. */
void kp_opt_bad(const char *who, const char *name, const char *value, const char *want);

/* Single-value parsers behind the table: each parses all of value (common/util.h rules: no
 * leading white space, nothing after the number), range-checked; returns 0 and sets *out, or
 * prints kp_opt_bad's message and returns -1 leaving *out unchanged. */
int kp_opt_long(const char *who, const char *name, const char *value, long lo, long hi, long *out);
int kp_opt_int(const char *who, const char *name, const char *value, int lo, int hi, int *out);
int kp_opt_u64(const char *who, const char *name, const char *value, uint64_t lo, uint64_t hi,
               uint64_t *out);
int kp_opt_double(const char *who, const char *name, const char *value, double lo, double hi,
                  double *out);
int kp_opt_float(const char *who, const char *name, const char *value, float lo, float hi,
                 float *out);

#endif
