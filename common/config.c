#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/util.h"

enum kp_key_type { T_STR, T_INT, T_DBL, T_LONG };

typedef struct {
    const char *section, *key;
    enum kp_key_type type;
    size_t off, size; /* offset in kp_config; size of a string buffer */
    const char *def;
    double lo, hi;       /* allowed range of numbers */
    const char *choices; /* a string key's allowed values, '|'-separated, or NULL: any */
} kp_key;

#define S(sec, k, field, d)                                                                        \
    {                                                                                              \
        sec, k, T_STR, offsetof(kp_config, field), sizeof(((kp_config *)0)->field), d, 0, 0, NULL  \
    }
#define E(sec, k, field, d, choices)                                                               \
    {                                                                                              \
        sec, k, T_STR, offsetof(kp_config, field), sizeof(((kp_config *)0)->field), d, 0, 0,       \
            choices                                                                                \
    }
#define I(sec, k, field, d, lo, hi)                                                                \
    {                                                                                              \
        sec, k, T_INT, offsetof(kp_config, field), 0, d, lo, hi, NULL                              \
    }
#define L(sec, k, field, d, lo, hi)                                                                \
    {                                                                                              \
        sec, k, T_LONG, offsetof(kp_config, field), 0, d, lo, hi, NULL                             \
    }
#define D(sec, k, field, d, lo, hi)                                                                \
    {                                                                                              \
        sec, k, T_DBL, offsetof(kp_config, field), 0, d, lo, hi, NULL                              \
    }

static const kp_key keys[] = {
    S("worker", "role", role, "serve"),
    I("worker", "batch_size", batch_size, "256", 1, 100000),
    I("worker", "batch_linger_ms", batch_linger_ms, "20", 0, 60000),
    I("worker", "overlap", overlap, "1", 0, 1),
    I("worker", "top_k", top_k, "20", 1, 1000),
    D("worker", "min_score", min_score, "-1", -1, 1),
    I("worker", "max_title_bytes", max_title_bytes, "1024", 1, 1 << 20),
    I("worker", "retry_backoff_ms", retry_backoff_ms, "100", 1, 600000),
    I("worker", "retry_backoff_max_ms", retry_backoff_max_ms, "5000", 1, 3600000),
    I("worker", "metrics_port", metrics_port, "0", 0, 65535),
    S("worker", "metrics_bind", metrics_bind, "127.0.0.1"),
    I("worker", "metrics_max_connections", metrics_max_connections, "32", 1, 1000),
    I("worker", "metrics_timeout_s", metrics_timeout_s, "10", 1, 3600),
    I("worker", "health_max_paused_s", health_max_paused_s, "60", 0, 86400000),
    I("worker", "health_max_stall_s", health_max_stall_s, "60", 0, 86400000),
    S("topics", "items", topic_items, "items.listed"),
    S("topics", "clicks", topic_clicks, "items.clicks"),
    S("topics", "judgments", topic_judgments, "relevance.judgments"),
    S("topics", "suggestions", topic_suggestions, "keyphrases.suggested"),
    S("topics", "model", topic_model, "kprec.model"),
    S("topics", "dlq", topic_dlq, "kprec.dlq"),
    S("topics", "shadow", topic_shadow, "keyphrases.shadow"),
    I("topics", "partitions", topic_partitions, "6", 1, 10000),
    S("topics", "inventory", topic_inventory, ""),
    S("redis", "host", redis_host, "127.0.0.1"),
    I("redis", "port", redis_port, "6379", 1, 65535),
    S("redis", "user", redis_user, ""),
    S("redis", "password", redis_password, ""),
    I("redis", "db", redis_db, "0", 0, 1000000),
    I("redis", "connect_timeout_ms", redis_connect_timeout_ms, "2000", 1, 600000),
    I("redis", "command_timeout_ms", redis_command_timeout_ms, "5000", 1, 600000),
    I("redis", "ttl_s", redis_ttl_s, "604800", 0, INT_MAX),
    S("redis", "prefix", redis_prefix, "kprec:"),
    I("redis", "title_ttl_s", redis_title_ttl_s, "2592000", 0, INT_MAX),
    S("redis", "cluster", redis_cluster, ""),
    I("redis", "cluster_wait_ms", redis_cluster_wait_ms, "1000", 0, 600000),
    S("model", "path", model_path, ""),
    S("model", "keyphrases", model_keyphrases, ""),
    L("model", "seed", model_seed, "42", 0, 9e15),
    I("model", "prefix_dim", model_prefix_dim, "0", 0, 4096),
    I("model", "ivf_nprobe", model_ivf_nprobe, "0", 0, 1 << 24),
    I("model", "ivf_nlist", model_ivf_nlist, "0", 0, 1 << 24),
    E("model", "ivf_first_pass", model_ivf_first_pass, "int8", "fp32|int8|bf16"),
    I("model", "ivf_rescore", model_ivf_rescore, "2", 1, 1000),
    I("model", "blas_threads", model_blas_threads, "1", 0, 256),
    I("model", "threads", model_threads, "1", 1, 2),
    I("model", "follow", model_follow, "1", 0, 1),
    I("model", "rebuild_ms", model_rebuild_ms, "1000", 0, 3600000),
    I("model", "reload_s", model_reload_s, "5", 0, 86400),
    S("model", "hmac_key", model_hmac_key, ""),
    I("model", "max_behind_s", model_max_behind_s, "600", 0, 86400000),
    S("model", "ce", model_ce, ""),
    I("model", "candidates", model_candidates, "0", 0, 100000),
    I("model", "hybrid", model_hybrid, "0", 0, 100000),
    S("model", "calibration", model_calibration, ""),
    D("model", "threshold", model_threshold, "0", 0, 1),
    S("model", "shadow", model_shadow, ""),
    S("model", "ab_candidate", model_ab_candidate, ""),
    I("model", "ab_weight", model_ab_weight, "0", 0, 100),
    S("train", "group", train_group, "kprec-train"),
    S("train", "checkpoint_dir", train_checkpoint_dir, ""),
    I("train", "checkpoint_keep", train_checkpoint_keep, "3", 1, 100000),
    S("train", "transactional_id", train_transactional_id, "kprec-trainer"),
    S("train", "teacher", train_teacher, ""),
    I("train", "batch_size", train_batch_size, "256", 1, 65536),
    I("train", "batch_linger_ms", train_batch_linger_ms, "200", 1, 600000),
    D("train", "lr", train_lr, "0.0005", 0, 1),
    D("train", "lr_emb", train_lr_emb, "0.005", 0, 10),
    D("train", "w_ctr", train_w_ctr, "1", 0, 1000),
    D("train", "w_bce", train_w_bce, "0", 0, 1000),
    D("train", "w_sr", train_w_sr, "1", 0, 1000),
    D("train", "w_distill", train_w_distill, "1", 0, 1000),
    I("train", "buffer", train_buffer, "65536", 1, 100000000),
    I("train", "negatives", train_negatives, "4", 0, 1000),
    I("train", "delta_steps", train_delta_steps, "20", 1, 1000000),
    I("train", "delta_ms", train_delta_ms, "5000", 10, 86400000),
    I("train", "checkpoint_every", train_checkpoint_every, "10", 1, 1000000),
    I("train", "resolve_timeout_ms", train_resolve_timeout_ms, "30000", 0, 86400000),
    I("train", "max_chunk", train_max_chunk, "900000", 4096, 100000000),
    I("train", "max_pending", train_max_pending, "20000", 1, 100000000),
    S("schemas", "dir", schemas_dir, ""),
    S("schemas", "registry", schemas_registry, ""),
    S("schemas", "registry_user", schemas_registry_user, ""),
    S("schemas", "registry_password", schemas_registry_password, ""),
    S("schemas", "registry_ca", schemas_registry_ca, ""),
    S("schemas", "registry_cert", schemas_registry_cert, ""),
    S("schemas", "registry_key", schemas_registry_key, ""),
    I("schemas", "registry_timeout_ms", schemas_registry_timeout_ms, "5000", 1, 600000),
    I("schemas", "registry_startup_wait_ms", schemas_registry_startup_wait_ms, "60000", 0,
      86400000),
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* 1 if v is one of the '|'-separated words of choices. */
static int one_of(const char *v, const char *choices)
{
    size_t n = strlen(v);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t m = e ? (size_t)(e - p) : strlen(p);
        if (m == n && !strncmp(p, v, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Stores v in c's field of k, checked against k's type and range. 0, or -1 with a message. */
static int set_key(kp_config *c, const kp_key *k, const char *v, char *err, size_t errlen)
{
    char *p = (char *)c + k->off;
    int64_t i;
    double d;
    switch (k->type) {
    case T_STR:
        if (strlen(v) >= k->size) {
            snprintf(err, errlen, "value of '%s' is too long (max %zu bytes)", k->key, k->size - 1);
            return -1;
        }
        if (k->choices && !one_of(v, k->choices)) {
            snprintf(err, errlen, "'%s' must be one of %s, got '%s'", k->key, k->choices, v);
            return -1;
        }
        memcpy(p, v, strlen(v) + 1);
        return 0;
    case T_INT:
    case T_LONG:
        if (kp_parse_i64(v, (int64_t)k->lo, (int64_t)k->hi, &i)) {
            snprintf(err, errlen, "'%s' must be an integer in [%.0f, %.0f], got '%s'", k->key,
                     k->lo, k->hi, v);
            return -1;
        }
        if (k->type == T_INT)
            *(int *)p = (int)i;
        else
            *(long *)p = (long)i;
        return 0;
    case T_DBL:
        if (kp_parse_double(v, k->lo, k->hi, &d)) {
            snprintf(err, errlen, "'%s' must be a number in [%g, %g], got '%s'", k->key, k->lo,
                     k->hi, v);
            return -1;
        }
        *(double *)p = d;
        return 0;
    }
    return -1;
}

void kp_config_defaults(kp_config *c)
{
    char err[512];
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NKEYS; i++)
        set_key(c, &keys[i], keys[i].def, err, sizeof err);
}

static int set_kafka(kp_config *c, const char *key, const char *value, char *err, size_t errlen)
{
    for (int i = 0; i < c->n_kafka; i++) {
        if (!strcmp(c->kafka_key[i], key)) {
            char *nv = strdup(value);
            if (!nv) goto oom;
            free(c->kafka_val[i]);
            c->kafka_val[i] = nv;
            return 0;
        }
    }
    if (c->n_kafka == KP_CONFIG_MAX_KAFKA) {
        snprintf(err, errlen, "too many [kafka] keys (max %d)", KP_CONFIG_MAX_KAFKA);
        return -1;
    }
    c->kafka_key[c->n_kafka] = strdup(key);
    c->kafka_val[c->n_kafka] = strdup(value);
    if (!c->kafka_key[c->n_kafka] || !c->kafka_val[c->n_kafka]) {
        free(c->kafka_key[c->n_kafka]);
        free(c->kafka_val[c->n_kafka]);
        goto oom;
    }
    c->n_kafka++;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

int kp_config_set(kp_config *c, const char *section, const char *key, const char *value, char *err,
                  size_t errlen)
{
    if (!strcasecmp(section, "kafka")) return set_kafka(c, key, value, err, errlen);
    int section_known = 0;
    for (size_t i = 0; i < NKEYS; i++) {
        if (strcasecmp(keys[i].section, section)) continue;
        section_known = 1;
        if (!strcasecmp(keys[i].key, key)) return set_key(c, &keys[i], value, err, errlen);
    }
    if (!section_known)
        snprintf(err, errlen, "unknown section [%s]", section);
    else
        snprintf(err, errlen, "unknown key '%s' in [%s]", key, section);
    return -1;
}

typedef struct {
    kp_config *c;
    char *err;
    size_t errlen;
    int failed;
} parse_ctx;

static int on_ini(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *ctx = user;
    if (ctx->failed) return 0;
    if (!name) return 1; /* a section header alone */
    if (!*section) {
        snprintf(ctx->err, ctx->errlen, "key '%s' outside any [section]", name);
        ctx->failed = 1;
        return 0;
    }
    if (kp_config_set(ctx->c, section, name, value ? value : "", ctx->err, ctx->errlen)) {
        ctx->failed = 1;
        return 0;
    }
    return 1;
}

/* inih's reader: fgets, but a line that does not fit inih's buffer (INI_MAX_LINE) is an error
 * instead of being cut in two (whose tail inih would parse as a line of its own). */
typedef struct {
    FILE *f;
    int line;     /* lines read */
    int too_long; /* line number of an over-long line, 0 if none */
    int max;      /* longest line that fits, without its line end */
} line_reader;

static char *read_line(char *str, int num, void *stream)
{
    line_reader *r = stream;
    if (r->too_long || !fgets(str, num, r->f)) return NULL;
    r->line++;
    size_t n = strlen(str);
    if (n + 1 == (size_t)num && str[n - 1] != '\n') {
        int ch = fgetc(r->f); /* a line of exactly num - 1 bytes at the end of the file fits */
        if (ch != EOF) {
            r->too_long = r->line;
            r->max = num - 2;
            return NULL;
        }
    }
    return str;
}

int kp_config_load(kp_config *c, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    int rc = kp_config_load_stream(c, f, path, err, errlen);
    fclose(f);
    return rc;
}

int kp_config_load_stream(kp_config *c, FILE *f, const char *path, char *err, size_t errlen)
{
    char msg[512] = "";
    parse_ctx ctx = {c, msg, sizeof msg, 0};
    line_reader lr = {f, 0, 0, KP_CONFIG_MAX_LINE};
    int line = ini_parse_stream(read_line, &lr, on_ini, &ctx);
    if (line == 0 && lr.too_long) {
        snprintf(err, errlen, "%s:%d: line longer than %d bytes", path, lr.too_long, lr.max);
        return -1;
    }
    if (line != 0) {
        if (!ctx.failed)
            snprintf(msg, sizeof msg, "syntax error (expected [section] or key = value)");
        snprintf(err, errlen, "%s:%d: %s", path, line, msg);
        return -1;
    }
    extern char **environ;
    if (kp_config_apply_env(c, environ, msg, sizeof msg)) {
        snprintf(err, errlen, "environment: %s", msg);
        return -1;
    }
    return 0;
}

int kp_config_apply_env(kp_config *c, char **envp, char *err, size_t errlen)
{
    static const char *sections[] = {"worker", "topics",  "redis", "model",
                                     "train",  "schemas", "kafka"};
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, "KPREC_", 6)) continue;
        const char *eq = strchr(e, '=');
        if (!eq) continue;
        for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
            size_t sl = strlen(sections[s]);
            if (strncasecmp(e + 6, sections[s], sl) || e[6 + sl] != '_') continue;
            const char *k = e + 6 + sl + 1;
            size_t kl = (size_t)(eq - k);
            char key[256];
            if (kl == 0 || kl >= sizeof key) break;
            for (size_t i = 0; i < kl; i++) {
                char ch = (char)tolower((unsigned char)k[i]);
                key[i] = (!strcmp(sections[s], "kafka") && ch == '_') ? '.' : ch;
            }
            key[kl] = 0;
            char msg[384];
            if (kp_config_set(c, sections[s], key, eq + 1, msg, sizeof msg)) {
                snprintf(err, errlen, "%.*s: %s", (int)(eq - e), e, msg);
                return -1;
            }
            break;
        }
    }
    return 0;
}

const char *kp_config_kafka(const kp_config *c, const char *key)
{
    for (int i = 0; i < c->n_kafka; i++)
        if (!strcmp(c->kafka_key[i], key)) return c->kafka_val[i];
    return NULL;
}

void kp_config_free(kp_config *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_kafka; i++) {
        free(c->kafka_key[i]);
        free(c->kafka_val[i]);
    }
    c->n_kafka = 0;
}

int kp_config_key_at(int i, const char **section, const char **key)
{
    if (i < 0 || (size_t)i >= NKEYS) return -1;
    *section = keys[i].section;
    *key = keys[i].key;
    return 0;
}

int kp_config_is_secret(const char *section, const char *key)
{
    /* Parts of a key name that make its value a secret: passwords of every kind (sasl.password,
     * ssl.key.password, ssl.keystore.password, [redis] password), client secrets
     * (sasl.oauthbearer.client.secret), credentials and private keys: ssl.key.pem, and
     * ssl_key, the name librdkafka's CONFIGURATION.md gives the private key set through its API. */
    static const char *const parts[] = {"password", "passwd",  "secret", "credential", "private",
                                        "key.pem",  "ssl_key", "hmac",   "jaas"};
    /* Whole keys: sasl.oauthbearer.config holds the unsecured JWT's claims (and may hold
     * credentials), sasl.oauthbearer.extensions the extension values sent to the broker. */
    static const char *const whole[] = {"sasl.oauthbearer.config", "sasl.oauthbearer.extensions"};
    (void)section;
    if (!key) return 0;
    char k[256];
    size_t n = strlen(key);
    if (n >= sizeof k) n = sizeof k - 1;
    for (size_t i = 0; i < n; i++)
        k[i] = (char)tolower((unsigned char)key[i]);
    k[n] = 0;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (strstr(k, parts[i])) return 1;
    for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
        if (!strcmp(k, whole[i])) return 1;
    return 0;
}

void kp_config_dump(const kp_config *c, FILE *f)
{
    const char *sec = "";
    for (size_t i = 0; i < NKEYS; i++) {
        const kp_key *k = &keys[i];
        const char *p = (const char *)c + k->off;
        if (strcmp(sec, k->section)) fprintf(f, "%s[%s]\n", i ? "\n" : "", sec = k->section);
        switch (k->type) {
        case T_STR:
            fprintf(f, "%s = %s\n", k->key,
                    (kp_config_is_secret(k->section, k->key) && *p) ? KP_CONFIG_REDACTED : p);
            break;
        case T_INT:
            fprintf(f, "%s = %d\n", k->key, *(const int *)p);
            break;
        case T_LONG:
            fprintf(f, "%s = %ld\n", k->key, *(const long *)p);
            break;
        case T_DBL:
            fprintf(f, "%s = %g\n", k->key, *(const double *)p);
            break;
        }
    }
    fprintf(f, "\n[kafka]\n");
    for (int i = 0; i < c->n_kafka; i++)
        fprintf(f, "%s = %s\n", c->kafka_key[i],
                kp_config_is_secret("kafka", c->kafka_key[i]) && *c->kafka_val[i]
                    ? KP_CONFIG_REDACTED
                    : c->kafka_val[i]);
}
