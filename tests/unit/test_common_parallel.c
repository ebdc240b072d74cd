/* test_common_parallel.c -- kp_parallel_for (common/util.h) over its pool of helper threads: every
 * range runs once with its own index and bounds, back to back thousands of times; a failing range
 * fails the call; concurrent and nested callers (which find the pool owned) still get every range;
 * the helpers are reused across calls, sleep when idle rather than spin, and a forked child, which
 * has no helpers, still gets its ranges run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"
#include "th_main.h"

enum { MAXN = 1000, MAXT = 8 };

typedef struct {
    int n, T;
    atomic_int hits[MAXN];
    atomic_int bad; /* a range with the wrong bounds for its t */
    int fail_t;     /* this range returns -1 (-1: none) */
    pthread_t who[MAXT];
} cover_ctx;

static int cover_range(void *vc, int t, int lo, int hi)
{
    cover_ctx *c = vc;
    if (t < 0 || t >= c->T || lo != (int)((long)c->n * t / c->T) ||
        hi != (int)((long)c->n * (t + 1) / c->T))
        atomic_fetch_add(&c->bad, 1);
    for (int i = lo; i < hi && i < c->n; i++)
        atomic_fetch_add(&c->hits[i], 1);
    if (t < MAXT) c->who[t] = pthread_self();
    return t == c->fail_t ? -1 : 0;
}

/* Runs kp_parallel_for(T, n) on a fresh context; returns its result, checks the cover. */
static int cover_once(cover_ctx *c, int T, int n, int fail_t)
{
    memset(c, 0, sizeof(*c));
    c->n = n;
    c->T = T < n ? T : n;
    c->fail_t = fail_t;
    int rc = kp_parallel_for(T, n, cover_range, c);
    assert_int_equal(atomic_load(&c->bad), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(atomic_load(&c->hits[i]), 1);
    return rc;
}

static void test_every_range_once(void **state)
{
    (void)state;
    static cover_ctx c;
    const int ns[] = {1, 2, 7, 64, 1000};
    for (int T = 1; T <= MAXT; T++)
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
            assert_int_equal(cover_once(&c, T, ns[k], -1), 0);
    for (int r = 0; r < 5000; r++) /* back to back: the hand-over, not a thread's start */
        assert_int_equal(cover_once(&c, 2, 64, -1), 0);
    assert_int_equal(kp_parallel_for(2, 0, cover_range, &c), 0); /* n = 0: nothing */
}

static void test_a_failing_range_fails_the_call(void **state)
{
    (void)state;
    static cover_ctx c;
    for (int T = 2; T <= 4; T++)
        for (int f = 0; f < T; f++)
            assert_int_equal(cover_once(&c, T, 100, f), -1); /* the others still ran */
}

/* The helper that runs range 1 is the same thread call after call, and not the caller. */
static void test_helpers_are_reused(void **state)
{
    (void)state;
    static cover_ctx c;
    assert_int_equal(cover_once(&c, 2, 10, -1), 0);
    pthread_t first = c.who[1];
    assert_false(pthread_equal(first, pthread_self()));
    for (int r = 0; r < 200; r++) {
        assert_int_equal(cover_once(&c, 2, 10, -1), 0);
        assert_true(pthread_equal(c.who[1], first));
        assert_true(pthread_equal(c.who[0], pthread_self()));
    }
}

static void *caller(void *arg)
{
    cover_ctx *c = arg;
    for (int r = 0; r < 2000; r++) {
        memset(c, 0, sizeof(*c));
        c->n = 50;
        c->T = 2;
        c->fail_t = -1;
        if (kp_parallel_for(2, 50, cover_range, c) != 0) return (void *)1;
        if (atomic_load(&c->bad)) return (void *)1;
        for (int i = 0; i < 50; i++)
            if (atomic_load(&c->hits[i]) != 1) return (void *)1;
    }
    return NULL;
}

/* Four threads fan out at once: one owns the pool at a time, the others start their own threads;
 * every call gets all its ranges. */
static void test_concurrent_callers(void **state)
{
    (void)state;
    static cover_ctx c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, caller, &c[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *rv = (void *)1;
        assert_int_equal(pthread_join(th[i], &rv), 0);
        assert_null(rv);
    }
}

typedef struct {
    atomic_long sum;
} nest_ctx;

static int inner_range(void *vc, int t, int lo, int hi)
{
    (void)t;
    nest_ctx *c = vc;
    for (int i = lo; i < hi; i++)
        atomic_fetch_add(&c->sum, i);
    return 0;
}

static int outer_range(void *vc, int t, int lo, int hi)
{
    (void)t;
    for (int i = lo; i < hi; i++)
        if (kp_parallel_for(2, 100, inner_range, vc)) return -1;
    return 0;
}

/* A range that fans out itself (the pool is owned by its caller) gets its ranges too. */
static void test_nested_fan_out(void **state)
{
    (void)state;
    nest_ctx c;
    atomic_init(&c.sum, 0);
    assert_int_equal(kp_parallel_for(3, 6, outer_range, &c), 0);
    assert_int_equal(atomic_load(&c.sum), 6L * (99L * 100L / 2));
}

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* After a fan-out the helpers spin only briefly: over 300 ms of idling the process uses far less
 * than 300 ms of CPU (a helper spinning on would use all of it). */
static void test_idle_helpers_sleep(void **state)
{
    (void)state;
    static cover_ctx c;
    assert_int_equal(cover_once(&c, 4, 100, -1), 0);
    struct timespec settle = {0, 20 * 1000000L}, idle = {0, 300 * 1000000L};
    nanosleep(&settle, NULL);
    double c0 = cpu_s();
    nanosleep(&idle, NULL);
    double used = cpu_s() - c0;
    assert_true(used < 0.1);
}

/* A child forked after the pool started has no helpers: its fan-outs run on threads of its own. */
static void test_fork_child_fans_out(void **state)
{
    (void)state;
    static cover_ctx c;
    assert_int_equal(cover_once(&c, 2, 64, -1), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        memset(&c, 0, sizeof(c));
        c.n = 64;
        c.T = 2;
        c.fail_t = -1;
        int ok = kp_parallel_for(2, 64, cover_range, &c) == 0 && atomic_load(&c.bad) == 0;
        for (int i = 0; i < 64; i++)
            ok = ok && atomic_load(&c.hits[i]) == 1;
        _exit(ok ? 0 : 3);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
}

TH_MAIN(cmocka_unit_test(test_every_range_once),
        cmocka_unit_test(test_a_failing_range_fails_the_call),
        cmocka_unit_test(test_helpers_are_reused), cmocka_unit_test(test_concurrent_callers),
        cmocka_unit_test(test_nested_fan_out), cmocka_unit_test(test_idle_helpers_sleep),
        cmocka_unit_test(test_fork_child_fans_out))
