/* hostile -- writes training events for tests/train/test_train_hostile.sh.
 *
 *   hostile BOOTSTRAP TOPIC judgments N     N good judgments and, after every tenth, one hostile
 *                                           but decodable one (score NaN, 7.5 or -1e300, a 900 KB
 *                                           non-UTF-8 keyphrase, a non-UTF-8 title), in turn
 *   hostile BOOTSTRAP TOPIC clicks PREFIX N N clicks on items PREFIX0..PREFIX<N-1>
 * Prints "good G bad B" (the events written); exit 0, or 1. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/util.h"
#include "schemas/codec.h"

static int produce(rd_kafka_t *rk, const char *topic, const char *key, void *val, size_t len)
{
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                                  RD_KAFKA_V_VALUE(val, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 100);
    if (e) fprintf(stderr, "hostile: produce: %s\n", rd_kafka_err2str(e));
    return e ? -1 : 0;
}

/* Replaces the first 8 bytes of buf equal to the double 0.5 (little-endian) by x. */
static int patch_score(unsigned char *buf, size_t len, double x)
{
    const unsigned char half[8] = {0, 0, 0, 0, 0, 0, 0xe0, 0x3f};
    for (size_t i = KP_WIRE_HEADER_LEN; i + 8 <= len; i++)
        if (!memcmp(buf + i, half, 8)) {
            uint64_t b;
            memcpy(&b, &x, 8);
            for (int k = 0; k < 8; k++)
                buf[i + (size_t)k] = (unsigned char)(b >> (8 * k));
            return 0;
        }
    return -1;
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: hostile BOOTSTRAP TOPIC judgments N | clicks PREFIX N\n");
        return 1;
    }
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[1], err, sizeof err) ||
        rd_kafka_conf_set(conf, "message.max.bytes", "2000000", err, sizeof err)) {
        fprintf(stderr, "hostile: %s\n", err);
        return 1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    kp_codec *c = kp_codec_new(err, sizeof err);
    if (!rk || !c) {
        fprintf(stderr, "hostile: %s\n", err);
        return 1;
    }
    const char *topic = argv[2];
    int good = 0, bad = 0, rc = 0;
    char *huge = malloc(900 * 1024 + 1);
    memset(huge, 'k', 900 * 1024);
    huge[100] = (char)0xff;
    huge[900 * 1024] = 0;
    if (!strcmp(argv[3], "judgments")) {
        int n = atoi(argv[4]);
        const char *kps[] = {"cordless drill", "drill bits", "hammer", "screwdriver set", "saw"};
        for (int i = 0; i < n && !rc; i++) {
            char id[64], title[128];
            snprintf(id, sizeof id, "hj-%d", i);
            snprintf(title, sizeof title, "cordless drill kit %d with battery", i);
            kp_judgment j = {id,           title,           (char *)kps[i % 5],
                             KP_JUDGE_LLM, (i % 10) / 10.0, 1754000000000LL};
            void *buf;
            size_t len;
            if (kp_encode_judgment(c, &j, &buf, &len)) return 1;
            rc |= produce(rk, topic, id, buf, len);
            free(buf);
            good++;
            if (i % 10 != 9) continue;
            int kind = (i / 10) % 5;
            j.score = 0.5;
            if (kind == 3) j.keyphrase = huge;
            if (kind == 4) j.title = "bad \xc3\x28 title";
            if (kp_encode_judgment(c, &j, &buf, &len)) return 1;
            const double scores[3] = {NAN, 7.5, -1e300};
            if (kind < 3 && patch_score(buf, len, scores[kind])) return 1;
            rc |= produce(rk, topic, id, buf, len);
            free(buf);
            bad++;
        }
    } else if (!strcmp(argv[3], "clicks") && argc >= 6) {
        int n = atoi(argv[5]);
        for (int i = 0; i < n && !rc; i++) {
            char id[64], kp[64];
            snprintf(id, sizeof id, "%s%d", argv[4], i);
            snprintf(kp, sizeof kp, "drill %d", i % 50);
            kp_ad_event a = {id, kp, i % 3 ? KP_AD_IMPRESSION : KP_AD_CLICK, 1 + i % 5,
                             1754000000000LL};
            void *buf;
            size_t len;
            if (kp_encode_ad_event(c, &a, &buf, &len)) return 1;
            rc |= produce(rk, topic, id, buf, len);
            free(buf);
            good++;
        }
    } else {
        fprintf(stderr, "hostile: unknown mode %s\n", argv[3]);
        return 1;
    }
    if (rd_kafka_flush(rk, 30000)) {
        fprintf(stderr, "hostile: flush timed out\n");
        rc = 1;
    }
    printf("good %d bad %d\n", good, bad);
    rd_kafka_destroy(rk);
    kp_codec_free(c);
    free(huge);
    return rc ? 1 : 0;
}
