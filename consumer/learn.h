/* learn.h -- `kprec worker` with role = train: online learning from the click and judgment
 * streams, and model replication through the model topic.
 *
 * In its own consumer group it reads [topics] clicks (AdEvent) and judgments (Judgment), joins each
 * event to its item's title (carried by a Judgment; for a click, kprec:item:{id} in Redis, written
 * by the serve path: an item not there yet is retried for [train] resolve_timeout_ms, then
 * dead-lettered), and takes multi-task steps (CTR + SR + Pearson distillation from the [train]
 * teacher cross-encoder) on micro-batches. Every [train] delta_steps steps or delta_ms it publishes
 * a versioned delta (changed embedding rows + dense weights, chunked, checksummed) to the model
 * topic, then stores the offsets of the events that delta contains; every checkpoint_every versions
 * it writes a checkpoint to checkpoint_dir and announces it. On start it loads the newest
 * checkpoint and replays the deltas after it, so a restarted trainer continues at the last
 * published version with the offsets committed with it: versions only increase. */
#ifndef KP_LEARN_H
#define KP_LEARN_H

#include "common/config.h"

/* Runs until kp_worker_stop (consumer/group.h). Returns an exit code (0 clean, 1 runtime failure,
 * 2 configuration). */
int kp_learn_run(const kp_config *c);

#endif
