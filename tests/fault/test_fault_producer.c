/* Fault injection on librdkafka's mock cluster: the broker goes down, requests fail, deliveries
 * time out. kp_producer_deliver must end with every record delivered exactly once (idempotent
 * producer), counted only by delivery reports, or give up cleanly when told to. Permanent errors
 * (a record too large) are not retried: a dead-letter copy is cut to a prefix, anything else is
 * given up at once; a hard stop does not wait for requests in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/config.h"
#include "common/telemetry.h"
#include "producer/producer.h"

#define TOPIC "kprec.fault"

typedef struct {
    rd_kafka_t *owner; /* the mock cluster lives in this handle */
    rd_kafka_mock_cluster_t *mc;
    kp_config cfg;
} fixture;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int setup(void **state)
{
    char e[512];
    fixture *f = calloc(1, sizeof *f);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", e, sizeof e);
    f->owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    assert_non_null(f->owner);
    f->mc = rd_kafka_mock_cluster_new(f->owner, 1);
    assert_non_null(f->mc);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, TOPIC, 1, 1), 0);
    kp_config_defaults(&f->cfg);
    char err[256];
    assert_int_equal(kp_config_set(&f->cfg, "kafka", "bootstrap.servers",
                                   rd_kafka_mock_cluster_bootstraps(f->mc), err, sizeof err),
                     0);
    kp_config_set(&f->cfg, "kafka", "log_level", "2", err, sizeof err);
    kp_config_set(&f->cfg, "worker", "retry_backoff_ms", "50", err, sizeof err);
    kp_config_set(&f->cfg, "worker", "retry_backoff_max_ms", "400", err, sizeof err);
    kp_config_set(&f->cfg, "topics", "dlq", TOPIC, err, sizeof err); /* dead-letter copies */
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    kp_config_free(&f->cfg);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->owner);
    free(f);
    return 0;
}

/* Reads the whole topic back; returns how many records, and checks each key appears once. */
static int read_back(fixture *f, int expect)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc), e,
                      sizeof e);
    rd_kafka_conf_set(conf, "group.id", "reader", e, sizeof e);
    rd_kafka_conf_set(conf, "enable.partition.eof", "true", e, sizeof e);
    rd_kafka_conf_set(conf, "log_level", "2", e, sizeof e);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    int n = 0, *seen = calloc((size_t)expect + 1, sizeof *seen);
    double end = now_s() + 20;
    while (now_s() < end) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m) continue;
        int eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
        if (!m->err) {
            int k = atoi((const char *)m->key);
            assert_in_range(k, 0, expect - 1);
            seen[k]++;
            n++;
        }
        rd_kafka_message_destroy(m);
        if (eof) break;
    }
    for (int i = 0; i < expect; i++)
        if (seen[i] != 1) fail_msg("record %d read back %d times", i, seen[i]);
    free(seen);
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

typedef struct {
    fixture *f;
    double up_at; /* bring the broker back at this time (0 = never) */
    double abort_at;
    kp_stop_flag *abort_flag;
    int ticks;
} tick_ctx;

static void tick(void *opaque)
{
    tick_ctx *t = opaque;
    t->ticks++;
    if (t->up_at && now_s() >= t->up_at) {
        rd_kafka_mock_broker_set_up(t->f->mc, 1);
        t->up_at = 0;
    }
    if (t->abort_at && now_s() >= t->abort_at) *t->abort_flag = 1;
}

static kp_outmsg *make_msgs(int n, char (*keys)[16])
{
    kp_outmsg *m = calloc((size_t)n, sizeof *m);
    for (int i = 0; i < n; i++) {
        snprintf(keys[i], 16, "%d", i);
        m[i] = (kp_outmsg){TOPIC, keys[i], strlen(keys[i]), "value", 5, NULL, 1, KP_OUT_PENDING};
    }
    return m;
}

static void deliver_all(fixture *f, int n, tick_ctx *t)
{
    char err[512], keys[256][16];
    kp_producer *p = kp_producer_new(&f->cfg, err, sizeof err);
    assert_non_null(p);
    kp_outmsg *m = make_msgs(n, keys);
    unsigned long long before = atomic_load(&kp_m.suggestions_delivered);
    kp_stop_flag abort_flag = 0;
    assert_int_equal(kp_producer_deliver(p, m, n, &f->cfg, &abort_flag, tick, t), 0);
    for (int i = 0; i < n; i++)
        assert_int_equal(m[i].state, KP_OUT_DONE);
    assert_int_equal(atomic_load(&kp_m.suggestions_delivered) - before, (unsigned long long)n);
    assert_int_equal(kp_producer_free(p, 5000), 0);
    free(m);
}

static void test_broker_down_then_up(void **state)
{
    fixture *f = *state;
    rd_kafka_mock_broker_set_down(f->mc, 1);
    tick_ctx t = {f, now_s() + 1.5, 0, NULL, 0};
    deliver_all(f, 40, &t);
    assert_true(t.ticks > 10); /* it waited, keeping the caller's consumer alive */
    assert_int_equal(read_back(f, 40), 40);
}

static void test_request_errors(void **state)
{
    fixture *f = *state;
    rd_kafka_mock_push_request_errors(
        f->mc, 0 /* ApiKey Produce */, 4, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
        RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
        RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
    tick_ctx t = {f, 0, 0, NULL, 0};
    deliver_all(f, 100, &t);
    assert_int_equal(read_back(f, 100), 100); /* retried inside librdkafka, no duplicates */
}

/* Deliveries that time out come back FAILED in the delivery report; kp_producer_deliver publishes
 * them again after a backoff until the broker is back. */
static void test_timeouts_are_retried(void **state)
{
    fixture *f = *state;
    char err[256];
    assert_int_equal(kp_config_set(&f->cfg, "kafka", "message.timeout.ms", "500", err, sizeof err),
                     0);
    rd_kafka_mock_broker_set_down(f->mc, 1);
    unsigned long long errs = atomic_load(&kp_m.producer_errors);
    tick_ctx t = {f, now_s() + 2.5, 0, NULL, 0};
    deliver_all(f, 20, &t);
    assert_true(atomic_load(&kp_m.producer_errors) > errs); /* some did fail first */
    assert_int_equal(read_back(f, 20), 20);
}

static void test_abort_while_down(void **state)
{
    fixture *f = *state;
    char err[512], keys[256][16];
    rd_kafka_mock_broker_set_down(f->mc, 1);
    kp_producer *p = kp_producer_new(&f->cfg, err, sizeof err);
    assert_non_null(p);
    kp_outmsg *m = make_msgs(10, keys);
    kp_stop_flag abort_flag = 0;
    tick_ctx t = {f, 0, now_s() + 0.5, &abort_flag, 0};
    double t0 = now_s();
    assert_int_equal(kp_producer_deliver(p, m, 10, &f->cfg, &abort_flag, tick, &t), -1);
    assert_true(now_s() - t0 < 10);
    for (int i = 0; i < 10; i++)
        assert_int_not_equal(m[i].state, KP_OUT_DONE);
    free(m); /* safe: no delivery report can reference m any more */
    kp_producer_free(p, 100);
}

/* Reads the first record of TOPIC: its value length and header name's value ("" if none). */
static size_t first_record(fixture *f, const char *name, char *hv, size_t hvlen)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc), e,
                      sizeof e);
    rd_kafka_conf_set(conf, "group.id", "reader1", e, sizeof e);
    rd_kafka_conf_set(conf, "log_level", "2", e, sizeof e);
    rd_kafka_t *c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    assert_non_null(c);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(c, l);
    rd_kafka_topic_partition_list_destroy(l);
    size_t len = (size_t)-1;
    hv[0] = 0;
    for (double end = now_s() + 20; now_s() < end && len == (size_t)-1;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (!m) continue;
        if (!m->err) {
            len = m->len;
            rd_kafka_headers_t *h = NULL;
            const void *v;
            size_t sz;
            if (!rd_kafka_message_headers(m, &h) && !rd_kafka_header_get_last(h, name, &v, &sz))
                snprintf(hv, hvlen, "%.*s", (int)sz, (const char *)v);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return len;
}

/* A dead-letter copy larger than message.max.bytes (librdkafka refuses it locally, as it would
 * the copy of a ~1 MB record a Java producer wrote): it is sent as a prefix with header
 * "truncated" = the original length, its other headers kept. */
static void test_oversized_dead_letter_is_cut(void **state)
{
    fixture *f = *state;
    char err[512];
    size_t big = 1040000;
    char *val = calloc(1, big);
    assert_non_null(val);
    memset(val, 'x', big);
    kp_producer *p = kp_producer_new(&f->cfg, err, sizeof err);
    assert_non_null(p);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "error", -1, "undecodable", -1);
    kp_outmsg m = {TOPIC, "k", 1, val, big, h, 0, KP_OUT_PENDING};
    kp_stop_flag abort_flag = 0;
    assert_int_equal(kp_producer_deliver(p, &m, 1, &f->cfg, &abort_flag, NULL, NULL), 0);
    assert_int_equal(m.state, KP_OUT_DONE);
    assert_int_equal(m.vallen, KP_DLQ_PREFIX_BYTES);
    assert_int_equal(kp_producer_free(p, 5000), 0);
    rd_kafka_headers_destroy(h);
    char hv[64];
    assert_int_equal(first_record(f, "truncated", hv, sizeof hv), KP_DLQ_PREFIX_BYTES);
    assert_string_equal(hv, "1040000");
    assert_int_equal(first_record(f, "error", hv, sizeof hv), KP_DLQ_PREFIX_BYTES);
    assert_string_equal(hv, "undecodable");
    free(val);
}

/* The broker refuses a record for its size (MSG_SIZE_TOO_LARGE, a permanent error): a dead-letter
 * copy is cut and sent again; a suggestion is given up at once, not retried. */
static void test_broker_refusal_is_permanent(void **state)
{
    fixture *f = *state;
    char err[512], keys[4][16];
    kp_producer *p = kp_producer_new(&f->cfg, err, sizeof err);
    assert_non_null(p);
    kp_stop_flag abort_flag = 0;
    char val[4096];
    memset(val, 'y', sizeof val);
    rd_kafka_headers_t *h = rd_kafka_headers_new(2);
    rd_kafka_header_add(h, "error", -1, "invalid", -1);
    kp_outmsg dlq = {TOPIC, "d", 1, val, sizeof val, h, 0, KP_OUT_PENDING};
    rd_kafka_mock_push_request_errors(f->mc, 0 /* Produce */, 1,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    assert_int_equal(kp_producer_deliver(p, &dlq, 1, &f->cfg, &abort_flag, NULL, NULL), 0);
    assert_int_equal(dlq.vallen, sizeof val / 2); /* under the prefix already: halved */
    rd_kafka_headers_destroy(h);
    kp_outmsg *m = make_msgs(1, keys); /* a suggestion record */
    rd_kafka_mock_push_request_errors(f->mc, 0, 3, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                                      RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    assert_int_equal(kp_producer_send(p, m, 1, &f->cfg, &abort_flag, NULL, NULL), KP_SEND_REJECTED);
    assert_int_equal(m[0].state, KP_OUT_REJECTED);
    m[0].state = KP_OUT_PENDING;
    /* deliver gives up too (before: retried until the broker took it) */
    assert_int_equal(kp_producer_deliver(p, m, 1, &f->cfg, &abort_flag, NULL, NULL), -1);
    assert_int_equal(m[0].state, KP_OUT_REJECTED);
    free(m);
    kp_producer_free(p, 1000);
}

/* A record of a transaction refused for good: the transaction is aborted and the answer is FATAL
 * (publishing the same records again cannot succeed), not ABORTED (which the trainer retries). */
static void test_txn_refused_record_is_fatal(void **state)
{
    fixture *f = *state;
    char err[512];
    kp_producer *p = kp_producer_new_txn(&f->cfg, "kprec-fault-txn", 10000, err, sizeof err);
    assert_non_null(p);
    size_t big = 1040000;
    char *val = calloc(1, big);
    assert_non_null(val);
    kp_outmsg m = {TOPIC, "k", 1, val, big, NULL, 0, KP_OUT_PENDING};
    assert_int_equal(kp_producer_txn_publish(p, &m, 1, NULL, NULL, NULL, NULL, err, sizeof err),
                     KP_TXN_FATAL);
    assert_non_null(strstr(err, "refused for good"));
    free(val);
    kp_producer_free(p, 1000);
}

/* Fenced in the middle of a transaction (another producer took the transactional.id: the
 * coordinator answers AddPartitionsToTxn with PRODUCER_FENCED) while its records are queued (none
 * is sent before the partition is added): the answer is FATAL, promptly, and the producer can
 * still be freed. (A fenced trainer in
 * tests/multihost once waited forever for the delivery reports of records in flight: the mock
 * does not lose them, so here the wait ends either way; tests/multihost is where that race runs.)
 */
static void test_txn_fenced_is_fatal_and_prompt(void **state)
{
    fixture *f = *state;
    char err[512], keys[256][16];
    kp_producer *p = kp_producer_new_txn(&f->cfg, "kprec-fault-fenced", 10000, err, sizeof err);
    assert_non_null(p);
    kp_outmsg *m = make_msgs(1, keys); /* a first transaction: metadata, coordinator */
    assert_int_equal(kp_producer_txn_publish(p, m, 1, NULL, NULL, NULL, NULL, err, sizeof err),
                     KP_TXN_COMMITTED);
    free(m);
    rd_kafka_mock_push_request_errors(f->mc, 24 /* AddPartitionsToTxn */, 1,
                                      RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
    m = make_msgs(20, keys);
    size_t big = 900000;
    char *val = calloc(1, big);
    assert_non_null(val);
    for (int i = 0; i < 20; i++)
        m[i].val = val, m[i].vallen = big;
    rd_kafka_mock_broker_set_rtt(f->mc, 1, 300);
    double t0 = now_s();
    assert_int_equal(kp_producer_txn_publish(p, m, 20, NULL, NULL, NULL, NULL, err, sizeof err),
                     KP_TXN_FATAL);
    double took = now_s() - t0;
    if (took > 15) fail_msg("a fenced transaction took %.1f s to give up", took);
    for (int i = 0; i < 20; i++)
        assert_int_not_equal(m[i].state, KP_OUT_DONE);
    free(m);
    free(val);
    kp_producer_free(p, 1000);
    rd_kafka_mock_broker_set_rtt(f->mc, 1, 0);
}

/* A hard stop while a request is in flight (the broker answers after 30 s): deliver returns at
 * once, without waiting for the answer or message.timeout.ms. */
static void test_abort_while_in_flight(void **state)
{
    fixture *f = *state;
    char err[512], keys[256][16];
    kp_producer *p = kp_producer_new(&f->cfg, err, sizeof err);
    assert_non_null(p);
    kp_outmsg *m = make_msgs(1, keys); /* connect first: metadata and the producer id */
    kp_stop_flag abort_flag = 0;
    assert_int_equal(kp_producer_deliver(p, m, 1, &f->cfg, &abort_flag, NULL, NULL), 0);
    free(m);
    rd_kafka_mock_broker_set_rtt(f->mc, 1, 30000);
    m = make_msgs(10, keys);
    tick_ctx t = {f, 0, now_s() + 0.5, &abort_flag, 0};
    double t0 = now_s();
    assert_int_equal(kp_producer_deliver(p, m, 10, &f->cfg, &abort_flag, tick, &t), -1);
    double took = now_s() - t0;
    if (took > 10) fail_msg("a hard stop waited %.1f s for requests in flight", took);
    free(m);
    assert_true(kp_producer_close(p, 10000, &abort_flag) > -1); /* prompt as well */
    rd_kafka_mock_broker_set_rtt(f->mc, 1, 0);
}

int main(void)
{
    if (getenv("KP_TEST_FILTER")) cmocka_set_test_filter(getenv("KP_TEST_FILTER"));
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_broker_down_then_up, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts_are_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_while_down, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_dead_letter_is_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(test_broker_refusal_is_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_refused_record_is_fatal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_while_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_fenced_is_fatal_and_prompt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
