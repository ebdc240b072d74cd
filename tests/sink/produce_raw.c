/* produce_raw -- writes one record of N bytes ('x' repeated: no Avro) to a topic, the way a Java
 * producer with its default max.request.size (1 MiB) may: message.max.bytes is raised so that
 * librdkafka's own limit (1,000,000) does not stop it. For tests/sink/test_sink_errors.sh.
 *
 *   produce_raw BOOTSTRAP TOPIC KEY N
 * Exit 0 once the broker acknowledged the record, 1 otherwise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

static rd_kafka_resp_err_t delivered = RD_KAFKA_RESP_ERR__IN_PROGRESS;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk, (void)opaque;
    delivered = m->err;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: produce_raw BOOTSTRAP TOPIC KEY N\n");
        return 2;
    }
    char err[512];
    size_t n = strtoull(argv[4], NULL, 10);
    char *val = malloc(n ? n : 1);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    int rc = 1;
    if (!val) goto err;
    memset(val, 'x', n);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
        rd_kafka_conf_set(conf, "message.max.bytes", "1048576", err, sizeof err) ||
        rd_kafka_conf_set(conf, "acks", "all", err, sizeof err)) {
        fprintf(stderr, "produce_raw: %s\n", err);
        goto err;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err))) {
        fprintf(stderr, "produce_raw: %s\n", err);
        goto err;
    }
    conf = NULL;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(argv[2]), RD_KAFKA_V_KEY(argv[3], strlen(argv[3])),
        RD_KAFKA_V_VALUE(val, n), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (e) {
        fprintf(stderr, "produce_raw: %s\n", rd_kafka_err2str(e));
        goto err;
    }
    rd_kafka_flush(rk, 30000);
    if (delivered) {
        fprintf(stderr, "produce_raw: not delivered: %s\n", rd_kafka_err2str(delivered));
        goto err;
    }
    printf("produced %zu bytes to %s\n", n, argv[2]);
    rc = 0;
err:
    if (conf) rd_kafka_conf_destroy(conf);
    if (rk) rd_kafka_destroy(rk);
    free(val);
    return rc;
}
