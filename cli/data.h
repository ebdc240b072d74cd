/* data.h -- the offline verbs' input files, loaded in one place: items, keyphrases and optionally
 * a click log and judgments (offline/datasets.h), with the same messages in every verb. */
#ifndef KP_CLI_DATA_H
#define KP_CLI_DATA_H

#include "cli/opts.h"
#include "offline/datasets.h"

/* Paths of a verb's inputs; NULL = not given. grades: the judgments' grade scale (--grades
 * MIN:MAX, offline/datasets.h); min == max == 0 (a zeroed struct) means the default 1:3. */
typedef struct {
    const char *items, *keys, *clicks, *judgments;
    kp_grade_scale grades;
} kp_cli_paths;

/* The kp_opt row of --grades MIN:MAX filling the kp_cli_paths at p. */
#define KP_CLI_GRADES_OPT(p)                                                                       \
    {                                                                                              \
        "grades", 0, KP_OPT_FN, &(p)->grades, .fn = kp_cli_parse_grades                            \
    }

/* KP_OPT_FN parser of --grades: "MIN:MAX" into the kp_grade_scale at out. 0, or -1 with a
 * message. */
int kp_cli_parse_grades(const char *who, const char *value, void *out);

/* The scale of p (the default 1:3 when p->grades is zeroed). */
kp_grade_scale kp_cli_grades(const kp_cli_paths *p);

/* The kp_opt rows of --items (-i), --keyphrases (short key kkey) and --judgments (-j, required
 * when judg_required) filling the kp_cli_paths at p: the start of an offline verb's table. */
/* clang-format off */
#define KP_CLI_DATA_OPTS(p, kkey, judg_required)                                   \
    {"items", 'i', KP_OPT_STR, &(p)->items, .required = 1},                       \
    {"keyphrases", kkey, KP_OPT_STR, &(p)->keys, .required = 1},                  \
    {"judgments", 'j', KP_OPT_STR, &(p)->judgments, .required = judg_required}
/* clang-format on */

typedef struct {
    kp_texts items, keys;
    kp_clicklog clicks;    /* empty unless a click log was given */
    kp_judgments judg;     /* empty unless judgments were given */
    int clicks_skipped;    /* click events whose item or keyphrase id is unknown */
    int judgments_skipped; /* judgments whose item or keyphrase id is unknown */
} kp_cli_data;

/* Zeroes d and loads p->items and p->keys (both required), then p->clicks and p->judgments when
 * not NULL, resolving their ids against the items and keyphrases. Rows with unknown ids are
 * skipped and reported as "WHO: PATH: N judgment(s) skipped: unknown item or keyphrase id" on
 * stderr. Returns 0, or -1 after printing "WHO: message" (unreadable or invalid file, out of
 * memory); d must be released with kp_cli_data_free either way. */
int kp_cli_data_load(const char *who, const kp_cli_paths *p, kp_cli_data *d);

/* Frees what d owns and zeroes it. Accepts a zeroed d. */
void kp_cli_data_free(kp_cli_data *d);

/* Prints "WHO: message" to stderr: the verbs' one format for a failure. */
void kp_cli_fail(const char *who, const char *message);

#endif
