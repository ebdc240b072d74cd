/* progress.h -- a progress line for long offline work: done/total, rate, ETA.
 * On a terminal the line is redrawn in place (at most 4 times a second); otherwise a line is
 * printed every 10 seconds. Writes to stderr. */
#ifndef KP_PROGRESS_H
#define KP_PROGRESS_H

typedef struct {
    const char *what;
    long total;
    double t0, last;
    int tty, quiet;
} kp_progress;

void kp_progress_start(kp_progress *p, const char *what, long total, int quiet);
void kp_progress_update(kp_progress *p, long done);
/* Prints the final line (and a newline on a terminal). */
void kp_progress_done(kp_progress *p, long done);

#endif
