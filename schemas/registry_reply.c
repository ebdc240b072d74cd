/* registry_reply.c - a schema registry's reply bodies parsed with jansson (see registry_reply.h).
 */
#include "schemas/registry_reply.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

kp_sreg_rc kp_sreg_reply_schema(const char *body, size_t n, int32_t id, char **json, size_t *len,
                                char *err, size_t errlen)
{
    kp_sreg_rc rc = KP_SREG_RETRY;
    *json = NULL, *len = 0;
    json_t *j = body ? json_loadb(body, n, 0, NULL) : NULL;
    const json_t *s = json_object_get(j, "schema");
    const char *type = json_string_value(json_object_get(j, "schemaType"));
    if (type && strcmp(type, "AVRO") != 0) {
        kp_errf(err, errlen, "schema id %u is %s, not Avro", (unsigned)(uint32_t)id, type);
        rc = KP_SREG_REFUSED;
        goto out;
    }
    if (!json_is_string(s)) {
        kp_errf(err, errlen, "schema registry: no \"schema\" in the reply for id %u",
                (unsigned)(uint32_t)id);
        goto out;
    }
    size_t sl = json_string_length(s);
    if (!(*json = malloc(sl + 1))) {
        kp_errf(err, errlen, "out of memory");
        goto out;
    }
    memcpy(*json, json_string_value(s), sl);
    (*json)[sl] = '\0';
    *len = sl;
    rc = KP_SREG_OK;
out:
    json_decref(j);
    return rc;
}

kp_sreg_rc kp_sreg_reply_id(const char *body, size_t n, const char *path, int32_t *id, char *err,
                            size_t errlen)
{
    kp_sreg_rc rc = KP_SREG_RETRY;
    json_t *j = body ? json_loadb(body, n, 0, NULL) : NULL;
    const json_t *v = json_object_get(j, "id");
    json_int_t i = json_integer_value(v);
    if (!json_is_integer(v) || i < 0 || i > INT32_MAX)
        kp_errf(err, errlen, "schema registry: no id in the reply to %s", path);
    else
        *id = (int32_t)i, rc = KP_SREG_OK;
    json_decref(j);
    return rc;
}

void kp_sreg_reply_message(const char *body, size_t n, char *msg, size_t msglen)
{
    json_t *j = body ? json_loadb(body, n, 0, NULL) : NULL;
    const char *m = json_string_value(json_object_get(j, "message"));
    snprintf(msg, msglen, "%s", m ? m : "");
    json_decref(j);
}
