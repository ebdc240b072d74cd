#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/util.h"

int kp_log_level = KP_LOG_INFO;

void kp_log_init(void)
{
    const char *v = getenv("KPREC_LOG_LEVEL");
    if (!v) return;
    if (!strcmp(v, "debug"))
        kp_log_level = KP_LOG_DEBUG;
    else if (!strcmp(v, "info"))
        kp_log_level = KP_LOG_INFO;
    else if (!strcmp(v, "warn"))
        kp_log_level = KP_LOG_WARN;
    else if (!strcmp(v, "error"))
        kp_log_level = KP_LOG_ERROR;
}

void kp_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if (level < kp_log_level) return;
    char raw[2048], msg[4 * sizeof raw];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    /* Item ids, titles, keys and librdkafka's lines come from the outside: one log line stays one
     * line, without terminal escapes or invalid UTF-8 (kp_escape). */
    size_t len = n < 0 ? 0 : (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
    kp_escape(raw, len, msg, sizeof msg, 0);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    fprintf(stderr, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ kprec %s %s\n", tm.tm_year + 1900,
            tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000,
            names[level < 0   ? 0
                  : level > 3 ? 3
                              : level],
            msg);
}
