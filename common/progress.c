#include "common/progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void kp_progress_start(kp_progress *p, const char *what, long total, int quiet)
{
    p->what = what;
    p->total = total;
    p->t0 = p->last = now_s();
    p->tty = isatty(2);
    p->quiet = quiet;
}

static void show(kp_progress *p, long done, double now, int final)
{
    double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
    double eta = (rate > 0 && p->total > done) ? (double)(p->total - done) / rate : 0;
    fprintf(stderr, "%s%s: %ld/%ld (%.1f%%) %.0f/s elapsed %.0fs ETA %.0fs%s", p->tty ? "\r" : "",
            p->what, done, p->total, p->total ? 100.0 * (double)done / (double)p->total : 100.0,
            rate, el, eta, (p->tty && !final) ? "\033[K" : "\n");
}

void kp_progress_update(kp_progress *p, long done)
{
    if (p->quiet) return;
    double now = now_s();
    if (now - p->last < (p->tty ? 0.25 : 10.0)) return;
    p->last = now;
    show(p, done, now, 0);
}

void kp_progress_done(kp_progress *p, long done)
{
    if (p->quiet) return;
    show(p, done, now_s(), 1);
}
