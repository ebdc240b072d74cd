/* A consumer whose membership is lost while its commits fail (consumer/group.c, resume_done), on
 * librdkafka's mock cluster: the broker answers the commit of finished work (or, with nothing
 * to commit, a heartbeat) with UNKNOWN_MEMBER_ID, what it answers after a broker outage longer
 * than the session timeout; librdkafka then drops the assignment as lost and rejoins, and the
 * partition comes back with nothing committed.
 *
 *   - with offsets 0..4 acknowledged (kp_group_store 5) before the loss, the partition resumes
 *     at 5, not at the committed (here: none, so the earliest) offset, and 5 is committed right
 *     after the assign, without waiting for the next batch's commit;
 *   - with nothing stored before the loss, it starts again at 0 (so the check above is not true
 *     of every run: only acknowledged work is skipped). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/config.h"
#include "common/util.h"
#include "consumer/group.h"
#include "mock_help.h"

#define TOPIC             "t.items"
#define NREC              10
#define API_OFFSET_COMMIT 8
#define API_HEARTBEAT     12

typedef struct {
    rd_kafka_t *owner; /* the mock cluster lives in this handle */
    rd_kafka_mock_cluster_t *mc;
    kp_config cfg;
} fixture;

static int setup(void **state)
{
    char e[512];
    fixture *f = calloc(1, sizeof *f);
    f->mc = mh_cluster(&f->owner, &f->cfg);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, TOPIC, 1, 1), 0);
    /* only the commits the test makes, so the failed one is not redone by a timer */
    mh_set(&f->cfg, "kafka", "enable.auto.commit", "false");
    mh_set(&f->cfg, "kafka", "heartbeat.interval.ms", "100");
    mh_set(&f->cfg, "kafka", "session.timeout.ms", "6000");

    /* NREC records, offsets 0..NREC-1 */
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
                                       rd_kafka_mock_cluster_bootstraps(f->mc), e, sizeof e),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    assert_non_null(p);
    for (int i = 0; i < NREC; i++) {
        char v[16];
        snprintf(v, sizeof v, "v%d", i);
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(TOPIC), RD_KAFKA_V_PARTITION(0),
                                           RD_KAFKA_V_VALUE(v, strlen(v)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->owner);
    kp_config_free(&f->cfg);
    free(f);
    return 0;
}

/* Polls until a record comes (returns its offset) or timeout_ms passes (-1). */
static int64_t next_offset(kp_group *g, int timeout_ms)
{
    uint64_t end = kp_mono_us() + (uint64_t)timeout_ms * 1000;
    while (kp_mono_us() < end) {
        rd_kafka_message_t *m = kp_group_poll(g, 100, NULL);
        if (!m) continue;
        int64_t o = m->offset;
        rd_kafka_message_destroy(m);
        return o;
    }
    return -1;
}

/* The group's committed offset of the partition (RD_KAFKA_OFFSET_INVALID: none). */
static int64_t committed(kp_group *g)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, TOPIC, 0);
    assert_int_equal(rd_kafka_committed(kp_group_handle(g), l, 5000), 0);
    int64_t o = l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return o;
}

/* Consumes all NREC records, acknowledges the first `acked` of them (kp_group_store, as the serve
 * loop does after Redis and the delivery reports) with a commit the broker refuses with
 * UNKNOWN_MEMBER_ID (acked = 0: a refused heartbeat instead), and returns the offset of the
 * first record after the rejoin. */
static int64_t lose_membership(fixture *f, const char *group, int acked, kp_group **out)
{
    char err[512];
    kp_group_opts o = {.who = "test", .group_id = group, .topics = {TOPIC}, .n_topics = 1};
    kp_group *g = kp_group_new(&f->cfg, &o, err, sizeof err);
    assert_non_null(g);
    for (int i = 0; i < NREC; i++)
        assert_int_equal(next_offset(g, 15000), i);
    if (acked) {
        rd_kafka_mock_push_request_errors(f->mc, API_OFFSET_COMMIT, 1,
                                          RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID);
        rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(l, TOPIC, 0)->offset = acked;
        kp_group_store(g, l);
        rd_kafka_topic_partition_list_destroy(l);
        kp_group_commit(g); /* refused: UNKNOWN_MEMBER_ID */
        /* the refusal loses the assignment (librdkafka rejoins): as after a broker outage */
    } else {
        rd_kafka_mock_push_request_errors(f->mc, API_HEARTBEAT, 1,
                                          RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID);
    }
    *out = g;
    return next_offset(g, 45000); /* the mock's rejoin: 6-12 s */
}

static void test_acknowledged_work_is_not_redone_after_a_lost_membership(void **state)
{
    fixture *f = *state;
    kp_group *g = NULL;
    int64_t first = lose_membership(f, "g.acked", 5, &g);
    assert_int_equal(first, 5);
    /* the resumed offset was committed at the assign: a crash now would not redo 0..4 either */
    int64_t c = RD_KAFKA_OFFSET_INVALID;
    for (int i = 0; i < 50 && c != 5; i++) {
        rd_kafka_message_t *m = kp_group_poll(g, 100, NULL); /* keeps the consumer polled */
        if (m) rd_kafka_message_destroy(m);
        c = committed(g);
    }
    assert_int_equal(c, 5);
    kp_group_free(g);
}

static void test_nothing_acknowledged_starts_again_at_the_beginning(void **state)
{
    fixture *f = *state;
    kp_group *g = NULL;
    int64_t first = lose_membership(f, "g.none", 0, &g);
    assert_int_equal(first, 0);
    assert_true(committed(g) < 0);
    kp_group_free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            test_acknowledged_work_is_not_redone_after_a_lost_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nothing_acknowledged_starts_again_at_the_beginning,
                                        setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
