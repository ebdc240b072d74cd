/* test_telemetry_health.c - the metrics endpoint (common/telemetry.c) cannot take the worker down
 * and tells the truth: at most max_conns connections, idle ones closed after the timeout, no
 * SO_REUSEPORT (a second bind of the port fails, with the reason), and /healthz answers 503 with
 * a reason when paused too long, wedged, or the cache is full or failing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/telemetry.h"
#include "common/util.h"
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

static int connect_to(int port)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a)) {
        close(s);
        return -1;
    }
    return s;
}

/* GET path: the status code (-1 if no answer within 2 s) and the body's first line in body. */
static int http_get(int port, const char *path, char *body, size_t n)
{
    int s = connect_to(port), code = -1;
    char req[256], resp[8192] = "";
    if (body && n) body[0] = 0;
    if (s < 0) return -1;
    snprintf(req, sizeof req, "GET %s HTTP/1.0\r\n\r\n", path);
    if (write(s, req, strlen(req)) == (ssize_t)strlen(req)) {
        size_t got = 0;
        struct pollfd p = {s, POLLIN, 0};
        while (got < sizeof resp - 1 && poll(&p, 1, 2000) == 1) {
            ssize_t r = read(s, resp + got, sizeof resp - 1 - got);
            if (r <= 0) break;
            got += (size_t)r;
        }
        resp[got] = 0;
        if (sscanf(resp, "HTTP/%*s %d", &code) != 1) code = -1;
        const char *b = strstr(resp, "\r\n\r\n");
        if (b && body) {
            snprintf(body, n, "%s", b + 4);
            body[strcspn(body, "\n")] = 0;
        }
    }
    close(s);
    return code;
}

/* 1 when the server has closed connection s (read gives EOF or an error) within ms. */
static int closed_within(int s, int ms)
{
    struct pollfd p = {s, POLLIN, 0};
    char c;
    return poll(&p, 1, ms) == 1 && read(s, &c, 1) <= 0;
}

static void reset_state(void)
{
    kp_telemetry_set_paused(0);
    kp_telemetry_cache_result(NULL);
    atomic_store(&kp_m.model_behind_since_ms, 0);
}

/* Descriptors this process has open. */
static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    assert_non_null(d);
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* More idle connections than the limit: the ones past it are refused at once (no descriptor
 * held), the others are closed after the timeout, and then /metrics answers again. */
static void test_connection_limit_and_timeout(void **state)
{
    (void)state;
    enum { LIMIT = 4, OPEN = 40 };
    int port = free_port(), s[OPEN];
    kp_telemetry_set_limits(60, 60, LIMIT, 2);
    assert_int_equal(kp_telemetry_http_start("127.0.0.1", port), 0);
    usleep(100 * 1000);
    int base = open_fds();
    for (int i = 0; i < OPEN; i++) {
        s[i] = connect_to(port);
        assert_true(s[i] >= 0);
    }
    usleep(300 * 1000);
    /* the server side holds at most LIMIT of them (the other OPEN are this test's own) */
    int server_side = open_fds() - base - OPEN;
    print_message("server holds %d descriptors for %d idle connections (limit %d)\n", server_side,
                  OPEN, LIMIT);
    assert_true(server_side <= LIMIT);
    int refused = 0;
    for (int i = 0; i < OPEN; i++)
        refused += closed_within(s[i], 20);
    assert_int_equal(refused, OPEN - LIMIT);
    /* those inside the limit are closed after the idle timeout (2 s) */
    int64_t t0 = kp_now_ms();
    int timed_out = 0;
    for (int i = 0; i < OPEN; i++) {
        timed_out += closed_within(s[i], 6000);
        close(s[i]);
    }
    assert_int_equal(timed_out, OPEN);
    int64_t dt = kp_now_ms() - t0;
    print_message("idle connections closed after %lld ms\n", (long long)dt);
    assert_true(dt > 1000 && dt < 6000);
    /* and /metrics answers again (within 2 s: the server may still be counting the closed ones
     * off its limit when the first request comes) */
    char body[256];
    int code = -1;
    for (int i = 0; i < 20 && code != 200; i++) {
        code = http_get(port, "/metrics", body, sizeof body);
        if (code != 200) usleep(100 * 1000);
    }
    assert_int_equal(code, 200);
    kp_telemetry_http_stop();
}

/* A second bind of the same port fails (no SO_REUSEPORT), with the reason; the first server keeps
 * answering. */
static void test_second_bind_fails(void **state)
{
    (void)state;
    int port = free_port();
    kp_telemetry_set_limits(60, 60, 8, 5);
    assert_int_equal(kp_telemetry_http_start("127.0.0.1", port), 0);
    /* a second process would bind through its own socket: do that with SO_REUSEPORT set, which
     * succeeds only if the server's socket set it too */
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_not_equal(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    close(s);
    /* and /metrics answers again (within 2 s: the server may still be counting the closed ones
     * off its limit when the first request comes) */
    char body[256];
    int code = -1;
    for (int i = 0; i < 20 && code != 200; i++) {
        code = http_get(port, "/metrics", body, sizeof body);
        if (code != 200) usleep(100 * 1000);
    }
    assert_int_equal(code, 200);
    kp_telemetry_http_stop();
}

static void test_healthz_reasons(void **state)
{
    (void)state;
    char body[1024];
    int port = free_port();
    reset_state();
    kp_telemetry_set_limits(1, 1, 8, 5);
    assert_int_equal(kp_telemetry_http_start("127.0.0.1", port), 0);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    assert_memory_equal(body, "ok ", 3);

    kp_telemetry_set_paused(1); /* paused: fine at first, 503 after max_paused_s */
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    usleep(1300 * 1000);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 503);
    assert_non_null(strstr(body, "paused 1s > 1s"));
    kp_telemetry_set_paused(0);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);

    kp_telemetry_tick(KP_LOOP_SERVE); /* a loop that stops ticking is wedged */
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    usleep(1300 * 1000);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 503);
    assert_non_null(strstr(body, "wedged: serve loop idle 1s > 1s"));
    kp_telemetry_tick(KP_LOOP_SERVE);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);

    /* Redis answering OOM: full at once; other errors: failing once they last max_stall_s */
    kp_telemetry_cache_result("redis 127.0.0.1:6379: OOM command not allowed when used memory > "
                              "'maxmemory'.");
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 503);
    assert_non_null(strstr(body, "cache full: redis 127.0.0.1:6379: OOM command not allowed"));
    kp_telemetry_cache_result(NULL);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    kp_telemetry_cache_result("redis 127.0.0.1:6379: connection refused");
    kp_telemetry_tick(KP_LOOP_SERVE);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    usleep(1300 * 1000);
    kp_telemetry_tick(KP_LOOP_SERVE);
    kp_telemetry_cache_result("redis 127.0.0.1:6379: connection refused");
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 503);
    assert_non_null(
        strstr(body, "cache failing 1s > 1s: redis 127.0.0.1:6379: connection refused"));
    kp_telemetry_cache_result(NULL);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);

    /* the checks are off at 0 */
    kp_telemetry_set_limits(0, 0, 8, 5);
    kp_telemetry_set_paused(1);
    usleep(1100 * 1000);
    assert_int_equal(http_get(port, "/healthz", body, sizeof body), 200);
    kp_telemetry_set_paused(0);
    kp_telemetry_http_stop();
}

TH_MAIN(cmocka_unit_test(test_connection_limit_and_timeout),
        cmocka_unit_test(test_second_bind_fails), cmocka_unit_test(test_healthz_reasons))
