/* registry_reply.h - the bodies of a schema registry's replies, parsed (pure: no network).
 *
 * schemas/registry_http.c hands every reply body it reads (at most KP_SREG_MAX_REPLY bytes, any
 * bytes: the registry is outside) to these functions; tests/fuzz/fuzz_registry fuzzes them. None
 * of them trusts the body: not JSON, the wrong JSON types, a huge or negative id, an embedded NUL
 * are answers, never a crash. */
#ifndef KP_SCHEMAS_REGISTRY_REPLY_H
#define KP_SCHEMAS_REGISTRY_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "schemas/registry_http.h"

/* The reply body[0..n-1] to GET /schemas/ids/{id} (HTTP 200): {"schema": "<the schema text>"}
 * with "schemaType" absent or "AVRO". OK: *json is a new NUL-terminated copy of the schema text
 * (free() it), *len its bytes. REFUSED: another schemaType (id names it in err). RETRY: not
 * JSON, no "schema" string, or out of memory (err says which). *json is NULL and *len 0 unless
 * OK. */
kp_sreg_rc kp_sreg_reply_schema(const char *body, size_t n, int32_t id, char **json, size_t *len,
                                char *err, size_t errlen);

/* The reply body[0..n-1] to POST {path} (HTTP 200): {"id": N}, N an integer in 0..INT32_MAX. OK
 * with *id set; RETRY (err names path) when the body is not that. */
kp_sreg_rc kp_sreg_reply_id(const char *body, size_t n, const char *path, int32_t *id, char *err,
                            size_t errlen);

/* The "message" string of an error reply body[0..n-1] into msg (truncated to msglen - 1 bytes,
 * NUL-terminated); "" when the body is not JSON or has none. msglen > 0. */
void kp_sreg_reply_message(const char *body, size_t n, char *msg, size_t msglen);

#endif
