/* serve.h -- `kprec worker`: the stream worker's serve role.
 *
 * Joins the consumer group on the items topic, takes micro-batches (up to batch_size events or
 * batch_linger_ms), and runs each through consumer/serve_batch.h with Redis and Kafka as its sinks:
 * decode and validate, recommend for the whole batch at once, write to Redis (versioned,
 * pipelined), publish one KeyphraseSuggestions record per item; bad events go to the dead-letter
 * topic. An offset is stored only after its event's Redis write was acknowledged and its record's
 * delivery report (suggestion or dead letter) came back. While Redis is down the partitions are
 * paused and the batch is retried with backoff. */
#ifndef KP_SERVE_H
#define KP_SERVE_H

#include "common/config.h"
#include "consumer/group.h" /* kp_worker_stop, kp_worker_stop_hard */

/* Runs the worker until kp_worker_stop. Returns a process exit code (0 clean, 1 runtime failure,
 * 2 bad configuration or unusable model/inventory). */
int kp_serve_run(const kp_config *c);

#endif
