/* llm_request.c -- the LLM teacher's requests and answers: the prompt template, request bodies,
 * response parsing, retry policy (backoff, Retry-After, status classes). No network: the judge
 * that sends them is offline/llm_judge.c. */
#include "offline/llm_judge.h"

#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "offline/llm_internal.h"

const char kp_llm_default_template[] =
    "You are a relevance judge for search advertising on an e-commerce marketplace. An advertiser "
    "bids on keyphrases (buyer search queries); a keyphrase is relevant to a listing when a buyer "
    "who searches for it would want to see that listing.\n"
    "---\n"
    "Item title: {title}\n"
    "Keyphrase: {keyphrase}\n"
    "\n"
    "How relevant is the keyphrase to the item? Grade it from {grade_min} (irrelevant) to "
    "{grade_max} (highly relevant). Answer with a JSON object only, exactly like {\"grade\": G} "
    "where G is an integer from {grade_min} to {grade_max}.";

/* The defaults of kp_llm_config_default; every other field 0 (NULL). */
static const kp_llm_config llm_defaults = {
    .base_url = "http://127.0.0.1:8000/v1",
    .model = "default",
    .response_format = KP_LLM_RF_JSON_OBJECT,
    .grade_min = 1,
    .grade_max = 3,
    .timeout_ms = 30000,
    .retries = 5,
    .backoff_ms = 500,
    .backoff_max_ms = 30000,
    .seed = 1,
};

void kp_llm_config_default(kp_llm_config *c)
{
    *c = llm_defaults;
}

/* ---- template ---- */

enum { V_TITLE, V_KEYPHRASE, V_ITEM_ID, V_KEYPHRASE_ID, V_GRADE_MIN, V_GRADE_MAX, V_N };
static const char *const var_names[V_N] = {"title",        "keyphrase", "item_id",
                                           "keyphrase_id", "grade_min", "grade_max"};

/* If s[0] == '{' starts a placeholder "{name}", returns the name's length (> 0) and its index
 * in *var (-1 when the name is unknown); else 0 (literal text). */
static size_t placeholder_at(const char *s, int *var)
{
    if (s[0] != '{') return 0;
    size_t k = 1;
    while (islower((unsigned char)s[k]) || s[k] == '_')
        k++;
    if (k == 1 || s[k] != '}') return 0;
    *var = -1;
    for (int v = 0; v < V_N; v++)
        if (strlen(var_names[v]) == k - 1 && !strncmp(s + 1, var_names[v], k - 1)) *var = v;
    return k - 1;
}

/* Checks the placeholders of text; sets seen[v] for those present. */
static int check_placeholders(const char *text, int *seen, const char *part, char *err,
                              size_t errlen)
{
    for (const char *p = text; *p; p++) {
        int var;
        size_t len = placeholder_at(p, &var);
        if (!len) continue;
        if (var < 0) {
            kp_errf(err, errlen,
                    "template: unknown placeholder {%.*s} in the %s message (known: "
                    "{title} {keyphrase} {item_id} {keyphrase_id} {grade_min} {grade_max})",
                    (int)len, p + 1, part);
            return -1;
        }
        seen[var] = 1;
        p += len + 1;
    }
    return 0;
}

static char *dup_range(const char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = 0;
    return s;
}

/* Drops trailing '\n' / '\r'. */
static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = 0;
}

int kp_llm_template_parse(const char *text, kp_llm_template *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text) {
        kp_errf(err, errlen, "template: no text");
        return -1;
    }
    /* find a line that is exactly "---" */
    const char *sep = NULL, *after = NULL;
    for (const char *line = text; *line;) {
        const char *nl = strchr(line, '\n');
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        size_t l = len && line[len - 1] == '\r' ? len - 1 : len;
        if (l == 3 && !strncmp(line, "---", 3)) {
            sep = line;
            after = nl ? nl + 1 : line + len;
            break;
        }
        if (!nl) break;
        line = nl + 1;
    }
    if (sep) {
        out->system = dup_range(text, (size_t)(sep - text));
        out->user = strdup(after);
    } else {
        out->system = strdup("");
        out->user = strdup(text);
    }
    if (!out->system || !out->user) {
        kp_errf(err, errlen, "out of memory");
        goto err;
    }
    chomp(out->system);
    chomp(out->user);
    int seen_sys[V_N] = {0}, seen[V_N] = {0};
    if (check_placeholders(out->system, seen_sys, "system", err, errlen) ||
        check_placeholders(out->user, seen, "user", err, errlen))
        goto err;
    if (!seen[V_TITLE] || !seen[V_KEYPHRASE]) {
        kp_errf(err, errlen, "template: the user message must contain {title} and {keyphrase}");
        goto err;
    }
    return 0;
err:
    kp_llm_template_free(out);
    return -1;
}

void kp_llm_template_free(kp_llm_template *t)
{
    if (!t) return;
    free(t->system);
    free(t->user);
    memset(t, 0, sizeof *t);
}

char *kp_llm_fill(const char *text, const kp_llm_vars *v)
{
    if (!text || !v) return NULL;
    buf b = {0};
    buf_add(&b, "", 0);
    char num[2][24];
    snprintf(num[0], sizeof num[0], "%d", v->grade_min);
    snprintf(num[1], sizeof num[1], "%d", v->grade_max);
    const char *val[V_N] = {v->title, v->keyphrase, v->item_id, v->keyphrase_id, num[0], num[1]};
    const char *lit = text, *p = text;
    while (*p) {
        int var;
        size_t len = placeholder_at(p, &var);
        if (!len) {
            p++;
            continue;
        }
        if (var < 0) {
            free(b.p);
            return NULL;
        }
        buf_add(&b, lit, (size_t)(p - lit));
        const char *s = val[var] ? val[var] : "";
        buf_add(&b, s, strlen(s));
        p += len + 2;
        lit = p;
    }
    buf_add(&b, lit, (size_t)(p - lit));
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- requests and answers ---- */

char *kp_llm_chat_request(const kp_llm_config *c, const char *system, const char *user)
{
    char *s = NULL;
    json_t *msgs = json_array(), *req = NULL;
    if (!msgs) return NULL;
    if (system && system[0])
        json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", system));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", user));
    req = json_pack("{s:s, s:o, s:i}", "model", c->model, "messages", msgs, "temperature", 0);
    if (!req) return NULL; /* json_pack released msgs ("o") */
    if (c->response_format == KP_LLM_RF_JSON_OBJECT) {
        json_object_set_new(req, "response_format", json_pack("{s:s}", "type", "json_object"));
    } else if (c->response_format == KP_LLM_RF_JSON_SCHEMA) {
        json_t *schema =
            json_pack("{s:s, s:{s:{s:s, s:I, s:I}}, s:[s], s:b}", "type", "object", "properties",
                      "grade", "type", "integer", "minimum", (json_int_t)c->grade_min, "maximum",
                      (json_int_t)c->grade_max, "required", "grade", "additionalProperties", 0);
        json_object_set_new(req, "response_format",
                            json_pack("{s:s, s:{s:s, s:b, s:o}}", "type", "json_schema",
                                      "json_schema", "name", "relevance_grade", "strict", 1,
                                      "schema", schema));
    }
    s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return s;
}

char *kp_llm_embeddings_request(const kp_llm_config *c, const char *a, const char *b)
{
    json_t *req = json_pack("{s:s, s:[s, s]}", "model", c->model, "input", a, b);
    if (!req) return NULL;
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    return s;
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "a number";
    }
}

/* The "grade" member g as an integer in gmin..gmax (an integral real counts) into *grade: 0, or -1
 * with the reason in err. */
static int grade_value(const json_t *g, int gmin, int gmax, int *grade, char *err, size_t errlen)
{
    double v;
    if (json_is_integer(g)) {
        json_int_t iv = json_integer_value(g);
        if (iv < gmin || iv > gmax) {
            kp_errf(err, errlen, "grade %lld is outside %d:%d", (long long)iv, gmin, gmax);
            return -1;
        }
        v = (double)iv;
    } else if (json_is_real(g)) {
        v = json_real_value(g);
        if (v != floor(v)) {
            kp_errf(err, errlen, "grade %g is not an integer", v);
            return -1;
        }
        if (v < gmin || v > gmax) {
            kp_errf(err, errlen, "grade %g is outside %d:%d", v, gmin, gmax);
            return -1;
        }
    } else {
        kp_errf(err, errlen, "\"grade\" is %s, not a number", json_kind(g));
        return -1;
    }
    *grade = (int)v;
    return 0;
}

int kp_llm_parse_grade(const char *content, int gmin, int gmax, int *grade, char *err,
                       size_t errlen)
{
    if (!content) {
        kp_errf(err, errlen, "no content");
        return -1;
    }
    json_error_t je;
    /* Without JSON_DECODE_ANY the top level must be an object or an array; jansson rejects
     * anything after it but white space. */
    json_t *root = json_loads(content, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    if (!root) {
        kp_errf(err, errlen, "not a JSON object: %s (line %d column %d): '%.*s'", je.text, je.line,
                je.column, SNIPPET / 2, content);
        return -1;
    }
    if (!json_is_object(root)) {
        kp_errf(err, errlen, "not a JSON object but %s", json_kind(root));
        goto out;
    }
    json_t *g = json_object_get(root, "grade");
    if (!g) {
        kp_errf(err, errlen, "no \"grade\" member");
        goto out;
    }
    rc = grade_value(g, gmin, gmax, grade, err, errlen);
out:
    json_decref(root);
    return rc;
}

static long usage_tokens(json_t *root)
{
    json_t *u = json_object_get(root, "usage");
    json_t *t = json_object_get(u, "total_tokens");
    if (!json_is_integer(t)) {
        long n = 0;
        json_t *pt = json_object_get(u, "prompt_tokens"),
               *ct = json_object_get(u, "completion_tokens");
        if (json_is_integer(pt)) n += (long)json_integer_value(pt);
        if (json_is_integer(ct)) n += (long)json_integer_value(ct);
        return n;
    }
    return (long)json_integer_value(t);
}

/* The parsed body (the caller decrefs it) with *tokens = its usage, or NULL ("response is not
 * JSON") with *tokens = 0. */
static json_t *load_response(const char *body, long *tokens, char *err, size_t errlen)
{
    *tokens = 0;
    json_error_t je;
    json_t *root = body ? json_loads(body, 0, &je) : NULL;
    if (!root) {
        kp_errf(err, errlen, "response is not JSON");
        return NULL;
    }
    *tokens = usage_tokens(root);
    return root;
}

int kp_llm_parse_chat_response(const char *body, char **content, long *tokens, char *err,
                               size_t errlen)
{
    *content = NULL;
    json_t *root = load_response(body, tokens, err, errlen);
    if (!root) return -1;
    int rc = -1;
    json_t *ch = json_object_get(root, "choices");
    json_t *msg = json_object_get(json_array_get(ch, 0), "message");
    json_t *c = json_object_get(msg, "content");
    if (!json_is_array(ch) || !json_array_size(ch)) {
        kp_errf(err, errlen, "response has no choices");
    } else if (!json_is_string(c)) {
        kp_errf(err, errlen, "choices[0].message.content is %s, not a string",
                c ? json_kind(c) : "missing");
    } else if (!(*content = strdup(json_string_value(c)))) {
        kp_errf(err, errlen, "out of memory");
    } else {
        rc = 0;
    }
    json_decref(root);
    return rc;
}

int kp_llm_parse_embeddings_response(const char *body, double *cosine, long *tokens, char *err,
                                     size_t errlen)
{
    json_t *root = load_response(body, tokens, err, errlen);
    if (!root) return -1;
    int rc = -1;
    json_t *data = json_object_get(root, "data");
    json_t *e[2] = {NULL, NULL};
    for (size_t i = 0; i < json_array_size(data) && i < 2; i++) {
        json_t *d = json_array_get(data, i), *ix = json_object_get(d, "index");
        size_t at = json_is_integer(ix) ? (size_t)json_integer_value(ix) : i;
        if (at < 2) e[at] = json_object_get(d, "embedding");
    }
    size_t n = json_array_size(e[0]);
    if (json_array_size(data) != 2 || !json_is_array(e[0]) || !json_is_array(e[1]) || !n ||
        json_array_size(e[1]) != n) {
        kp_errf(err, errlen, "response has no two equal-length embeddings in data[]");
        goto out;
    }
    double dot = 0, na = 0, nb = 0;
    for (size_t k = 0; k < n; k++) {
        json_t *x = json_array_get(e[0], k), *y = json_array_get(e[1], k);
        if (!json_is_number(x) || !json_is_number(y)) {
            kp_errf(err, errlen, "embedding component %zu is not a number", k);
            goto out;
        }
        double a = json_number_value(x), b = json_number_value(y);
        dot += a * b, na += a * a, nb += b * b;
    }
    if (!(na > 0) || !(nb > 0) || !isfinite(dot)) {
        kp_errf(err, errlen, "zero or non-finite embedding");
        goto out;
    }
    *cosine = dot / (sqrt(na) * sqrt(nb));
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int kp_llm_backoff_ms(int retry, int base_ms, int max_ms, uint64_t *rng)
{
    double d = base_ms;
    for (int i = 0; i < retry && d < max_ms; i++)
        d *= 2;
    if (d > max_ms) d = max_ms;
    if (d < 0) d = 0;
    double u = (double)(xorshift(rng) >> 11) / 9007199254740992.0; /* [0, 1) */
    return (int)(d / 2 + u * (d / 2));
}

long kp_llm_retry_after_ms(const char *value)
{
    if (!value) return -1;
    while (*value == ' ' || *value == '\t')
        value++;
    char tmp[32];
    size_t n = strcspn(value, " \t\r\n");
    if (!n || n >= sizeof tmp) return -1;
    memcpy(tmp, value, n);
    tmp[n] = 0;
    long s;
    if (kp_parse_long(tmp, 0, 1000000000L, &s)) return -1;
    return s > 600 ? 600000L : s * 1000L;
}

kp_llm_verdict kp_llm_classify_status(long status)
{
    if (status >= 200 && status < 300) return KP_LLM_OK;
    if (status == 0 || status == 408 || status == 429 || status >= 500) return KP_LLM_RETRY;
    if (status == 401 || status == 403 || status == 404) return KP_LLM_FATAL;
    return KP_LLM_FAIL;
}
