/* registry_http.c - the schema registry client (see registry_http.h): one curl easy handle per
 * client, replies read into a bounded buffer and parsed by registry_reply.c. */
#include "schemas/registry_http.h"
#include "schemas/registry_reply.h"

#include "common/util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KP_SREG_NEG 64 /* ids remembered as unknown to the registry */

typedef struct {
    int32_t id;
    int64_t until_ms; /* kp_mono_ms() until which the answer stands */
} neg_id;

struct kp_sreg {
    CURL *h;
    char *url, *user, *password, *ca_file, *cert, *key;
    int timeout_ms;
    neg_id neg[KP_SREG_NEG]; /* ring of ids the registry said it does not know */
    int nneg;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* strdup of s, NULL for NULL or "". *fail is set when the copy fails. */
static char *dup_opt(const char *s, int *fail)
{
    if (!s || !*s) return NULL;
    char *d = strdup(s);
    if (!d) *fail = 1;
    return d;
}

kp_sreg *kp_sreg_new(const kp_sreg_opts *o, char *err, size_t errlen)
{
    kp_sreg *r = NULL;
    int fail = 0;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        kp_errf(err, errlen, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    if (!o || !o->url || (strncmp(o->url, "http://", 7) && strncmp(o->url, "https://", 8))) {
        kp_errf(err, errlen, "schema registry URL must start with http:// or https://");
        return NULL;
    }
    if ((o->cert && *o->cert) != (o->key && *o->key)) {
        kp_errf(err, errlen, "schema registry: a client certificate needs its key and vice versa");
        return NULL;
    }
    if (!(r = calloc(1, sizeof *r))) goto oom;
    r->url = dup_opt(o->url, &fail);
    r->user = dup_opt(o->user, &fail);
    r->password = dup_opt(o->password, &fail);
    r->ca_file = dup_opt(o->ca_file, &fail);
    r->cert = dup_opt(o->cert, &fail);
    r->key = dup_opt(o->key, &fail);
    if (fail) goto oom;
    size_t n = strlen(r->url); /* no trailing slash: paths are appended */
    while (n > 0 && r->url[n - 1] == '/')
        r->url[--n] = '\0';
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 5000;
    if (!(r->h = curl_easy_init())) {
        kp_errf(err, errlen, "curl_easy_init failed");
        goto err;
    }
    return r;
oom:
    kp_errf(err, errlen, "out of memory");
err:
    kp_sreg_free(r);
    return NULL;
}

int kp_sreg_open(const kp_config *c, kp_sreg **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!c->schemas_registry[0]) return 0;
    const kp_sreg_opts o = {c->schemas_registry,           c->schemas_registry_user,
                            c->schemas_registry_password,  c->schemas_registry_ca,
                            c->schemas_registry_cert,      c->schemas_registry_key,
                            c->schemas_registry_timeout_ms};
    return (*out = kp_sreg_new(&o, err, errlen)) ? 0 : -1;
}

void kp_sreg_free(kp_sreg *r)
{
    if (!r) return;
    if (r->h) curl_easy_cleanup(r->h);
    free(r->url), free(r->user), free(r->password), free(r->ca_file), free(r->cert), free(r->key);
    free(r);
}

/* ---- one request ---------------------------------------------------------------------------- */

typedef struct {
    char *b;
    size_t n, cap;
    int too_big;
} reply;

static size_t on_data(char *p, size_t sz, size_t nm, void *ud)
{
    reply *rp = ud;
    size_t n = sz * nm;
    if (rp->n + n + 1 > KP_SREG_MAX_REPLY) {
        rp->too_big = 1;
        return 0;
    }
    if (rp->n + n + 1 > rp->cap) {
        size_t nc = rp->cap ? rp->cap * 2 : 4096;
        while (nc < rp->n + n + 1)
            nc *= 2;
        char *nb = realloc(rp->b, nc);
        if (!nb) return 0;
        rp->b = nb, rp->cap = nc;
    }
    memcpy(rp->b + rp->n, p, n);
    rp->n += n;
    rp->b[rp->n] = '\0';
    return n;
}

/* method GET (body NULL) or POST body to url + path. Returns the HTTP status (> 0) with the reply
 * body in *out, *outlen bytes (NULL when empty; free() it), or 0 when no HTTP answer came (reason
 * in err). */
static long request(kp_sreg *r, const char *path, const char *body, char **out, size_t *outlen,
                    char *err, size_t errlen)
{
    CURL *h = r->h;
    reply rp = {0};
    struct curl_slist *hdr = NULL;
    long status = 0;
    char *url = NULL;
    size_t ul = strlen(r->url) + strlen(path) + 1;
    *out = NULL, *outlen = 0;
    if (!(url = malloc(ul))) {
        kp_errf(err, errlen, "out of memory");
        return 0;
    }
    snprintf(url, ul, "%s%s", r->url, path);
    curl_easy_reset(h);
    hdr = curl_slist_append(hdr, "Accept: application/vnd.schemaregistry.v1+json, "
                                 "application/json");
    if (body) hdr = curl_slist_append(hdr, "Content-Type: application/vnd.schemaregistry.v1+json");
    curl_easy_setopt(h, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)r->timeout_ms);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &rp);
    if (body) curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    if (r->user) {
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(h, CURLOPT_USERNAME, r->user);
        curl_easy_setopt(h, CURLOPT_PASSWORD, r->password ? r->password : "");
    }
    if (r->ca_file) curl_easy_setopt(h, CURLOPT_CAINFO, r->ca_file);
    if (r->cert) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, r->cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, r->key);
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        kp_errf(err, errlen, "schema registry %s: %s", r->url,
                rp.too_big ? "reply too large" : curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
        char m[512];
        kp_sreg_reply_message(rp.b, rp.n, m, sizeof m);
        kp_errf(err, errlen, "schema registry %s%s: HTTP %ld%s%s", r->url, path, status,
                m[0] ? ": " : "", m);
    }
    *out = rp.b, *outlen = rp.n;
    rp.b = NULL;
out:
    curl_slist_free_all(hdr);
    free(rp.b);
    free(url);
    return status;
}

/* What an HTTP status other than 200 means to the caller. */
static kp_sreg_rc status_rc(long status)
{
    if (status == 404 || status == 409 || status == 422 || status == 400) return KP_SREG_REFUSED;
    return KP_SREG_RETRY; /* no answer, 5xx, 401/403 (a setting to fix), anything else */
}

/* ---- the calls ------------------------------------------------------------------------------ */

kp_sreg_rc kp_sreg_fetch(kp_sreg *r, int32_t id, char **json, size_t *len, char *err, size_t errlen)
{
    char path[64], *body = NULL;
    size_t n = 0;
    if (!r || !json || !len) return KP_SREG_ERROR;
    *json = NULL, *len = 0;
    snprintf(path, sizeof path, "/schemas/ids/%u", (unsigned)(uint32_t)id);
    long st = request(r, path, NULL, &body, &n, err, errlen);
    kp_sreg_rc rc = st != 200 ? (st ? status_rc(st) : KP_SREG_RETRY)
                              : kp_sreg_reply_schema(body, n, id, json, len, err, errlen);
    free(body);
    return rc;
}

/* POST {"schema": json} to path; the "id" of the reply into *id, the HTTP status into *status
 * (0 when none came). */
static kp_sreg_rc post_schema_status(kp_sreg *r, const char *path, const char *json, int32_t *id,
                                     long *status, char *err, size_t errlen)
{
    json_t *req = json_pack("{s:s}", "schema", json);
    char *reply = NULL;
    size_t rlen = 0;
    char *body = req ? json_dumps(req, JSON_COMPACT) : NULL;
    kp_sreg_rc rc = KP_SREG_RETRY;
    json_decref(req);
    if (!body) {
        kp_errf(err, errlen, "out of memory");
        return KP_SREG_ERROR;
    }
    long st = request(r, path, body, &reply, &rlen, err, errlen);
    free(body);
    *status = st;
    if (st != 200)
        rc = st ? status_rc(st) : KP_SREG_RETRY;
    else
        rc = kp_sreg_reply_id(reply, rlen, path, id, err, errlen);
    free(reply);
    return rc;
}

static kp_sreg_rc post_schema(kp_sreg *r, const char *path, const char *json, int32_t *id,
                              char *err, size_t errlen)
{
    long st;
    return post_schema_status(r, path, json, id, &st, err, errlen);
}

kp_sreg_rc kp_sreg_register(kp_sreg *r, const char *subject, const char *json, int32_t *id,
                            char *err, size_t errlen)
{
    if (!r || !subject || !json || !id) return KP_SREG_ERROR;
    char *esc = curl_easy_escape(r->h, subject, 0);
    size_t pl = (esc ? strlen(esc) : 0) + 32;
    char *path = esc ? malloc(pl) : NULL;
    kp_sreg_rc rc = KP_SREG_ERROR;
    if (!path) {
        kp_errf(err, errlen, "out of memory");
        goto out;
    }
    snprintf(path, pl, "/subjects/%s", esc);
    rc = post_schema(r, path, json, id, err, errlen); /* already there? (read-only rights do) */
    if (rc == KP_SREG_REFUSED) {
        snprintf(path, pl, "/subjects/%s/versions", esc);
        long st = 0;
        rc = post_schema_status(r, path, json, id, &st, err, errlen);
        if (rc == KP_SREG_REFUSED && st == 409) {
            /* Apicurio answers 409 "artifact already exists" when the subject was created since
             * the lookup (by another producer, or by our own earlier request that timed out):
             * look it up again. Incompatible stays refused (the lookup says 404 again). */
            char e2[256];
            snprintf(path, pl, "/subjects/%s", esc);
            if (post_schema(r, path, json, id, e2, sizeof e2) == KP_SREG_OK) rc = KP_SREG_OK;
        }
    }
out:
    free(path);
    curl_free(esc);
    return rc;
}

kp_sreg_rc kp_sreg_resolve(kp_sreg *r, kp_codec *c, const void *payload, size_t len, char *err,
                           size_t errlen)
{
    int32_t id;
    char *json = NULL;
    size_t n;
    if (!r || !c) return KP_SREG_ERROR;
    kp_codec_use_registry(c);
    if (kp_wire_schema_id(payload, len, &id, NULL, 0) || kp_codec_knows(c, id)) return KP_SREG_OK;
    int64_t now = kp_mono_ms();
    for (int i = 0; i < KP_SREG_NEG; i++)
        if (r->neg[i].id == id && r->neg[i].until_ms > now) {
            kp_errf(err, errlen, "schema id %u is not in the registry", (unsigned)(uint32_t)id);
            return KP_SREG_REFUSED;
        }
    kp_sreg_rc rc = kp_sreg_fetch(r, id, &json, &n, err, errlen);
    if (rc == KP_SREG_OK && kp_codec_add_schema(c, id, json, n, err, errlen)) rc = KP_SREG_REFUSED;
    if (rc == KP_SREG_REFUSED) {
        r->neg[r->nneg] = (neg_id){id, now + KP_SREG_NEG_TTL_MS};
        r->nneg = (r->nneg + 1) % KP_SREG_NEG;
    }
    free(json);
    return rc;
}

kp_sreg_rc kp_sreg_use_writer(kp_sreg *r, kp_codec *c, const char *topic, int32_t builtin_id,
                              int wait_ms, const atomic_int *stop, int32_t *wire_id, char *err,
                              size_t errlen)
{
    const char *json = NULL;
    char subject[512];
    int32_t id = 0;
    for (int i = 0; i < kp_codec_builtin_count(); i++) {
        int32_t bid;
        const char *js;
        if (!kp_codec_builtin_info(i, &bid, NULL, &js) && bid == builtin_id) json = js;
    }
    if (!r || !c || !topic || !json) {
        kp_errf(err, errlen, "schema id %d is not built in", (int)builtin_id);
        return KP_SREG_ERROR;
    }
    if ((size_t)snprintf(subject, sizeof subject, "%s-value", topic) >= sizeof subject) {
        kp_errf(err, errlen, "topic name too long");
        return KP_SREG_ERROR;
    }
    kp_codec_use_registry(c);
    int64_t deadline = kp_mono_ms() + wait_ms;
    int backoff = 250;
    kp_sreg_rc rc;
    while ((rc = kp_sreg_register(r, subject, json, &id, err, errlen)) == KP_SREG_RETRY &&
           kp_mono_ms() + backoff <= deadline && !(stop && atomic_load(stop))) {
        struct timespec ts = {backoff / 1000, (long)(backoff % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        backoff = backoff * 2 > 5000 ? 5000 : backoff * 2;
    }
    if (rc != KP_SREG_OK) return rc;
    if (kp_codec_set_wire_id(c, builtin_id, id, err, errlen)) return KP_SREG_REFUSED;
    if (wire_id) *wire_id = id;
    return KP_SREG_OK;
}
