/* Avro decoders behind the wire header: any bytes, every schema (ItemListed v1 and v0, AdEvent,
 * Judgment, KeyphraseSuggestions v0 and v1, Keyphrase; the header's schema id picks the writer
 * schema), then the validation the worker runs on each decoded record. */
#include <stdint.h>
#include <stdlib.h>

#include "schemas/codec.h"
#include "tests/fuzz/fuzz.h"

static kp_codec *codec;

/* The codec lives across inputs (its resolvers are built once); it is freed at exit, before the
 * leak check: Avro keeps some of its blocks through pointers LeakSanitizer does not follow, and
 * would report them as leaked at exit (bounded: they do not grow with the inputs). */
static void free_codec(void)
{
    kp_codec_free(codec);
    codec = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char err[KP_CODEC_ERRLEN];
    if (!codec) {
        if (!(codec = kp_codec_new(err, sizeof err))) abort();
        atexit(free_codec);
    }
    int32_t id;
    kp_wire_schema_id(d, n, &id, err, sizeof err);
    kp_item_listed il;
    if (!kp_decode_item_listed(codec, d, n, &il, err, sizeof err)) {
        kp_validate_item_listed(&il, 1024, err, sizeof err);
        kp_item_listed_clear(&il);
    }
    kp_ad_event ad;
    if (!kp_decode_ad_event(codec, d, n, &ad, err, sizeof err)) {
        kp_validate_ad_event(&ad, err, sizeof err);
        kp_ad_event_clear(&ad);
    }
    kp_judgment j;
    if (!kp_decode_judgment(codec, d, n, &j, err, sizeof err)) {
        kp_validate_judgment(&j, 1024, err, sizeof err);
        kp_judgment_clear(&j);
    }
    kp_suggestions_decoded s;
    if (!kp_decode_suggestions(codec, d, n, &s, err, sizeof err)) {
        kp_validate_suggestions(&s, err, sizeof err);
        kp_suggestions_clear(&s);
    }
    kp_keyphrase k;
    if (!kp_decode_keyphrase(codec, d, n, &k, err, sizeof err)) kp_keyphrase_clear(&k);
    return 0;
}
