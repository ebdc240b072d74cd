/* kprec topics: create the configured Kafka topics through the admin API. */
#include <getopt.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "producer/kafka.h"
#include "producer/producer.h"

int kp_cmd_topics(int argc, char **argv)
{
    const char *path;
    int urc = kp_cli_config_only_opts(
        argc, argv,
        "usage: kprec topics [-c FILE]\n"
        "Creates every topic named in [topics] with [topics] partitions partitions\n"
        "(the model topic gets 1 and infinite retention: the trainer deletes the records\n"
        "before its previous checkpoint); topics that exist are left as they are.\n"
        "[topics] inventory, when set, is created compacted (cleanup.policy=compact): the\n"
        "newest Keyphrase of each keyphrase_id stays, a tombstone removes it.\n"
        "  -c FILE   the configuration ([kafka], [topics]); default: defaults + environment\n"
        "Example:\n"
        "  kprec topics -c /tmp/kp/kprec.ini\n",
        &path);
    if (urc >= 0) return urc;
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    char err[512], e[512];
    int rc = 1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_NewTopic_t *nt[8] = {0};
    const char *names[8] = {c.topic_items,  c.topic_clicks,      c.topic_judgments,
                            c.topic_model,  c.topic_suggestions, c.topic_dlq,
                            c.topic_shadow, c.topic_inventory};
    int ntopics = c.topic_inventory[0] ? 8 : 7; /* the inventory topic is optional */
    if (kp_kafka_conf_apply(conf, &c, err, sizeof err)) {
        fprintf(stderr, "kprec topics: %s\n", err);
        rd_kafka_conf_destroy(conf);
        rc = 2;
        goto out;
    }
    rd_kafka_conf_set_log_cb(conf, kp_kafka_log_cb);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e))) {
        fprintf(stderr, "kprec topics: %s\n", e);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    for (int i = 0; i < ntopics; i++) {
        nt[i] = rd_kafka_NewTopic_new(names[i], i == 3 ? 1 : c.topic_partitions, -1, e, sizeof e);
        if (!nt[i]) {
            fprintf(stderr, "kprec topics: %s: %s\n", names[i], e);
            goto out;
        }
        /* The model topic keeps everything: the trainer deletes what lies before its previous
         * checkpoint (DeleteRecords), so the newest checkpoint and the deltas after it stay,
         * however quiet the trainer has been. */
        if (i == 3 && (rd_kafka_NewTopic_set_config(nt[i], "retention.ms", "-1") ||
                       rd_kafka_NewTopic_set_config(nt[i], "retention.bytes", "-1") ||
                       rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "delete"))) {
            fprintf(stderr, "kprec topics: %s: cannot set its retention\n", names[i]);
            goto out;
        }
        /* The inventory keeps the newest record of each keyphrase_id (a worker bootstraps from
         * the whole topic); tombstones stay a day so a worker reading meanwhile sees them. */
        if (i == 7 && (rd_kafka_NewTopic_set_config(nt[i], "cleanup.policy", "compact") ||
                       rd_kafka_NewTopic_set_config(nt[i], "delete.retention.ms", "86400000"))) {
            fprintf(stderr, "kprec topics: %s: cannot make it compacted\n", names[i]);
            goto out;
        }
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_operation_timeout(ao, 30000, e, sizeof e) ||
        rd_kafka_AdminOptions_set_request_timeout(ao, 30000, e, sizeof e)) {
        fprintf(stderr, "kprec topics: %s\n", e);
        rd_kafka_AdminOptions_destroy(ao);
        goto out;
    }
    rd_kafka_CreateTopics(rk, nt, (size_t)ntopics, ao, q);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev || rd_kafka_event_error(ev)) {
        fprintf(stderr, "kprec topics: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out waiting for the broker");
        if (ev) rd_kafka_event_destroy(ev);
        goto out;
    }
    size_t n;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t te = rd_kafka_topic_result_error(res[i]);
        if (te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            printf("%s: exists\n", rd_kafka_topic_result_name(res[i]));
        } else if (te) {
            fprintf(stderr, "kprec topics: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                    rd_kafka_topic_result_error_string(res[i]));
            rc = 1;
        } else {
            printf("%s: created\n", rd_kafka_topic_result_name(res[i]));
        }
    }
    rd_kafka_event_destroy(ev);
out:
    for (int i = 0; i < 8; i++)
        if (nt[i]) rd_kafka_NewTopic_destroy(nt[i]);
    if (q) rd_kafka_queue_destroy(q);
    if (rk) rd_kafka_destroy(rk);
    kp_config_free(&c);
    return rc;
}
