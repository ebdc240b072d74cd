/* inventory.h -- where a serve worker's keyphrase inventory comes from, and how it changes.
 *
 * Two sources:
 *   topic  [topics] inventory (compacted; key keyphrase_id, value an Avro Keyphrase, schema id 6;
 *          a tombstone removes the keyphrase). A thread (kp_inventory_start) reads every
 *          partition from the beginning, assigned (no group, no commits), read_committed, and
 *          keeps the current set (id -> text) plus a log of the changes since the oldest point
 *          a recommender still needs. Recommenders are built from a snapshot of the set
 *          (kp_inventory_load) and then follow the log (kp_inventory_apply): only the new or
 *          changed keyphrases are embedded, with the recommender's own (current) model.
 *   file   [model] keyphrases (TSV), for a single host without the topic: re-read when its
 *          signature (mtime to the nanosecond, size, inode) changed and then stayed the same
 *          for one check (kp_inv_watch), and loaded only if it did not change during the read.
 *
 * One inventory reader per process (kp_inventory_start registers it; kp_inventory_load and
 * kp_inventory_apply use it). The record format (Keyphrase) is schemas/6-Keyphrase.avsc. */
#ifndef KP_INVENTORY_H
#define KP_INVENTORY_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "model/recommender.h"
#include "model/tsv.h"
#include "producer/kafka.h" /* kp_stop_flag */

typedef struct kp_inventory kp_inventory;

/* Starts the reader thread of [topics] inventory (c must outlive it) and registers it as the
 * process's inventory. NULL with err (no topic configured, one already running, OOM). */
kp_inventory *kp_inventory_start(const kp_config *c, char *err, size_t errlen);

/* Stops the thread and frees everything (unregistering it). NULL-safe. */
void kp_inventory_stop(kp_inventory *inv);

/* Waits until the reader has read every partition to its end once (an absent topic counts as an
 * empty one), timeout_ms passed or *stop became non-zero. 1 when read, 0 otherwise. */
int kp_inventory_wait_end(kp_inventory *inv, int timeout_ms, kp_stop_flag *stop);

/* Applies one record to the set as if the reader had read it from the topic (text NULL: a
 * tombstone); for tests and tools. 1 when the set changed, 0 when not, -1 on OOM. */
int kp_inventory_put(kp_inventory *inv, const char *id, const char *text);

/* Keyphrases in the current set (the reader's view, not a recommender's). */
int kp_inventory_size(kp_inventory *inv);

/* The inventory a new recommender is built over: a snapshot of the running reader's set (and in
 * *seq the point of its change log it reflects), or, without a reader, the [model] keyphrases
 * file (*seq = 0; an error when none is configured, or when the file changed while it was read).
 * The caller owns *out (kp_texts_free). 0, or -1 with err. */
int kp_inventory_load(const kp_config *c, kp_texts *out, uint64_t *seq, char *err, size_t errlen);

/* Brings r up to date with the reader's change log (at most max_changes records per call, so
 * the caller's stall stays bounded): upserts and removals in log order, then re-attaches the
 * serving pipeline's assets (consumer/assets.h: BM25 over the new list). Without a reader it does
 * nothing. When the log no longer reaches back to r's point, r is re-synced with the whole set
 * (embedding only what differs). Returns the number of keyphrases added, replaced or removed
 * (0: r was up to date), or -1 with err (r then still serves, maybe without the hybrid BM25
 * candidates). Call from the thread that owns r, between two batches. */
int kp_inventory_apply(const kp_config *c, kp_recommender *r, int max_changes, char *err,
                       size_t errlen);

/* ---- the file source: change detection ---------------------------------------------------- */

/* What identifies one version of a file. ok = 0: it could not be stat'ed. */
typedef struct {
    int64_t mtime_ns, size;
    uint64_t ino, dev;
    int ok;
} kp_inv_file_sig;

/* The signature of path now. */
kp_inv_file_sig kp_inv_file_sig_of(const char *path);
int kp_inv_file_sig_eq(const kp_inv_file_sig *a, const kp_inv_file_sig *b);

/* A watched file: the signature last acted on, and a change seen once but not yet twice. */
typedef struct {
    kp_inv_file_sig loaded, pending;
} kp_inv_watch;

/* Starts watching path (its current version counts as loaded). */
void kp_inv_watch_init(kp_inv_watch *w, const char *path);

/* One check: 1 when path differs from the version acted on last and is the same as at the
 * previous check (a writer that is still writing keeps changing it, so a half-written file is
 * never reported), which then counts as acted on; else 0. */
int kp_inv_watch_poll(kp_inv_watch *w, const char *path);

/* Loads the TSV inventory at path, failing (err "changed while being read") when its signature
 * differs after the read from before it. 0, or -1 with err; the caller owns *out. */
int kp_inv_file_load(const char *path, kp_texts *out, char *err, size_t errlen);

#endif
