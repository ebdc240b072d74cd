#include "consumer/serve_writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "common/log.h"

struct kp_serve_writer {
    const kp_config *cfg;
    kp_stop_flag *hard;
    pthread_t thread;
    int started;
    /* shared, under mu: cv wakes the writer (a job, quit) and the lander (done) */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    kp_serve_slot *job; /* submitted, not landed yet */
    int done;           /* the writer is finished with job: rc says how */
    kp_batch_rc rc;
    const char *down; /* while job is held at a failing sink: which one (a static string) */
    kp_stop_flag quit;
    /* the writer thread's own */
    int backoff_ms, retrying;
};

static int stopping(kp_serve_writer *wr)
{
    return atomic_load(&wr->quit) || (wr->hard && atomic_load(wr->hard));
}

/* Sleeps ms in slices, ending early on quit or a hard stop. */
static void backoff_sleep(kp_serve_writer *wr, int ms)
{
    while (ms > 0 && !stopping(wr)) {
        int slice = ms < 20 ? ms : 20;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        ms -= slice;
    }
}

/* kp_serve_slot_send until the batch is acknowledged (DONE) or given up (FAILED). */
static kp_batch_rc send_all(kp_serve_writer *wr, kp_serve_slot *s)
{
    wr->retrying = 0;
    for (;;) {
        const char *why = NULL;
        kp_batch_rc r = kp_serve_slot_send(s, &why);
        if (r == KP_BATCH_DONE) wr->backoff_ms = wr->cfg->retry_backoff_ms;
        if (r != KP_BATCH_AGAIN) return r;
        pthread_mutex_lock(&wr->mu);
        wr->down = why ? why : "a sink is failing";
        pthread_mutex_unlock(&wr->mu);
        if (stopping(wr)) return KP_BATCH_FAILED;
        wr->retrying = 1;
        backoff_sleep(wr, wr->backoff_ms);
        wr->backoff_ms = kp_backoff_next(wr->cfg, wr->backoff_ms);
        if (stopping(wr)) return KP_BATCH_FAILED;
    }
}

static void *writer_main(void *arg)
{
    kp_serve_writer *wr = arg;
    pthread_mutex_lock(&wr->mu);
    for (;;) {
        while (!atomic_load(&wr->quit) && (!wr->job || wr->done))
            pthread_cond_wait(&wr->cv, &wr->mu);
        if (atomic_load(&wr->quit)) break;
        kp_serve_slot *s = wr->job;
        pthread_mutex_unlock(&wr->mu);
        kp_batch_rc r = send_all(wr, s);
        pthread_mutex_lock(&wr->mu);
        wr->rc = r;
        wr->done = 1;
        wr->down = NULL;
        pthread_cond_broadcast(&wr->cv);
    }
    pthread_mutex_unlock(&wr->mu);
    return NULL;
}

kp_serve_writer *kp_serve_writer_new(const kp_config *c, kp_stop_flag *hard)
{
    kp_serve_writer *wr = calloc(1, sizeof *wr);
    pthread_condattr_t ca;
    if (!wr) return NULL;
    wr->cfg = c;
    wr->hard = hard;
    wr->backoff_ms = c->retry_backoff_ms;
    atomic_init(&wr->quit, 0);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int e = pthread_mutex_init(&wr->mu, NULL);
    if (!e && (e = pthread_cond_init(&wr->cv, &ca))) pthread_mutex_destroy(&wr->mu);
    pthread_condattr_destroy(&ca);
    if (e) goto err;
    if ((e = pthread_create(&wr->thread, NULL, writer_main, wr))) {
        pthread_cond_destroy(&wr->cv);
        pthread_mutex_destroy(&wr->mu);
        goto err;
    }
    wr->started = 1;
    return wr;
err:
    kp_error("worker: cannot start the writer thread (error %d)", e);
    free(wr);
    return NULL;
}

int kp_serve_writer_submit(kp_serve_writer *wr, kp_serve_slot *s)
{
    pthread_mutex_lock(&wr->mu);
    int busy = wr->job != NULL;
    if (!busy) {
        wr->job = s;
        wr->done = 0;
        wr->down = NULL;
        pthread_cond_broadcast(&wr->cv);
    }
    pthread_mutex_unlock(&wr->mu);
    return busy ? -1 : 0;
}

int kp_serve_writer_land(kp_serve_writer *wr, kp_serve_batch *b, int timeout_ms, kp_batch_rc *rc)
{
    pthread_mutex_lock(&wr->mu);
    if (!wr->job) {
        pthread_mutex_unlock(&wr->mu);
        return -1;
    }
    if (!wr->done && timeout_ms > 0) {
        struct timespec dl;
        clock_gettime(CLOCK_MONOTONIC, &dl);
        dl.tv_sec += timeout_ms / 1000;
        dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (dl.tv_nsec >= 1000000000L) dl.tv_sec++, dl.tv_nsec -= 1000000000L;
        while (!wr->done && pthread_cond_timedwait(&wr->cv, &wr->mu, &dl) != ETIMEDOUT) {
        }
    }
    if (!wr->done) {
        const char *down = wr->down;
        pthread_mutex_unlock(&wr->mu);
        if (down) kp_serve_batch_sink_down(b, down);
        return 0;
    }
    kp_batch_rc r = wr->rc;
    wr->job = NULL;
    wr->done = 0;
    pthread_mutex_unlock(&wr->mu);
    /* the writer is done with the batch: it is this thread's again, and only now are its
     * offsets stored (when it was acknowledged) */
    *rc = kp_serve_batch_land(b, r);
    return 1;
}

int kp_serve_writer_backoff_ms(const kp_serve_writer *wr, int *retrying)
{
    if (retrying) *retrying = wr->retrying;
    return wr->backoff_ms;
}

void kp_serve_writer_free(kp_serve_writer *wr)
{
    if (!wr) return;
    if (wr->started) {
        pthread_mutex_lock(&wr->mu);
        atomic_store(&wr->quit, 1);
        pthread_cond_broadcast(&wr->cv);
        pthread_mutex_unlock(&wr->mu);
        pthread_join(wr->thread, NULL);
        pthread_cond_destroy(&wr->cv);
        pthread_mutex_destroy(&wr->mu);
    }
    free(wr);
}
