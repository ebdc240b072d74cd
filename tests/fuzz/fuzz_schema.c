/* Writer schemas from the schema registry (kp_codec_add_schema: any text the registry answers,
 * under an id of its own), then a record decoded with it. Input: the schema text, a NUL byte,
 * then the record's Avro body (the wire header with the id is put in front of it here); no NUL:
 * the whole input is the schema and the body is empty. Every decoder is tried on the record (the
 * schema's record name picks the one that accepts it) and its validation run. One codec across
 * inputs, each input under an id of its own (a fresh codec per input ran at ~120 exec/s). The
 * codec keeps Avro C blocks through pointers LeakSanitizer does not follow, so libFuzzer's
 * per-input leak check reports them: long runs use -detect_leaks=0 (the leak check at exit, after
 * the codec is freed, still runs); run_fuzz.sh does so for this target. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "tests/fuzz/fuzz.h"

static void decode_all(kp_codec *c, const uint8_t *w, size_t n)
{
    char err[KP_CODEC_ERRLEN];
    kp_item_listed il;
    if (!kp_decode_item_listed(c, w, n, &il, err, sizeof err)) {
        kp_validate_item_listed(&il, 1024, err, sizeof err);
        kp_item_listed_clear(&il);
    }
    kp_ad_event ad;
    if (!kp_decode_ad_event(c, w, n, &ad, err, sizeof err)) {
        kp_validate_ad_event(&ad, err, sizeof err);
        kp_ad_event_clear(&ad);
    }
    kp_judgment j;
    if (!kp_decode_judgment(c, w, n, &j, err, sizeof err)) {
        kp_validate_judgment(&j, 1024, err, sizeof err);
        kp_judgment_clear(&j);
    }
    kp_suggestions_decoded s;
    if (!kp_decode_suggestions(c, w, n, &s, err, sizeof err)) {
        kp_validate_suggestions(&s, err, sizeof err);
        kp_suggestions_clear(&s);
    }
    kp_keyphrase k;
    if (!kp_decode_keyphrase(c, w, n, &k, err, sizeof err)) kp_keyphrase_clear(&k);
}

static kp_codec *codec;

static void free_codec(void) /* before the leak check at exit (see fuzz_decode.c) */
{
    kp_codec_free(codec);
    codec = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char err[KP_CODEC_ERRLEN];
    const uint8_t *nul = memchr(d, 0, n);
    size_t slen = nul ? (size_t)(nul - d) : n;
    size_t blen = nul ? n - slen - 1 : 0;
    if (!codec) {
        if (!(codec = kp_codec_new(err, sizeof err))) abort();
        kp_codec_use_registry(codec);
        atexit(free_codec);
    }
    /* a new id per input, as a registry assigns them: the codec keeps 256 and forgets the
     * oldest, so the inputs do not see each other's schemas */
    static int32_t id = 1000;
    id = id == INT32_MAX ? 1000 : id + 1;
    if (!kp_codec_add_schema(codec, id, (const char *)d, slen, err, sizeof err)) {
        /* the same text again is accepted (identical), and the record decoded with it */
        if (kp_codec_add_schema(codec, id, (const char *)d, slen, err, sizeof err)) abort();
        uint8_t *w = malloc(blen + 5);
        if (!w) abort();
        w[0] = 0, w[1] = (uint8_t)(id >> 24), w[2] = (uint8_t)(id >> 16), w[3] = (uint8_t)(id >> 8),
        w[4] = (uint8_t)id;
        if (blen) memcpy(w + 5, nul + 1, blen);
        decode_all(codec, w, blen + 5);
        free(w);
    }
    return 0;
}
