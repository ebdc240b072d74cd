/* The trainer's events when a dead letter is not delivered (issue 10), on librdkafka's mock
 * cluster: real records of a judgments topic, a real dead-letter producer whose produce requests
 * the mock broker refuses (TOPIC_AUTHORIZATION_FAILED: refused for good), a real model and
 * training step.
 *
 *   - a step with one judgment the trainer rejects (score 7.5) is retried event by event: the
 *     good one before it trains; the bad one's dead letter fails, so it is held, the trainer
 *     stops (dlq_failed, kp_worker_stop), and the offset to commit stays AT the bad one: it and
 *     everything after it is consumed again by the next trainer. Every event not done goes back
 *     to the pending list (none is lost to the ready array: under ASan a leak is reported too);
 *   - a click whose item has no title after resolve_timeout_ms: its dead letter fails, it is held
 *     and its offset is not committed past;
 *   - the same with the broker accepting the dead letters: they are delivered, counted, and the
 *     offset moves past them (so the checks above are not true of every run). */
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
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/group.h"
#include "consumer/learn_queue.h"
#include "consumer/learn_state.h"
#include "consumer/learn_step.h"
#include "mock_help.h"

#define JT   "t.judgments"
#define CT   "t.clicks"
#define DLQ  "t.dlq"
#define NREC 4

typedef struct {
    rd_kafka_t *owner; /* the mock cluster lives in this handle */
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *consumer;
    int lost; /* events neither pending nor done: their messages cannot be freed any more */
    kp_config cfg;
    kp_lstate s;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->mc = mh_cluster(&f->owner, &f->cfg);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, JT, 1, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, CT, 1, 1), 0);
    assert_int_equal(rd_kafka_mock_topic_create(f->mc, DLQ, 1, 1), 0);
    mh_set(&f->cfg, "worker", "retry_backoff_ms", "50");
    mh_set(&f->cfg, "worker", "retry_backoff_max_ms", "200");
    mh_set(&f->cfg, "topics", "judgments", JT);
    mh_set(&f->cfg, "topics", "clicks", CT);
    mh_set(&f->cfg, "topics", "dlq", DLQ);
    mh_set(&f->cfg, "train", "batch_size", "8");
    mh_set(&f->cfg, "train", "resolve_timeout_ms", "10");
    atomic_store(&kp_worker_stop, 0);
    *state = f;
    return 0;
}

/* The trainer's state as kp_learn_run sets it up, minus the group, Redis and the model topic. */
static void open_state(fixture *f)
{
    char err[512];
    kp_lstate *s = &f->s;
    memset(s, 0, sizeof *s);
    s->cfg = &f->cfg;
    s->ckpt_offset = -1;
    kp_rng_seed(&s->rng, 1);
    assert_non_null(s->producer = kp_producer_new(&f->cfg, err, sizeof err));
    kp_bienc_config bc = {.n_buckets = 512,
                          .emb_dim = 8,
                          .hidden_dim = 8,
                          .out_dim = 8,
                          .shared_towers = 1,
                          .n_prefix = 1,
                          .prefix = {8}};
    assert_non_null(s->model = kp_bienc_new(&bc, 7));
    kp_train_config tc;
    kp_train_config_default(&tc);
    int bs = f->cfg.train_batch_size, maxk = 2 * bs + 1;
    assert_non_null(s->trainer =
                        kp_trainer_new(s->model, &tc, 2 * bs, maxk, maxk, 0, err, sizeof err));
    assert_int_equal(kp_lbuf_init(&s->buf, 4 * bs), 0);
    for (int t = 0; t < kp_bienc_n_towers(s->model); t++) {
        assert_non_null(s->row_mark[t] = calloc(bc.n_buckets, 1));
        assert_non_null(s->rows[t] = malloc(sizeof(uint32_t) * bc.n_buckets));
    }
    assert_non_null(s->ready = calloc((size_t)bs, sizeof *s->ready));
}

static int teardown(void **state)
{
    fixture *f = *state;
    kp_lstate *s = &f->s;
    for (int i = 0; i < s->n_pending; i++)
        kp_levent_clear(&s->pending[i]);
    for (int i = 0; s->ready && i < f->cfg.train_batch_size; i++)
        kp_levent_clear(&s->ready[i]);
    free(s->pending);
    free((void *)s->lookup_ids), free(s->lookup_titles), free(s->lookup_which);
    free(s->ready);
    kp_lbuf_free(&s->buf);
    for (int t = 0; t < 2; t++)
        free(s->row_mark[t]), free(s->rows[t]);
    kp_trainer_free(s->trainer);
    kp_bienc_free(s->model);
    kp_producer_free(s->producer, 2000);
    /* (rd_kafka_destroy would wait for the lost messages for ever; LeakSanitizer reports them) */
    if (f->consumer && !f->lost) {
        rd_kafka_consumer_close(f->consumer);
        rd_kafka_destroy(f->consumer);
    }
    kp_config_free(&f->cfg);
    rd_kafka_mock_cluster_destroy(f->mc);
    rd_kafka_destroy(f->owner);
    free(f);
    atomic_store(&kp_worker_stop, 0);
    return 0;
}

/* Writes NREC records to topic and consumes them back: the trainer's real messages. */
static void records(fixture *f, const char *topic, rd_kafka_message_t **out)
{
    char e[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc), e,
                      sizeof e);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    assert_non_null(p);
    for (int i = 0; i < NREC; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, 2),
                                           RD_KAFKA_V_VALUE("payload", 7),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(f->mc), e,
                      sizeof e);
    rd_kafka_conf_set(conf, "group.id", "t", e, sizeof e);
    rd_kafka_conf_set(conf, "log_level", "2", e, sizeof e);
    assert_non_null(f->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e));
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(f->consumer, l);
    rd_kafka_topic_partition_list_destroy(l);
    for (int n = 0, tries = 0; n < NREC; tries++) {
        assert_true(tries < 200);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(f->consumer, 100);
        if (m && !m->err)
            out[n++] = m;
        else if (m)
            rd_kafka_message_destroy(m);
    }
}

/* Pending judgments on the NREC records, all resolved; record `bad` has score 7.5. */
static void pending_judgments(fixture *f, int bad)
{
    rd_kafka_message_t *m[NREC];
    records(f, JT, m);
    for (int i = 0; i < NREC; i++) {
        char buf[64];
        kp_levent ev = {.msg = m[i]};
        snprintf(buf, sizeof buf, "item-%d", i), ev.jd.item_id = strdup(buf);
        snprintf(buf, sizeof buf, "red shoes size %d", i), ev.jd.title = strdup(buf);
        snprintf(buf, sizeof buf, "shoes %d", i), ev.jd.keyphrase = strdup(buf);
        ev.jd.score = i == bad ? 7.5 : 0.5;
        ev.title = strdup(ev.jd.title);
        assert_int_equal(kp_lq_push(&f->s, &ev), 0);
    }
}

/* The offset kp_lq_offsets gives topic's partition 0 (-1: none). */
static int64_t offset_to_commit(fixture *f, const char *topic)
{
    rd_kafka_topic_partition_list_t *l = kp_lq_offsets(&f->s);
    rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(l, topic, 0);
    int64_t off = p ? p->offset : -1;
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

static void refuse_produce(fixture *f)
{
    rd_kafka_resp_err_t errs[8];
    for (int i = 0; i < 8; i++)
        errs[i] = RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
    rd_kafka_mock_push_request_errors_array(f->mc, 0 /* Produce */, 8, errs);
}

/* A rejected step, its bad event's dead letter refused: held, nothing committed past it. */
static void test_step_dead_letter_refused(void **state)
{
    fixture *f = *state;
    open_state(f);
    pending_judgments(f, 1);
    int64_t bad_offset = f->s.pending[1].msg->offset;
    assert_int_equal(kp_lq_take_ready(&f->s), NREC);
    assert_int_equal(f->s.n_pending, 0);
    refuse_produce(f);
    assert_int_equal(kp_lstep_ready(&f->s, NREC), -1);
    assert_true(f->s.dlq_failed);
    assert_true(atomic_load(&kp_worker_stop));
    /* event 0 trained alone; 1 held; 2 and 3 never tried: all three back in the pending list */
    if ((f->lost = NREC - 1 - f->s.n_pending))
        fail_msg("%d event(s) neither pending nor done: lost (and leaked)", f->lost);
    assert_true(f->s.pending[0].held);
    assert_int_equal(f->s.pending[0].msg->offset, bad_offset);
    assert_false(f->s.pending[1].held);
    assert_false(f->s.pending[2].held);
    for (int i = 0; i < NREC; i++)
        assert_null(f->s.ready[i].msg); /* nothing left behind in the ready array */
    assert_int_equal(offset_to_commit(f, JT), bad_offset);
    /* a held event is never ready again (the trainer stops; the next one consumes it anew) */
    assert_int_equal(kp_lq_take_ready(&f->s), 2);
}

/* A click whose item never got a title: its dead letter refused, it is held. */
static void test_unknown_item_dead_letter_refused(void **state)
{
    fixture *f = *state;
    open_state(f);
    rd_kafka_message_t *m[NREC];
    records(f, CT, m);
    for (int i = 0; i < NREC; i++) {
        kp_levent ev = {.msg = m[i], .is_click_topic = 1};
        ev.ad.item_id = strdup("no-such-item");
        ev.ad.keyphrase = strdup("shoes");
        ev.missing_since_ms = kp_now_ms() - 1000; /* resolve_timeout_ms is 10 */
        assert_int_equal(kp_lq_push(&f->s, &ev), 0);
    }
    refuse_produce(f);
    assert_int_equal(kp_lq_take_ready(&f->s), 0);
    assert_true(f->s.dlq_failed);
    assert_true(f->s.pending[0].held);
    assert_int_equal(f->s.n_pending, NREC);
    int64_t off = offset_to_commit(f, CT);
    assert_true(off == -1 || off <= m[0]->offset);
}

/* The same, the broker taking the dead letters: delivered, done, the offset past them. */
static void test_dead_letters_delivered(void **state)
{
    fixture *f = *state;
    open_state(f);
    pending_judgments(f, 1);
    unsigned long long dl0 = atomic_load(&kp_m.dead_lettered[KP_MT_JUDGMENTS]);
    assert_int_equal(kp_lq_take_ready(&f->s), NREC);
    assert_int_equal(kp_lstep_ready(&f->s, NREC), 0);
    assert_false(f->s.dlq_failed);
    assert_false(atomic_load(&kp_worker_stop));
    assert_int_equal(f->s.n_pending, 0);
    assert_int_equal(atomic_load(&kp_m.dead_lettered[KP_MT_JUDGMENTS]) - dl0, 1);
    assert_int_equal(offset_to_commit(f, JT), NREC);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_step_dead_letter_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_item_dead_letter_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_delivered, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
