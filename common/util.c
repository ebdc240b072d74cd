/* util.c -- see util.h. */
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

void kp_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- clocks ---- */

int64_t kp_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t kp_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t kp_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- number parsing ---- */

int kp_parse_long(const char *s, long lo, long hi, long *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

int kp_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return -1;
    *out = (int64_t)v;
    return 0;
}

int kp_parse_int(const char *s, int lo, int hi, int *out)
{
    long v;
    if (kp_parse_long(s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

int kp_parse_double(const char *s, double lo, double hi, double *out)
{
    if (!s || !*s || isspace((unsigned char)*s)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* ---- hashing ---- */

uint64_t kp_fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = KP_FNV_OFFSET;
    for (size_t i = 0; i < n; i++)
        h = kp_fnv1a_step(h, b[i]);
    return h;
}

uint64_t kp_fnv1a_str(const char *s)
{
    uint64_t h = KP_FNV_OFFSET;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        h = kp_fnv1a_step(h, *c);
    return h;
}

/* ---- thread fan-out ---- */

enum { KP_MAX_THREADS = 64 };

typedef struct {
    kp_range_fn fn;
    void *ctx;
    int t, lo, hi, rc;
} range_job;

static void *range_run(void *arg)
{
    range_job *j = arg;
    j->rc = j->fn(j->ctx, j->t, j->lo, j->hi);
    return NULL;
}

/* The pool: helper threads started on first use and kept, so a fan-out costs a hand-over, not a
 * thread's creation (~60 us on a VM, as much as a batch's share of work). One caller at a time
 * owns it (pool_busy); a caller that finds it owned (another thread's fan-out, or a nested one)
 * starts threads of its own as before. A helper that has finished waits for its next range by
 * spinning for POOL_SPIN_NS, then sleeps on its condition variable: back-to-back fan-outs (the
 * chunks of an embedding, the parts of a training step) are handed over in well under a
 * microsecond, while an idle worker gives its core back within POOL_SPIN_NS. The caller waits for
 * its helpers the same way. After a fork the child has no helpers: it never uses the pool. */
#define POOL_SPIN_NS 100000L

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint posted;   /* ranges handed over (a sequence number) */
    atomic_uint finished; /* the last of them done */
    range_job *job;       /* written before posted, read after it */
} pool_helper;

static atomic_flag pool_busy = ATOMIC_FLAG_INIT;
static atomic_int pool_forked;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static int pool_n; /* helpers started; read and grown only by the pool's owner */
static pool_helper pool_h[KP_MAX_THREADS];
static pthread_mutex_t pool_done_mu = PTHREAD_MUTEX_INITIALIZER; /* a finished range wakes a */
static pthread_cond_t pool_done_cv = PTHREAD_COND_INITIALIZER;   /* caller sleeping here */

static void pool_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static int64_t pool_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Spins until *a != v (want_ne) or == v, for up to POOL_SPIN_NS; returns 1 when it came. */
static int pool_spin(atomic_uint *a, unsigned v, int want_ne)
{
    int64_t t0 = 0;
    for (unsigned i = 1;; i++) {
        unsigned x = atomic_load_explicit(a, memory_order_acquire);
        if (want_ne ? x != v : x == v) return 1;
        pool_relax();
        if ((i & 63) == 0) {
            int64_t now = pool_ns();
            if (!t0)
                t0 = now;
            else if (now - t0 > POOL_SPIN_NS)
                return 0;
        }
    }
}

static void *pool_main(void *arg)
{
    pool_helper *h = arg;
    unsigned seen = 0;
    for (;;) {
        if (!pool_spin(&h->posted, seen, 1)) {
            pthread_mutex_lock(&h->mu);
            while (atomic_load(&h->posted) == seen)
                pthread_cond_wait(&h->cv, &h->mu);
            pthread_mutex_unlock(&h->mu);
        }
        seen = atomic_load_explicit(&h->posted, memory_order_acquire);
        range_run(h->job);
        pthread_mutex_lock(&pool_done_mu);
        atomic_store_explicit(&h->finished, seen, memory_order_release);
        pthread_cond_broadcast(&pool_done_cv);
        pthread_mutex_unlock(&pool_done_mu);
    }
    return NULL;
}

static void pool_child(void)
{
    atomic_store(&pool_forked, 1);
}

static void pool_init(void)
{
    pthread_atfork(NULL, NULL, pool_child);
}

/* Starts helpers until there are `want` (at most KP_MAX_THREADS - 1); returns how many there are.
 */
static int pool_grow(int want)
{
    while (pool_n < want) {
        pool_helper *h = &pool_h[pool_n];
        pthread_mutex_init(&h->mu, NULL);
        pthread_cond_init(&h->cv, NULL);
        atomic_init(&h->posted, 0);
        atomic_init(&h->finished, 0);
        pthread_attr_t at;
        pthread_t th;
        if (pthread_attr_init(&at)) break;
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        sigset_t all, old; /* signals go to the process's own threads, not to a helper */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        int rc = pthread_create(&th, &at, pool_main, h);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_attr_destroy(&at);
        if (rc) {
            pthread_cond_destroy(&h->cv);
            pthread_mutex_destroy(&h->mu);
            break;
        }
        pool_n++;
    }
    return pool_n;
}

/* Ranges 1 .. T-1 on the pool's helpers, range 0 here; returns 0 when the pool is owned by someone
 * else (nothing run), else 1. */
static int pool_run(range_job *job, int T)
{
    pthread_once(&pool_once, pool_init);
    if (atomic_load(&pool_forked) || atomic_flag_test_and_set(&pool_busy)) return 0;
    int nh = pool_grow(T - 1);
    unsigned seq[KP_MAX_THREADS];
    for (int t = 1; t < T && t - 1 < nh; t++) {
        pool_helper *h = &pool_h[t - 1];
        h->job = &job[t];
        pthread_mutex_lock(&h->mu);
        seq[t] = atomic_load(&h->posted) + 1;
        atomic_store_explicit(&h->posted, seq[t], memory_order_release);
        pthread_cond_signal(&h->cv);
        pthread_mutex_unlock(&h->mu);
    }
    range_run(&job[0]);
    for (int t = nh + 1; t < T; t++) /* helpers that could not be started */
        range_run(&job[t]);
    for (int t = 1; t < T && t - 1 < nh; t++) {
        pool_helper *h = &pool_h[t - 1];
        if (pool_spin(&h->finished, seq[t], 0)) continue;
        pthread_mutex_lock(&pool_done_mu);
        while (atomic_load(&h->finished) != seq[t])
            pthread_cond_wait(&pool_done_cv, &pool_done_mu);
        pthread_mutex_unlock(&pool_done_mu);
    }
    atomic_flag_clear(&pool_busy);
    return 1;
}

/* Ranges 1 .. T-1 on threads of their own (the pool is owned): a range whose thread cannot be
 * started runs here. */
static void spawn_run(range_job *job, int T)
{
    pthread_t th[KP_MAX_THREADS];
    int started[KP_MAX_THREADS] = {0};
    for (int t = 1; t < T; t++)
        started[t] = pthread_create(&th[t], NULL, range_run, &job[t]) == 0;
    range_run(&job[0]);
    for (int t = 1; t < T; t++) {
        if (started[t])
            pthread_join(th[t], NULL);
        else
            range_run(&job[t]);
    }
}

int kp_parallel_for(int threads, int n, kp_range_fn fn, void *ctx)
{
    if (n <= 0) return 0;
    int T = threads < 1 ? 1 : threads;
    if (T > n) T = n;
    if (T > KP_MAX_THREADS) T = KP_MAX_THREADS;
    range_job job[KP_MAX_THREADS];
    for (int t = 0; t < T; t++)
        job[t] = (range_job){fn, ctx, t, (int)((long)n * t / T), (int)((long)n * (t + 1) / T), 0};
    if (T == 1)
        range_run(&job[0]);
    else if (!pool_run(job, T))
        spawn_run(job, T);
    int rc = 0;
    for (int t = 0; t < T; t++)
        if (job[t].rc) rc = -1;
    return rc;
}

int kp_parallel_parts(int threads, int parts, int n, kp_range_fn fn, void *ctx)
{
    if (n <= 0) return 0;
    int P = parts < 1 ? 1 : parts;
    if (P > n) P = n;
    if (P > KP_MAX_THREADS) P = KP_MAX_THREADS;
    if (threads >= P) return kp_parallel_for(P, n, fn, ctx);
    int rc = 0;
    for (int t = 0; t < P; t++)
        if (fn(ctx, t, (int)((long)n * t / P), (int)((long)n * (t + 1) / P))) rc = -1;
    return rc;
}

typedef struct {
    kp_range_fn fn;
    void *ctx;
    int n, chunk;
    atomic_int next, done, failed;
} chunk_work;

typedef struct {
    chunk_work *w;
    int t;
} chunk_thread;

/* Takes chunks until none are left; on the calling thread (t == 0) reports each one. */
static void chunks_take(chunk_work *w, int t, kp_done_fn on_done, void *done_ctx)
{
    for (;;) {
        int lo = atomic_fetch_add(&w->next, w->chunk);
        if (lo >= w->n) return;
        int hi = w->n - lo < w->chunk ? w->n : lo + w->chunk;
        if (w->fn(w->ctx, t, lo, hi)) atomic_store(&w->failed, 1);
        int d = atomic_fetch_add(&w->done, hi - lo) + (hi - lo);
        if (on_done) on_done(done_ctx, d, w->n);
    }
}

static void *chunks_run(void *arg)
{
    chunk_thread *c = arg;
    chunks_take(c->w, c->t, NULL, NULL);
    return NULL;
}

int kp_parallel_chunks(int threads, int n, int chunk, kp_range_fn fn, void *ctx, kp_done_fn on_done,
                       void *done_ctx)
{
    if (n <= 0) return 0;
    chunk_work w = {.fn = fn, .ctx = ctx, .n = n, .chunk = chunk > 0 ? chunk : 1};
    atomic_init(&w.next, 0);
    atomic_init(&w.done, 0);
    atomic_init(&w.failed, 0);
    int T = threads < 1 ? 1 : threads;
    if (T > KP_MAX_THREADS) T = KP_MAX_THREADS;
    pthread_t th[KP_MAX_THREADS];
    chunk_thread arg[KP_MAX_THREADS];
    int started = 0;
    if (on_done) on_done(done_ctx, 0, n);
    for (int t = 1; t < T && (long)t * w.chunk < n; t++) {
        arg[started] = (chunk_thread){&w, t};
        if (pthread_create(&th[started], NULL, chunks_run, &arg[started])) break;
        started++;
    }
    chunks_take(&w, 0, on_done, done_ctx);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    if (on_done) on_done(done_ctx, atomic_load(&w.done), n); /* the final count */
    return atomic_load(&w.failed) ? -1 : 0;
}

void kp_free_each(void *const *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i]);
}

enum { BIG_ALIGN = 2 << 20, BIG_HEAD = 64 };

/* The mapping is [base, base + len); the caller's pointer is the first 2 MiB boundary at least
 * BIG_HEAD bytes into it, and the 64 bytes before that pointer record base and len. */
typedef struct {
    void *base;
    size_t len;
} big_head;

void *kp_big_alloc(size_t n)
{
    if (n == 0 || n > SIZE_MAX - 2 * (size_t)BIG_ALIGN) return NULL;
    size_t len = (n + BIG_ALIGN - 1) / BIG_ALIGN * BIG_ALIGN + BIG_ALIGN;
    void *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return NULL;
    uintptr_t p = ((uintptr_t)base + BIG_HEAD + BIG_ALIGN - 1) / BIG_ALIGN * BIG_ALIGN;
#ifdef MADV_HUGEPAGE
    (void)madvise((void *)p, (len - (p - (uintptr_t)base)) / BIG_ALIGN * BIG_ALIGN, MADV_HUGEPAGE);
#endif
    big_head *h = (big_head *)(p - BIG_HEAD);
    h->base = base, h->len = len;
    return (void *)p;
}

void kp_big_free(void *p)
{
    if (!p) return;
    const big_head *h = (const big_head *)((char *)p - BIG_HEAD);
    munmap(h->base, h->len);
}

/* Length of the well-formed UTF-8 sequence at s[0..n), or 0 if s[0] does not start one. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        if (c == 0xe0) lo = 0xa0; /* overlong */
        if (c == 0xed) hi = 0x9f; /* surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        if (c == 0xf0) lo = 0x90; /* overlong */
        if (c == 0xf4) hi = 0x8f; /* above U+10FFFF */
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    return len;
}

/* The escaped form of the character at u[0..n) into tmp[4]; sets *adv to the bytes it takes. */
static size_t escape_one(const unsigned char *u, size_t n, int flags, char tmp[4], size_t *adv)
{
    static const char hex[] = "0123456789abcdef";
    size_t len = utf8_len(u, n);
    if (len == 1 && (u[0] < 0x20 || u[0] == 0x7f)) len = 0; /* a control: escaped */
    *adv = len ? len : 1;
    if (len == 0) {
        tmp[0] = '\\', tmp[1] = 'x', tmp[2] = hex[u[0] >> 4], tmp[3] = hex[u[0] & 15];
        return 4;
    }
    if (u[0] == '\\' && (flags & KP_ESC_BACKSLASH)) {
        tmp[0] = tmp[1] = '\\';
        return 2;
    }
    memcpy(tmp, u, len);
    return len;
}

char *kp_escape(const char *s, size_t n, char *out, size_t cap, int flags)
{
    if (!out || cap == 0) return out;
    const unsigned char *u = (const unsigned char *)s;
    if (!s) n = 0;
    char tmp[4];
    size_t adv, total = 0;
    for (size_t i = 0; i < n; i += adv)
        total += escape_one(u + i, n - i, flags, tmp, &adv);
    size_t room = total < cap ? cap - 1 : (cap > 4 ? cap - 4 : 0); /* leave room for "..." */
    size_t o = 0;
    for (size_t i = 0; i < n; i += adv) {
        size_t tl = escape_one(u + i, n - i, flags, tmp, &adv);
        if (o + tl > room) break;
        memcpy(out + o, tmp, tl);
        o += tl;
    }
    if (total >= cap) {
        size_t dots = cap - 1 - o < 3 ? cap - 1 - o : 3;
        memcpy(out + o, "...", dots);
        o += dots;
    }
    out[o] = 0;
    return out;
}
