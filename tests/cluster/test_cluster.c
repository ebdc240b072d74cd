/* kp_cache against a real Redis Cluster (3 masters + 3 replicas, started by with_cluster.sh):
 * slots as Redis computes them, writes and title lookups routed to every master, a lost script
 * (NOSCRIPT), a slot migrating (ASK) and moved (MOVED), and a master killed mid-run: its replica
 * takes over, writes resume, no entry is lost. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "cache/cluster.h"
#include "common/util.h"

#define N_NODES 6

static kp_config cfg;
static int ports[N_NODES], dead_port;

static int setup(void **state)
{
    (void)state;
    char err[256];
    extern char **environ;
    kp_config_defaults(&cfg);
    assert_int_equal(kp_config_apply_env(&cfg, environ, err, sizeof err), 0);
    assert_true(cfg.redis_cluster[0]);
    cfg.redis_connect_timeout_ms = 1000;
    cfg.redis_command_timeout_ms = 2000;
    cfg.redis_ttl_s = 3600;
    const char *p = cfg.redis_cluster;
    for (int i = 0; i < N_NODES; i++) {
        const char *colon = strchr(p, ':');
        assert_non_null(colon);
        ports[i] = atoi(colon + 1);
        p = strchr(colon, ',');
        if (i < N_NODES - 1) assert_non_null(p);
    }
    return 0;
}

/* A command on the node at port (NULL reply: that node is down). Caller frees. */
static redisReply *on(int port, const char *fmt, ...)
{
    redisContext *c = redisConnect("127.0.0.1", port);
    assert_non_null(c);
    redisReply *r = NULL;
    if (!c->err) {
        va_list ap;
        va_start(ap, fmt);
        r = redisvCommand(c, fmt, ap);
        va_end(ap);
    }
    redisFree(c);
    return r;
}

static int live_port(void)
{
    for (int i = 0; i < N_NODES; i++)
        if (ports[i] != dead_port) return ports[i];
    return 0;
}

/* The port of the master owning slot, as the cluster (CLUSTER SLOTS of a live node) says. */
static int master_of(int slot)
{
    redisReply *r = on(live_port(), "CLUSTER SLOTS");
    assert_non_null(r);
    int port = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (slot >= e->element[0]->integer && slot <= e->element[1]->integer)
            port = (int)e->element[2]->element[1]->integer;
    }
    freeReplyObject(r);
    assert_int_not_equal(port, 0);
    return port;
}

static int item_slot(const char *id)
{
    char key[256];
    int n = snprintf(key, sizeof key, "kprec:rec:{%s}", id);
    return kp_cluster_slot(key, (size_t)n);
}

static void entry(kp_cache_entry *e, char *bufs, int i, uint64_t ver)
{
    char *id = bufs, *title = bufs + 64, *sugg = bufs + 128;
    snprintf(id, 64, "it-%d", i);
    snprintf(title, 64, "title of %d", i);
    snprintf(sugg, 64, "[\"s%d\"]", i);
    *e = (kp_cache_entry){id, title, sugg, ver, 1000 + i};
}

/* Writes e until Redis takes them (as the serve worker does: back off, retry the batch). Returns
 * how long that took (ms); *failures counts the failed attempts. */
static int64_t put_retry(kp_cache *k, const kp_cache_entry *e, int n, int *failures)
{
    char err[512];
    int stale;
    int64_t t0 = kp_now_ms();
    while (kp_cache_put(k, e, n, &stale, err, sizeof err)) {
        (*failures)++;
        if (kp_now_ms() - t0 > 60000) fail_msg("writes did not resume within 60 s: %s", err);
        usleep(100 * 1000);
    }
    return kp_now_ms() - t0;
}

static unsigned lcg(unsigned *s)
{
    return (*s = *s * 1103515245u + 12345u) >> 16;
}

static void test_slots_match_redis(void **state)
{
    (void)state;
    assert_int_equal(kp_cluster_crc16("123456789", 9), 0x31C3); /* the XMODEM check value */
    static const char alphabet[] = "ab{}}{xyz:-_0123";
    unsigned seed = 7;
    for (int i = 0; i < 500; i++) {
        char key[24];
        int len = 1 + (int)(lcg(&seed) % 20);
        for (int j = 0; j < len; j++)
            key[j] = alphabet[lcg(&seed) % (sizeof alphabet - 1)];
        key[len] = 0;
        redisReply *r = on(live_port(), "CLUSTER KEYSLOT %b", key, (size_t)len);
        assert_non_null(r);
        if (r->integer != kp_cluster_slot(key, (size_t)len))
            fail_msg("key \"%s\": redis says slot %lld, kprec %d", key, r->integer,
                     kp_cluster_slot(key, (size_t)len));
        freeReplyObject(r);
    }
}

/* Items land on all three masters; titles and entries read back through the same routing. */
static void test_routed_writes_and_titles(void **state)
{
    (void)state;
    enum { N = 600 };
    static char bufs[N][192];
    static kp_cache_entry e[N];
    char err[512];
    int stale, fails = 0;
    kp_cache *k = kp_cache_new(&cfg);
    assert_non_null(k);
    for (int i = 0; i < N; i++)
        entry(&e[i], bufs[i], i, 1);
    put_retry(k, e, N, &fails);
    assert_int_equal(fails, 0);
    int masters = 0;
    for (int i = 0; i < N_NODES; i++) {
        redisReply *r = on(ports[i], "ROLE");
        int master = !strcmp(r->element[0]->str, "master");
        freeReplyObject(r);
        if (!master) continue;
        r = on(ports[i], "DBSIZE");
        assert_true(r->integer > 0);
        freeReplyObject(r);
        masters++;
    }
    assert_int_equal(masters, 3);
    const char *ids[N];
    char *titles[N];
    for (int i = 0; i < N; i++)
        ids[i] = e[i].item_id;
    assert_int_equal(kp_cache_titles(k, ids, N, titles, err, sizeof err), 0);
    for (int i = 0; i < N; i++) {
        assert_string_equal(titles[i], e[i].title);
        free(titles[i]);
    }
    uint64_t ver;
    int64_t gen;
    char *sugg, *title;
    assert_int_equal(kp_cache_get(k, "it-17", &ver, &gen, &sugg, &title, err, sizeof err), 1);
    assert_int_equal(gen, 1017);
    assert_string_equal(sugg, "[\"s17\"]");
    assert_string_equal(title, "title of 17");
    free(sugg), free(title);
    /* an older model version changes nothing, on whichever master */
    entry(&e[0], bufs[0], 17, 0);
    assert_int_equal(kp_cache_put(k, e, 1, &stale, err, sizeof err), 0);
    assert_int_equal(stale, 1);
    kp_cache_free(k);
}

/* Every node forgot the script: NOSCRIPT -> SCRIPT LOAD there -> the write goes through. */
static void test_noscript(void **state)
{
    (void)state;
    char bufs[4][192], err[512];
    kp_cache_entry e[4];
    int stale;
    kp_cache *k = kp_cache_new(&cfg);
    entry(&e[0], bufs[0], 1, 1);
    assert_int_equal(kp_cache_put(k, e, 1, &stale, err, sizeof err), 0);
    for (int i = 0; i < N_NODES; i++)
        freeReplyObject(on(ports[i], "SCRIPT FLUSH"));
    for (int i = 0; i < 4; i++)
        entry(&e[i], bufs[i], 100 + i * 37, 2);
    if (kp_cache_put(k, e, 4, &stale, err, sizeof err)) fail_msg("put after SCRIPT FLUSH: %s", err);
    assert_int_equal(stale, 0);
    kp_cache_free(k);
}

static void node_id(int port, char id[64])
{
    redisReply *r = on(port, "CLUSTER MYID");
    assert_non_null(r);
    snprintf(id, 64, "%s", r->str);
    freeReplyObject(r);
}

/* A slot migrating from one master to another: reads of keys already moved follow ASK; an item's
 * write (two keys, one script) gets TRYAGAIN until the slot is handed over (the caller retries);
 * then a client whose map still names the source follows MOVED. */
static void test_ask_then_moved(void **state)
{
    (void)state;
    char bufs[2][192], err[512], src_id[64], dst_id[64];
    kp_cache_entry e[2];
    int stale;
    kp_cache *k = kp_cache_new(&cfg);
    entry(&e[0], bufs[0], 5000, 1);
    assert_int_equal(kp_cache_put(k, e, 1, &stale, err, sizeof err), 0); /* the map is loaded */
    int slot = item_slot(e[0].item_id), i2 = 5001;
    while (item_slot((snprintf(bufs[1], 64, "it-%d", i2), bufs[1])) != slot)
        i2++;
    entry(&e[1], bufs[1], i2, 1);
    int src = master_of(slot), dst = master_of((slot + 5462) % 16384);
    assert_int_not_equal(src, dst);
    node_id(src, src_id), node_id(dst, dst_id);
    freeReplyObject(on(dst, "CLUSTER SETSLOT %d IMPORTING %s", slot, src_id));
    freeReplyObject(on(src, "CLUSTER SETSLOT %d MIGRATING %s", slot, dst_id));
    redisReply *r = on(src, "CLUSTER GETKEYSINSLOT %d 100", slot);
    assert_int_equal(r->elements, 2); /* rec + item of e[0] */
    for (size_t j = 0; j < r->elements; j++)
        freeReplyObject(on(src, "MIGRATE 127.0.0.1 %d %s 0 5000", dst, r->element[j]->str));
    freeReplyObject(r);
    /* the source has no key of the slot left: ASK -> ASKING + the command on dst */
    const char *ids[] = {e[0].item_id};
    char *titles[1];
    if (kp_cache_titles(k, ids, 1, titles, err, sizeof err)) fail_msg("titles under ASK: %s", err);
    assert_string_equal(titles[0], e[0].title);
    free(titles[0]);
    uint64_t ver;
    int64_t gen;
    char *sugg, *title;
    assert_int_equal(kp_cache_get(k, e[0].item_id, &ver, &gen, &sugg, &title, err, sizeof err), 1);
    assert_string_equal(title, e[0].title);
    free(sugg), free(title);
    /* a new item's two keys cannot be written mid-migration: TRYAGAIN, nothing half-written */
    assert_int_equal(kp_cache_put(k, &e[1], 1, &stale, err, sizeof err), -1);
    if (!strstr(err, "TRYAGAIN")) fail_msg("put mid-migration: %s", err);
    /* hand the slot over; k's map still says src: MOVED, then the write lands on dst */
    for (int j = 0; j < N_NODES; j++)
        freeReplyObject(on(ports[j], "CLUSTER SETSLOT %d NODE %s", slot, dst_id));
    if (kp_cache_put(k, &e[1], 1, &stale, err, sizeof err)) fail_msg("put after MOVED: %s", err);
    r = on(dst, "CLUSTER COUNTKEYSINSLOT %d", slot);
    assert_int_equal(r->integer, 4);
    freeReplyObject(r);
    for (int j = 0; j < 2; j++) {
        assert_int_equal(kp_cache_get(k, e[j].item_id, &ver, &gen, &sugg, &title, err, sizeof err),
                         1);
        assert_string_equal(title, e[j].title);
        free(sugg), free(title);
    }
    kp_cache_free(k);
}

/* kill -9 of a master mid-run: its replica is promoted, writes resume, every entry is there. */
static void test_master_killed(void **state)
{
    (void)state;
    enum { N = 3000, BATCH = 100 };
    static char bufs[N][192];
    static kp_cache_entry e[N];
    char err[512], path[1024];
    int fails = 0;
    int64_t longest = 0;
    kp_cache *k = kp_cache_new(&cfg);
    for (int i = 0; i < N; i++)
        entry(&e[i], bufs[i], 10000 + i, 3);
    int slot = item_slot(e[0].item_id), victim = 0;
    for (int b = 0; b < N; b += BATCH) {
        if (b == N / 3) { /* mid-run */
            victim = master_of(slot);
            snprintf(path, sizeof path, "%s/%d/redis.pid", getenv("KPREC_TEST_CLUSTER_DIR"),
                     victim);
            FILE *f = fopen(path, "r");
            assert_non_null(f);
            int pid = 0;
            assert_int_equal(fscanf(f, "%d", &pid), 1);
            fclose(f);
            assert_int_equal(kill(pid, SIGKILL), 0);
            dead_port = victim;
        }
        int64_t t = put_retry(k, e + b, BATCH, &fails);
        if (t > longest) longest = t;
    }
    int promoted = master_of(slot);
    assert_int_not_equal(promoted, victim);
    assert_true(fails > 0); /* the kill was felt */
    printf("# master %d killed: %d failed attempts, writes resumed after %lld ms on %d\n", victim,
           fails, (long long)longest, promoted);
    int missing = 0;
    for (int i = 0; i < N; i++) {
        uint64_t ver;
        int64_t gen;
        char *sugg, *title;
        int f = kp_cache_get(k, e[i].item_id, &ver, &gen, &sugg, &title, err, sizeof err);
        if (f < 0) fail_msg("get %s: %s", e[i].item_id, err);
        if (f == 0 || ver != 3 || !title || strcmp(title, e[i].title) ||
            strcmp(sugg, e[i].suggestions))
            missing++;
        free(sugg), free(title);
    }
    assert_int_equal(missing, 0);
    kp_cache_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_slots_match_redis), cmocka_unit_test(test_routed_writes_and_titles),
        cmocka_unit_test(test_noscript),          cmocka_unit_test(test_ask_then_moved),
        cmocka_unit_test(test_master_killed),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
