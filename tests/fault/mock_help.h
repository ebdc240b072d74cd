/* mock_help.h -- the fault tests' shared set-up: librdkafka's mock cluster and a kprec config
 * pointing at it. Included by tests/fault/test_*.c after cmocka.h. */
#ifndef KP_MOCK_HELP_H
#define KP_MOCK_HELP_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/config.h"

/* Sets [sec] k = v in c; the test fails if the config refuses it. */
static inline void mh_set(kp_config *c, const char *sec, const char *k, const char *v)
{
    char err[256];
    assert_int_equal(kp_config_set(c, sec, k, v, err, sizeof err), 0);
}

/* A one-broker mock cluster, living in a quiet producer handle stored in *owner (the caller
 * destroys the cluster, then *owner), and c set to the defaults with [kafka] bootstrap.servers at
 * the cluster and log_level 2 (released with kp_config_free). */
static inline rd_kafka_mock_cluster_t *mh_cluster(rd_kafka_t **owner, kp_config *c)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", e, sizeof e);
    *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    assert_non_null(*owner);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(*owner, 1);
    assert_non_null(mc);
    kp_config_defaults(c);
    mh_set(c, "kafka", "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc));
    mh_set(c, "kafka", "log_level", "2");
    return mc;
}

#endif
