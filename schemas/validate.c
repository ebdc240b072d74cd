/* validate.c - the field limits of every kprec record (see codec.h): what the worker and the
 * trainer require of a decoded event beyond a successful decode. One place for them, used by the
 * serve path (ItemListed) and the train path (AdEvent, Judgment). */
#include "schemas/codec.h"

#include "common/util.h"

#include <math.h>
#include <string.h>

/* s (NULL counts as valid) must be well-formed UTF-8; what names it in the message. */
static int check_utf8(const char *what, const char *s, char *err, size_t errlen)
{
    size_t bad;
    if (s && !kp_utf8_valid(s, strlen(s), &bad)) {
        kp_errf(err, errlen, "%s is not valid UTF-8 (byte %zu)", what, bad);
        return -1;
    }
    return 0;
}

/* String field s: required (non-NULL and, unless blank_ok, not only white space), at most max
 * bytes, valid UTF-8. NULL s is fine when !required. 0, or -1 with "missing keyphrase",
 * "empty keyphrase", "keyphrase too long (900000 > 512 bytes)", "... is not valid UTF-8 ...". */
static int check_str(const char *what, const char *s, int required, size_t max, char *err,
                     size_t errlen)
{
    if (!s || !s[0]) {
        if (!required) return 0;
        kp_errf(err, errlen, "missing %s", what);
        return -1;
    }
    size_t n = strlen(s);
    if (n > max) {
        kp_errf(err, errlen, "%s too long (%zu > %zu bytes)", what, n, max);
        return -1;
    }
    if (required && s[strspn(s, " \t\r\n\v\f")] == '\0') {
        kp_errf(err, errlen, "empty %s", what);
        return -1;
    }
    return check_utf8(what, s, err, errlen);
}

/* An event time: 0..KP_TS_MAX ms. */
static int check_ts(const char *what, int64_t ts, char *err, size_t errlen)
{
    if (ts < 0 || ts > KP_TS_MAX) {
        kp_errf(err, errlen, "%s out of range (%lld ms)", what, (long long)ts);
        return -1;
    }
    return 0;
}

int kp_validate_item_listed(const kp_item_listed *v, size_t max_title, char *err, size_t errlen)
{
    if (!v) {
        kp_errf(err, errlen, "no item");
        return -1;
    }
    if (!v->item_id || !v->item_id[0]) {
        kp_errf(err, errlen, "missing item_id");
        return -1;
    }
    size_t n = strlen(v->item_id);
    if (n > KP_ITEM_ID_MAX) {
        kp_errf(err, errlen, "item_id too long (%zu > %d bytes)", n, KP_ITEM_ID_MAX);
        return -1;
    }
    if (check_utf8("item_id", v->item_id, err, errlen)) return -1;
    if (!v->title) {
        kp_errf(err, errlen, "missing title");
        return -1;
    }
    n = strspn(v->title, " \t\r\n\v\f");
    if (v->title[n] == '\0') {
        kp_errf(err, errlen, "empty title");
        return -1;
    }
    n = strlen(v->title);
    if (n > max_title) {
        kp_errf(err, errlen, "title too long (%zu > %zu bytes)", n, max_title);
        return -1;
    }
    if (check_utf8("title", v->title, err, errlen) ||
        check_str("category", v->category, 0, KP_FIELD_MAX, err, errlen) ||
        check_str("seller_id", v->seller_id, 0, KP_FIELD_MAX, err, errlen))
        return -1;
    if (!isfinite(v->price) || v->price < 0 || v->price > KP_PRICE_MAX) {
        kp_errf(err, errlen, "price out of range (%g)", v->price);
        return -1;
    }
    return check_ts("listed_at", v->listed_at, err, errlen);
}

int kp_validate_ad_event(const kp_ad_event *v, char *err, size_t errlen)
{
    if (!v) {
        kp_errf(err, errlen, "no ad event");
        return -1;
    }
    if (check_str("item_id", v->item_id, 1, KP_ITEM_ID_MAX, err, errlen) ||
        check_str("keyphrase", v->keyphrase, 1, KP_KEYPHRASE_MAX, err, errlen))
        return -1;
    if (v->kind != KP_AD_IMPRESSION && v->kind != KP_AD_CLICK) {
        kp_errf(err, errlen, "unknown ad event kind %d", (int)v->kind);
        return -1;
    }
    if (v->position < 0 || v->position > KP_POSITION_MAX) {
        kp_errf(err, errlen, "position out of range (%d, expected 0..%d)", (int)v->position,
                KP_POSITION_MAX);
        return -1;
    }
    return check_ts("ts", v->ts, err, errlen);
}

int kp_validate_judgment(const kp_judgment *v, size_t max_title, char *err, size_t errlen)
{
    if (!v) {
        kp_errf(err, errlen, "no judgment");
        return -1;
    }
    if (check_str("item_id", v->item_id, 0, KP_ITEM_ID_MAX, err, errlen) ||
        check_str("title", v->title, 1, max_title, err, errlen) ||
        check_str("keyphrase", v->keyphrase, 1, KP_KEYPHRASE_MAX, err, errlen))
        return -1;
    if (v->source != KP_JUDGE_LLM && v->source != KP_JUDGE_HUMAN && v->source != KP_JUDGE_SEARCH) {
        kp_errf(err, errlen, "unknown judgment source %d", (int)v->source);
        return -1;
    }
    /* written as !(in range) so that NaN fails too */
    if (!(v->score >= 0.0 && v->score <= 1.0)) {
        kp_errf(err, errlen, "score out of range (%g, expected 0..1)", v->score);
        return -1;
    }
    return check_ts("ts", v->ts, err, errlen);
}

int kp_validate_suggestions(const kp_suggestions_decoded *v, char *err, size_t errlen)
{
    if (!v) {
        kp_errf(err, errlen, "no suggestions");
        return -1;
    }
    if (check_str("item_id", v->item_id, 1, KP_ITEM_ID_MAX, err, errlen)) return -1;
    if (v->n < 0 || v->n > KP_SUGGESTIONS_MAX || (v->n && !v->items)) {
        kp_errf(err, errlen, "bad suggestion count %d (expected 0..%d)", v->n, KP_SUGGESTIONS_MAX);
        return -1;
    }
    for (int i = 0; i < v->n; i++) {
        const kp_suggestion_owned *s = &v->items[i];
        if (check_str("keyphrase", s->keyphrase, 1, KP_KEYPHRASE_MAX, err, errlen) ||
            check_str("keyphrase_id", s->keyphrase_id, 0, KP_FIELD_MAX, err, errlen))
            return -1;
        if (!isfinite(s->score)) {
            kp_errf(err, errlen, "suggestion %d: score is not a finite number", i);
            return -1;
        }
    }
    return check_ts("generated_at", v->generated_at, err, errlen);
}
