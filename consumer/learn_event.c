/* learn_event.c -- a trainer event: decode + validation of its record, and the training example
 * it becomes (contracts in learn_event.h). */
#include "consumer/learn_event.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/telemetry.h"

void kp_levent_clear(kp_levent *e)
{
    kp_ad_event_clear(&e->ad);
    kp_judgment_clear(&e->jd);
    free(e->title);
    if (e->msg) rd_kafka_message_destroy(e->msg);
    memset(e, 0, sizeof *e);
}

int kp_levent_decode(kp_codec *codec, const kp_config *c, rd_kafka_message_t *m, kp_levent *ev,
                     char *why, size_t whylen)
{
    memset(ev, 0, sizeof *ev);
    ev->msg = m;
    ev->is_click_topic = !strcmp(rd_kafka_topic_name(m->rkt), c->topic_clicks);
    atomic_fetch_add(&kp_m.consumed[ev->is_click_topic ? KP_MT_CLICKS : KP_MT_JUDGMENTS], 1);
    if (ev->is_click_topic) {
        if (kp_decode_ad_event(codec, m->payload, m->len, &ev->ad, why, whylen) ||
            kp_validate_ad_event(&ev->ad, why, whylen))
            return -1;
        return 0;
    }
    if (kp_decode_judgment(codec, m->payload, m->len, &ev->jd, why, whylen) ||
        kp_validate_judgment(&ev->jd, (size_t)c->max_title_bytes, why, whylen))
        return -1;
    if (!(ev->title = strdup(ev->jd.title))) {
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

int kp_lexample_set(kp_lexample *x, const kp_levent *ev)
{
    x->title = strdup(ev->title);
    x->key = strdup(ev->is_click_topic ? ev->ad.keyphrase : ev->jd.keyphrase);
    if (!x->title || !x->key) {
        kp_lexample_clear(x);
        return -1;
    }
    x->kind = ev->is_click_topic ? (ev->ad.kind == KP_AD_CLICK ? KP_LEX_CLICK : KP_LEX_IMPRESSION)
                                 : KP_LEX_JUDGMENT;
    x->position = ev->is_click_topic && ev->ad.position > 0 ? ev->ad.position : 1;
    x->label =
        ev->is_click_topic ? (ev->ad.kind == KP_AD_CLICK ? 1.0f : 0.0f) : (float)ev->jd.score;
    return 0;
}

void kp_lexample_clear(kp_lexample *x)
{
    free(x->title), free(x->key);
    x->title = x->key = NULL;
}
