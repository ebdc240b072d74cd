/* Model-topic records (consumer/model_topic.c) as every serve worker's follower reads them: the
 * input is split into header lines "name=value" up to an empty line, then the record value; the
 * record is verified with and without an HMAC key, and an accepted one goes through the
 * version/lineage rules. Any bytes. */
#include <stdint.h>
#include <string.h>

#include "consumer/model_topic.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    rd_kafka_headers_t *h = rd_kafka_headers_new(8);
    const char *p = (const char *)d, *end = p + n;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        if (line_end == p) { /* empty line: the value follows */
            p = nl ? nl + 1 : end;
            break;
        }
        const char *eq = memchr(p, '=', (size_t)(line_end - p));
        if (eq)
            rd_kafka_header_add(h, p, eq - p, eq + 1, line_end - eq - 1);
        else
            rd_kafka_header_add(h, p, line_end - p, NULL, 0);
        p = nl ? nl + 1 : end;
    }
    size_t vlen = (size_t)(end - p);
    kp_model_meta meta;
    static const char key[] = KP_MODEL_KEY;
    for (int k = 0; k < 2; k++) {
        memset(&meta, 0, sizeof meta);
        if (kp_model_verify(k ? "fuzz-key" : "", "kprec.model", key, sizeof key - 1, h, p, vlen,
                            &meta) == KP_MODEL_OK) {
            kp_model_decide(meta.version, meta.lineage, &meta);
            kp_model_decide(meta.version > 0 ? meta.version - 1 : 0, meta.lineage, &meta);
        }
    }
    char buf[64];
    kp_model_hdr(h, "type", buf, sizeof buf);
    rd_kafka_headers_destroy(h);
    return 0;
}
