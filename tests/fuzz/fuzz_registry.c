/* The bodies of a schema registry's replies (schemas/registry_reply.h, what registry_http.c
 * hands them after an HTTP exchange): any bytes as the reply to GET /schemas/ids/{id}, to a POST
 * of a schema, and as an error reply. A schema text accepted from the first is then added to a
 * codec, as kp_sreg_resolve does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schemas/codec.h"
#include "schemas/registry_reply.h"
#include "tests/fuzz/fuzz.h"

static kp_codec *codec;

static void free_codec(void) /* before the leak check (see fuzz_decode.c) */
{
    kp_codec_free(codec);
    codec = NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char err[512], msg[512];
    if (!codec) {
        if (!(codec = kp_codec_new(err, sizeof err))) abort();
        kp_codec_use_registry(codec);
        atexit(free_codec);
    }
    const char *body = (const char *)d;
    char *json = NULL;
    size_t len = 0;
    kp_sreg_rc rc = kp_sreg_reply_schema(body, n, 7, &json, &len, err, sizeof err);
    if (rc == KP_SREG_OK) {
        if (!json || strlen(json) != len) abort(); /* the copy is the whole string */
        /* a new id per accepted schema: the codec keeps 256 and forgets the oldest */
        static int32_t next_id = 1000;
        kp_codec_add_schema(codec, next_id, json, len, err, sizeof err);
        next_id = next_id == INT32_MAX ? 1000 : next_id + 1;
    } else if (json || len) {
        abort();
    }
    free(json);
    int32_t id = -1;
    if (kp_sreg_reply_id(body, n, "/subjects/x-value", &id, err, sizeof err) == KP_SREG_OK &&
        id < 0)
        abort();
    kp_sreg_reply_message(body, n, msg, sizeof msg);
    if (strlen(msg) >= sizeof msg) abort();
    return 0;
}
