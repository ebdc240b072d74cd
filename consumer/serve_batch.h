/* serve_batch.h -- one micro-batch of the serve role, against sinks given by the caller.
 *
 * A batch goes decode + validate -> recommend (the whole batch at once) -> cache sink (Redis) ->
 * producer sink (suggestion and dead-letter records, delivery reports) -> offsets to store. This
 * is where at-least-once lives:
 *   - nothing is published before the cache sink acknowledged every entry;
 *   - offsets are handed to the store sink only after the cache sink acknowledged AND every record
 *     of the batch has its successful delivery report;
 *   - a sink that fails holds the batch at its stage: the next kp_serve_batch_step retries that
 *     stage (only the undelivered records are sent again); nothing is dropped, nothing stored;
 *   - while a sink is down the consumer is paused (the pause sink): from the first RETRY until the
 *     whole batch is done, whichever sinks recover meanwhile; the messages polled while waiting
 *     are held here, at most [worker] batch_size of them (kp_serve_batch_hold);
 *   - bad events (undecodable, invalid, key/id mismatch) become dead-letter records carrying the
 *     reason in header "error"; once delivered, their offsets move on like the others';
 *   - the offsets stored are, per partition of the batch, its highest offset + 1.
 * The sinks are function pointers so the batch runs against Redis and Kafka in the worker and
 * against fakes in tests/unit/test_serve_batch.c. Per-batch buffers are kept and grown, never
 * allocated per batch.
 *
 * Overlap ([worker] overlap, consumer/serve_writer.h): the runner has two batches. The one in hand
 * is begun (scored) while the other, detached, goes through its sink stages on a writer thread
 * (kp_serve_slot_send: cache_put and deliver are called there); it comes back with
 * kp_serve_batch_land, which alone stores its offsets, on the runner's thread, and only when the
 * writer saw it acknowledged. At most one batch is detached, so batches land in the order they
 * were detached. Apart from kp_serve_slot_send on the detached batch, everything here runs on one
 * thread (the consumer's): store and pause are never called from the writer. */
#ifndef KP_SERVE_BATCH_H
#define KP_SERVE_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"
#include "common/config.h"
#include "model/recommender.h"
#include "producer/producer.h"
#include "schemas/codec.h"

/* One consumed record (borrowed: it must stay valid until kp_serve_batch_end). */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
    const void *key; /* may be NULL (key_len 0) */
    size_t key_len;
    const void *payload;
    size_t len;
} kp_serve_event;

/* The offset to store for one partition: the next one to consume. */
typedef struct {
    const char *topic;
    int32_t partition;
    int64_t offset;
} kp_serve_offset;

/* What a sink answers. */
typedef enum { KP_SINK_FAIL = -1, KP_SINK_OK = 0, KP_SINK_RETRY = 1 } kp_sink_rc;

typedef struct {
    void *ctx; /* passed to every call */
    /* Writes the n entries. OK when every write was acknowledged; RETRY when not (the batch calls
     * again with the same entries, which are idempotent); FAIL gives the batch up. */
    kp_sink_rc (*cache_put)(void *ctx, const kp_cache_entry *e, int n);
    /* Publishes every out[i] whose state is not KP_OUT_DONE and waits for their delivery reports,
     * which set the states. OK when all are DONE; RETRY when some are not (the batch calls again:
     * only those are sent); FAIL gives the batch up. */
    kp_sink_rc (*deliver)(void *ctx, kp_outmsg *out, int n);
    /* Stores the offsets o[0..n-1] (one per partition). */
    void (*store)(void *ctx, const kp_serve_offset *o, int n);
    /* Pauses (on = 1: a sink is down, or the hold is full; why says which) or resumes (on = 0,
     * why NULL) consumption. Called on changes only. */
    void (*pause)(void *ctx, int on, const char *why);
} kp_serve_sinks;

/* What kp_serve_batch_step answers. */
typedef enum { KP_BATCH_FAILED = -1, KP_BATCH_DONE = 0, KP_BATCH_AGAIN = 1 } kp_batch_rc;

typedef struct kp_serve_batch kp_serve_batch;

/* A batch runner for c's [worker] settings and topics; codec and sinks are borrowed (they must
 * outlive it; *sinks is copied). NULL on OOM. */
kp_serve_batch *kp_serve_batch_new(const kp_config *c, kp_codec *codec,
                                   const kp_serve_sinks *sinks);

/* Scores the batches with the A/B split of arms (consumer/arms.h; borrowed, NULL = none): each
 * item by its arm's model, its arm written into its cache entry and its record. */
struct kp_arms;
void kp_serve_batch_set_arms(kp_serve_batch *b, struct kp_arms *arms);

/* Frees the runner (ends its batches first; held messages must have been taken back; a detached
 * batch must be back from its writer).
 * NULL-safe. */
void kp_serve_batch_free(kp_serve_batch *b);

/* Takes n events (borrowed until kp_serve_batch_end): decodes and validates them, scores the valid
 * ones with rec (borrowed for the call; its version goes with the results), builds the cache
 * entries and the records to publish. Returns 0, or -1 with err on OOM or a failed recommend
 * (nothing was sent or stored; end the batch). */
int kp_serve_batch_begin(kp_serve_batch *b, kp_recommender *rec, const kp_serve_event *ev, int n,
                         char *err, size_t errlen);

/* Advances the batch: cache sink, then producer sink, then the store sink. Returns DONE (offsets
 * handed to the store sink), AGAIN (a sink said RETRY: the batch is held at that stage; call again,
 * after a backoff) or FAILED (a sink said FAIL: nothing more is stored for this batch). */
kp_batch_rc kp_serve_batch_step(kp_serve_batch *b);

/* Holds msg (opaque, still the caller's), a message polled while the batch waits, for the next
 * batch. 0, or -1 when [worker] batch_size messages are held already: msg is not held (the caller
 * gives it back to its consumer, e.g. seeks to it) and consumption is paused until the batch in
 * hand is done (or, without one, until kp_serve_batch_take_held empties the hold). */
int kp_serve_batch_hold(kp_serve_batch *b, void *msg);

/* Moves up to max held messages, oldest first, to out (the caller owns them again). Returns how
 * many. Once the hold is empty and no batch is in hand or detached, a pause for a full hold ends.
 */
int kp_serve_batch_take_held(kp_serve_batch *b, void **out, int max);

/* Drops held messages: each one for which drop(ctx, msg) answers 1 (drop took it: e.g. destroyed
 * it) leaves the hold, the others keep their order. Returns how many were dropped. */
int kp_serve_batch_drop_held(kp_serve_batch *b, int (*drop)(void *ctx, void *msg), void *ctx);

/* 1 while consumption is paused by the batch (a sink is down, or the hold is full). */
int kp_serve_batch_paused(const kp_serve_batch *b);

/* ---- overlap: the sink stages of one batch on another thread ---- */

typedef struct kp_serve_slot kp_serve_slot;

/* Detaches the batch in hand (begun, not yet stepped) for a writer thread: the runner can begin
 * the next one meanwhile. Returns it, or NULL when nothing is in hand or a batch is detached
 * already (land that one first). */
kp_serve_slot *kp_serve_batch_detach(kp_serve_batch *b);

/* The sink stages of a detached batch: cache sink, then producer sink, never the store or pause
 * sinks; may run on any one thread while the runner's thread goes on (it touches only the batch's
 * own entries and records). DONE: every entry acknowledged and every record delivered (the batch
 * waits for kp_serve_batch_land); AGAIN: a sink said RETRY (*why, may be NULL, names it; call
 * again after a backoff: only the stage that failed is redone); FAILED: a sink said FAIL. */
kp_batch_rc kp_serve_slot_send(kp_serve_slot *s, const char **why);

/* 1 while a batch is detached (not landed yet). */
int kp_serve_batch_in_flight(const kp_serve_batch *b);

/* The detached batch is held at a failing sink (why names it): consumption is paused until it
 * lands. Runner's thread. */
void kp_serve_batch_sink_down(kp_serve_batch *b, const char *why);

/* Takes the detached batch back once its kp_serve_slot_send answered r (DONE or FAILED): with
 * DONE, and only when its sinks did acknowledge it, its offsets go to the store sink (and its
 * events are counted); then it is released. Returns DONE (stored) or FAILED (nothing stored, also
 * when nothing was detached). Consumption resumes when the hold has room. Runner's thread. */
kp_batch_rc kp_serve_batch_land(kp_serve_batch *b, kp_batch_rc r);

/* Releases the batch in hand (its decoded events, records, headers); buffers are kept for the
 * next one. NULL-safe; does nothing without a batch. */
void kp_serve_batch_end(kp_serve_batch *b);

#endif
