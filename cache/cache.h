/* cache.h -- the Redis side of kprec: recommendations and item texts.
 *
 * Keys (prefix from [redis] prefix, default "kprec:"):
 *   {prefix}rec:{item_id}   hash: model_version, generated_at (ms), suggestions (JSON array of
 *                           {"keyphrase","id","score"}); replaced atomically by a Lua script that
 *                           refuses to overwrite a NEWER model_version (equal or newer overwrites,
 *                           so a replay after a crash is idempotent); TTL [redis] ttl_s.
 *   {prefix}item:{item_id}  string: the item's title (so a click can be joined to its text).
 * Writes are pipelined: one round trip per micro-batch. A broken connection is dropped and the next
 * call reconnects (the caller retries with backoff). Not thread-safe: one kp_cache per thread. */
#ifndef KP_CACHE_H
#define KP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"

typedef struct kp_cache kp_cache;

typedef struct {
    const char *item_id;
    const char *title;       /* stored under item:{id}; NULL = don't store */
    const char *suggestions; /* JSON text */
    uint64_t model_version;
    int64_t generated_at_ms;
} kp_cache_entry;

/* Creates a cache client for c's [redis] settings; connects lazily. NULL on OOM. */
kp_cache *kp_cache_new(const kp_config *c);

/* Closes the connection and frees. Accepts NULL. */
void kp_cache_free(kp_cache *k);

/* Connects (if not connected), authenticates, selects the db and loads the script.
 * Returns 0, or -1 with a reason in err. */
int kp_cache_connect(kp_cache *k, char *err, size_t errlen);

/* Writes n entries in one pipeline. Returns 0 when Redis acknowledged every write (entries skipped
 * because Redis held a newer version count as acknowledged; *stale, if not NULL, gets how many);
 * -1 with a reason in err otherwise (the connection is dropped; retrying the same call is safe). */
int kp_cache_put(kp_cache *k, const kp_cache_entry *e, int n, int *stale, char *err, size_t errlen);

/* Reads one item's entry. Returns 1 and malloc'd strings (caller frees) when found, 0 when the item
 * has no entry, -1 with err on failure. */
int kp_cache_get(kp_cache *k, const char *item_id, uint64_t *model_version, int64_t *generated_at,
                 char **suggestions, char **title, char *err, size_t errlen);

#endif
