/* The Redis cache against a real redis-server (started by with_redis.sh): versioned replace,
 * TTL, item texts (versioned with the recs, their own TTL renewed by lookups), a full Redis,
 * reconnect after the server went away. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "cache/cache.h"
#include "redis_testhelp.h"

static kp_config cfg;

static int setup(void **state)
{
    (void)state;
    th_redis_config(&cfg);
    cfg.redis_ttl_s = 1000;
    return 0;
}

/* An integer command on the test's server, straight through hiredis. */
static long long raw(const char *fmt, const char *a1, const char *a2)
{
    redisContext *c = redisConnect("127.0.0.1", cfg.redis_port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, fmt, a1, a2);
    assert_non_null(r);
    long long t = r->type == REDIS_REPLY_INTEGER ? r->integer : r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    redisFree(c);
    return t;
}

static long long ttl_of(const char *key)
{
    return raw("TTL %s", key, NULL);
}

static void test_versioned_replace(void **state)
{
    (void)state;
    char err[256], *sugg = NULL, *title = NULL;
    uint64_t ver;
    int64_t gen;
    int stale = -1;
    kp_cache *k = kp_cache_new(&cfg);
    kp_cache_entry e = {"item-1", "red running shoes", "[{\"keyphrase\":\"a\"}]", 5, 1000};
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), 0);
    assert_int_equal(stale, 0);
    assert_int_equal(kp_cache_get(k, "item-1", &ver, &gen, &sugg, &title, err, sizeof err), 1);
    assert_int_equal(ver, 5);
    assert_int_equal(gen, 1000);
    assert_string_equal(sugg, "[{\"keyphrase\":\"a\"}]");
    assert_string_equal(title, "red running shoes");
    free(sugg), free(title);
    long long t = ttl_of("kprec:rec:item-1");
    assert_true(t > 990 && t <= 1000);
    assert_true(ttl_of("kprec:item:item-1") > 990);

    /* an older model version never overwrites */
    kp_cache_entry old = {"item-1", NULL, "[\"old\"]", 4, 2000};
    assert_int_equal(kp_cache_put(k, &old, 1, &stale, err, sizeof err), 0);
    assert_int_equal(stale, 1);
    assert_int_equal(kp_cache_get(k, "item-1", &ver, &gen, &sugg, NULL, err, sizeof err), 1);
    assert_int_equal(ver, 5);
    assert_string_equal(sugg, "[{\"keyphrase\":\"a\"}]");
    free(sugg);

    /* the same version (a replay) and newer ones do */
    kp_cache_entry same = {"item-1", NULL, "[\"replayed\"]", 5, 3000};
    kp_cache_entry newer[2] = {{"item-1", NULL, "[\"v6\"]", 6, 4000},
                               {"item-2", "blue hat", "[]", 6, 4000}};
    assert_int_equal(kp_cache_put(k, &same, 1, &stale, err, sizeof err), 0);
    assert_int_equal(stale, 0);
    assert_int_equal(kp_cache_put(k, newer, 2, &stale, err, sizeof err), 0);
    assert_int_equal(stale, 0);
    assert_int_equal(kp_cache_get(k, "item-1", &ver, &gen, &sugg, NULL, err, sizeof err), 1);
    assert_int_equal(ver, 6);
    assert_int_equal(gen, 4000);
    assert_string_equal(sugg, "[\"v6\"]");
    free(sugg);
    assert_int_equal(kp_cache_get(k, "nope", &ver, &gen, &sugg, NULL, err, sizeof err), 0);
    assert_null(sugg);
    kp_cache_free(k);
}

/* A writer with an older model (a lagging replica) and an older title of the item changes neither
 * the recs nor the title: the suggestions never sit beside another title. */
static void test_lagging_writer_keeps_title(void **state)
{
    (void)state;
    char err[256], *sugg = NULL, *title = NULL;
    uint64_t ver;
    int64_t gen;
    int stale = -1;
    kp_cache *k = kp_cache_new(&cfg);
    kp_cache_entry now = {"item-lag", "new title", "[\"new\"]", 6, 1000};
    kp_cache_entry lag = {"item-lag", "old title", "[\"old\"]", 5, 2000};
    assert_int_equal(kp_cache_put(k, &now, 1, &stale, err, sizeof err), 0);
    assert_int_equal(kp_cache_put(k, &lag, 1, &stale, err, sizeof err), 0);
    assert_int_equal(stale, 1);
    assert_int_equal(kp_cache_get(k, "item-lag", &ver, &gen, &sugg, &title, err, sizeof err), 1);
    assert_int_equal(ver, 6);
    assert_string_equal(sugg, "[\"new\"]");
    assert_string_equal(title, "new title");
    free(sugg), free(title);
    kp_cache_free(k);
}

/* Titles live [redis] title_ttl_s (longer than the recs), and every lookup renews that. */
static void test_title_ttl_renewed_by_lookups(void **state)
{
    (void)state;
    char err[256];
    int stale;
    kp_config c = cfg;
    c.redis_title_ttl_s = 5000;
    kp_cache *k = kp_cache_new(&c);
    kp_cache_entry e = {"item-ttl", "long-lived listing", "[]", 1, 1};
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), 0);
    assert_true(ttl_of("kprec:rec:item-ttl") <= 1000);
    assert_true(ttl_of("kprec:item:item-ttl") > 4990);
    assert_int_equal(raw("EXPIRE %s %s", "kprec:item:item-ttl", "50"), 1);
    const char *ids[] = {"item-ttl", "no-such-item"};
    char *titles[2];
    assert_int_equal(kp_cache_titles(k, ids, 2, titles, err, sizeof err), 0);
    assert_string_equal(titles[0], "long-lived listing");
    assert_null(titles[1]);
    free(titles[0]);
    assert_true(ttl_of("kprec:item:item-ttl") > 4990); /* clicked: kept */
    kp_cache_free(k);
}

/* maxmemory reached (noeviction): the write is refused whole (no recs without their title), the
 * error says how full Redis is, the process-wide state says "full" until a write succeeds. */
static void test_full_redis(void **state)
{
    (void)state;
    char err[256];
    int stale;
    kp_cache *k = kp_cache_new(&cfg);
    kp_cache_entry e = {"item-full", "a title", "[]", 1, 1};
    assert_int_equal(raw("CONFIG SET maxmemory-policy %s", "noeviction", NULL), 1);
    assert_int_equal(raw("CONFIG SET maxmemory %s", "1", NULL), 1);
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), -1);
    if (!strstr(err, "redis full: ") || !strstr(err, "writes paused")) fail_msg("err: %s", err);
    assert_int_equal(raw("EXISTS %s %s", "kprec:rec:item-full", "kprec:item:item-full"), 0);
    assert_int_equal(kp_cache_last_error_class(), KP_CACHE_ERR_FULL);
    kp_cache_stats st;
    kp_cache_stats_get(&st);
    assert_int_equal(st.error_class, KP_CACHE_ERR_FULL);
    assert_true(st.used_memory > 1);
    assert_int_equal(st.maxmemory, 1);
    assert_true(st.full_errors >= 1);
    assert_true(st.since_ms > 0);
    const char *ids[] = {"item-1"};
    char *titles[1];
    assert_int_equal(kp_cache_titles(k, ids, 1, titles, err, sizeof err), 0); /* reads work */
    free(titles[0]);
    assert_int_equal(kp_cache_last_error_class(), KP_CACHE_ERR_FULL);
    assert_int_equal(raw("CONFIG SET maxmemory %s", "0", NULL), 1);
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), 0);
    assert_int_equal(kp_cache_last_error_class(), KP_CACHE_OK);
    assert_int_equal(raw("EXISTS %s %s", "kprec:rec:item-full", "kprec:item:item-full"), 2);
    kp_cache_free(k);
}

static int unfill(void **state)
{
    (void)state;
    raw("CONFIG SET maxmemory %s", "0", NULL); /* also when test_full_redis failed half-way */
    return 0;
}

/* Stops (start 0) or starts again (start 1, on cfg's port) the test's redis-server through
 * ops/redis.sh; fails the test unless the script succeeds. */
static void redis_sh(int start)
{
    char cmd[512];
    if (start)
        snprintf(cmd, sizeof cmd, "%s/ops/redis.sh start %s %d >/dev/null", KPREC_SOURCE_DIR,
                 getenv("KPREC_TEST_REDIS_DIR"), cfg.redis_port);
    else
        snprintf(cmd, sizeof cmd, "%s/ops/redis.sh stop %s >/dev/null 2>&1", KPREC_SOURCE_DIR,
                 getenv("KPREC_TEST_REDIS_DIR"));
    assert_int_equal(system(cmd), 0);
}

static void test_server_gone_and_back(void **state)
{
    (void)state;
    char err[256];
    int stale;
    kp_cache *k = kp_cache_new(&cfg);
    kp_cache_entry e = {"item-9", "x", "[]", 1, 1};
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), 0);
    redis_sh(0);
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), -1);
    assert_non_null(strstr(err, "redis 127.0.0.1"));
    redis_sh(1);
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), 0); /* reconnected */
    kp_cache_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_versioned_replace),
        cmocka_unit_test(test_lagging_writer_keeps_title),
        cmocka_unit_test(test_title_ttl_renewed_by_lookups),
        cmocka_unit_test_teardown(test_full_redis, unfill),
        cmocka_unit_test(test_server_gone_and_back),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
