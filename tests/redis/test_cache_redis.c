/* The Redis cache against a real redis-server (started by with_redis.sh): versioned replace,
 * TTL, item texts, reconnect after the server went away. */
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

static long long ttl_of(const char *key)
{
    redisContext *c = redisConnect("127.0.0.1", cfg.redis_port);
    assert_non_null(c);
    redisReply *r = redisCommand(c, "TTL %s", key);
    long long t = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return t;
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
        cmocka_unit_test(test_server_gone_and_back),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
