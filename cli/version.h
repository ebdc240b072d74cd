/* version.h -- what a kprec binary was built from: its version and git revision, and the versions
 * of the libraries it runs with (`kprec version`, `kprec --version`). */
#ifndef KP_CLI_VERSION_H
#define KP_CLI_VERSION_H

#include <stddef.h>

/* Writes the build information, one "name version" line each (kprec first), NUL-terminated and
 * truncated to buf[n]; n == 0 writes nothing. Returns the length of the whole text (as snprintf
 * does: >= n means truncated). Never fails; pieces that cannot be known say "unknown". */
size_t kp_build_info(char *buf, size_t n);

/* The same as Prometheus labels (version="..",revision="..",librdkafka="..",...: the values have
 * no quotes or backslashes), for kprec_build_info. Truncated and returned as kp_build_info. */
size_t kp_build_info_labels(char *buf, size_t n);

/* kp_build_info on one line, the lines joined by ";" (for the worker's start-up log line). */
size_t kp_build_info_line(char *buf, size_t n);

/* `kprec version [--help]`: prints kp_build_info to stdout. Returns the exit status (0, or 2 on a
 * usage error). */
int kp_cmd_version(int argc, char **argv);

#endif
