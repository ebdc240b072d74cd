/* registry_http.h - a client of a Confluent-compatible schema registry ([schemas] registry), with
 * libcurl and jansson.
 *
 * What kprec needs of a registry, in the Confluent REST API:
 *   GET  {url}/schemas/ids/{id}          the writer schema of wire id `id` (consumers)
 *   POST {url}/subjects/{subject}        is this schema registered under subject? its id
 * (producers) POST {url}/subjects/{subject}/versions   register it (when the lookup says 404) The
 * subject of a topic's values is `<topic>-value` (Confluent's default TopicNameStrategy). Tested
 * against Apicurio Registry 2.6 (its /apis/ccompat/v7 API; see schemas/README.md for how its ids
 * compare with Confluent's).
 *
 * Every call answers KP_SREG_OK, KP_SREG_RETRY (the registry could not answer: connection refused,
 * timeout, HTTP 5xx, 401/403, a reply that is not the JSON expected; try again later, the message
 * is not at fault) or KP_SREG_REFUSED (the registry answered no: 404 unknown id, 409 incompatible,
 * 422 invalid schema; retrying will not help). KP_SREG_ERROR: bad arguments, out of memory.
 *
 * Caching: the writer schemas fetched live in the kp_codec (kp_codec_add_schema, bounded); the
 * client keeps the ids the registry said it does not know for KP_SREG_NEG_TTL_MS, so that a
 * stream of bad ids does not become a stream of requests.
 *
 * Threads: one kp_sreg per thread (it owns a curl handle), like the codec it feeds.
 */
#ifndef KP_SCHEMAS_REGISTRY_HTTP_H
#define KP_SCHEMAS_REGISTRY_HTTP_H

#include <stdatomic.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "schemas/codec.h"

typedef enum {
    KP_SREG_ERROR = -1,
    KP_SREG_OK = 0,
    KP_SREG_RETRY = 1,
    KP_SREG_REFUSED = 2
} kp_sreg_rc;

#define KP_SREG_NEG_TTL_MS 10000 /* an id the registry does not know is asked again after this */
#define KP_SREG_MAX_REPLY  (4 << 20) /* bytes of a registry reply we accept */

typedef struct {
    const char *url;      /* base URL, e.g. http://host:8080/apis/ccompat/v7 (required) */
    const char *user;     /* HTTP basic auth; NULL or "" = none */
    const char *password; /* with user */
    const char *ca_file;  /* CA bundle for https; NULL = the system's */
    const char *cert;     /* client certificate (PEM) for mutual TLS; NULL = none */
    const char *key;      /* its private key (PEM) */
    int timeout_ms;       /* per request (connect included); <= 0 = 5000 */
} kp_sreg_opts;

typedef struct kp_sreg kp_sreg;

/* A client for o (its strings are copied). NULL with a reason in err: no URL, not http(s)://,
 * curl failed to start. Free with kp_sreg_free. No request is made yet. */
kp_sreg *kp_sreg_new(const kp_sreg_opts *o, char *err, size_t errlen);

/* The client of c's [schemas] registry settings into *out: NULL when registry is empty (the
 * built-in table is used). Returns 0, or -1 with a reason in err. */
int kp_sreg_open(const kp_config *c, kp_sreg **out, char *err, size_t errlen);

/* Frees r. NULL is a no-op. */
void kp_sreg_free(kp_sreg *r);

/* The writer schema of id: a new NUL-terminated string in *json (free() it), *len bytes. */
kp_sreg_rc kp_sreg_fetch(kp_sreg *r, int32_t id, char **json, size_t *len, char *err,
                         size_t errlen);

/* The id of schema json under subject: looked up, registered if the subject does not have it. */
kp_sreg_rc kp_sreg_register(kp_sreg *r, const char *subject, const char *json, int32_t *id,
                            char *err, size_t errlen);

/* Consumers, before decoding payload[0..len-1] with c (which this puts in registry mode,
 * kp_codec_use_registry): when its wire id is not known to c yet,
 * fetch the writer schema and add it to c (kp_codec_add_schema). OK: c decodes it now, or the
 * payload is no wire-format record (the decoder will say why). REFUSED: the registry does not
 * know the id, or its schema does not resolve to the reader's (err says which): the decoder will
 * dead-letter it as an unknown id. RETRY: the registry is unreachable: hold the message. */
kp_sreg_rc kp_sreg_resolve(kp_sreg *r, kp_codec *c, const void *payload, size_t len, char *err,
                           size_t errlen);

/* Producers, at start-up: register (or look up) built-in schema builtin_id under `<topic>-value`
 * and make c's encoder of it write the registry's id (kp_codec_set_wire_id; c is put in registry
 * mode). A registry that
 * does not answer is asked again with backoff (250 ms doubling to 5 s) for up to wait_ms, or
 * until *stop (may be NULL) is set. Sets *wire_id (may be NULL). */
kp_sreg_rc kp_sreg_use_writer(kp_sreg *r, kp_codec *c, const char *topic, int32_t builtin_id,
                              int wait_ms, const atomic_int *stop, int32_t *wire_id, char *err,
                              size_t errlen);

#endif
