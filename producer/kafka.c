#include "producer/kafka.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include "common/log.h"
#include "common/util.h"

int kp_kafka_conf_force(rd_kafka_conf_t *conf, const char *key, const char *val, char *err,
                        size_t errlen)
{
    char e[512];
    if (rd_kafka_conf_set(conf, key, val, e, sizeof e) == RD_KAFKA_CONF_OK) return 0;
    kp_errf(err, errlen, "%s: %s", key, e);
    return -1;
}

int kp_kafka_conf_apply(rd_kafka_conf_t *conf, const kp_config *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->n_kafka; i++) {
        char e[512];
        if (kp_kafka_conf_force(conf, c->kafka_key[i], c->kafka_val[i], e, sizeof e)) {
            kp_errf(err, errlen, "[kafka] %s", e);
            return -1;
        }
    }
    return 0;
}

int kp_kafka_conf_default(rd_kafka_conf_t *conf, const kp_config *c, const char *key,
                          const char *val, char *err, size_t errlen)
{
    if (kp_config_kafka(c, key)) return 0;
    return kp_kafka_conf_force(conf, key, val, err, errlen);
}

rd_kafka_conf_t *kp_kafka_conf_new(const kp_config *c, char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        kp_errf(err, errlen, "out of memory");
        return NULL;
    }
    if (kp_kafka_conf_apply(conf, c, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kp_kafka_log_cb);
    return conf;
}

rd_kafka_conf_t *kp_kafka_producer_conf(const kp_config *c, const char *linger_ms,
                                        void (*dr_cb)(rd_kafka_t *, const rd_kafka_message_t *,
                                                      void *),
                                        char *err, size_t errlen)
{
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, errlen);
    if (!conf) return NULL;
    if (kp_kafka_conf_default(conf, c, "enable.idempotence", "true", err, errlen) ||
        kp_kafka_conf_default(conf, c, "linger.ms", linger_ms, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    if (dr_cb) rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    return conf;
}

void kp_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    int l = level <= 3   ? KP_LOG_ERROR
            : level <= 4 ? KP_LOG_WARN
            : level <= 6 ? KP_LOG_INFO
                         : KP_LOG_DEBUG;
    kp_log(l, "rdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

rd_kafka_headers_t *kp_dlq_headers_for(const char *topic, int32_t partition, int64_t offset,
                                       const char *reason)
{
    char buf[32];
    rd_kafka_headers_t *h = rd_kafka_headers_new(4);
    if (!h) return NULL;
    rd_kafka_header_add(h, "topic", -1, topic, -1);
    snprintf(buf, sizeof buf, "%" PRId32, partition);
    rd_kafka_header_add(h, "partition", -1, buf, -1);
    snprintf(buf, sizeof buf, "%" PRId64, offset);
    rd_kafka_header_add(h, "offset", -1, buf, -1);
    rd_kafka_header_add(h, "error", -1, reason, -1);
    return h;
}

rd_kafka_headers_t *kp_dlq_headers(const rd_kafka_message_t *m, const char *reason)
{
    return kp_dlq_headers_for(rd_kafka_topic_name(m->rkt), m->partition, m->offset, reason);
}

void kp_backoff_sleep(int ms, kp_stop_flag *abort_flag, kp_tick_fn tick, void *opaque)
{
    while (ms > 0 && !(abort_flag && atomic_load(abort_flag))) {
        int slice = ms < 50 ? ms : 50;
        struct timespec ts = {0, (long)slice * 1000000L};
        nanosleep(&ts, NULL);
        if (tick) tick(opaque);
        ms -= slice;
    }
}

int kp_backoff_next(const kp_config *c, int ms)
{
    return ms * 2 > c->retry_backoff_max_ms ? c->retry_backoff_max_ms : ms * 2;
}
