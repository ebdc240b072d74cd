/* /healthz of a replica: 503 once its follower has been behind longer than [model] max_behind_s.
 * The follower runs against a broker that does not answer (127.0.0.1:1): it never reaches the
 * topic, so the behind clock set here is the only one. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "th_main.h"

/* A free loopback port (bound, read, released). */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* The status code of GET path on 127.0.0.1:port, or -1. */
static int http_status(int port, const char *path)
{
    int s = socket(AF_INET, SOCK_STREAM, 0), code = -1;
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    char req[256], resp[512] = "";
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    if (!connect(s, (struct sockaddr *)&a, sizeof a) &&
        write(s, req, strlen(req)) == (ssize_t)strlen(req)) {
        size_t n = 0;
        ssize_t r;
        while (n < sizeof resp - 1 && (r = read(s, resp + n, sizeof resp - 1 - n)) > 0)
            n += (size_t)r;
        resp[n] = 0;
        if (sscanf(resp, "HTTP/%*s %d", &code) != 1) code = -1;
    }
    close(s);
    return code;
}

static kp_follower *start_follower(kp_config *c, const char *max_behind)
{
    char err[512];
    kp_config_defaults(c);
    assert_int_equal(kp_config_set(c, "kafka", "bootstrap.servers", "127.0.0.1:1", err, sizeof err),
                     0);
    assert_int_equal(kp_config_set(c, "model", "max_behind_s", max_behind, err, sizeof err), 0);
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 1024;
    kp_bienc *m = kp_bienc_new(&bc, 1);
    assert_non_null(m);
    kp_follower *f = kp_follower_start(c, m, 0, err, sizeof err);
    assert_non_null(f);
    return f;
}

/* Starts the /metrics + /healthz server on a free port of 127.0.0.1; returns the port. */
static int start_healthz(void)
{
    int port = free_port();
    assert_int_equal(kp_telemetry_http_start("127.0.0.1", port), 0);
    return port;
}

/* Stops the server of start_healthz and the follower of start_follower, frees c. */
static void stop_all(kp_follower *f, kp_config *c)
{
    kp_telemetry_http_stop();
    kp_bienc_free(kp_follower_stop(f));
    kp_config_free(c);
}

static void test_healthz_503_when_behind(void **state)
{
    (void)state;
    kp_config c;
    kp_follower *f = start_follower(&c, "2");
    int port = start_healthz();
    atomic_store(&kp_m.model_behind_since_ms, 0);
    assert_int_equal(http_status(port, "/healthz"), 200);
    atomic_store(&kp_m.model_behind_since_ms, kp_now_ms() - 1000); /* behind, not for long */
    assert_int_equal(http_status(port, "/healthz"), 200);
    atomic_store(&kp_m.model_behind_since_ms, kp_now_ms() - 5000); /* longer than 2 s */
    assert_int_equal(http_status(port, "/healthz"), 503);
    atomic_store(&kp_m.model_behind_since_ms, 0);
    assert_int_equal(http_status(port, "/healthz"), 200);
    stop_all(f, &c);
}

static void test_healthz_max_behind_0_is_off(void **state)
{
    (void)state;
    kp_config c;
    kp_follower *f = start_follower(&c, "0");
    int port = start_healthz();
    atomic_store(&kp_m.model_behind_since_ms, kp_now_ms() - 3600 * 1000);
    assert_int_equal(http_status(port, "/healthz"), 200);
    atomic_store(&kp_m.model_behind_since_ms, 0);
    stop_all(f, &c);
}

TH_MAIN(cmocka_unit_test(test_healthz_503_when_behind),
        cmocka_unit_test(test_healthz_max_behind_0_is_off))
