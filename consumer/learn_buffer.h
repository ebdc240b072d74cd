/* learn_buffer.h -- the trainer's buffer of recent examples: a ring of a fixed number of them.
 *
 * Every step trains on its new events plus as many older examples drawn from the buffer, so that
 * a step's in-batch negatives are other items' keyphrases (the stream arrives grouped: one item's
 * sessions together). A push replaces the oldest example once the ring is full; an unpush takes
 * the newest ones out again when their step did not happen, so a rejected event never stays to
 * spoil later steps. */
#ifndef KP_LEARN_BUFFER_H
#define KP_LEARN_BUFFER_H

#include "consumer/learn_event.h"
#include "model/rng.h"

typedef struct {
    kp_lexample *x; /* cap slots */
    int cap, len;   /* len examples held (the len slots before next) */
    int next;       /* where the next push goes */
} kp_lbuf;

/* An empty ring of cap (> 0) slots. 0, or -1 on OOM. */
int kp_lbuf_init(kp_lbuf *b, int cap);

/* Frees every example and the ring (b is then empty and zero). Accepts a zeroed b. */
void kp_lbuf_free(kp_lbuf *b);

/* Adds the example of ev (kp_lexample_set) as the newest, replacing the oldest in a full ring.
 * 0, or -1 on OOM: the slot is then emptied and out of the ring (a full ring holds one less). */
int kp_lbuf_push(kp_lbuf *b, const kp_levent *ev);

/* Takes the k newest examples out again (a step that did not happen): the ring then holds only
 * the examples no push overwrote. */
void kp_lbuf_unpush(kp_lbuf *b, int k);

/* The examples of a step, into ex[nnew + nold]: the nnew newest first (oldest of them first),
 * then nold drawn with rng from the other len - nnew (nnew <= len; nold 0 when nnew == len). */
void kp_lbuf_draw(const kp_lbuf *b, kp_rng *rng, const kp_lexample **ex, int nnew, int nold);

#endif
