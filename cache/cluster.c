/* cluster.c -- slot routing, per-node pipelines and redirections for kp_cache (see cluster.h). */
#include "cache/cluster.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "common/log.h"
#include "common/util.h"

#define MAX_ROUNDS 5

typedef struct {
    char host[256];
    int port;
    redisContext *ctx;
    int replicas; /* replicas of its slots in the last CLUSTER SLOTS */
} node;

struct kp_cluster {
    int cluster;
    char seeds[sizeof(((kp_config *)0)->redis_cluster)];
    char user[256], password[256];
    int db, connect_timeout_ms, command_timeout_ms, wait_ms;
    const char *script;
    char sha[41];
    node *nodes;
    int n_nodes, cap_nodes;
    int16_t *slots; /* KP_CLUSTER_SLOTS node indexes, -1 = unknown; NULL = no map yet */
    /* scratch of kp_cluster_exec, cap entries each */
    int *tgt, *ask;
    int cap;
};

unsigned kp_cluster_crc16(const char *buf, size_t len)
{
    unsigned crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (unsigned)(unsigned char)buf[i] << 8;
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
    return crc;
}

int kp_cluster_slot(const char *key, size_t len)
{
    size_t s = 0, e;
    while (s < len && key[s] != '{')
        s++;
    if (s < len) {
        for (e = s + 1; e < len && key[e] != '}'; e++)
            ;
        if (e < len && e > s + 1) return (int)(kp_cluster_crc16(key + s + 1, e - s - 1) & 16383);
    }
    return (int)(kp_cluster_crc16(key, len) & 16383);
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

/* The index of host:port in cl->nodes, added when new; -1 on OOM. */
static int node_index(kp_cluster *cl, const char *host, int port)
{
    for (int i = 0; i < cl->n_nodes; i++)
        if (cl->nodes[i].port == port && !strcmp(cl->nodes[i].host, host)) return i;
    if (cl->n_nodes == cl->cap_nodes) {
        int cap = cl->cap_nodes ? cl->cap_nodes * 2 : 8;
        node *nn = realloc(cl->nodes, sizeof *nn * (size_t)cap);
        if (!nn) return -1;
        cl->nodes = nn;
        cl->cap_nodes = cap;
    }
    node *d = &cl->nodes[cl->n_nodes];
    memset(d, 0, sizeof *d);
    snprintf(d->host, sizeof d->host, "%s", host);
    d->port = port;
    return cl->n_nodes++;
}

/* Adds the seeds of "host:port,host:port" (IPv6 as [addr]:port). 0, or -1 with err. */
static int parse_seeds(kp_cluster *cl, const char *list, char *err, size_t errlen)
{
    char buf[sizeof cl->seeds];
    snprintf(buf, sizeof buf, "%s", list);
    char *save = NULL;
    for (char *t = strtok_r(buf, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
        char *colon = strrchr(t, ':');
        long port = 0;
        char *end = NULL;
        if (colon) port = strtol(colon + 1, &end, 10);
        if (!colon || colon == t || !end || *end || port < 1 || port > 65535) {
            kp_errf(err, errlen, "[redis] cluster: \"%s\" is not host:port", t);
            return -1;
        }
        *colon = 0;
        if (t[0] == '[' && colon[-1] == ']') colon[-1] = 0, t++;
        if (node_index(cl, t, (int)port) < 0) {
            kp_errf(err, errlen, "out of memory");
            return -1;
        }
    }
    if (!cl->n_nodes) {
        kp_errf(err, errlen, "[redis] cluster: no host:port");
        return -1;
    }
    return 0;
}

kp_cluster *kp_cluster_new(const kp_config *c, const char *script, char *err, size_t errlen)
{
    kp_cluster *cl = calloc(1, sizeof *cl);
    if (!cl) {
        kp_errf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(cl->user, sizeof cl->user, "%s", c->redis_user);
    snprintf(cl->password, sizeof cl->password, "%s", c->redis_password);
    snprintf(cl->seeds, sizeof cl->seeds, "%s", c->redis_cluster);
    cl->db = c->redis_db;
    cl->connect_timeout_ms = c->redis_connect_timeout_ms;
    cl->command_timeout_ms = c->redis_command_timeout_ms;
    cl->wait_ms = c->redis_cluster_wait_ms;
    cl->script = script;
    cl->cluster = c->redis_cluster[0] != 0;
    if (cl->cluster) {
        if (c->redis_db) {
            kp_errf(err, errlen,
                    "[redis] db must be 0 with [redis] cluster (a cluster has db 0 only)");
            goto err;
        }
        if (parse_seeds(cl, c->redis_cluster, err, errlen)) goto err;
    } else if (node_index(cl, c->redis_host, c->redis_port) < 0) {
        kp_errf(err, errlen, "out of memory");
        goto err;
    }
    return cl;
err:
    kp_cluster_free(cl);
    return NULL;
}

static void drop(node *d)
{
    if (d->ctx) redisFree(d->ctx);
    d->ctx = NULL;
}

void kp_cluster_free(kp_cluster *cl)
{
    if (!cl) return;
    for (int i = 0; i < cl->n_nodes; i++)
        drop(&cl->nodes[i]);
    free(cl->nodes);
    free(cl->slots);
    free(cl->tgt);
    free(cl->ask);
    free(cl);
}

int kp_cluster_enabled(const kp_cluster *cl)
{
    return cl->cluster;
}

const char *kp_cluster_sha(const kp_cluster *cl)
{
    return cl->sha;
}

/* One command on d; its reply, or NULL with err (an error reply is freed; the connection is
 * dropped either way). */
static redisReply *node_cmd(node *d, char *err, size_t errlen, int argc, const char **argv)
{
    redisReply *r = redisCommandArgv(d->ctx, argc, argv, NULL);
    if (!r) {
        kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port,
                d->ctx->errstr[0] ? d->ctx->errstr : "connection lost");
    } else if (r->type == REDIS_REPLY_ERROR) {
        kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port, r->str);
        freeReplyObject(r);
        r = NULL;
    } else {
        return r;
    }
    drop(d);
    return NULL;
}

static int load_script(kp_cluster *cl, node *d, char *err, size_t errlen)
{
    const char *argv[] = {"SCRIPT", "LOAD", cl->script};
    redisReply *r = node_cmd(d, err, errlen, 3, argv);
    if (!r) return -1;
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        kp_errf(err, errlen, "redis %s:%d: unexpected SCRIPT LOAD reply", d->host, d->port);
        freeReplyObject(r);
        drop(d);
        return -1;
    }
    memcpy(cl->sha, r->str, 41);
    freeReplyObject(r);
    return 0;
}

/* Connects d (if not connected): AUTH, SELECT (one node), SCRIPT LOAD. 0, or -1 with err. */
static int node_connect(kp_cluster *cl, node *d, char *err, size_t errlen)
{
    if (d->ctx) return 0;
    d->ctx = redisConnectWithTimeout(d->host, d->port, ms_tv(cl->connect_timeout_ms));
    if (!d->ctx || d->ctx->err) {
        kp_errf(err, errlen, "redis %s:%d: cannot connect: %s", d->host, d->port,
                d->ctx ? d->ctx->errstr : "out of memory");
        drop(d);
        return -1;
    }
    redisSetTimeout(d->ctx, ms_tv(cl->command_timeout_ms));
    redisReply *r = NULL;
    if (cl->user[0] || cl->password[0]) { /* the error names the user, never the password */
        const char *a[] = {"AUTH", cl->user[0] ? cl->user : cl->password, cl->password};
        if (!(r = node_cmd(d, err, errlen, cl->user[0] ? 3 : 2, a))) return -1;
        freeReplyObject(r);
    }
    if (cl->db && !cl->cluster) {
        char db[16];
        snprintf(db, sizeof db, "%d", cl->db);
        const char *a[] = {"SELECT", db};
        if (!(r = node_cmd(d, err, errlen, 2, a))) return -1;
        freeReplyObject(r);
    }
    return load_script(cl, d, err, errlen);
}

/* Reads CLUSTER SLOTS of the node that answers first into a new map. 0, or -1 with err. */
static int refresh_map(kp_cluster *cl, char *err, size_t errlen)
{
    int16_t *map = malloc(sizeof *map * KP_CLUSTER_SLOTS);
    if (!map) {
        kp_errf(err, errlen, "out of memory");
        return -1;
    }
    int n0 = cl->n_nodes, rc = -1;
    char from[256] = "";
    redisReply *r = NULL;
    /* connected nodes first: a dead one costs a connect attempt */
    for (int pass = 0; pass < 2 && !r; pass++)
        for (int i = 0; i < n0 && !r; i++) {
            node *d = &cl->nodes[i];
            if ((pass == 0) != (d->ctx != NULL) || node_connect(cl, d, err, errlen)) continue;
            const char *a[] = {"CLUSTER", "SLOTS"};
            if ((r = node_cmd(d, err, errlen, 2, a)) && r->type != REDIS_REPLY_ARRAY) {
                kp_errf(err, errlen, "redis %s:%d: unexpected CLUSTER SLOTS reply", d->host,
                        d->port);
                freeReplyObject(r);
                r = NULL;
            }
            snprintf(from, sizeof from, "%s", d->host);
        }
    if (!r) goto out;
    for (int s = 0; s < KP_CLUSTER_SLOTS; s++)
        map[s] = -1;
    for (int i = 0; i < cl->n_nodes; i++)
        cl->nodes[i].replicas = 0;
    for (size_t j = 0; j < r->elements; j++) {
        /* [first slot, last slot, [host, port, id], replicas...] */
        redisReply *e = r->element[j];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3) continue;
        redisReply *m = e->element[2];
        if (e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER || m->type != REDIS_REPLY_ARRAY ||
            m->elements < 2 || m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            continue;
        char host[256]; /* empty or "?": the address it was reached at */
        snprintf(host, sizeof host, "%s",
                 m->element[0]->len && strcmp(m->element[0]->str, "?") ? m->element[0]->str : from);
        int idx = node_index(cl, host, (int)m->element[1]->integer);
        if (idx < 0) goto oom;
        cl->nodes[idx].replicas += (int)e->elements - 3;
        long long lo = e->element[0]->integer, hi = e->element[1]->integer;
        for (long long s = lo < 0 ? 0 : lo; s <= hi && s < KP_CLUSTER_SLOTS; s++)
            map[s] = (int16_t)idx;
    }
    free(cl->slots);
    cl->slots = map;
    map = NULL;
    rc = 0;
    goto out;
oom:
    kp_errf(err, errlen, "out of memory");
out:
    if (r) freeReplyObject(r);
    free(map);
    return rc;
}

int kp_cluster_connect(kp_cluster *cl, char *err, size_t errlen)
{
    if (!cl->cluster) return node_connect(cl, &cl->nodes[0], err, errlen);
    for (int attempt = 0;; attempt++) { /* a master down: a new map may name its replica */
        if ((attempt || !cl->slots) && refresh_map(cl, err, errlen)) return -1;
        int s = 0;
        for (; s < KP_CLUSTER_SLOTS; s++) /* every master owning slots */
            if (cl->slots[s] >= 0 && !cl->nodes[cl->slots[s]].ctx &&
                node_connect(cl, &cl->nodes[cl->slots[s]], err, errlen))
                break;
        if (s == KP_CLUSTER_SLOTS) return 0;
        if (attempt) return -1;
    }
}

static int grow_scratch(kp_cluster *cl, int n)
{
    if (n <= cl->cap) return 0;
    int *t = realloc(cl->tgt, sizeof *t * (size_t)n);
    if (!t) return -1;
    cl->tgt = t;
    int *a = realloc(cl->ask, sizeof *a * (size_t)n);
    if (!a) return -1;
    cl->ask = a;
    cl->cap = n;
    return 0;
}

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the node named (added if new), -1 if unparsable. */
static int redirect_node(kp_cluster *cl, const char *msg, int *slot)
{
    const char *sp = strchr(msg, ' ');
    if (!sp) return -1;
    *slot = atoi(sp + 1);
    const char *addr = strchr(sp + 1, ' ');
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon || *slot < 0 || *slot >= KP_CLUSTER_SLOTS) return -1;
    char host[256];
    snprintf(host, sizeof host, "%.*s", (int)(colon - addr - 1), addr + 1);
    return node_index(cl, host, atoi(colon + 1));
}

static int has_prefix(const redisReply *r, const char *p)
{
    return r->type == REDIS_REPLY_ERROR && !strncmp(r->str, p, strlen(p));
}

/* The commands of one round that go to node j: sent as one pipeline, then read. Sets *refresh when
 * the map is stale; returns -1 when the node failed (connection), -2 when the call is to fail now
 * (WAIT saw no replica, TRYAGAIN/CLUSTERDOWN/LOADING: retried later by the caller). */
static int round_node(kp_cluster *cl, int j, const kp_cluster_cmd *c, int n, redisReply **rep,
                      int *left, int *refresh, char *err, size_t errlen)
{
    node *d = &cl->nodes[j];
    int writes = 0;
    if (node_connect(cl, d, err, errlen)) return -1;
    for (int i = 0; i < n; i++) {
        if (rep[i] || cl->tgt[i] != j) continue;
        if (cl->ask[i] >= 0 && redisAppendCommand(d->ctx, "ASKING") != REDIS_OK) goto conn;
        if (redisAppendCommandArgv(d->ctx, c[i].argc, c[i].argv, c[i].argl) != REDIS_OK) goto conn;
        writes += c[i].write;
    }
    int wait = cl->cluster && writes && cl->wait_ms > 0 && d->replicas > 0;
    char wms[16];
    snprintf(wms, sizeof wms, "%d", cl->wait_ms);
    const char *wa[] = {"WAIT", "1", wms};
    if (wait && redisAppendCommandArgv(d->ctx, 3, wa, NULL) != REDIS_OK) goto conn;
    int noscript = 0, later = 0;
    for (int i = 0; i < n; i++) {
        if (rep[i] || cl->tgt[i] != j) continue;
        redisReply *r = NULL;
        if (cl->ask[i] >= 0) {
            if (redisGetReply(d->ctx, (void **)&r) != REDIS_OK || !r) goto conn;
            freeReplyObject(r);
            r = NULL;
        }
        if (redisGetReply(d->ctx, (void **)&r) != REDIS_OK || !r) goto conn;
        int slot;
        cl->ask[i] = -1;
        if (has_prefix(r, "MOVED ")) {
            int to = redirect_node(cl, r->str, &slot);
            d = &cl->nodes[j]; /* the node table may have grown */
            if (to >= 0 && cl->slots) cl->slots[slot] = (int16_t)to;
            *refresh = 1;
            kp_debug("redis %s:%d: %s", d->host, d->port, r->str);
            kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port, r->str);
            freeReplyObject(r);
        } else if (has_prefix(r, "ASK ")) {
            cl->ask[i] = redirect_node(cl, r->str, &slot);
            d = &cl->nodes[j];
            kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port, r->str);
            freeReplyObject(r);
        } else if (has_prefix(r, "NOSCRIPT")) {
            noscript = 1;
            kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port, r->str);
            freeReplyObject(r);
        } else if (has_prefix(r, "TRYAGAIN") || has_prefix(r, "CLUSTERDOWN") ||
                   has_prefix(r, "LOADING") || has_prefix(r, "READONLY")) {
            *refresh = later = 1; /* a failover or a migration under way: the caller retries */
            kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port, r->str);
            freeReplyObject(r);
        } else {
            rep[i] = r;
            (*left)--;
        }
    }
    if (wait) {
        redisReply *r = NULL;
        if (redisGetReply(d->ctx, (void **)&r) != REDIS_OK || !r) goto conn;
        int acked = r->type == REDIS_REPLY_INTEGER && r->integer >= 1;
        freeReplyObject(r);
        if (!acked) {
            kp_errf(err, errlen, "redis %s:%d: no replica acknowledged the writes within %d ms",
                    d->host, d->port, cl->wait_ms);
            *refresh = 1; /* its replica may be gone: the next map may say it has none */
            return -2;
        }
    }
    if (noscript && load_script(cl, d, err, errlen)) return -1;
    return later ? -2 : 0;
conn:
    kp_errf(err, errlen, "redis %s:%d: %s", d->host, d->port,
            d->ctx && d->ctx->errstr[0] ? d->ctx->errstr : "connection lost");
    drop(d);
    return -1;
}

int kp_cluster_exec(kp_cluster *cl, const kp_cluster_cmd *c, int n, redisReply **rep, char *err,
                    size_t errlen)
{
    for (int i = 0; i < n; i++)
        rep[i] = NULL;
    if (n <= 0) return 0;
    if (grow_scratch(cl, n)) {
        kp_errf(err, errlen, "redis: out of memory");
        return -1;
    }
    if (cl->cluster && !cl->slots && refresh_map(cl, err, errlen)) return -1;
    int left = n, failed = 0, conn_rounds = 0;
    for (int i = 0; i < n; i++)
        cl->ask[i] = -1;
    for (int round = 0; left && !failed && round < MAX_ROUNDS; round++) {
        int refresh = 0, conn = 0;
        for (int i = 0; i < n; i++) {
            if (rep[i]) continue;
            cl->tgt[i] = cl->ask[i] >= 0 ? cl->ask[i]
                         : cl->cluster   ? cl->slots[kp_cluster_slot(c[i].key, c[i].keylen)]
                                         : 0;
            if (cl->tgt[i] < 0) {
                kp_errf(err, errlen, "redis cluster: slot %d has no master",
                        kp_cluster_slot(c[i].key, c[i].keylen));
                refresh = failed = 1;
            }
        }
        for (int j = 0; j < cl->n_nodes && !failed; j++) {
            int any = 0;
            for (int i = 0; i < n && !any; i++)
                any = !rep[i] && cl->tgt[i] == j;
            if (!any) continue;
            int rc = round_node(cl, j, c, n, rep, &left, &refresh, err, errlen);
            if (rc == -1) refresh = conn = 1; /* a replica may have taken over: new map, retry */
            if (rc == -1 && !cl->cluster) failed = 1;
            if (rc == -2) failed = 1;
        }
        if (conn && ++conn_rounds >= 2) failed = 1; /* still down: the caller backs off */
        if (refresh && cl->cluster) {
            char e2[256];
            if (refresh_map(cl, e2, sizeof e2)) kp_debug("%s", e2);
        }
    }
    if (!left) return 0;
    for (int i = 0; i < n; i++)
        if (rep[i]) freeReplyObject(rep[i]), rep[i] = NULL;
    return -1;
}
