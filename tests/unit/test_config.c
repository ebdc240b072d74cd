/* Config parsing: the example file, good and bad files, environment overrides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "th_main.h"

static char path[64];

static const char *write_tmp(const char *text)
{
    snprintf(path, sizeof path, "/tmp/kprec-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void **state)
{
    (void)state;
    kp_config c;
    kp_config_defaults(&c);
    assert_string_equal(c.topic_items, "items.listed");
    assert_string_equal(c.topic_dlq, "kprec.dlq");
    assert_int_equal(c.redis_port, 6379);
    assert_int_equal(c.batch_size, 256);
    assert_string_equal(c.role, "serve");
    kp_config_free(&c);
}

/* config.example.ini parses, and documents every key the code knows (and nothing else). */
static void test_example_file_documents_every_key(void **state)
{
    (void)state;
    char err[512], p[1024];
    kp_config c;
    kp_config_defaults(&c);
    snprintf(p, sizeof p, "%s/config.example.ini", KPREC_SOURCE_DIR);
    assert_int_equal(kp_config_load(&c, p, err, sizeof err), 0);
    assert_string_equal(kp_config_kafka(&c, "bootstrap.servers"), "127.0.0.1:9092");
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    static char text[65536];
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    const char *sec, *key;
    for (int i = 0; kp_config_key_at(i, &sec, &key) == 0; i++) {
        char head[64], line[128];
        snprintf(head, sizeof head, "[%s]", sec);
        snprintf(line, sizeof line, "\n%s =", key);
        const char *s = strstr(text, head);
        assert_non_null(s);
        const char *next = strstr(s + 1, "\n[");
        const char *k = strstr(s, line);
        if (!k || (next && k > next)) fail_msg("config.example.ini lacks %s.%s", sec, key);
    }
    /* and the example's values are the defaults */
    kp_config d;
    kp_config_defaults(&d);
    assert_int_equal(c.batch_size, d.batch_size);
    assert_int_equal(c.top_k, d.top_k);
    assert_int_equal(c.redis_ttl_s, d.redis_ttl_s);
    assert_string_equal(c.topic_suggestions, d.topic_suggestions);
    kp_config_free(&c);
}

static void test_good_file(void **state)
{
    (void)state;
    char err[512];
    kp_config c;
    kp_config_defaults(&c);
    const char *p = write_tmp("# comment\n[worker]\nbatch_size = 64\ntop_k=5\nmin_score = 0.25\n"
                              "[redis]\nhost = redis.local\nport = 6380\n"
                              "[kafka]\nsecurity.protocol = SASL_SSL\nsasl.mechanism = PLAIN\n");
    assert_int_equal(kp_config_load(&c, p, err, sizeof err), 0);
    assert_int_equal(c.batch_size, 64);
    assert_int_equal(c.top_k, 5);
    assert_true(c.min_score > 0.249 && c.min_score < 0.251);
    assert_string_equal(c.redis_host, "redis.local");
    assert_int_equal(c.redis_port, 6380);
    assert_int_equal(c.n_kafka, 2);
    assert_string_equal(kp_config_kafka(&c, "sasl.mechanism"), "PLAIN");
    assert_null(kp_config_kafka(&c, "sasl.username"));
    kp_config_free(&c);
    unlink(p);
}

static void expect_error(const char *text, const char *line_and_msg)
{
    char err[512], want[256];
    kp_config c;
    kp_config_defaults(&c);
    const char *p = write_tmp(text);
    assert_int_equal(kp_config_load(&c, p, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:%s", p, line_and_msg);
    if (!strstr(err, want)) fail_msg("error '%s' does not contain '%s'", err, want);
    kp_config_free(&c);
    unlink(p);
}

static void test_bad_files(void **state)
{
    (void)state;
    expect_error("[worker]\nbatch_size = 10\nbtach_size = 5\n",
                 "3: unknown key 'btach_size' in [worker]");
    expect_error("[worker]\nbatch_size = lots\n", "2: 'batch_size' must be an integer");
    expect_error("[worker]\ntop_k = 0\n", "2: 'top_k' must be an integer in [1, 1000]");
    expect_error("[redis]\nport = 70000\n", "2: 'port' must be an integer in [1, 65535]");
    expect_error("\n[nosuch]\nx = 1\n", "3: unknown section [nosuch]");
    expect_error("[worker]\nthis line has no equals sign\n", "2: syntax error");
    expect_error("top_k = 3\n", "1: key 'top_k' outside any [section]");
    expect_error("[worker]\nmin_score = 2\n", "2: 'min_score' must be a number in [-1, 1]");

    char err[512];
    kp_config c;
    kp_config_defaults(&c);
    assert_int_equal(kp_config_load(&c, "/nonexistent/kprec.ini", err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/kprec.ini: cannot open"));
    kp_config_free(&c);
}

static void test_env_overrides(void **state)
{
    (void)state;
    char err[512];
    kp_config c;
    kp_config_defaults(&c);
    char *env[] = {"KPREC_REDIS_PORT=6390",   "KPREC_KAFKA_BOOTSTRAP_SERVERS=b1:9092,b2:9092",
                   "KPREC_TOPICS_DLQ=my.dlq", "PATH=/bin",
                   "KPREC_WORKER_TOP_K=7",    NULL};
    assert_int_equal(kp_config_apply_env(&c, env, err, sizeof err), 0);
    assert_int_equal(c.redis_port, 6390);
    assert_int_equal(c.top_k, 7);
    assert_string_equal(c.topic_dlq, "my.dlq");
    assert_string_equal(kp_config_kafka(&c, "bootstrap.servers"), "b1:9092,b2:9092");
    char *bad[] = {"KPREC_WORKER_TOP_K=many", NULL};
    assert_int_equal(kp_config_apply_env(&c, bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "KPREC_WORKER_TOP_K"));
    char *unknown[] = {"KPREC_WORKER_NOPE=1", NULL};
    assert_int_equal(kp_config_apply_env(&c, unknown, err, sizeof err), -1);
    assert_non_null(strstr(err, "unknown key 'nope'"));
    kp_config_free(&c);
}

TH_MAIN(cmocka_unit_test(test_defaults), cmocka_unit_test(test_example_file_documents_every_key),
        cmocka_unit_test(test_good_file), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_env_overrides))
