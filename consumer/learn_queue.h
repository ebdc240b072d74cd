/* learn_queue.h -- the trainer's events from poll to done.
 *
 * Records polled from [topics] clicks and judgments are decoded (consumer/learn_event.h); a bad
 * one is dead-lettered at once, a good one joins the pending list in arrival order. Clicks wait
 * there for their item's title (kprec:item:{id} in Redis, one MGET per round); an item Redis does
 * not know within [train] resolve_timeout_ms is dead-lettered. Resolved events are taken, in
 * order, up to a batch, for a step (consumer/learn_step.h).
 *
 * Offsets: an event is "done" when it was trained on or its dead letter was delivered. The offset
 * to commit for a partition (kp_lq_offsets) is the one after its newest done event, but never past
 * an event still pending: so a dead letter that was not delivered (the event is then "held", and
 * the trainer stops) is never committed past, and nothing after it is lost.
 *
 * Flow: at [train] max_pending pending + polled events the input is paused (nothing dropped: the
 * rest waits in Kafka), at half of it resumed. While the producer waits for a delivery,
 * kp_lq_tick polls the consumer to keep the group membership; what it hands out is kept for
 * kp_lq_poll, in order. */
#ifndef KP_LEARN_QUEUE_H
#define KP_LEARN_QUEUE_H

#include "consumer/learn_state.h"

/* Appends ev to the pending events (growing them and the lookup scratch). 0 / -1 (OOM). */
int kp_lq_push(kp_lstate *s, const kp_levent *ev);

/* Marks m handled: its partition may be stored up to it, unless an older event still waits. */
void kp_lq_mark_done(kp_lstate *s, const rd_kafka_message_t *m);

/* Per partition, the offset below which everything is handled (caller destroys the list). */
rd_kafka_topic_partition_list_t *kp_lq_offsets(kp_lstate *s);

/* Called while the producer waits for a delivery: keeps the group membership alive by polling
 * the consumer (the message it hands out, if any, is kept for kp_lq_poll: never dropped). */
void kp_lq_tick(void *opaque);

/* Sends m to the dead-letter topic with reason and marks it done. 0, or -1 when the producer did
 * not deliver it (a hard stop, or a failure it reports): then m is not done, s->dlq_failed and
 * kp_worker_stop are set and the caller keeps the event as held (its offset is never committed
 * past). */
int kp_lq_dead_letter(kp_lstate *s, const rd_kafka_message_t *m, const char *reason);

/* Looks up the titles of pending click events in Redis (one MGET). An item Redis answered "no
 * such key" for starts its expiry clock (missing_since_ms); while Redis fails, nothing expires.
 * Returns 0 when Redis answered (or nothing was needed), -1 when it did not. */
int kp_lq_resolve_titles(kp_lstate *s);

/* Polls up to a batch of events or the linger; bad ones are dead-lettered (one whose dead letter
 * is not delivered is kept, held). 0, or -1 on OOM, an undelivered dead letter or a hard stop
 * while waiting for the schema registry. */
int kp_lq_poll(kp_lstate *s);

/* Moves the resolved pending events, in order, up to a batch, to s->ready; dead-letters those
 * whose item Redis has not known for [train] resolve_timeout_ms. Returns how many are ready. */
int kp_lq_take_ready(kp_lstate *s);

#endif
