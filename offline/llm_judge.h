/* llm_judge: the LLM teacher's HTTP client. Judges (item, keyphrase) pairs through an
 * OpenAI-compatible endpoint (vLLM, llama.cpp's server, OpenAI ...):
 *
 *   POST {base_url}/chat/completions   {"model", "messages": [system, user], "temperature": 0,
 *                                       "response_format": json_object | json_schema | (none)}
 *   answer: choices[0].message.content must be a JSON object {"grade": G}, G an integer in
 *   [grade_min, grade_max] (other keys are allowed; anything else is malformed).
 *
 *   POST {base_url}/embeddings         (soft teacher, kp_llm_config.embeddings) {"model",
 *                                       "input": [title, keyphrase]}: the grade is the cosine of
 *                                       the two embeddings, clamped to [0, 1], mapped linearly
 *                                       onto [grade_min, grade_max] (a real number).
 *
 * Retries: a transport error (timeout, refused connection), HTTP 408/429/5xx and a malformed
 * answer are retried up to `retries` times with exponential backoff and jitter (429: at least the
 * Retry-After seconds); other HTTP errors fail the pair at once, and 401/403/404 are fatal (the
 * run stops: every other pair would fail the same way). A rate limiter (requests/s, shared by all
 * threads) spaces every attempt, retries included.
 *
 * Secrets: the API key goes only into the Authorization header; it never appears in an error
 * message, a reason or a log line (server text quoted in a reason has it replaced by "***").
 *
 * No Kafka, no Avro: this is offline/ code (libcurl + jansson). */
#ifndef KP_LLM_JUDGE_H
#define KP_LLM_JUDGE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    KP_LLM_RF_JSON_OBJECT = 0, /* "response_format": {"type": "json_object"} */
    KP_LLM_RF_JSON_SCHEMA = 1, /* "response_format": {"type": "json_schema", ...grade schema} */
    KP_LLM_RF_NONE = 2         /* no response_format (servers that do not have it) */
} kp_llm_rf;

typedef struct {
    const char *base_url;  /* e.g. "http://127.0.0.1:8000/v1" (no trailing "/chat/...") */
    const char *model;     /* model name sent to the server */
    const char *api_key;   /* NULL or "" = no Authorization header; never printed */
    const char *tmpl_text; /* prompt template (see kp_llm_template_parse); NULL = built-in */
    kp_llm_rf response_format;
    int grade_min, grade_max; /* the grade scale, grade_min < grade_max */
    int timeout_ms;           /* whole request (connect + transfer) */
    int retries;              /* retries per pair after the first attempt */
    int backoff_ms;           /* first retry delay; doubles per retry up to backoff_max_ms */
    int backoff_max_ms;
    double rate;    /* requests per second over all threads; <= 0 = unlimited */
    int embeddings; /* 1 = use the embeddings endpoint instead of chat completions */
    uint64_t seed;  /* jitter seed */
} kp_llm_config;

/* Defaults: base_url http://127.0.0.1:8000/v1, model "default", json_object, grades 1:3,
 * timeout 30000 ms, 5 retries, backoff 500..30000 ms, no rate limit, chat, seed 1. */
void kp_llm_config_default(kp_llm_config *c);

/* ---- prompt template ---- */

/* The built-in template (system part, "---" line, user part). */
extern const char kp_llm_default_template[];

/* A parsed template: the system and user message texts, with placeholders still in them. */
typedef struct {
    char *system; /* "" when the template has no system part */
    char *user;
} kp_llm_template;

/* Values of the placeholders. Strings are borrowed. */
typedef struct {
    const char *title, *keyphrase, *item_id, *keyphrase_id;
    int grade_min, grade_max;
} kp_llm_vars;

/* Parses a template text: the lines before the first line that is exactly "---" are the system
 * message, the rest the user message (no "---" line: all of it is the user message, and there is
 * no system message). Placeholders {title} {keyphrase} {item_id} {keyphrase_id} {grade_min}
 * {grade_max} are checked here: "{" followed by lowercase letters/underscores and "}" must be one
 * of them ("{"grade": G}" and other braces are literal text). Errors: text NULL, an unknown
 * placeholder, a user message without {keyphrase} or without {title}, out of memory; *out is then
 * zeroed. The caller owns *out (kp_llm_template_free). */
int kp_llm_template_parse(const char *text, kp_llm_template *out, char *err, size_t errlen);

/* Frees what *t owns and zeroes it. Accepts NULL. */
void kp_llm_template_free(kp_llm_template *t);

/* Fills one message text: returns a new malloc'd string with every placeholder replaced by its
 * value (NULL values count as ""). NULL on out of memory or a NULL argument, or an unknown
 * placeholder (which kp_llm_template_parse has ruled out). */
char *kp_llm_fill(const char *text, const kp_llm_vars *v);

/* ---- requests and answers (pure; exposed for tests) ---- */

/* JSON body of a chat-completions request (model, messages, temperature 0, response_format as
 * configured; the system message is left out when system is ""). NULL on OOM. Caller frees. */
char *kp_llm_chat_request(const kp_llm_config *c, const char *system, const char *user);

/* JSON body of an embeddings request for the two texts. NULL on OOM. Caller frees. */
char *kp_llm_embeddings_request(const kp_llm_config *c, const char *a, const char *b);

/* Strict grade parser: content must be exactly one JSON object (white space around it allowed,
 * nothing else) with a member "grade" that is an integer, or a real with an integral value, in
 * [gmin, gmax]. Sets *grade and returns 0; otherwise -1 with the reason in err ("not a JSON
 * object: ...", "no \"grade\" member", "\"grade\" is a string, not a number", "grade 7 is
 * outside 1:3", "grade 2.5 is not an integer"). */
int kp_llm_parse_grade(const char *content, int gmin, int gmax, int *grade, char *err,
                       size_t errlen);

/* Parses a chat-completions response body: sets *content to a new malloc'd copy of
 * choices[0].message.content (caller frees) and *tokens to usage.total_tokens (0 when absent).
 * Returns 0, or -1 with the reason in err (not JSON, no choices, content not a string). */
int kp_llm_parse_chat_response(const char *body, char **content, long *tokens, char *err,
                               size_t errlen);

/* Parses an embeddings response body (data[0].embedding, data[1].embedding: equal-length
 * non-empty number arrays) into their cosine similarity *cosine, *tokens as above. Returns 0, or
 * -1 with the reason in err (including a zero vector). */
int kp_llm_parse_embeddings_response(const char *body, double *cosine, long *tokens, char *err,
                                     size_t errlen);

/* Delay before retry number `retry` (0 = the first retry): d = min(max_ms, base_ms * 2^retry),
 * returned as d/2 + uniform[0, d/2] ("equal jitter"), drawn from *rng (xorshift64, advanced;
 * must be non-zero). */
int kp_llm_backoff_ms(int retry, int base_ms, int max_ms, uint64_t *rng);

/* Retry-After header value: delay-seconds (an integer >= 0) -> ms, capped at 600 s. Returns -1 for
 * anything else (HTTP dates are not supported: the caller falls back to its backoff). */
long kp_llm_retry_after_ms(const char *value);

/* What to do after an attempt that ended with HTTP status `status` (0 = transport error). */
typedef enum { KP_LLM_OK = 0, KP_LLM_RETRY = 1, KP_LLM_FAIL = 2, KP_LLM_FATAL = 3 } kp_llm_verdict;
kp_llm_verdict kp_llm_classify_status(long status);

/* ---- the judge ---- */

typedef struct kp_llm_judge kp_llm_judge;

/* One pair to judge. Strings are borrowed for the duration of kp_llm_run. */
typedef struct {
    const char *item_id, *title, *keyphrase_id, *keyphrase;
} kp_llm_pair;

/* The outcome of one pair. */
typedef struct {
    int ok;           /* 1: judged, grade set; 0: failed, reason set */
    double grade;     /* in [grade_min, grade_max] (an integer unless embeddings) */
    int attempts;     /* requests sent for this pair */
    long tokens;      /* usage.total_tokens summed over its attempts */
    int fatal;        /* the failure stops the run (401/403/404) */
    char reason[320]; /* why it failed: the last attempt's error */
} kp_llm_result;

/* Creates a judge for c (copied, strings too) and parses its template. Calls
 * curl_global_init once per process (so create the first judge before starting threads).
 * Errors: bad config (grade scale, timeout, base_url empty), template errors, OOM; NULL with err.
 * The caller owns the judge (kp_llm_judge_free). */
kp_llm_judge *kp_llm_judge_new(const kp_llm_config *c, char *err, size_t errlen);

/* Frees the judge. Accepts NULL. */
void kp_llm_judge_free(kp_llm_judge *j);

/* Called on the thread that called kp_llm_run, once per finished pair (i its index in pairs). */
typedef void (*kp_llm_result_fn)(void *ctx, int i, const kp_llm_result *r);
/* Called on that thread about every 100 ms while waiting (e.g. to poll a Kafka producer). */
typedef void (*kp_llm_tick_fn)(void *ctx);

/* Judges pairs[0 .. n) with `concurrency` threads (each its own connection), reporting every
 * finished pair through on_result (never concurrently). Stops taking new pairs when *stop becomes
 * non-zero (stop may be NULL) or a result is fatal; pairs in flight then finish (a backoff wait
 * is cut short and reports the pair failed: "interrupted"). Returns 0 when every pair was
 * reported, or -1 with the reason in err when the run stopped early (fatal error, *stop, or
 * threads that could not start). */
int kp_llm_run(kp_llm_judge *j, const kp_llm_pair *pairs, int n, int concurrency,
               volatile sig_atomic_t *stop, kp_llm_result_fn on_result, kp_llm_tick_fn tick,
               void *ctx, char *err, size_t errlen);

/* Requests sent so far by j (all threads, retries included). */
long kp_llm_requests(const kp_llm_judge *j);

#endif /* KP_LLM_JUDGE_H */
