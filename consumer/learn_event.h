/* learn_event.h -- one event of the trainer's input, from the Kafka record to the training
 * example it becomes.
 *
 * A record of [topics] clicks is an AdEvent (impression or click of a keyphrase on an item), one
 * of [topics] judgments a Judgment (a graded keyphrase for an item's title). kp_levent_decode
 * decodes it and checks every field (schemas/codec.h kp_validate_*): an event it accepts is one
 * the training step can take, so a bad record is dead-lettered alone before it reaches a step.
 * kp_lexample_set turns an accepted event, once its title is known, into the example the training
 * buffer keeps (consumer/learn_buffer.h): its own copies of title and keyphrase, its kind, its
 * position (1 when unknown) and its label (click 1, impression 0, or the judgment's score). */
#ifndef KP_LEARN_EVENT_H
#define KP_LEARN_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "common/config.h"
#include "schemas/codec.h"

/* An event waiting for its step (or for its item's title). */
typedef struct {
    rd_kafka_message_t *msg;
    int is_click_topic;
    kp_ad_event ad;
    kp_judgment jd;
    char *title;              /* resolved title (owned) */
    int64_t missing_since_ms; /* when Redis first said it has no title for the item (0 = not) */
    int held; /* its dead letter could not be delivered: never handled, holds its offset back */
} kp_levent;

enum { KP_LEX_IMPRESSION = 0, KP_LEX_CLICK = 1, KP_LEX_JUDGMENT = 2 };

/* A training example kept in the bounded buffer. */
typedef struct {
    char *title, *key;
    int kind, position;
    float label; /* click 1 / impression 0, or the judgment's score */
} kp_lexample;

/* Frees what e owns (its message, decoded fields, title) and zeroes it. Accepts an empty e. */
void kp_levent_clear(kp_levent *e);

/* Decodes and checks m (a record of c's [topics] clicks or judgments) into ev, which owns m from
 * now on; a judgment's title is copied to ev->title. Counts the record as consumed. 0, or -1 with
 * why (the caller then dead-letters m and clears ev). */
int kp_levent_decode(kp_codec *codec, const kp_config *c, rd_kafka_message_t *m, kp_levent *ev,
                     char *why, size_t whylen);

/* Fills x from ev (whose title is resolved): copies of title and keyphrase, kind, position,
 * label. x's previous strings are not freed (kp_lexample_clear). 0, or -1 on OOM (x is then
 * empty: both strings NULL). */
int kp_lexample_set(kp_lexample *x, const kp_levent *ev);

/* Frees x's strings (NULL then). Accepts an empty x. */
void kp_lexample_clear(kp_lexample *x);

#endif
