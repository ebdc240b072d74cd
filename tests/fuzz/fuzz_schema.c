/* Writer schemas from the schema registry (kp_codec_add_schema: any text the registry answers,
 * under an id of its own), then a record decoded with it. Input: the schema text, a NUL byte,
 * then the record's Avro body (the wire header with the id is put in front of it here); no NUL:
 * the whole input is the schema and the body is empty. Every decoder is tried on the record (the
 * schema's record name picks the one that accepts it) and its validation run. A fresh codec per
 * input (~120 exec/s on a loaded machine): a codec kept across inputs made libFuzzer's per-input
 * leak check report Avro C's blocks of the values it keeps, and each input stays a replay of its
 * own. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "tests/fuzz/fuzz.h"

#define WIRE_ID 7 /* a registry's id, unrelated to the built-in table */

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

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char err[KP_CODEC_ERRLEN];
    const uint8_t *nul = memchr(d, 0, n);
    size_t slen = nul ? (size_t)(nul - d) : n;
    size_t blen = nul ? n - slen - 1 : 0;
    kp_codec *c = kp_codec_new(err, sizeof err);
    if (!c) abort();
    kp_codec_use_registry(c);
    if (!kp_codec_add_schema(c, WIRE_ID, (const char *)d, slen, err, sizeof err)) {
        /* the same text again is accepted (identical), and the record decoded with it */
        if (kp_codec_add_schema(c, WIRE_ID, (const char *)d, slen, err, sizeof err)) abort();
        uint8_t *w = malloc(blen + 5);
        if (!w) abort();
        w[0] = 0, w[1] = 0, w[2] = 0, w[3] = 0, w[4] = WIRE_ID;
        if (blen) memcpy(w + 5, nul + 1, blen);
        decode_all(c, w, blen + 5);
        free(w);
    }
    kp_codec_free(c);
    return 0;
}
