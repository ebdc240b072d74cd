#include "consumer/model_topic.h"

#include <ctype.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static rd_kafka_headers_t *headers(const char *type, uint64_t version, const int64_t *ts_ms)
{
    char ver[32], ts[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(3);
    if (!h) return NULL;
    snprintf(ver, sizeof ver, "%" PRIu64, version);
    rd_kafka_header_add(h, KP_MODEL_HDR_TYPE, -1, type, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_VERSION, -1, ver, -1);
    if (ts_ms) {
        snprintf(ts, sizeof ts, "%" PRId64, *ts_ms);
        rd_kafka_header_add(h, KP_MODEL_HDR_TS, -1, ts, -1);
    }
    return h;
}

rd_kafka_headers_t *kp_model_delta_headers(uint64_t version, int64_t ts_ms)
{
    return headers(KP_MODEL_TYPE_DELTA, version, &ts_ms);
}

rd_kafka_headers_t *kp_model_checkpoint_headers(uint64_t version)
{
    return headers(KP_MODEL_TYPE_CHECKPOINT, version, NULL);
}

int kp_model_announce_encode(uint64_t version, const char *path, char *buf, size_t cap)
{
    for (const char *p = path; *p; p++)
        if (isspace((unsigned char)*p)) return -1;
    int n = snprintf(buf, cap, "%" PRIu64 " %s", version, path);
    return n < 0 || (size_t)n >= cap ? -1 : n;
}

int kp_model_checkpoint_path(const char *dir, uint64_t version, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/be-v%" PRIu64 ".kpm", dir, version);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

const char *kp_model_header(const rd_kafka_message_t *m, const char *name, char *buf, size_t cap)
{
    rd_kafka_headers_t *h = NULL;
    const void *v;
    size_t sz;
    if (rd_kafka_message_headers(m, &h) || !h || rd_kafka_header_get_last(h, name, &v, &sz) || !v ||
        sz >= cap)
        return NULL;
    memcpy(buf, v, sz);
    buf[sz] = 0;
    return buf;
}

kp_model_rec kp_model_record_type(const rd_kafka_message_t *m)
{
    char type[32];
    const char *t = kp_model_header(m, KP_MODEL_HDR_TYPE, type, sizeof type);
    if (t && !strcmp(t, KP_MODEL_TYPE_DELTA)) return KP_MODEL_REC_DELTA;
    if (t && !strcmp(t, KP_MODEL_TYPE_CHECKPOINT)) return KP_MODEL_REC_CHECKPOINT;
    return KP_MODEL_REC_OTHER;
}

int kp_model_announce_parse(const void *val, size_t len, uint64_t *version, char *path,
                            size_t pathcap)
{
    char fmt[32], text[1200];
    if (pathcap < 2) return -1;
    snprintf(fmt, sizeof fmt, "%%" SCNu64 " %%%zus", pathcap - 1);
    size_t n = len < sizeof text - 1 ? len : sizeof text - 1;
    memcpy(text, val, n);
    text[n] = 0;
    return sscanf(text, fmt, version, path) == 2 ? 0 : -1;
}

uint64_t kp_model_newest_checkpoint(const char *dir, char *out, size_t cap)
{
    uint64_t best = 0;
    DIR *d = dir[0] ? opendir(dir) : NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        unsigned long long v;
        char tail[8];
        if (sscanf(e->d_name, "be-v%llu.kp%7s", &v, tail) == 2 && !strcmp(tail, "m") && v > best) {
            best = v;
            snprintf(out, cap, "%s/%s", dir, e->d_name);
        }
    }
    closedir(d);
    return best;
}
