/* eval_pipeline.h -- the serving pipeline offline: `kprec eval --rerank/--threshold/...` (what
 * the worker would publish, evaluated) and `kprec calibrate` (fits the calibration file), both
 * through model/recommender's one pipeline code path. */
#ifndef KP_CLI_EVAL_PIPELINE_H
#define KP_CLI_EVAL_PIPELINE_H

#include "model/bm25.h"
#include "model/calib.h"
#include "model/ce.h"
#include "model/recommender.h"
#include "model/tsv.h"

/* 1 when argv holds an option only the pipeline evaluation takes (--rerank, --hybrid,
 * --candidates, --threshold, --calibration, --speed): kprec eval then hands over to
 * kp_eval_pipeline. */
int kp_eval_pipeline_wanted(int argc, char **argv);

/* kprec eval with the pipeline: same exit statuses as the verbs (cli/cli.h). */
int kp_eval_pipeline(int argc, char **argv);

/* A recommender over keys with the pipeline of a worker configured with these paths (NULL or ""
 * = none). Owns what it loads. */
typedef struct {
    kp_ce *ce;
    kp_calib *calib;
    kp_bm25 *bm;
    kp_recommender *rec;
} kp_cli_pipeline;

/* Loads be (a checkpoint path), ce and calib, builds the recommender over keys and sets its
 * pipeline. 0, or -1 after printing "WHO: message"; p must be released with kp_cli_pipeline_free
 * either way. */
int kp_cli_pipeline_open(const char *who, const char *be, const char *ce, const char *calib,
                         int candidates, int hybrid, float threshold, int threads,
                         const kp_texts *keys, kp_cli_pipeline *p);
void kp_cli_pipeline_free(kp_cli_pipeline *p);

#endif
