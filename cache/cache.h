/* cache.h -- the Redis side of kprec: recommendations and item texts.
 *
 * Keys (prefix from [redis] prefix, default "kprec:"):
 *   {prefix}rec:{item_id}   hash: model_version, generated_at (ms), suggestions (JSON array of
 *                           {"keyphrase","id","score"}); replaced atomically by a Lua script that
 *                           refuses to overwrite a NEWER model_version (equal or newer overwrites,
 *                           so a replay after a crash is idempotent); TTL [redis] ttl_s.
 *   {prefix}item:{item_id}  string: the item's title (so a click can be joined to its text; the
 *                           trainer reads it with kp_cache_titles).
 * Writes are pipelined: one round trip per micro-batch. A broken connection is dropped and the next
 * call reconnects (the caller retries with backoff). Not thread-safe: one kp_cache per thread. */
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

/* Creates a cache client for c's [redis] settings; connects lazily. NULL on OOM. */
/* The hiredis version kprec was built with, e.g. "0.14.1" (static string). */
const char *kp_cache_client_version(void);

kp_cache *kp_cache_new(const kp_config *c);

/* Closes the connection and frees. Accepts NULL. */
void kp_cache_free(kp_cache *k);

/* Connects (if not connected), authenticates ([redis] user and password: AUTH user password, an
 * ACL user; password alone: AUTH password), selects the db and loads the script.
 * Returns 0, or -1 with a reason in err. */
int kp_cache_connect(kp_cache *k, char *err, size_t errlen);

/* Writes n entries in one pipeline. Returns 0 when Redis acknowledged every write (entries skipped
 * because Redis held a newer version count as acknowledged; *stale, if not NULL, gets how many);
 * -1 with a reason in err otherwise (the connection is dropped; retrying the same call is safe). */
int kp_cache_put(kp_cache *k, const kp_cache_entry *e, int n, int *stale, char *err, size_t errlen);

/* Looks up the titles of n items (item:{id}, one MGET). titles[i] gets a malloc'd title (caller
 * frees) or NULL when Redis has no title for item_ids[i]. Returns 0 when Redis answered (titles
 * then all set), or -1 with a reason in err (titles all NULL; a broken connection is dropped). */
int kp_cache_titles(kp_cache *k, const char *const *item_ids, int n, char **titles, char *err,
                    size_t errlen);

/* Reads one item's entry. Returns 1 and malloc'd strings (caller frees) when found, 0 when the item
 * has no entry, -1 with err on failure. */
int kp_cache_get(kp_cache *k, const char *item_id, uint64_t *model_version, int64_t *generated_at,
                 char **suggestions, char **title, char *err, size_t errlen);

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
