/* test_stop_flags.c -- the process's stop flags (consumer/group.h): set by the signal handler and
 * by the trainer thread, read by the serving thread's waiting loops. They must be lock-free C11
 * atomics (defined behaviour in a handler and across threads), not volatile sig_atomic_t (a data
 * race between threads), and a wait must end when another thread sets one. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "common/util.h"
#include "consumer/group.h"
#include "producer/kafka.h"
#include "th_main.h"

#define IS_STOP_FLAG(p) _Generic((p), kp_stop_flag * : 1, default : 0)

static void test_flags_are_lock_free_atomics(void **state)
{
    (void)state;
    assert_int_equal(IS_STOP_FLAG(&kp_worker_stop), 1);
    assert_int_equal(IS_STOP_FLAG(&kp_worker_stop_hard), 1);
    assert_true(atomic_is_lock_free(&kp_worker_stop));
    assert_true(atomic_is_lock_free(&kp_worker_stop_hard));
}

static void *set_later(void *arg)
{
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
    atomic_store((kp_stop_flag *)arg, 1);
    return NULL;
}

/* Another thread sets the hard stop: a 60 s backoff ends soon after. */
static void test_another_thread_ends_a_wait(void **state)
{
    (void)state;
    atomic_store(&kp_worker_stop_hard, 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, set_later, &kp_worker_stop_hard), 0);
    uint64_t t0 = kp_mono_us();
    kp_backoff_sleep(60000, &kp_worker_stop_hard, NULL, NULL);
    uint64_t waited = kp_mono_us() - t0;
    pthread_join(t, NULL);
    assert_int_equal(atomic_load(&kp_worker_stop_hard), 1);
    assert_true(waited < 30u * 1000000u); /* it returned on the flag, not after 60 s */
    atomic_store(&kp_worker_stop_hard, 0);
}

TH_MAIN(cmocka_unit_test(test_flags_are_lock_free_atomics),
        cmocka_unit_test(test_another_thread_ends_a_wait))
