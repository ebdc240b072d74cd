/* learn_step.h -- the trainer's training step.
 *
 * A step takes the ready events (consumer/learn_queue.h), adds them to the buffer of recent
 * examples and trains on them plus as many drawn from the buffer: CTR (in-batch softmax over the
 * clicks, BCE over clicks and impressions with their positions), SR (the judgments' scores) and,
 * with a [train] teacher, Pearson distillation on the events' pairs plus random inventory
 * keyphrases. The rows it changed are marked for the next delta (consumer/learn_publish.h).
 * A step the trainer rejects leaves the buffer as it was; its events are then tried one by one,
 * and only the one rejected alone is dead-lettered. */
#ifndef KP_LEARN_STEP_H
#define KP_LEARN_STEP_H

#include <stddef.h>

#include "consumer/learn_state.h"

/* One step on the n events ev (added to the buffer) plus as many examples drawn from the buffer:
 * the stream arrives grouped (one item's sessions together), the draw mixes items so that
 * in-batch negatives are other items' keyphrases. 0 when the step was taken; 1 when the trainer
 * rejected it (reason in why) and -1 on OOM: then the events are out of the buffer again, so a
 * bad one cannot spoil later steps. */
int kp_lstep_take(kp_lstate *s, kp_levent *ev, int n, char *why, size_t whylen);

/* A step over the n ready events. When the trainer rejects the step, each event is tried alone:
 * the one it rejects is dead-lettered, the others train. 0; -1 on OOM or an undelivered dead
 * letter. Events not done go back to the pending ones (held back offsets, never leaked). */
int kp_lstep_ready(kp_lstate *s, int n);

#endif
