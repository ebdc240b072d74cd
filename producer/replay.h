/* replay.h -- `kprec replay`: publishes ItemListed events from a TSV file (item_id<TAB>title, one
 * header row) to the items topic at a given rate, with a progress line; or click logs, judgments,
 * or the keyphrase inventory (see kp_replay_opts). */
#ifndef KP_REPLAY_H
#define KP_REPLAY_H

#include "common/config.h"

typedef struct {
    const char *items_path; /* TSV: item_id, title */
    double rate;            /* events per second; 0 = as fast as possible */
    long count;             /* events to send; 0 = each row once. Past the end of the file it
                               starts over, with item ids suffixed "~1", "~2", ... so they stay
                               distinct. */
    long bad;               /* malformed records to mix in (for testing the dead-letter path) */
    long v0_every;          /* every Nth event uses the older ItemListed v0 schema (0 = never) */
    const char *topic;      /* NULL = [topics] items (clicks, judgments for the modes below) */
    /* Other streams (instead of items): a click log as written by `kprec simulate-clicks`
     * (item_id, keyphrase_id, kind, position, ts) -> AdEvent on [topics] clicks; or graded
     * judgments (pair_id, keyphrase_id, item_id, relevance 1..3; titles from items_path) ->
     * Judgment on [topics] judgments. Both need the keyphrase inventory for the texts. */
    const char *clicks_path;
    const char *judgments_path;
    const char *keyphrases_path;
    /* With keyphrases_path alone: publishes the inventory, one Keyphrase per row (key
     * keyphrase_id) to [topics] inventory (or topic); remove = 1 sends tombstones of the rows'
     * ids instead (removes them). */
    int remove;
    int quiet;
} kp_replay_opts;

/* Runs the replay. Returns 0 when every record was acknowledged by Kafka, 1 on failure (message on
 * stderr), 2 on bad input. Prints "replay: N sent, N acknowledged, N bad" at the end. */
int kp_replay_run(const kp_config *c, const kp_replay_opts *o);

#endif
