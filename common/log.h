/* log.h -- leveled logging to stderr with a timestamp.
 *
 * kp_log_level: messages below it are dropped (default KP_LOG_INFO, or KPREC_LOG_LEVEL=debug|info|
 * warn|error from the environment). Thread-safe: each line is written with one fprintf call.
 * Control characters (newlines too) and bytes that are not well-formed UTF-8 in a message are
 * written as \xHH (kp_escape), so text from the outside cannot forge or break log lines. */
#ifndef KP_LOG_H
#define KP_LOG_H

enum { KP_LOG_DEBUG = 0, KP_LOG_INFO = 1, KP_LOG_WARN = 2, KP_LOG_ERROR = 3 };

extern int kp_log_level;

/* Reads KPREC_LOG_LEVEL once; call at start-up. */
void kp_log_init(void);

void kp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define kp_debug(...) kp_log(KP_LOG_DEBUG, __VA_ARGS__)
#define kp_info(...)  kp_log(KP_LOG_INFO, __VA_ARGS__)
#define kp_warn(...)  kp_log(KP_LOG_WARN, __VA_ARGS__)
#define kp_error(...) kp_log(KP_LOG_ERROR, __VA_ARGS__)

#endif
