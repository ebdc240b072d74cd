/* datasets: the offline data files of kprec besides the id -> text tables of model/tsv.h:
 * graded judgments and click logs (what the old search engine logged). Same format and error
 * conventions as model/tsv.h: UTF-8 TSV with a header row, errors naming file and 1-based line. */
#ifndef KP_DATASETS_H
#define KP_DATASETS_H

#include <stddef.h>
#include <stdint.h>

#include "model/tsv.h"

/* Grade scales. Judgment files may grade on any scale [min, max] (the Home Depot set 1..3, a 1..4
 * rating, a 0..1 LLM score, ...). The loader maps every grade g onto kprec's internal 1..3 scale,
 *     canonical(g) = 1 + 2 (g - min) / (max - min),
 * so that everything downstream works on one scale:
 *   - labels: (canonical - 1) / 2 = (g - min) / (max - min) in 0..1 (SR label of kprec train, the
 *     CE's target in offline/ce_train.c, the simulator's click probability in offline/clicksim.c);
 *   - thresholds: "relevant" canonical >= 2.5 <=> g >= min + 0.75 (max - min), "irrelevant"
 *     canonical < 2 <=> g < min + 0.5 (max - min) (kprec eval's defaults; kp_grade_canonical maps
 *     thresholds given on the file's scale).
 * The Judgment topic (schemas/3-Judgment.avsc) carries a score in [0, 1]: that score IS the 0..1
 * label, kp_grade_unit(scale, g); kp_grade_from_unit maps it back onto a scale (grade
 * min + score (max - min)). The online trainer (consumer/learn.c, example label = jd.score) uses
 * the score directly as the SR label, which equals the label the offline loader derives. */
typedef struct {
    float min, max; /* finite, min < max */
} kp_grade_scale;

#define KP_GRADE_MIN_DEFAULT 1.0f
#define KP_GRADE_MAX_DEFAULT 3.0f

/* {1, 3}. */
kp_grade_scale kp_grade_scale_default(void);

/* Parses "MIN:MAX" (two finite numbers, MIN < MAX). 0, or -1 with a message in err. */
int kp_grade_scale_parse(const char *s, kp_grade_scale *out, char *err, size_t errlen);

/* (g - min) / (max - min): the 0..1 label of grade g (not clamped). */
float kp_grade_unit(const kp_grade_scale *sc, float g);
/* 1 + 2 kp_grade_unit(g): grade g on the internal 1..3 scale. */
float kp_grade_canonical(const kp_grade_scale *sc, float g);
/* min + u (max - min): the grade of 0..1 score u (the Judgment topic's score) on scale sc. */
float kp_grade_from_unit(const kp_grade_scale *sc, float u);

/* Graded judgments (pair_id, keyphrase_id, item_id, relevance), resolved to row indices. */
typedef struct {
    int n;
    int *item;  /* [n] row in the items table */
    int *key;   /* [n] row in the keyphrases table */
    float *rel; /* [n] relevance on the internal scale, 1 (irrelevant) .. 3 (highly relevant) */
} kp_judgments;

/* Loads judgments.tsv: exactly 4 columns, relevance a finite number in [scale->min, scale->max]
 * (scale NULL = 1:3), stored as kp_grade_canonical (1..3). Rows whose item or keyphrase id is not
 * in items/keys are skipped and counted in *n_skipped (may be NULL). Errors: as kp_texts_load,
 * plus a bad or out-of-range relevance. The caller owns *out (kp_judgments_free). */
int kp_judgments_load_scaled(const char *path, const kp_texts *items, const kp_texts *keys,
                             const kp_grade_scale *scale, kp_judgments *out, int *n_skipped,
                             char *err, size_t errlen);

/* kp_judgments_load_scaled with the 1:3 scale. */
int kp_judgments_load(const char *path, const kp_texts *items, const kp_texts *keys,
                      kp_judgments *out, int *n_skipped, char *err, size_t errlen);

/* Frees what *j owns and zeroes it. Accepts NULL. */
void kp_judgments_free(kp_judgments *j);

/* Relevant keyphrases of every item as CSR: keyphrases of item i are idx[off[i] .. off[i+1]), in
 * judgment order, for the judgments with rel >= min_rel (duplicates kept as they are). Allocates
 * *off (n_items + 1) and *idx; the caller frees both with free(). Errors: a judgment whose item is
 * outside [0, n_items), out of memory. */
int kp_judgments_relevant_csr(const kp_judgments *j, int n_items, float min_rel, int **off,
                              int **idx, char *err, size_t errlen);

/* Click log (what the old search engine logged): one event per row. */
enum { KP_EV_IMPRESSION = 0, KP_EV_CLICK = 1 };

typedef struct {
    int item;     /* row in the items table */
    int key;      /* row in the keyphrases table */
    int kind;     /* KP_EV_IMPRESSION or KP_EV_CLICK */
    int position; /* 1-based rank at which the keyphrase was shown */
    int64_t ts;   /* event time, ms since the Unix epoch */
} kp_click_event;

typedef struct {
    int n, cap;
    kp_click_event *ev; /* [n], capacity cap */
} kp_clicklog;

/* Appends one event, growing the array geometrically. Errors: out of memory. */
int kp_clicklog_push(kp_clicklog *log, const kp_click_event *e);

/* Frees what *log owns and zeroes it. Accepts NULL. */
void kp_clicklog_free(kp_clicklog *log);

/* Writes log as TSV with header "item_id\tkeyphrase_id\tkind\tposition\tts", kind written as
 * "impression" or "click". Errors: an event with an index outside items/keys, a bad kind or a
 * position < 1, open/write failure (a partial file may remain). */
int kp_clicklog_write(const char *path, const kp_clicklog *log, const kp_texts *items,
                      const kp_texts *keys, char *err, size_t errlen);

/* Loads a file written by kp_clicklog_write. The header must be exactly the one above. Rows with
 * an unknown item or keyphrase id are skipped and counted in *n_skipped (may be NULL). Errors:
 * wrong column count, kind other than impression/click, position not an integer >= 1, ts not an
 * integer
 * >= 0. The caller owns *out (kp_clicklog_free). items may be NULL: item ids are then not
 * resolved (every event's item is -1; only rows with an unknown keyphrase id are skipped), for
 * readers that only need the keyphrases a log shows (kprec eval's never-shown slice). */
int kp_clicklog_load(const char *path, const kp_texts *items, const kp_texts *keys,
                     kp_clicklog *out, int *n_skipped, char *err, size_t errlen);

#endif /* KP_DATASETS_H */
