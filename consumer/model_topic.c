#include "consumer/model_topic.h"

#include <dirent.h>
#include <inttypes.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const kp_model_reject_name[KP_MODEL_REJ_N] = {"ok",      "mac",     "malformed",
                                                          "version", "lineage", "payload"};

#define MAC_DOMAIN "kprec.model/1"

static const char *type_name(kp_model_rec t)
{
    return t == KP_MODEL_REC_DELTA        ? KP_MODEL_TYPE_DELTA
           : t == KP_MODEL_REC_CHECKPOINT ? KP_MODEL_TYPE_CHECKPOINT
                                          : "";
}

/* The header values of meta, as text, in MAC order. */
typedef struct {
    char version[24], lineage[24], base[24], blineage[24], chunk[32], size[24], ts[24];
} meta_text;

static void meta_format(const kp_model_meta *m, meta_text *t)
{
    snprintf(t->version, sizeof t->version, "%" PRIu64, m->version);
    snprintf(t->lineage, sizeof t->lineage, "%" PRIu64, m->lineage);
    snprintf(t->base, sizeof t->base, "%" PRIu64, m->type == KP_MODEL_REC_DELTA ? m->base : 0);
    snprintf(t->blineage, sizeof t->blineage, "%" PRIu64,
             m->type == KP_MODEL_REC_DELTA ? m->base_lineage : 0);
    snprintf(t->chunk, sizeof t->chunk, "%d/%d", m->index, m->count);
    snprintf(t->size, sizeof t->size, "%" PRIu64, m->type == KP_MODEL_REC_CHECKPOINT ? m->size : 0);
    snprintf(t->ts, sizeof t->ts, "%" PRId64, m->ts_ms);
}

int kp_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t len,
                   unsigned char out[KP_MODEL_MAC_LEN])
{
    static const unsigned char empty = 0;
    int rc = -1;
    size_t outl = 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (ctx && EVP_MAC_init(ctx, keylen ? key : &empty, keylen, params) &&
        EVP_MAC_update(ctx, len ? msg : &empty, len) &&
        EVP_MAC_final(ctx, out, &outl, KP_MODEL_MAC_LEN) && outl == KP_MODEL_MAC_LEN)
        rc = 0;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

static int lp_update(EVP_MAC_CTX *ctx, const void *p, size_t n)
{
    static const unsigned char empty = 0;
    unsigned char len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
    return EVP_MAC_update(ctx, len, 8) && EVP_MAC_update(ctx, n ? p : &empty, n);
}

int kp_model_mac(const char *hmac_key, const char *topic, const void *key, size_t keylen,
                 const kp_model_meta *meta, const void *val, size_t vallen,
                 unsigned char out[KP_MODEL_MAC_LEN])
{
    static const unsigned char empty = 0;
    meta_text t;
    meta_format(meta, &t);
    const char *type = type_name(meta->type);
    const char *fields[] = {MAC_DOMAIN, topic,      type,    t.version, t.lineage,
                            t.base,     t.blineage, t.chunk, t.size,    t.ts};
    int rc = -1, ok = 1;
    size_t outl = 0, klen = hmac_key ? strlen(hmac_key) : 0;
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end()};
    if (!ctx || !EVP_MAC_init(ctx, klen ? (const void *)hmac_key : &empty, klen, params)) goto out;
    ok = lp_update(ctx, fields[0], strlen(fields[0])) && lp_update(ctx, fields[1], strlen(topic)) &&
         lp_update(ctx, key, keylen);
    for (size_t i = 2; ok && i < sizeof fields / sizeof fields[0]; i++)
        ok = lp_update(ctx, fields[i], strlen(fields[i]));
    if (ok && lp_update(ctx, val, vallen) && EVP_MAC_final(ctx, out, &outl, KP_MODEL_MAC_LEN) &&
        outl == KP_MODEL_MAC_LEN)
        rc = 0;
out:
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return rc;
}

rd_kafka_headers_t *kp_model_headers(const kp_model_meta *meta, const char *hmac_key,
                                     const char *topic, const void *key, size_t keylen,
                                     const void *val, size_t vallen)
{
    unsigned char mac[KP_MODEL_MAC_LEN];
    meta_text t;
    if (kp_model_mac(hmac_key, topic, key, keylen, meta, val, vallen, mac)) return NULL;
    meta_format(meta, &t);
    rd_kafka_headers_t *h = rd_kafka_headers_new(10);
    if (!h) return NULL;
    rd_kafka_header_add(h, KP_MODEL_HDR_TYPE, -1, type_name(meta->type), -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_VERSION, -1, t.version, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_LINEAGE, -1, t.lineage, -1);
    if (meta->type == KP_MODEL_REC_DELTA) {
        rd_kafka_header_add(h, KP_MODEL_HDR_BASE, -1, t.base, -1);
        rd_kafka_header_add(h, KP_MODEL_HDR_BLINEAGE, -1, t.blineage, -1);
    }
    rd_kafka_header_add(h, KP_MODEL_HDR_CHUNK, -1, t.chunk, -1);
    if (meta->type == KP_MODEL_REC_CHECKPOINT)
        rd_kafka_header_add(h, KP_MODEL_HDR_SIZE, -1, t.size, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_TS, -1, t.ts, -1);
    rd_kafka_header_add(h, KP_MODEL_HDR_MAC, -1, mac, KP_MODEL_MAC_LEN);
    return h;
}

uint64_t kp_model_new_lineage(uint32_t gen)
{
    uint32_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1) r = (uint32_t)rand();
    uint64_t l = ((uint64_t)gen << 32) | r;
    return l ? l : 1;
}

const char *kp_model_hdr(rd_kafka_headers_t *h, const char *name, char *buf, size_t cap)
{
    const void *v;
    size_t sz;
    if (!h || rd_kafka_header_get_last(h, name, &v, &sz) || !v || sz >= cap) return NULL;
    memcpy(buf, v, sz);
    buf[sz] = 0;
    return buf;
}

/* A canonical unsigned decimal (no sign, no leading zero, no overflow). */
static int parse_u64(rd_kafka_headers_t *h, const char *name, uint64_t *out)
{
    char b[24];
    if (!kp_model_hdr(h, name, b, sizeof b) || !b[0] || (b[0] == '0' && b[1])) return -1;
    uint64_t v = 0;
    for (const char *p = b; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *out = v;
    return 0;
}

kp_model_reject kp_model_verify(const char *hmac_key, const char *topic, const void *key,
                                size_t keylen, rd_kafka_headers_t *h, const void *val,
                                size_t vallen, kp_model_meta *meta)
{
    char type[16], chunk[32], ts[24];
    const void *mv;
    size_t msz;
    kp_model_meta m;
    memset(&m, 0, sizeof m);
    if (!h || rd_kafka_header_get_last(h, KP_MODEL_HDR_MAC, &mv, &msz) || !mv ||
        msz != KP_MODEL_MAC_LEN)
        return KP_MODEL_REJ_MAC;
    if (!key || keylen != strlen(KP_MODEL_KEY) || memcmp(key, KP_MODEL_KEY, keylen))
        return KP_MODEL_REJ_MALFORMED;
    if (!kp_model_hdr(h, KP_MODEL_HDR_TYPE, type, sizeof type)) return KP_MODEL_REJ_MALFORMED;
    m.type = !strcmp(type, KP_MODEL_TYPE_DELTA)        ? KP_MODEL_REC_DELTA
             : !strcmp(type, KP_MODEL_TYPE_CHECKPOINT) ? KP_MODEL_REC_CHECKPOINT
                                                       : KP_MODEL_REC_OTHER;
    int n = 0;
    long long tsv = 0;
    if (m.type == KP_MODEL_REC_OTHER || parse_u64(h, KP_MODEL_HDR_VERSION, &m.version) ||
        parse_u64(h, KP_MODEL_HDR_LINEAGE, &m.lineage) ||
        !kp_model_hdr(h, KP_MODEL_HDR_CHUNK, chunk, sizeof chunk) ||
        sscanf(chunk, "%d/%d%n", &m.index, &m.count, &n) != 2 || chunk[n] ||
        !kp_model_hdr(h, KP_MODEL_HDR_TS, ts, sizeof ts) || sscanf(ts, "%lld%n", &tsv, &n) != 1 ||
        ts[n])
        return KP_MODEL_REJ_MALFORMED;
    m.ts_ms = tsv;
    if (m.type == KP_MODEL_REC_DELTA && (parse_u64(h, KP_MODEL_HDR_BASE, &m.base) ||
                                         parse_u64(h, KP_MODEL_HDR_BLINEAGE, &m.base_lineage)))
        return KP_MODEL_REJ_MALFORMED;
    if (m.type == KP_MODEL_REC_CHECKPOINT && parse_u64(h, KP_MODEL_HDR_SIZE, &m.size))
        return KP_MODEL_REJ_MALFORMED;
    unsigned char want[KP_MODEL_MAC_LEN];
    if (kp_model_mac(hmac_key, topic, key, keylen, &m, val, vallen, want) ||
        CRYPTO_memcmp(want, mv, KP_MODEL_MAC_LEN))
        return KP_MODEL_REJ_MAC;
    /* authentic from here on: what follows guards against a trainer's bug, not an attacker */
    if (m.count < 1 || m.count > KP_MODEL_MAX_CHUNKS || m.index < 0 || m.index >= m.count)
        return KP_MODEL_REJ_MALFORMED;
    if (!m.version || m.version == UINT64_MAX ||
        (m.type == KP_MODEL_REC_DELTA && m.version != m.base + 1))
        return KP_MODEL_REJ_VERSION;
    if (!m.lineage) return KP_MODEL_REJ_LINEAGE;
    if (m.type == KP_MODEL_REC_CHECKPOINT && (!m.size || m.size > ((uint64_t)1 << 40)))
        return KP_MODEL_REJ_MALFORMED;
    if (meta) *meta = m;
    return KP_MODEL_OK;
}

kp_model_reject kp_model_verify_msg(const char *hmac_key, const rd_kafka_message_t *m,
                                    kp_model_meta *meta)
{
    rd_kafka_headers_t *h = NULL;
    if (rd_kafka_message_headers(m, &h)) h = NULL;
    return kp_model_verify(hmac_key, rd_kafka_topic_name(m->rkt), m->key, m->key_len, h, m->payload,
                           m->len, meta);
}

kp_model_action kp_model_decide(uint64_t version, uint64_t lineage, const kp_model_meta *r)
{
    if (r->type == KP_MODEL_REC_CHECKPOINT) {
        if (r->version > version || (r->version == version && lineage == 0 && r->lineage))
            return KP_MODEL_APPLY;
        return KP_MODEL_OLD;
    }
    if (r->version <= version) return KP_MODEL_OLD;
    if (r->base == version && r->base_lineage == lineage && r->version == r->base + 1)
        return KP_MODEL_APPLY;
    return KP_MODEL_GAP;
}

int kp_model_checkpoint_path(const char *dir, uint64_t version, uint64_t lineage, char *out,
                             size_t cap)
{
    int n = snprintf(out, cap, "%s/be-v%" PRIu64 "-l%" PRIu64 ".kpm", dir, version, lineage);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* Parses be-v<V>-l<L>.kpm. 0, or -1 for another name. */
static int cache_name(const char *name, uint64_t *v, uint64_t *l)
{
    unsigned long long a, b;
    int n = 0;
    if (sscanf(name, "be-v%llu-l%llu.kpm%n", &a, &b, &n) != 2 || name[n]) return -1;
    *v = a, *l = b;
    return 0;
}

uint64_t kp_model_newest_checkpoint(const char *dir, char *out, size_t cap, uint64_t *lineage)
{
    uint64_t best = 0;
    DIR *d = dir[0] ? opendir(dir) : NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t v, l;
        if (!cache_name(e->d_name, &v, &l) && v > best) {
            best = v;
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            if (lineage) *lineage = l;
        }
    }
    closedir(d);
    return best;
}

static int cmp_u64_desc(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

int kp_model_cache_prune(const char *dir, int keep)
{
    uint64_t vs[4096];
    int n = 0, removed = 0;
    DIR *d = dir[0] ? opendir(dir) : NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        uint64_t v, l;
        if (!cache_name(e->d_name, &v, &l)) vs[n++] = v;
    }
    if (n <= keep) {
        closedir(d);
        return 0;
    }
    qsort(vs, (size_t)n, sizeof vs[0], cmp_u64_desc);
    uint64_t cut = vs[keep - 1]; /* the oldest kept */
    rewinddir(d);
    while ((e = readdir(d))) {
        uint64_t v, l;
        char path[4096];
        if (cache_name(e->d_name, &v, &l) || v >= cut) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        removed += remove(path) == 0;
    }
    closedir(d);
    return removed;
}
