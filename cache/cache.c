/* cache.c -- kp_cache over kp_cluster (cache/cluster.c): keys, the write script, title lookups,
 * the error classes the health endpoint reads. */
#include "cache/cache.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cache/cluster.h"
#include "common/log.h"
#include "common/util.h"

/* KEYS[1] = rec key, KEYS[2] = item key (same slot: {item_id} in cluster mode); ARGV =
 * model_version, generated_at, suggestions, ttl_s, title_ttl_s[, title]. Returns 1 if written, 0
 * if the stored entry has a newer model version (then neither the recs nor the title change).
 * HSET is the first write: when Redis is over maxmemory it fails (OOM) before anything changed,
 * and once it passed Redis lets the rest of the script through, so recs and title go together. */
static const char put_script[] =
    "local t = redis.call('TYPE', KEYS[1]).ok\n"
    "if t == 'hash' then\n"
    "  local v = tonumber(redis.call('HGET', KEYS[1], 'model_version'))\n"
    "  if v and v > tonumber(ARGV[1]) then return 0 end\n"
    "elseif t ~= 'none' then redis.call('DEL', KEYS[1]) end\n"
    "redis.call('HSET', KEYS[1], 'model_version', ARGV[1], 'generated_at', ARGV[2],"
    " 'suggestions', ARGV[3])\n"
    "if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4])\n"
    "else redis.call('PERSIST', KEYS[1]) end\n"
    "if ARGV[6] then\n"
    "  if tonumber(ARGV[5]) > 0 then redis.call('SET', KEYS[2], ARGV[6], 'EX', ARGV[5])\n"
    "  else redis.call('SET', KEYS[2], ARGV[6]) end\n"
    "end\n"
    "return 1\n";

#define PUT_ARGS 11 /* EVALSHA sha 2 rec item ver gen sugg ttl title_ttl [title] */

struct kp_cache {
    kp_cluster *cl;
    char prefix[64];
    int ttl_s, title_ttl_s;
    /* scratch of one call, grown as needed */
    kp_cluster_cmd *cmds;
    redisReply **rep;
    int cmdcap;
    const char **argv;
    size_t argcap;
    char *buf;
    size_t bufcap;
};

/* ---- the state the health endpoint reads (every kp_cache of the process) ---- */

static _Atomic int st_class;
static _Atomic long long st_since_ms, st_used, st_max;
static atomic_ullong st_full_errors;

static void note(int cls)
{
    int old = atomic_load(&st_class);
    if (old == cls) return;
    if (cls == KP_CACHE_OK && old == KP_CACHE_ERR_FULL) kp_info("redis takes writes again");
    atomic_store(&st_class, cls);
    atomic_store(&st_since_ms, cls == KP_CACHE_OK ? 0 : (long long)kp_now_ms());
}

int kp_cache_last_error_class(void)
{
    return atomic_load(&st_class);
}

void kp_cache_stats_get(kp_cache_stats *s)
{
    s->error_class = atomic_load(&st_class);
    s->since_ms = atomic_load(&st_since_ms);
    s->used_memory = atomic_load(&st_used);
    s->maxmemory = atomic_load(&st_max);
    s->full_errors = atomic_load(&st_full_errors);
}

const char *kp_cache_error_class_name(int cls)
{
    switch (cls) {
    case KP_CACHE_OK:
        return "ok";
    case KP_CACHE_ERR_CONN:
        return "unreachable";
    case KP_CACHE_ERR_FULL:
        return "full";
    default:
        return "error";
    }
}

#define KP_STR_(x) #x
#define KP_STR(x)  KP_STR_(x)

const char *kp_cache_client_version(void)
{
    return KP_STR(HIREDIS_MAJOR) "." KP_STR(HIREDIS_MINOR) "." KP_STR(HIREDIS_PATCH);
}

kp_cache *kp_cache_new(const kp_config *c)
{
    char err[256];
    kp_cache *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    if (!(k->cl = kp_cluster_new(c, put_script, err, sizeof err))) {
        kp_error("redis: %s", err);
        free(k);
        return NULL;
    }
    snprintf(k->prefix, sizeof k->prefix, "%s", c->redis_prefix);
    k->ttl_s = c->redis_ttl_s;
    k->title_ttl_s = c->redis_title_ttl_s;
    return k;
}

void kp_cache_free(kp_cache *k)
{
    if (!k) return;
    kp_cluster_free(k->cl);
    free(k->cmds);
    free(k->rep);
    free((void *)k->argv);
    free(k->buf);
    free(k);
}

/* 0, or -1 when the settings cannot work (err set). */
static int usable(const kp_cache *k, char *err, size_t errlen)
{
    if (kp_cluster_enabled(k->cl) && strchr(k->prefix, '{')) {
        kp_errf(err, errlen, "[redis] prefix must not contain '{' with [redis] cluster");
        return -1;
    }
    return 0;
}

int kp_cache_connect(kp_cache *k, char *err, size_t errlen)
{
    if (usable(k, err, errlen)) return -1;
    if (kp_cluster_connect(k->cl, err, errlen)) {
        note(KP_CACHE_ERR_CONN);
        return -1;
    }
    return 0;
}

/* Room for n commands, nargs arguments and bytes of key text. 0, or -1 (err set). */
static int reserve(kp_cache *k, int n, size_t nargs, size_t bytes, char *err, size_t errlen)
{
    if (n > k->cmdcap) {
        kp_cluster_cmd *c = realloc(k->cmds, sizeof *c * (size_t)n);
        if (c) k->cmds = c;
        redisReply **r = c ? realloc(k->rep, sizeof *r * (size_t)n) : NULL;
        if (!r) goto oom;
        k->rep = r;
        k->cmdcap = n;
    }
    if (nargs > k->argcap) {
        const char **a = realloc((void *)k->argv, sizeof *a * nargs);
        if (!a) goto oom;
        k->argv = a;
        k->argcap = nargs;
    }
    if (bytes > k->bufcap) {
        char *b = realloc(k->buf, bytes);
        if (!b) goto oom;
        k->buf = b;
        k->bufcap = bytes;
    }
    return 0;
oom:
    kp_errf(err, errlen, "redis: out of memory");
    return -1;
}

/* Bytes key() may write for item id (with its NUL). */
static size_t key_bytes(const kp_cache *k, const char *id)
{
    return strlen(k->prefix) + strlen(id) + sizeof "item:{_}";
}

/* Writes {prefix}{kind}:{id} at p, in cluster mode {prefix}{kind}:{{id}} so that an item's keys
 * share a slot ({_}{id} when id is empty or starts with '}', which would make no hash tag).
 * Returns the key's length. */
static int key(const kp_cache *k, char *p, const char *kind, const char *id)
{
    if (!kp_cluster_enabled(k->cl)) return sprintf(p, "%s%s:%s", k->prefix, kind, id);
    if (!id[0] || id[0] == '}') return sprintf(p, "%s%s:{_}%s", k->prefix, kind, id);
    return sprintf(p, "%s%s:{%s}", k->prefix, kind, id);
}

static void set_cmd(kp_cluster_cmd *c, int argc, const char **argv, int write)
{
    *c = (kp_cluster_cmd){argc, argv, NULL, argv[1], strlen(argv[1]), write};
}

/* "used_memory:123\r\n" out of INFO's text; -1 when absent. */
static long long info_field(const char *info, const char *name)
{
    size_t l = strlen(name);
    for (const char *p = info; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (!strncmp(p, name, l) && p[l] == ':') return strtoll(p + l + 1, NULL, 10);
    return -1;
}

/* Redis refused a write with OOM: asks the node of key (INFO memory) how full it is, remembers it
 * for kp_cache_stats_get and says so in err. */
static void report_full(kp_cache *k, const char *rkey, const char *why, char *err, size_t errlen)
{
    long long used = -1, max = -1;
    const char *argv[] = {"INFO", "memory"};
    kp_cluster_cmd c = {2, argv, NULL, rkey, strlen(rkey), 0}; /* to the node that refused */
    redisReply *r = NULL;
    char e2[128];
    if (!kp_cluster_exec(k->cl, &c, 1, &r, e2, sizeof e2) && r->type == REDIS_REPLY_STRING) {
        used = info_field(r->str, "used_memory");
        max = info_field(r->str, "maxmemory");
    }
    if (r) freeReplyObject(r);
    atomic_store(&st_used, used);
    atomic_store(&st_max, max);
    atomic_fetch_add(&st_full_errors, 1);
    note(KP_CACHE_ERR_FULL);
    kp_errf(err, errlen, "redis full: %lld bytes used of maxmemory %lld, writes paused (%s)", used,
            max, why);
}

int kp_cache_put(kp_cache *k, const kp_cache_entry *e, int n, int *stale, char *err, size_t errlen)
{
    if (stale) *stale = 0;
    if (n <= 0) return 0;
    if (usable(k, err, errlen)) return -1; /* kp_cluster_exec connects */
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += 2 * key_bytes(k, e[i].item_id) + 48;
    if (reserve(k, n, (size_t)n * PUT_ARGS, bytes, err, errlen))
        return note(KP_CACHE_ERR_OTHER), -1;
    char ttl[16], tttl[16];
    snprintf(ttl, sizeof ttl, "%d", k->ttl_s);
    snprintf(tttl, sizeof tttl, "%d", k->title_ttl_s);
    char *p = k->buf;
    for (int i = 0; i < n; i++) {
        const char **a = k->argv + (size_t)i * PUT_ARGS;
        a[0] = "EVALSHA", a[1] = kp_cluster_sha(k->cl), a[2] = "2";
        a[3] = p, p += key(k, p, "rec", e[i].item_id) + 1;
        a[4] = p, p += key(k, p, "item", e[i].item_id) + 1;
        a[5] = p, p += sprintf(p, "%" PRIu64, e[i].model_version) + 1;
        a[6] = p, p += sprintf(p, "%" PRId64, e[i].generated_at_ms) + 1;
        a[7] = e[i].suggestions, a[8] = ttl, a[9] = tttl, a[10] = e[i].title;
        k->cmds[i] = (kp_cluster_cmd){e[i].title ? 11 : 10, a, NULL, a[3], strlen(a[3]), 1};
    }
    if (kp_cluster_exec(k->cl, k->cmds, n, k->rep, err, errlen)) {
        note(KP_CACHE_ERR_CONN);
        return -1;
    }
    int full = -1, failed = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = k->rep[i];
        if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "OOM", 3)) {
            if (full < 0) full = i, kp_errf(err, errlen, "%s", r->str);
        } else if (r->type == REDIS_REPLY_ERROR) {
            if (!failed && full < 0) kp_errf(err, errlen, "redis: %s", r->str);
            failed = 1;
        } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && stale) {
            (*stale)++;
        }
        freeReplyObject(r);
    }
    if (full >= 0) {
        char why[256];
        snprintf(why, sizeof why, "%s", err);
        report_full(k, k->argv[(size_t)full * PUT_ARGS + 3], why, err, errlen);
        return -1;
    }
    note(failed ? KP_CACHE_ERR_OTHER : KP_CACHE_OK);
    return failed ? -1 : 0;
}

/* A failed read: remembered unless Redis is known full (reads still work then). */
static void note_read(int cls)
{
    if (atomic_load(&st_class) != KP_CACHE_ERR_FULL) note(cls);
}

int kp_cache_get(kp_cache *k, const char *item_id, uint64_t *model_version, int64_t *generated_at,
                 char **suggestions, char **title, char *err, size_t errlen)
{
    *suggestions = NULL;
    if (title) *title = NULL;
    if (usable(k, err, errlen)) return -1; /* kp_cluster_exec connects */
    if (reserve(k, 2, 7, 2 * key_bytes(k, item_id), err, errlen)) return -1;
    const char **a = k->argv;
    a[0] = "HMGET", a[1] = k->buf, a[2] = "model_version", a[3] = "generated_at";
    a[4] = "suggestions";
    a[5] = "GET", a[6] = k->buf + key(k, k->buf, "rec", item_id) + 1;
    key(k, (char *)a[6], "item", item_id);
    set_cmd(&k->cmds[0], 5, a, 0);
    set_cmd(&k->cmds[1], 2, a + 5, 0);
    if (kp_cluster_exec(k->cl, k->cmds, title ? 2 : 1, k->rep, err, errlen)) {
        note_read(KP_CACHE_ERR_CONN);
        return -1;
    }
    redisReply *r = k->rep[0], *t = title ? k->rep[1] : NULL;
    int found = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                r->element[2]->type == REDIS_REPLY_STRING;
    int rc = found;
    if (r->type == REDIS_REPLY_ERROR) {
        kp_errf(err, errlen, "redis: %s", r->str);
        rc = -1;
    } else if (found) {
        *model_version = r->element[0]->str ? strtoull(r->element[0]->str, NULL, 10) : 0;
        *generated_at = r->element[1]->str ? strtoll(r->element[1]->str, NULL, 10) : 0;
        *suggestions = strdup(r->element[2]->str);
        if (t && t->type == REDIS_REPLY_STRING) *title = strdup(t->str);
        if (!*suggestions || (t && t->type == REDIS_REPLY_STRING && !*title)) {
            free(*suggestions), *suggestions = NULL;
            if (title) free(*title), *title = NULL;
            kp_errf(err, errlen, "out of memory");
            rc = -1;
        }
    }
    freeReplyObject(r);
    if (t) freeReplyObject(t);
    return rc;
}

int kp_cache_titles(kp_cache *k, const char *const *item_ids, int n, char **titles, char *err,
                    size_t errlen)
{
    for (int i = 0; i < n; i++)
        titles[i] = NULL;
    if (n <= 0) return 0;
    if (usable(k, err, errlen)) return -1; /* kp_cluster_exec connects */
    size_t bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += key_bytes(k, item_ids[i]);
    if (reserve(k, n, (size_t)n * 4, bytes + 16, err, errlen)) return -1;
    /* GETEX renews the title's TTL: an item that is still clicked keeps its title */
    char *ttl = k->buf;
    char *p = ttl + sprintf(ttl, "%d", k->title_ttl_s) + 1;
    for (int i = 0; i < n; i++) {
        const char **a = k->argv + (size_t)i * 4;
        a[0] = "GETEX", a[1] = p, a[2] = "EX", a[3] = ttl;
        p += key(k, p, "item", item_ids[i]) + 1;
        set_cmd(&k->cmds[i], k->title_ttl_s > 0 ? 4 : 2, a, 0);
        if (k->title_ttl_s <= 0) a[0] = "GET";
    }
    if (kp_cluster_exec(k->cl, k->cmds, n, k->rep, err, errlen)) {
        note_read(KP_CACHE_ERR_CONN);
        return -1;
    }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        redisReply *r = k->rep[i];
        if (r->type == REDIS_REPLY_ERROR && !rc) {
            kp_errf(err, errlen, "redis title lookup failed: %s", r->str);
            rc = -1;
        } else if (r->type == REDIS_REPLY_STRING && !rc && !(titles[i] = strdup(r->str))) {
            kp_errf(err, errlen, "redis title lookup: out of memory");
            rc = -1;
        }
        freeReplyObject(r);
    }
    if (rc)
        for (int i = 0; i < n; i++)
            free(titles[i]), titles[i] = NULL;
    return rc;
}
