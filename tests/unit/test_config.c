/* Config parsing: the example file, good and bad files, environment overrides, long lines, secrets
 * never printed; and the escaping of outside text in log lines (common/util kp_escape, kp_log). */
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
#include "common/log.h"
#include "common/util.h"

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

/* Every secret-bearing key of librdkafka's CONFIGURATION.md (and kprec's own) is redacted by
 * `kprec config`; public ones (certificates, user names, paths) are printed. */
static const char *const secret_kafka_keys[] = {"ssl.key.password",
                                                "ssl.key.pem",
                                                "ssl_key",
                                                "ssl.keystore.password",
                                                "sasl.password",
                                                "sasl.oauthbearer.config",
                                                "sasl.oauthbearer.client.secret",
                                                "sasl.oauthbearer.extensions",
                                                "SSL.KEY.PASSWORD"};
static const char *const public_kafka_keys[] = {"sasl.username",
                                                "ssl.certificate.pem",
                                                "ssl.ca.pem",
                                                "ssl.ca.location",
                                                "ssl.key.location",
                                                "ssl.keystore.location",
                                                "sasl.mechanism",
                                                "security.protocol",
                                                "sasl.oauthbearer.client.id",
                                                "sasl.oauthbearer.token.endpoint.url",
                                                "bootstrap.servers"};

static char *dump_config(const kp_config *c)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    kp_config_dump(c, f);
    fclose(f);
    return buf;
}

static void test_secrets_redacted(void **state)
{
    (void)state;
    char err[512], val[64], line[128];
    kp_config c;
    kp_config_defaults(&c);
    size_t ns = sizeof secret_kafka_keys / sizeof *secret_kafka_keys;
    size_t np = sizeof public_kafka_keys / sizeof *public_kafka_keys;
    for (size_t i = 0; i < ns; i++) {
        snprintf(val, sizeof val, "SECRET-VALUE-%zu", i);
        assert_int_equal(kp_config_set(&c, "kafka", secret_kafka_keys[i], val, err, sizeof err), 0);
        assert_true(kp_config_is_secret("kafka", secret_kafka_keys[i]));
    }
    for (size_t i = 0; i < np; i++) {
        snprintf(val, sizeof val, "public-value-%zu", i);
        assert_int_equal(kp_config_set(&c, "kafka", public_kafka_keys[i], val, err, sizeof err), 0);
        if (kp_config_is_secret("kafka", public_kafka_keys[i]))
            fail_msg("%s is not a secret", public_kafka_keys[i]);
    }
    assert_int_equal(kp_config_set(&c, "redis", "password", "SECRET-REDIS", err, sizeof err), 0);
    assert_int_equal(kp_config_set(&c, "redis", "user", "kprec-user", err, sizeof err), 0);
    char *out = dump_config(&c);
    if (strstr(out, "SECRET")) fail_msg("a secret is printed:\n%s", out);
    for (size_t i = 0; i < ns; i++) {
        snprintf(line, sizeof line, "%s = " KP_CONFIG_REDACTED "\n", secret_kafka_keys[i]);
        if (!strstr(out, line)) fail_msg("no '%s' in:\n%s", line, out);
    }
    for (size_t i = 0; i < np; i++) {
        snprintf(line, sizeof line, "%s = public-value-%zu\n", public_kafka_keys[i], i);
        if (!strstr(out, line)) fail_msg("no '%s' in:\n%s", line, out);
    }
    assert_non_null(strstr(out, "\npassword = " KP_CONFIG_REDACTED "\n"));
    assert_non_null(strstr(out, "\nuser = kprec-user\n"));
    free(out);
    /* an empty secret prints as empty (nothing to hide, and it shows that none is set) */
    kp_config_free(&c);
    kp_config_defaults(&c);
    out = dump_config(&c);
    assert_non_null(strstr(out, "\npassword = \n"));
    free(out);
    kp_config_free(&c);
}

/* A line longer than inih's buffer is an error naming file and line, not a value cut in two
 * whose tail becomes a bogus key; a line of exactly the maximum length is fine. */
static void test_long_lines(void **state)
{
    (void)state;
    char text[2048], err[512], want[256];
    kp_config c;
    for (int extra = 0; extra <= 1; extra++) {
        int vlen = KP_CONFIG_MAX_LINE - (int)strlen("sasl.oauthbearer.config = ") + extra;
        int n = snprintf(text, sizeof text,
                         "[kafka]\nbootstrap.servers = b:9092\n"
                         "sasl.oauthbearer.config = ");
        for (int i = 0; i < vlen; i++)
            text[n++] = i % 10 == 9 ? '=' : 'a' + i % 26;
        snprintf(text + n, sizeof text - (size_t)n, "\n[redis]\nport = 6380\n");
        kp_config_defaults(&c);
        const char *p = write_tmp(text);
        int rc = kp_config_load(&c, p, err, sizeof err);
        if (extra == 0) {
            if (rc) fail_msg("a line of %d bytes: %s", KP_CONFIG_MAX_LINE, err);
            assert_int_equal((int)strlen(kp_config_kafka(&c, "sasl.oauthbearer.config")), vlen);
            assert_int_equal(c.redis_port, 6380);
        } else {
            assert_int_equal(rc, -1);
            snprintf(want, sizeof want, "%s:3: line longer than %d bytes", p, KP_CONFIG_MAX_LINE);
            assert_string_equal(err, want);
            assert_null(strstr(err, "aaa")); /* and the value is not in the message */
        }
        kp_config_free(&c);
        unlink(p);
    }
    /* the last line, without a newline, of exactly the maximum length */
    int n = snprintf(text, sizeof text, "[worker]\nrole = ");
    memset(text + n, 'x', (size_t)(KP_CONFIG_MAX_LINE - 7));
    text[n + KP_CONFIG_MAX_LINE - 7] = 0;
    kp_config_defaults(&c);
    const char *p = write_tmp(text);
    assert_int_equal(kp_config_load(&c, p, err, sizeof err), -1);
    assert_non_null(strstr(err, "value of 'role' is too long")); /* parsed whole, then refused */
    kp_config_free(&c);
    unlink(p);
}

/* Outside text in log lines: controls, DEL and invalid UTF-8 escaped, valid UTF-8 kept. */
static void test_escape(void **state)
{
    (void)state;
    char out[64];
    const char id[] = "it\nem\x1b[31m\x7f\xff\xc3\xa9\\ok";
    assert_string_equal(kp_escape(id, sizeof id - 1, out, sizeof out, 0),
                        "it\\x0aem\\x1b[31m\\x7f\\xff\xc3\xa9\\ok");
    assert_string_equal(kp_escape(id, sizeof id - 1, out, sizeof out, KP_ESC_BACKSLASH),
                        "it\\x0aem\\x1b[31m\\x7f\\xff\xc3\xa9\\\\ok");
    /* overlong, surrogate, above U+10FFFF, truncated sequence: byte by byte */
    const char bad[] = "\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xe2\x82";
    assert_string_equal(kp_escape(bad, sizeof bad - 1, out, sizeof out, 0),
                        "\\xc0\\xaf\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xe2\\x82");
    assert_string_equal(kp_escape("abcde", 5, out, 6, 0), "abcde"); /* fits exactly */
    assert_string_equal(kp_escape("abcdefgh", 8, out, 8, 0), "abcd...");
    assert_string_equal(kp_escape("a\nbcdefgh", 9, out, 8, 0), "a..."); /* never half an escape */
    assert_string_equal(kp_escape("\xc3\xa9\xc3\xa9\xc3\xa9", 6, out, 6, 0),
                        "\xc3\xa9..."); /* whole chars */
    assert_string_equal(kp_escape("abc", 3, out, 1, 0), "");
    assert_string_equal(kp_escape(NULL, 3, out, sizeof out, 0), "");
}

/* kp_log writes an id with a newline and a terminal escape as one line, escaped. */
static void test_log_line_escaped(void **state)
{
    (void)state;
    char logp[64] = "/tmp/kprec-test-log-XXXXXX";
    int fd = mkstemp(logp);
    assert_true(fd >= 0);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    kp_warn("dead-letter %s: %s", "items[0]@1",
            "key/id mismatch: id 'evil\nFAKE INFO line\x1b[2J'");
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    close(fd);
    FILE *f = fopen(logp, "r");
    char buf[4096];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    unlink(logp);
    buf[n] = 0;
    assert_non_null(strstr(buf, "id 'evil\\x0aFAKE INFO line\\x1b[2J'\n"));
    assert_int_equal(strchr(buf, '\n') - buf, (long)n - 1); /* one line */
}

TH_MAIN(cmocka_unit_test(test_defaults), cmocka_unit_test(test_example_file_documents_every_key),
        cmocka_unit_test(test_good_file), cmocka_unit_test(test_bad_files),
        cmocka_unit_test(test_env_overrides), cmocka_unit_test(test_secrets_redacted),
        cmocka_unit_test(test_long_lines), cmocka_unit_test(test_escape),
        cmocka_unit_test(test_log_line_escaped))
