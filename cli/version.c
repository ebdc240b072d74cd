/* version.c -- build and library versions (see version.h). KPREC_VERSION, KPREC_GIT_REV and
 * KPREC_AVRO_VERSION come from CMake at configure time. */
#include "cli/version.h"

#include "cache/cache.h"

#include <cblas.h>
#include <curl/curl.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>
#include <microhttpd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "cli/opts.h"

#ifndef KPREC_VERSION
#define KPREC_VERSION "unknown"
#endif
#ifndef KPREC_GIT_REV
#define KPREC_GIT_REV "unknown"
#endif
#ifndef KPREC_AVRO_VERSION
#define KPREC_AVRO_VERSION "unknown"
#endif

typedef struct {
    char *buf;
    size_t n, len;
} info_buf;

static void add(info_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(info_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->len < b->n ? b->buf + b->len : NULL, b->len < b->n ? b->n - b->len : 0,
                      fmt, ap);
    va_end(ap);
    if (k > 0) b->len += (size_t)k;
}

static const char *or_unknown(const char *s)
{
    return s && *s ? s : "unknown";
}

size_t kp_build_info(char *buf, size_t n)
{
    info_buf b = {buf, n, 0};
    if (n) buf[0] = 0;
    add(&b, "kprec %s (git %s)\n", KPREC_VERSION, KPREC_GIT_REV);
    add(&b, "librdkafka %s\n", or_unknown(rd_kafka_version_str()));
    add(&b, "avro-c %s (at build time)\n", KPREC_AVRO_VERSION);
    const char *blas = or_unknown(openblas_get_config()); /* "OpenBLAS 0.3.21 DYNAMIC_ARCH ..." */
    if (!strncmp(blas, "OpenBLAS ", 9)) blas += 9;
    add(&b, "openblas %s (core %s, %d threads)\n", blas, or_unknown(openblas_get_corename()),
        openblas_get_num_threads());
    add(&b, "hiredis %s (at build time)\n", kp_cache_client_version());
    add(&b, "jansson %s\n", or_unknown(jansson_version_str()));
    add(&b, "libmicrohttpd %s\n", or_unknown(MHD_get_version()));
    add(&b, "libcurl %s\n", or_unknown(curl_version_info(CURLVERSION_NOW)->version));
    return b.len;
}

size_t kp_build_info_labels(char *buf, size_t n)
{
    info_buf b = {buf, n, 0};
    if (n) buf[0] = 0;
    const char *blas = or_unknown(openblas_get_config());
    if (!strncmp(blas, "OpenBLAS ", 9)) blas += 9;
    size_t vlen = strcspn(blas, " "); /* the version word only */
    add(&b,
        "version=\"%s\",revision=\"%s\",librdkafka=\"%s\",avro_c=\"%s\",openblas=\"%.*s\","
        "openblas_core=\"%s\",hiredis=\"%s\",jansson=\"%s\",libmicrohttpd=\"%s\",libcurl=\"%s\"",
        KPREC_VERSION, KPREC_GIT_REV, or_unknown(rd_kafka_version_str()), KPREC_AVRO_VERSION,
        (int)vlen, blas, or_unknown(openblas_get_corename()), kp_cache_client_version(),
        or_unknown(jansson_version_str()), or_unknown(MHD_get_version()),
        or_unknown(curl_version_info(CURLVERSION_NOW)->version));
    return b.len;
}

size_t kp_build_info_line(char *buf, size_t n)
{
    size_t len = kp_build_info(buf, n);
    for (size_t i = 0; buf && i + 1 < n && buf[i]; i++)
        if (buf[i] == '\n') buf[i] = buf[i + 1] ? ';' : '\0';
    return len;
}

static void version_usage(FILE *f)
{
    fprintf(
        f,
        "usage: kprec version   (or kprec --version)\n"
        "Prints the version and git revision of kprec and the versions of the libraries\n"
        "it runs with (librdkafka, Avro C, OpenBLAS, hiredis, jansson, libmicrohttpd, libcurl).\n"
        "Example:\n"
        "  kprec version\n");
}

int kp_cmd_version(int argc, char **argv)
{
    const kp_opt opts[] = {{NULL}};
    int rc = kp_opts_parse("kprec version", version_usage, opts, argc, argv, NULL);
    if (rc != KP_OPTS_GO) return rc;
    char buf[2048];
    kp_build_info(buf, sizeof buf);
    fputs(buf, stdout);
    return 0;
}
