/* learn_publish.h -- what the trainer learnt, to the model topic.
 *
 * Every [train] delta_steps steps or delta_ms a versioned delta (the embedding rows changed since
 * the last one plus the dense weights, chunked, HMAC-signed: consumer/model_topic.h), every
 * checkpoint_every versions also a checkpoint of the model with the optimiser state (cached in
 * checkpoint_dir), each in one transaction with the offsets of every event it contains
 * (consumer/learn_queue.h kp_lq_offsets): a replica sees a version and the trainer's group its
 * offsets together, or neither. After a checkpoint, records before the previous one are deleted. */
#ifndef KP_LEARN_PUBLISH_H
#define KP_LEARN_PUBLISH_H

#include "consumer/learn_state.h"

/* Publishes, in one transaction: the delta since base_version as version base + 1 (when
 * with_delta), then the checkpoint of that version (when with_ckpt), with the offsets of every
 * event they contain. 0 when committed; -1 when not (nothing of it is visible). */
int kp_lpub_publish(kp_lstate *s, int with_delta, int with_ckpt);

/* A delta (and every checkpoint_every versions a checkpoint), with the offsets it contains. */
int kp_lpub_delta(kp_lstate *s);

#endif
