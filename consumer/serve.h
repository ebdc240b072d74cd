/* serve.h -- `kprec worker`: the stream worker's serve role.
 *
 * Joins the consumer group on the items topic, takes micro-batches (up to batch_size events or
 * batch_linger_ms), decodes and validates them, recommends keyphrases for the whole batch at once,
 * writes them to Redis (versioned, pipelined) and publishes one KeyphraseSuggestions record per
 * item; bad events go to the dead-letter topic. An offset is stored only after its event's Redis
 * write was acknowledged and its record's delivery report (suggestion or dead letter) came back. */
#ifndef KP_SERVE_H
#define KP_SERVE_H

#include <signal.h>

#include "common/config.h"

/* Set by the signal handlers: the first SIGINT/SIGTERM sets kp_worker_stop (stop consuming, finish
 * in-flight work, flush, commit, close); a second one sets kp_worker_stop_hard (stop waiting for
 * Redis or Kafka: unfinished events are not committed and will be consumed again). */
extern volatile sig_atomic_t kp_worker_stop;
extern volatile sig_atomic_t kp_worker_stop_hard;

/* Runs the worker until kp_worker_stop. Returns a process exit code (0 clean, 1 runtime failure,
 * 2 bad configuration or unusable model/inventory). */
int kp_serve_run(const kp_config *c);

#endif
