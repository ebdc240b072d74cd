/* assets: the CE, calibration and BM25 index shared by the serve role's recommenders. */
#include "consumer/assets.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/util.h"
#include "model/bm25.h"
#include "model/calib.h"
#include "model/ce.h"

typedef struct {
    kp_bm25 *bm;
    atomic_int refs;
    uint64_t inv_hash;
    int n;
} bm25_ref;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int loaded;
static kp_ce *ce;
static kp_calib *calib;
static bm25_ref *cur_bm; /* the index of the newest inventory (one reference held here) */

static void bm25_unref(void *arg)
{
    bm25_ref *b = arg;
    if (b && atomic_fetch_sub(&b->refs, 1) == 1) {
        kp_bm25_free(b->bm);
        free(b);
    }
}

static uint64_t inventory_hash(const kp_recommender *r)
{
    uint64_t h = KP_FNV_OFFSET;
    for (int i = 0; i < kp_rec_size(r); i++) {
        const char *t = kp_rec_keyphrase(r, i);
        h = kp_fnv1a_step(h, kp_fnv1a(t, strlen(t) + 1));
    }
    return h;
}

/* Loads the CE and the calibration once. 0 / -1 with err. Under lock. */
static int load_once(const kp_config *c, char *err, size_t errlen)
{
    if (loaded) return 0;
    char e[512];
    if (c->model_ce[0]) {
        if (!(ce = kp_ce_load(c->model_ce, e, sizeof e))) {
            kp_errf(err, errlen, "[model] ce: %s", e);
            return -1;
        }
        kp_info("pipeline: re-ranking with cross-encoder %s (version %llu)", c->model_ce,
                (unsigned long long)kp_ce_version(ce));
    }
    if (c->model_calibration[0]) {
        if (!(calib = kp_calib_load(c->model_calibration, e, sizeof e))) {
            kp_errf(err, errlen, "[model] calibration: %s", e);
            kp_ce_free(ce), ce = NULL;
            return -1;
        }
        kp_info("pipeline: calibration %s (%s of %s scores)", c->model_calibration,
                kp_calib_method_name(kp_calib_get_method(calib)),
                kp_calib_input_name(kp_calib_get_input(calib)));
    }
    if (c->model_threshold > 0 && !calib)
        kp_warn("[model] threshold %g gates the raw score: no [model] calibration is configured",
                c->model_threshold);
    loaded = 1;
    return 0;
}

int kp_assets_attach(const kp_config *c, kp_recommender *r, char *err, size_t errlen)
{
    if (!c->model_ce[0] && !c->model_calibration[0] && !c->model_hybrid && !c->model_candidates &&
        !(c->model_threshold > 0))
        return 0; /* the plain BE top-K of before */
    pthread_mutex_lock(&lock);
    int rc = -1;
    bm25_ref *use = NULL;
    if (load_once(c, err, errlen)) goto out;
    if (c->model_hybrid > 0) {
        uint64_t h = inventory_hash(r);
        if (!cur_bm || cur_bm->inv_hash != h || cur_bm->n != kp_rec_size(r)) {
            const char **texts = malloc(sizeof *texts * (size_t)(kp_rec_size(r) + 1));
            bm25_ref *nb = calloc(1, sizeof *nb);
            char e[512] = "out of memory";
            if (texts && nb)
                for (int i = 0; i < kp_rec_size(r); i++)
                    texts[i] = kp_rec_keyphrase(r, i);
            if (!texts || !nb ||
                !(nb->bm =
                      kp_bm25_build(texts, kp_rec_size(r), KP_BM25_K1, KP_BM25_B, e, sizeof e))) {
                kp_errf(err, errlen, "[model] hybrid: BM25 index: %s", e);
                free((void *)texts);
                free(nb);
                goto out;
            }
            free((void *)texts);
            nb->inv_hash = h;
            nb->n = kp_rec_size(r);
            atomic_init(&nb->refs, 1);
            bm25_unref(cur_bm);
            cur_bm = nb;
        }
        use = cur_bm;
    }
    const kp_pipeline p = {.ce = ce,
                           .bm25 = use ? use->bm : NULL,
                           .calib = calib,
                           .candidates = c->model_candidates,
                           .hybrid = c->model_hybrid,
                           .threshold = (float)c->model_threshold,
                           .ce_threads = 1};
    if (kp_rec_set_pipeline(r, &p, err, errlen)) goto out;
    if (use) {
        atomic_fetch_add(&use->refs, 1);
        kp_rec_set_release(r, bm25_unref, use);
    }
    rc = 0;
out:
    pthread_mutex_unlock(&lock);
    return rc;
}

void kp_assets_shutdown(void)
{
    pthread_mutex_lock(&lock);
    bm25_unref(cur_bm);
    cur_bm = NULL;
    kp_ce_free(ce), ce = NULL;
    kp_calib_free(calib), calib = NULL;
    loaded = 0;
    pthread_mutex_unlock(&lock);
}
