/* cache.h -- the Redis side of kprec: recommendations and item texts.
 *
 * Keys (prefix from [redis] prefix, default "kprec:"; with [redis] cluster the id is a hash tag,
 * {prefix}rec:{{item_id}}, so that an item's two keys share a slot):
 *   {prefix}rec:{item_id}   hash: model_version, generated_at (ms), suggestions (JSON array of
 *                           {"keyphrase","id","score"}); TTL [redis] ttl_s.
 *   {prefix}item:{item_id}  string: the item's title (so a click can be joined to its text; the
 *                           trainer reads it with kp_cache_titles, which renews its TTL); TTL
 *                           [redis] title_ttl_s.
 * Both are written together by one Lua script that refuses to overwrite a NEWER model_version
 * (equal or newer overwrites, so a replay after a crash is idempotent): a lagging writer changes
 * neither the recs nor the title, and a full Redis (maxmemory, noeviction) refuses both.
 * Writes are pipelined: one round trip per micro-batch and node (cache/cluster.c routes them in
 * cluster mode). A broken connection is dropped and the next call reconnects (the caller retries
 * with backoff). Not thread-safe: one kp_cache per thread (kp_cache_stats_get is). */
#ifndef KP_CACHE_H
#define KP_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "model/recommender.h" /* kp_rec_suggestion: the list the JSON is written from */

typedef struct kp_cache kp_cache;

typedef struct {
    const char *item_id;
    const char *title;       /* stored under item:{id}; NULL = don't store */
    const char *suggestions; /* JSON text */
    uint64_t model_version;
    int64_t generated_at_ms;
} kp_cache_entry;

/* The hiredis version kprec was built with, e.g. "0.14.1" (static string). */
const char *kp_cache_client_version(void);

/* Creates a cache client for c's [redis] settings; connects lazily. NULL on OOM or a [redis]
 * cluster list that is not host:port,... (logged). */
kp_cache *kp_cache_new(const kp_config *c);

/* Closes the connection and frees. Accepts NULL. */
void kp_cache_free(kp_cache *k);

/* Connects (if not connected), authenticates ([redis] user and password: AUTH user password, an
 * ACL user; password alone: AUTH password), selects the db and loads the script.
 * Returns 0, or -1 with a reason in err. */
int kp_cache_connect(kp_cache *k, char *err, size_t errlen);

/* Writes n entries in one pipeline (per node). Returns 0 when Redis acknowledged every write
 * (entries skipped because Redis held a newer version count as acknowledged; *stale, if not NULL,
 * gets how many); -1 with a reason in err otherwise (retrying the same call is safe). Redis over
 * maxmemory: err is "redis full: N bytes used of maxmemory M, writes paused (...)" and
 * kp_cache_last_error_class() says KP_CACHE_ERR_FULL until a write succeeds again. */
int kp_cache_put(kp_cache *k, const kp_cache_entry *e, int n, int *stale, char *err, size_t errlen);

/* Looks up the titles of n items (item:{id}, one pipeline of GETEX per node: each title found gets
 * its TTL renewed to [redis] title_ttl_s). titles[i] gets a malloc'd title (caller frees) or NULL
 * when Redis has no title for item_ids[i]. Returns 0 when Redis answered (titles then all set), or
 * -1 with a reason in err (titles all NULL; a broken connection is dropped). */
int kp_cache_titles(kp_cache *k, const char *const *item_ids, int n, char **titles, char *err,
                    size_t errlen);

/* Reads one item's entry. Returns 1 and malloc'd strings (caller frees) when found, 0 when the item
 * has no entry, -1 with err on failure. */
int kp_cache_get(kp_cache *k, const char *item_id, uint64_t *model_version, int64_t *generated_at,
                 char **suggestions, char **title, char *err, size_t errlen);

/* ---- how the cache is doing, for /healthz and /metrics (any thread) ---- */

enum {
    KP_CACHE_OK = 0,    /* the last write (or read, when not full) succeeded */
    KP_CACHE_ERR_CONN,  /* Redis could not be reached or did not answer in time */
    KP_CACHE_ERR_FULL,  /* Redis refused a write: over maxmemory (OOM); writes are paused */
    KP_CACHE_ERR_OTHER, /* another error reply (NOPERM, WRONGTYPE, ...) or local OOM */
};

typedef struct {
    int error_class;                /* KP_CACHE_OK or KP_CACHE_ERR_* (kp_cache_last_error_class) */
    long long since_ms;             /* wall clock (kp_now_ms) it became so; 0 when OK */
    long long used_memory;          /* INFO memory at the last OOM refusal (-1 = unknown) */
    long long maxmemory;            /* idem */
    unsigned long long full_errors; /* writes refused because Redis was full, since start */
} kp_cache_stats;

/* The class of the process's last cache failure (all kp_cache clients), KP_CACHE_OK after a
 * successful write. A read succeeding does not clear KP_CACHE_ERR_FULL. Thread-safe. */
int kp_cache_last_error_class(void);

/* Copies the process-wide cache state into *s. Thread-safe. */
void kp_cache_stats_get(kp_cache_stats *s);

/* "ok", "unreachable", "full" or "error" (static string). */
const char *kp_cache_error_class_name(int error_class);

/* ---- the cached suggestions: a JSON array of {"keyphrase","id","score"} ---- */

/* Writes n suggestions as the cached JSON text (malloc'd, caller frees; NULL on OOM). Suggestions
 * with a non-finite score, and keyphrases that are not valid UTF-8 (logged), are left out. */
char *kp_cache_suggestions_json(const kp_rec_suggestion *s, int n);

/* kp_cache_suggestions_json with the arm that scored the item (consumer/arms.h) as "arm" in every
 * suggestion; NULL or "" writes none (the JSON of kp_cache_suggestions_json). */
char *kp_cache_suggestions_json_arm(const kp_rec_suggestion *s, int n, const char *arm);

/* One parsed suggestion: strings owned by the enclosing kp_cache_suggestions, NULL when the entry
 * lacks them. */
typedef struct {
    char *keyphrase, *id;
    double score;
    char *arm; /* the A/B arm that scored it; NULL without a split */
} kp_cache_suggestion;

typedef struct {
    int n;
    kp_cache_suggestion *items; /* n entries */
} kp_cache_suggestions;

/* Parses the cached JSON text. Returns 0 and fills out (free with kp_cache_suggestions_clear), or
 * -1 with a reason in err (out then empty). */
int kp_cache_suggestions_parse(const char *json, kp_cache_suggestions *out, char *err,
                               size_t errlen);

/* Frees what kp_cache_suggestions_parse filled in and empties s. NULL-safe. */
void kp_cache_suggestions_clear(kp_cache_suggestions *s);

/* One entry as a compact JSON object {"item_id","model_version","generated_at","suggestions"}
 * (what `kprec get --json` prints). Returns malloc'd text (caller frees), or NULL with a reason in
 * err when suggestions is not valid JSON or on OOM. */
char *kp_cache_entry_json(const char *item_id, uint64_t model_version, int64_t generated_at,
                          const char *suggestions, char *err, size_t errlen);

#endif
