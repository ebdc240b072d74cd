/* learn_state.h -- the state of one trainer (role = train), shared by its modules:
 *
 *   learn.c          set-up, the loop, teardown (kp_learn_run)
 *   learn_queue.c    events from poll to done: the pending list, titles from Redis, dead letters,
 *                    the offsets of every input partition
 *   learn_step.c     a training step over ready events (and the one-by-one retry of a rejected
 *                    step)
 *   learn_publish.c  deltas and checkpoints to the model topic, in transactions with the offsets
 *   learn_event.c    decode + validation of one record, and the example it becomes
 *   learn_buffer.c   the ring of recent examples a step draws from
 *
 * Each module owns the fields its functions change; the comments below name who. */
#ifndef KP_LEARN_STATE_H
#define KP_LEARN_STATE_H

#include <stdint.h>

#include <librdkafka/rdkafka.h>

#include "cache/cache.h"
#include "common/config.h"
#include "consumer/group.h"
#include "consumer/learn_buffer.h"
#include "consumer/learn_event.h"
#include "model/bienc.h"
#include "model/ce.h"
#include "model/rng.h"
#include "model/train_step.h"
#include "model/tsv.h"
#include "producer/producer.h"
#include "schemas/codec.h"
#include "schemas/registry_http.h"

#define KP_LEARN_MAX_PARTS 512

/* Offset bookkeeping of one input partition: everything below `done` is handled. */
typedef struct {
    char topic[256];
    int32_t partition;
    int64_t done; /* next offset to store (-1 = nothing yet) */
} kp_lpart;

typedef struct {
    const kp_config *cfg;
    kp_group *group; /* may be NULL outside kp_learn_run (tests): kp_lq_tick then polls none */
    kp_producer *producer; /* dead letters */
    kp_producer *txp;      /* the model topic: transactional */
    kp_codec *codec;
    kp_sreg *sreg; /* [schemas] registry, or NULL */
    kp_ce *teacher;
    kp_bienc *model;
    kp_trainer *trainer;
    kp_texts inv;    /* keyphrase inventory, for random negatives */
    kp_cache *cache; /* the title lookup */
    kp_rng rng;
    /* learn_queue.c */
    kp_levent *pending; /* waiting for a title, in arrival order */
    int n_pending, cap_pending;
    /* scratch of kp_lq_resolve_titles, cap_pending each */
    const char **lookup_ids;
    char **lookup_titles;
    int *lookup_which;
    kp_levent *ready;            /* a step's events, [train] batch_size */
    rd_kafka_message_t **polled; /* taken from the consumer while waiting (tick), not yet decoded */
    int n_polled, cap_polled;
    int dlq_failed; /* a dead letter could not be delivered: stop, committing nothing past it */
    kp_lpart parts[KP_LEARN_MAX_PARTS];
    int n_parts;
    /* learn_step.c */
    kp_lbuf buf;                /* the training buffer */
    unsigned char *row_mark[2]; /* rows changed since the last delta, per tower */
    uint32_t *rows[2];
    int nrows[2];
    long steps_since_delta;
    /* learn_publish.c */
    uint64_t base_version; /* version of the last published delta (or the start) */
    uint64_t base_lineage; /* lineage of the model at base_version (0 = a bootstrap model) */
    uint64_t lineage;      /* this trainer's: every record it publishes names it */
    uint64_t checkpointed; /* version of the last checkpoint published */
    int fenced;            /* the broker fenced our transactional.id: publish nothing more */
    int64_t ckpt_offset;   /* where our newest published checkpoint starts (-1 = none yet) */
    int64_t last_delta_ms;
} kp_lstate;

#endif
