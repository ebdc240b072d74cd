/* serve_writer.h -- the serve loop's overlap ([worker] overlap): a writer thread that takes one
 * detached batch (consumer/serve_batch.h) through its sink stages -- the Redis pipeline, then
 * every delivery report -- while the consumer's thread polls, decodes and scores the next one.
 *
 * Who does what:
 *   - the writer thread calls kp_serve_slot_send (so the cache_put and deliver sinks) and nothing
 *     else: it owns the Redis connection and the producer while a batch is submitted; a sink that
 *     answers RETRY is called again after a backoff ([worker] retry_backoff_ms doubling up to
 *     retry_backoff_max_ms), for ever, until *hard (the second signal) or kp_serve_writer_free;
 *   - the consumer's thread submits, and lands the batch with kp_serve_writer_land: only there are
 *     its offsets stored (rd_kafka_offsets_store stays on the consumer's thread), and only when the
 *     writer saw every entry acknowledged and every record delivered. One batch at a time is
 *     submitted, so batches land in order;
 *   - while the writer reports a failing sink, kp_serve_writer_land pauses consumption (the
 *     runner's pause sink), until the batch lands.
 * tests/unit/test_serve_batch.c runs it against fake sinks on the real thread. */
#ifndef KP_SERVE_WRITER_H
#define KP_SERVE_WRITER_H

#include "common/config.h"
#include "consumer/serve_batch.h"
#include "producer/kafka.h" /* kp_stop_flag */

typedef struct kp_serve_writer kp_serve_writer;

/* Starts the writer thread; c ([worker] retry backoff) and hard (may be NULL: a batch held at a
 * failing sink is given up, FAILED, once *hard is non-zero) are borrowed. NULL on failure. */
kp_serve_writer *kp_serve_writer_new(const kp_config *c, kp_stop_flag *hard);

/* Hands s (kp_serve_batch_detach) to the writer thread. 0, or -1 when one is submitted already
 * and has not been landed. */
int kp_serve_writer_submit(kp_serve_writer *wr, kp_serve_slot *s);

/* Waits up to timeout_ms (0: does not wait) for the submitted batch of runner b. When the writer is
 * done with it, lands it (kp_serve_batch_land: its offsets stored if it was acknowledged) and
 * returns 1 with *rc = DONE (stored) or FAILED (nothing stored). Returns 0 while it is still in
 * flight (consumption paused meanwhile if the writer reports a failing sink), -1 when nothing was
 * submitted. On the consumer's thread. */
int kp_serve_writer_land(kp_serve_writer *wr, kp_serve_batch *b, int timeout_ms, kp_batch_rc *rc);

/* For the sinks, on the writer thread: the delay before the writer's next retry, and (retrying
 * may be NULL) whether the batch in hand failed already (its next failures are logged quietly). */
int kp_serve_writer_backoff_ms(const kp_serve_writer *wr, int *retrying);

/* Stops and joins the thread. A submitted batch the writer still holds at a failing sink is given
 * up (its kp_serve_slot_send is not called again); land it (FAILED) before freeing the runner.
 * NULL-safe. */
void kp_serve_writer_free(kp_serve_writer *wr);

#endif
