/* json.c -- the cached suggestions' JSON: written by the serve path, read by `kprec get`. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cache.h"
#include "common/log.h"
#include "common/util.h"

char *kp_cache_suggestions_json(const kp_rec_suggestion *s, int n)
{
    return kp_cache_suggestions_json_arm(s, n, NULL);
}

/* Scores are floats: 9 significant digits give back the same float (and cost far less to print
 * than jansson's default 17). */
#define SCORE_DIGITS 9

/* {"keyphrase", "id", "score"} of one suggestion, built without json_pack's format parsing (the
 * keys are literals: no UTF-8 check for them); NULL if a string is not valid UTF-8 (or NULL) or
 * on OOM. */
static json_t *suggestion_object(const kp_rec_suggestion *s)
{
    json_t *o = json_object();
    if (!o) return NULL;
    /* each set takes its value, stored or released, and fails on a NULL one */
    int bad = json_object_set_new_nocheck(o, "keyphrase",
                                          s->keyphrase ? json_string(s->keyphrase) : NULL);
    bad |=
        json_object_set_new_nocheck(o, "id", s->keyphrase_id ? json_string(s->keyphrase_id) : NULL);
    bad |= json_object_set_new_nocheck(o, "score", json_real((double)s->score));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

char *kp_cache_suggestions_json_arm(const kp_rec_suggestion *s, int n, const char *arm)
{
    char *out = NULL;
    json_t *arr = json_array();
    if (!arr) return NULL;
    for (int j = 0; j < n; j++) {
        if (!isfinite(s[j].score)) continue;
        json_t *o = suggestion_object(&s[j]);
        /* calibrated: the ranking score before calibration goes beside it */
        if (o && isfinite(s[j].raw) && s[j].raw != s[j].score &&
            json_object_set_new(o, "raw", json_real((double)s[j].raw))) {
            json_decref(o);
            goto err;
        }
        /* an A/B split or a shadow: the arm that scored the item, beside each suggestion */
        if (o && arm && arm[0] && json_object_set_new(o, "arm", json_string(arm))) {
            json_decref(o);
            goto err;
        }
        if (!o) { /* not valid UTF-8 in the inventory: leave that keyphrase out of the cache */
            kp_warn("keyphrase %s is not valid UTF-8: left out",
                    s[j].keyphrase_id ? s[j].keyphrase_id : "(null)");
            continue;
        }
        if (json_array_append_new(arr, o)) goto err;
    }
    out = json_dumps(arr, JSON_COMPACT | JSON_REAL_PRECISION(SCORE_DIGITS));
err:
    json_decref(arr);
    return out;
}

static char *dup_string(json_t *o, const char *key, int *oom)
{
    const char *v = json_string_value(json_object_get(o, key));
    char *d = v ? strdup(v) : NULL;
    if (v && !d) *oom = 1;
    return d;
}

int kp_cache_suggestions_parse(const char *json, kp_cache_suggestions *out, char *err,
                               size_t errlen)
{
    json_error_t je;
    int oom = 0;
    memset(out, 0, sizeof *out);
    json_t *arr = json_loads(json, 0, &je);
    if (!arr) {
        kp_errf(err, errlen, "not valid JSON: %s", je.text);
        return -1;
    }
    size_t n = json_is_array(arr) ? json_array_size(arr) : 0;
    if (n && !(out->items = calloc(n, sizeof *out->items))) goto oom;
    size_t i;
    json_t *o;
    json_array_foreach(arr, i, o)
    {
        kp_cache_suggestion *s = &out->items[out->n++];
        s->keyphrase = dup_string(o, "keyphrase", &oom);
        s->id = dup_string(o, "id", &oom);
        s->arm = dup_string(o, "arm", &oom);
        s->score = json_real_value(json_object_get(o, "score"));
        if (oom) goto oom;
    }
    json_decref(arr);
    return 0;
oom:
    kp_errf(err, errlen, "out of memory");
    json_decref(arr);
    kp_cache_suggestions_clear(out);
    return -1;
}

void kp_cache_suggestions_clear(kp_cache_suggestions *s)
{
    if (!s) return;
    for (int i = 0; i < s->n; i++)
        free(s->items[i].keyphrase), free(s->items[i].id), free(s->items[i].arm);
    free(s->items);
    memset(s, 0, sizeof *s);
}

char *kp_cache_entry_json(const char *item_id, uint64_t model_version, int64_t generated_at,
                          const char *suggestions, char *err, size_t errlen)
{
    json_error_t je;
    char *out = NULL;
    json_t *arr = json_loads(suggestions, 0, &je);
    if (!arr) {
        kp_errf(err, errlen, "not valid JSON: %s", je.text);
        return NULL;
    }
    json_t *o = json_pack("{s:s, s:I, s:I, s:o}", "item_id", item_id, "model_version",
                          (json_int_t)model_version, "generated_at", (json_int_t)generated_at,
                          "suggestions", arr); /* "o": o takes arr, also on failure */
    if (o) out = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (!out) kp_errf(err, errlen, "out of memory");
    return out;
}
