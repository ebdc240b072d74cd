/* The Redis cache as an ACL user ([redis] user + password: AUTH user password) against a real
 * redis-server with ACLs (with_redis.sh: user KPREC_TEST_REDIS_ACL_USER may touch kprec:* only):
 * the right password works, a wrong one fails naming the user and never the password, keys
 * outside the user's pattern are refused. KPREC_REDIS_PORT may also point at a TLS tunnel
 * (tests/redis/test_redis_tls.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cache/cache.h"
#include "redis_testhelp.h"

static kp_config cfg;
static const char *user, *pass;

static int setup(void **state)
{
    (void)state;
    th_redis_config(&cfg);
    user = getenv("KPREC_TEST_REDIS_ACL_USER");
    pass = getenv("KPREC_TEST_REDIS_ACL_PASS");
    assert_non_null(user);
    assert_non_null(pass);
    return 0;
}

static kp_cache *as(const char *u, const char *p, const char *prefix)
{
    kp_config c = cfg;
    snprintf(c.redis_user, sizeof c.redis_user, "%s", u);
    snprintf(c.redis_password, sizeof c.redis_password, "%s", p);
    snprintf(c.redis_prefix, sizeof c.redis_prefix, "%s", prefix);
    return kp_cache_new(&c);
}

static void test_acl_user_writes_and_reads(void **state)
{
    (void)state;
    char err[256], *sugg = NULL, *title = NULL;
    uint64_t ver;
    int64_t gen;
    int stale;
    kp_cache *k = as(user, pass, "kprec:");
    kp_cache_entry e = {"acl-item", "a title", "[]", 3, 7};
    if (kp_cache_put(k, &e, 1, &stale, err, sizeof err)) fail_msg("put: %s", err);
    assert_int_equal(kp_cache_get(k, "acl-item", &ver, &gen, &sugg, &title, err, sizeof err), 1);
    assert_int_equal(ver, 3);
    assert_string_equal(title, "a title");
    free(sugg), free(title);
    const char *ids[] = {"acl-item"};
    char *titles[1];
    assert_int_equal(kp_cache_titles(k, ids, 1, titles, err, sizeof err), 0);
    assert_string_equal(titles[0], "a title");
    free(titles[0]);
    kp_cache_free(k);
}

static void test_wrong_password(void **state)
{
    (void)state;
    char err[256];
    kp_cache *k = as(user, "not-the-password-xyz", "kprec:");
    assert_int_equal(kp_cache_connect(k, err, sizeof err), -1);
    if (!strstr(err, "WRONGPASS")) fail_msg("error does not name the cause: %s", err);
    assert_null(strstr(err, "not-the-password-xyz"));
    kp_cache_free(k);
    k = as("no-such-user", pass, "kprec:");
    assert_int_equal(kp_cache_connect(k, err, sizeof err), -1);
    assert_non_null(strstr(err, "WRONGPASS"));
    assert_null(strstr(err, pass));
    kp_cache_free(k);
}

static void test_keys_outside_the_acl(void **state)
{
    (void)state;
    char err[256];
    int stale;
    kp_cache *k = as(user, pass, "other:");
    kp_cache_entry e = {"x", "t", "[]", 1, 1};
    assert_int_equal(kp_cache_put(k, &e, 1, &stale, err, sizeof err), -1);
    if (!strstr(err, "NOPERM")) fail_msg("error does not name the cause: %s", err);
    kp_cache_free(k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acl_user_writes_and_reads),
        cmocka_unit_test(test_wrong_password),
        cmocka_unit_test(test_keys_outside_the_acl),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
