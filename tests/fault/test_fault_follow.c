/* The model follower on librdkafka's mock cluster: a serving follower says "caught up" only once
 * the recommender of the version it caught up with is built, so a worker on an empty disk never
 * serves its start-up model after the catch-up (seen in tests/multihost: version 1, the seeded
 * untrained model, served for ~3 s after "read kprec.model to its end"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/config.h"
#include "common/util.h"
#include "consumer/follow.h"
#include "consumer/model_topic.h"
#include "model/ckpt.h"
#include "model/recommender.h"
#include "../unit/th_main.h"

#define KEY "fault-follow-key"

static kp_bienc *small_model(uint64_t version)
{
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    bc.n_buckets = 4096;
    kp_bienc *m = kp_bienc_new(&bc, version);
    assert_non_null(m);
    kp_bienc_set_version(m, version);
    return m;
}

/* Writes the checkpoint of a model of `version` to the topic in chunks of 64 KiB. */
static void produce_checkpoint(rd_kafka_mock_cluster_t *mc, const char *dir, uint64_t version)
{
    char path[512], err[512], e[512];
    snprintf(path, sizeof path, "%s/ck.kpm", dir);
    kp_bienc *m = small_model(version);
    assert_int_equal(kp_bienc_save(m, path, err, sizeof err), 0);
    kp_bienc_free(m);
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    size_t len = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc(len);
    assert_int_equal(fread(buf, 1, len, fp), len);
    fclose(fp);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), e, sizeof e);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    assert_non_null(p);
    size_t cs = 65536;
    int count = (int)((len + cs - 1) / cs);
    uint64_t lineage = kp_model_new_lineage(1);
    for (int i = 0; i < count; i++) {
        size_t off = (size_t)i * cs, n = len - off < cs ? len - off : cs;
        void *val = buf + off;
        kp_model_meta mm = {
            KP_MODEL_REC_CHECKPOINT, version, lineage, 0, 0, i, count, len, kp_now_ms()};
        rd_kafka_headers_t *h = kp_model_headers(&mm, KEY, KP_MODEL_KEY, KP_MODEL_KEY,
                                                 strlen(KP_MODEL_KEY), buf + off, n);
        assert_non_null(h);
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(KP_MODEL_KEY),
                                           RD_KAFKA_V_KEY(KP_MODEL_KEY, strlen(KP_MODEL_KEY)),
                                           RD_KAFKA_V_VALUE(val, n),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    free(buf);
    unlink(path);
}

static void test_caught_up_means_built(void **state)
{
    (void)state;
    char e[512], err[512], dir[] = "/tmp/kprec-fault-follow.XXXXXX", kps[600];
    assert_non_null(mkdtemp(dir));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", e, sizeof e);
    rd_kafka_t *owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(owner, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, KP_MODEL_KEY, 1, 1), 0);
    produce_checkpoint(mc, dir, 7);
    /* an inventory large enough that building the recommender takes a while */
    snprintf(kps, sizeof kps, "%s/keyphrases.tsv", dir);
    FILE *fp = fopen(kps, "w");
    assert_non_null(fp);
    fprintf(fp, "keyphrase_id\tkeyphrase\n");
    for (int i = 0; i < 20000; i++)
        fprintf(fp, "q%d\tkeyphrase number %d of the fault test %d\n", i, i, i * 7919 % 10007);
    fclose(fp);
    kp_config c;
    kp_config_defaults(&c);
    assert_int_equal(kp_config_set(&c, "kafka", "bootstrap.servers",
                                   rd_kafka_mock_cluster_bootstraps(mc), err, sizeof err),
                     0);
    kp_config_set(&c, "kafka", "log_level", "2", err, sizeof err);
    assert_int_equal(kp_config_set(&c, "model", "hmac_key", KEY, err, sizeof err), 0);
    assert_int_equal(kp_config_set(&c, "model", "keyphrases", kps, err, sizeof err), 0);
    assert_int_equal(kp_config_set(&c, "topics", "model", KP_MODEL_KEY, err, sizeof err), 0);
    kp_follower *f = kp_follower_start(&c, small_model(1), 1, err, sizeof err);
    assert_non_null(f);
    assert_int_equal(kp_follower_wait_caught_up(f, 60000, NULL), 1);
    kp_recommender *r = kp_follower_take(f);
    assert_non_null(r); /* caught up: the recommender of version 7 is there to take */
    assert_int_equal(kp_rec_version(r), 7);
    kp_rec_free(r);
    kp_bienc_free(kp_follower_stop(f));
    kp_config_free(&c);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(owner);
    unlink(kps);
    rmdir(dir);
}

TH_MAIN(cmocka_unit_test(test_caught_up_means_built))
