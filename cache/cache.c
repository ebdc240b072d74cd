#include "cache/cache.h"

#include <hiredis/hiredis.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "common/util.h"

/* KEYS[1] = rec key; ARGV = model_version, generated_at, suggestions, ttl_s. Returns 1 if written,
 * 0 if the stored entry has a newer model version (kept). */
static const char put_script[] =
    "local t = redis.call('TYPE', KEYS[1]).ok\n"
    "if t == 'hash' then\n"
    "  local v = tonumber(redis.call('HGET', KEYS[1], 'model_version'))\n"
    "  if v and v > tonumber(ARGV[1]) then return 0 end\n"
    "end\n"
    "redis.call('DEL', KEYS[1])\n"
    "redis.call('HSET', KEYS[1], 'model_version', ARGV[1], 'generated_at', ARGV[2],"
    " 'suggestions', ARGV[3])\n"
    "if tonumber(ARGV[4]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[4]) end\n"
    "return 1\n";

struct kp_cache {
    char host[256], user[256], password[256], prefix[64];
    int port, db, connect_timeout_ms, command_timeout_ms, ttl_s;
    redisContext *ctx;
    char sha[41];
    /* scratch of kp_cache_titles, grown as needed */
    char *keybuf;
    size_t keycap;
    const char **argv;
    size_t *argl;
    int argcap;
};

#define KP_STR_(x) #x
#define KP_STR(x)  KP_STR_(x)

const char *kp_cache_client_version(void)
{
    return KP_STR(HIREDIS_MAJOR) "." KP_STR(HIREDIS_MINOR) "." KP_STR(HIREDIS_PATCH);
}

kp_cache *kp_cache_new(const kp_config *c)
{
    kp_cache *k = calloc(1, sizeof *k);
    if (!k) return NULL;
    snprintf(k->host, sizeof k->host, "%s", c->redis_host);
    snprintf(k->user, sizeof k->user, "%s", c->redis_user);
    snprintf(k->password, sizeof k->password, "%s", c->redis_password);
    snprintf(k->prefix, sizeof k->prefix, "%s", c->redis_prefix);
    k->port = c->redis_port;
    k->db = c->redis_db;
    k->connect_timeout_ms = c->redis_connect_timeout_ms;
    k->command_timeout_ms = c->redis_command_timeout_ms;
    k->ttl_s = c->redis_ttl_s;
    return k;
}

static void drop(kp_cache *k)
{
    if (k->ctx) redisFree(k->ctx);
    k->ctx = NULL;
}

void kp_cache_free(kp_cache *k)
{
    if (!k) return;
    drop(k);
    free(k->keybuf);
    free((void *)k->argv);
    free(k->argl);
    free(k);
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* Runs one command; returns its reply or NULL (err filled, connection dropped). */
static redisReply *cmd(kp_cache *k, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(k->ctx, fmt, ap);
    va_end(ap);
    if (!r) {
        snprintf(err, errlen, "redis %s:%d: %s", k->host, k->port,
                 k->ctx->errstr[0] ? k->ctx->errstr : "connection lost");
        drop(k);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis %s:%d: %s", k->host, k->port, r->str);
        freeReplyObject(r);
        drop(k);
        return NULL;
    }
    return r;
}

int kp_cache_connect(kp_cache *k, char *err, size_t errlen)
{
    if (k->ctx) return 0;
    k->ctx = redisConnectWithTimeout(k->host, k->port, ms_tv(k->connect_timeout_ms));
    if (!k->ctx || k->ctx->err) {
        snprintf(err, errlen, "redis %s:%d: cannot connect: %s", k->host, k->port,
                 k->ctx ? k->ctx->errstr : "out of memory");
        drop(k);
        return -1;
    }
    redisSetTimeout(k->ctx, ms_tv(k->command_timeout_ms));
    redisReply *r;
    if (k->user[0]) { /* an ACL user (Redis 6+); the error names the user, never the password */
        if (!(r = cmd(k, err, errlen, "AUTH %s %s", k->user, k->password))) return -1;
        freeReplyObject(r);
    } else if (k->password[0]) {
        if (!(r = cmd(k, err, errlen, "AUTH %s", k->password))) return -1;
        freeReplyObject(r);
    }
    if (k->db) {
        if (!(r = cmd(k, err, errlen, "SELECT %d", k->db))) return -1;
        freeReplyObject(r);
    }
    if (!(r = cmd(k, err, errlen, "SCRIPT LOAD %s", put_script))) return -1;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        snprintf(err, errlen, "redis: unexpected SCRIPT LOAD reply");
        freeReplyObject(r);
        drop(k);
        return -1;
    }
    memcpy(k->sha, r->str, 41);
    freeReplyObject(r);
    return 0;
}

int kp_cache_put(kp_cache *k, const kp_cache_entry *e, int n, int *stale, char *err, size_t errlen)
{
    if (stale) *stale = 0;
    if (kp_cache_connect(k, err, errlen)) return -1;
    char key[1024], ver[32], gen[32], ttl[32];
    int sent = 0;
    snprintf(ttl, sizeof ttl, "%d", k->ttl_s);
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%srec:%s", k->prefix, e[i].item_id);
        snprintf(ver, sizeof ver, "%" PRIu64, e[i].model_version);
        snprintf(gen, sizeof gen, "%" PRId64, e[i].generated_at_ms);
        const char *argv[] = {"EVALSHA", k->sha, "1", key, ver, gen, e[i].suggestions, ttl};
        if (redisAppendCommandArgv(k->ctx, 8, argv, NULL) != REDIS_OK) goto conn_err;
        sent++;
        if (e[i].title) {
            snprintf(key, sizeof key, "%sitem:%s", k->prefix, e[i].item_id);
            if (k->ttl_s > 0) {
                const char *a2[] = {"SET", key, e[i].title, "EX", ttl};
                if (redisAppendCommandArgv(k->ctx, 5, a2, NULL) != REDIS_OK) goto conn_err;
            } else {
                const char *a2[] = {"SET", key, e[i].title};
                if (redisAppendCommandArgv(k->ctx, 3, a2, NULL) != REDIS_OK) goto conn_err;
            }
            sent++;
        }
    }
    int failed = 0;
    for (int i = 0; i < sent; i++) {
        redisReply *r = NULL;
        if (redisGetReply(k->ctx, (void **)&r) != REDIS_OK || !r) goto conn_err;
        if (r->type == REDIS_REPLY_ERROR) {
            if (!failed) snprintf(err, errlen, "redis %s:%d: %s", k->host, k->port, r->str);
            failed = 1;
        } else if (r->type == REDIS_REPLY_INTEGER && r->integer == 0 && stale) {
            (*stale)++;
        }
        freeReplyObject(r);
    }
    if (failed) {
        drop(k); /* NOSCRIPT and friends: start clean, the script is loaded again */
        return -1;
    }
    return 0;
conn_err:
    snprintf(err, errlen, "redis %s:%d: %s", k->host, k->port,
             k->ctx && k->ctx->errstr[0] ? k->ctx->errstr : "connection lost");
    drop(k);
    return -1;
}

int kp_cache_get(kp_cache *k, const char *item_id, uint64_t *model_version, int64_t *generated_at,
                 char **suggestions, char **title, char *err, size_t errlen)
{
    *suggestions = NULL;
    if (title) *title = NULL;
    if (kp_cache_connect(k, err, errlen)) return -1;
    redisReply *r = cmd(k, err, errlen, "HMGET %srec:%s model_version generated_at suggestions",
                        k->prefix, item_id);
    if (!r) return -1;
    int found = r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                r->element[2]->type == REDIS_REPLY_STRING;
    if (found) {
        *model_version = r->element[0]->str ? strtoull(r->element[0]->str, NULL, 10) : 0;
        *generated_at = r->element[1]->str ? strtoll(r->element[1]->str, NULL, 10) : 0;
        *suggestions = strdup(r->element[2]->str);
    }
    freeReplyObject(r);
    if (found && !*suggestions) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (found && title) {
        if (!(r = cmd(k, err, errlen, "GET %sitem:%s", k->prefix, item_id))) {
            free(*suggestions);
            *suggestions = NULL;
            return -1;
        }
        if (r->type == REDIS_REPLY_STRING) *title = strdup(r->str);
        freeReplyObject(r);
    }
    return found;
}

/* Makes room for n MGET arguments whose keys take keybytes. 0 / -1 (OOM). */
static int grow_titles_scratch(kp_cache *k, int n, size_t keybytes)
{
    if (n + 1 > k->argcap) {
        const char **a = realloc((void *)k->argv, sizeof *a * (size_t)(n + 1));
        if (!a) return -1;
        k->argv = a;
        size_t *l = realloc(k->argl, sizeof *l * (size_t)(n + 1));
        if (!l) return -1;
        k->argl = l;
        k->argcap = n + 1;
    }
    if (keybytes > k->keycap) {
        char *b = realloc(k->keybuf, keybytes);
        if (!b) return -1;
        k->keybuf = b;
        k->keycap = keybytes;
    }
    return 0;
}

int kp_cache_titles(kp_cache *k, const char *const *item_ids, int n, char **titles, char *err,
                    size_t errlen)
{
    for (int i = 0; i < n; i++)
        titles[i] = NULL;
    if (n <= 0) return 0;
    if (kp_cache_connect(k, err, errlen)) return -1;
    size_t plen = strlen(k->prefix), bytes = 0;
    for (int i = 0; i < n; i++)
        bytes += plen + strlen(item_ids[i]) + sizeof "item:";
    if (grow_titles_scratch(k, n, bytes)) {
        kp_errf(err, errlen, "redis MGET: out of memory");
        return -1;
    }
    k->argv[0] = "MGET";
    k->argl[0] = 4;
    char *p = k->keybuf;
    for (int i = 0; i < n; i++) {
        int len = sprintf(p, "%sitem:%s", k->prefix, item_ids[i]);
        k->argv[i + 1] = p;
        k->argl[i + 1] = (size_t)len;
        p += len + 1;
    }
    redisReply *r = redisCommandArgv(k->ctx, n + 1, k->argv, k->argl);
    if (!r) {
        kp_errf(err, errlen, "redis MGET failed: %s",
                k->ctx->errstr[0] ? k->ctx->errstr : "connection lost");
        drop(k);
        return -1;
    }
    int rc = -1;
    if (r->type != REDIS_REPLY_ARRAY || (int)r->elements != n) {
        kp_errf(err, errlen, "redis MGET failed: unexpected reply");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) continue;
        if (!(titles[i] = strdup(r->element[i]->str))) {
            kp_errf(err, errlen, "redis MGET: out of memory");
            for (int j = 0; j < i; j++)
                free(titles[j]), titles[j] = NULL;
            goto out;
        }
    }
    rc = 0;
out:
    freeReplyObject(r);
    return rc;
}
