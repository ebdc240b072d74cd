/* kprec label: the LLM teacher. Judges (item, keyphrase) pairs nobody has judged through an
 * OpenAI-compatible endpoint (offline/llm_judge.h) and writes them as a judgments TSV (the format
 * of offline/datasets.h) and/or publishes them as Judgment records (source = llm).
 *
 * Pairs come from a TSV (--pairs) or are generated per item: BM25 candidates plus random
 * inventory keyphrases (never-shown pairs). The output file is the run's log: appended and
 * flushed line by line, so a re-run skips every pair already in it (a torn last line is cut). With
 * --publish a line is written only after its record's delivery report came back. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"
#include "model/bm25.h"
#include "offline/llm_judge.h"
#include "model/tsv.h"
#include "producer/producer.h"
#include "schemas/codec.h"

#define OUT_HEADER    "pair_id\tkeyphrase_id\titem_id\trelevance"
#define FAILED_HEADER "item_id\tkeyphrase_id\tattempts\treason"

static volatile sig_atomic_t label_stop, label_signals;

static void on_signal(int sig)
{
    (void)sig;
    label_signals++;
    label_stop = 1;
}

static void label_usage(FILE *f)
{
    kp_llm_config d;
    kp_llm_config_default(&d);
    fprintf(
        f,
        "usage: kprec label --items I --keyphrases K (--pairs P | --per-item N [--random M])\n"
        "                   [--out FILE] [-c CONFIG --publish [--topic T]] [--failed FILE]\n"
        "                   [--base-url URL] [--model NAME] [--api-key-env NAME]\n"
        "                   [--template FILE] [--response-format json_object|json_schema|none]\n"
        "                   [--grades MIN:MAX] [--timeout-ms MS] [--retries N] [--backoff-ms MS]\n"
        "                   [--rate R] [--concurrency N] [--limit N] [--seed S] [--embeddings]\n"
        "                   [--quiet]\n"
        "The LLM teacher: asks an OpenAI-compatible server (POST URL/chat/completions, "
        "temperature\n"
        "0) to grade each (item, keyphrase) pair; the answer must be a JSON object {\"grade\": "
        "G},\n"
        "G an integer in MIN:MAX (anything else is retried, then the pair fails).\n"
        "Inputs:\n"
        "  --items I, --keyphrases K  id<TAB>text tables with a header row (model/tsv.h)\n"
        "  --pairs P        pairs to judge: item_id<TAB>keyphrase_id, header row (extra columns\n"
        "                   ignored, duplicates judged once)\n"
        "  --per-item N     or, for every item, its N best BM25 keyphrases plus --random M\n"
        "                   random inventory keyphrases (seeded by --seed and the item id)\n"
        "  --template FILE  prompt: system message, a line \"---\", user message; placeholders\n"
        "                   {title} {keyphrase} {item_id} {keyphrase_id} {grade_min} {grade_max}\n"
        "                   (default: a built-in prompt)\n"
        "Outputs (at least one):\n"
        "  --out FILE       judgments TSV (pair_id keyphrase_id item_id relevance, the grade\n"
        "                   mapped onto 1..3); appended line by line: pairs already in FILE are\n"
        "                   skipped, so re-running after a crash continues where it stopped\n"
        "  --publish        Judgment records (source llm, score = grade mapped onto 0..1) to\n"
        "                   [topics] judgments of -c CONFIG (or --topic T), keyed by item id\n"
        "  --failed FILE    pairs that failed this run: item_id keyphrase_id attempts reason\n"
        "                   (rewritten each run; failures are also logged on stderr)\n"
        "Defaults: --base-url %s --model %s --api-key-env OPENAI_API_KEY (unset: no\n"
        "Authorization header; the key is never printed) --response-format json_object\n"
        "--grades %d:%d --timeout-ms %d --retries %d --backoff-ms %d (doubling, jittered, up to\n"
        "%d; 429 waits at least Retry-After) --rate 0 (unlimited requests/s) --concurrency 4\n"
        "--random 0 --limit 0 (all) --seed 1. --embeddings: POST URL/embeddings instead, the\n"
        "grade = cosine(title, keyphrase) clamped to [0, 1] mapped onto MIN:MAX.\n"
        "Example:\n"
        "  OPENAI_API_KEY=... kprec label --items items.tsv --keyphrases keyphrases.tsv \\\n"
        "      --per-item 20 --random 5 --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b \\\n"
        "      --out llm_judgments.tsv --failed failed.tsv --concurrency 8 --rate 20\n"
        "Exit status: 0 every pair judged (and delivered), 1 a pair failed, a delivery failed,\n"
        "a fatal HTTP error (401/403/404), interrupted or unreadable input, 2 usage error.\n",
        d.base_url, d.model, d.grade_min, d.grade_max, d.timeout_ms, d.retries, d.backoff_ms,
        d.backoff_max_ms);
}

/* ---- a set of (item row, keyphrase row) pairs ---- */

typedef struct {
    uint64_t *slot; /* key + 1, 0 = empty */
    size_t cap, n;
} pair_set;

static uint64_t pair_key(int item, int key)
{
    return ((uint64_t)(uint32_t)item << 32 | (uint32_t)key) + 1;
}

static size_t pair_hash(uint64_t k, size_t cap)
{
    return (size_t)(kp_fnv1a(&k, sizeof k) & (cap - 1));
}

/* Adds (item, key). Returns 1 if added, 0 if present, -1 on OOM. */
static int pair_set_add(pair_set *s, int item, int key)
{
    if ((s->n + 1) * 2 > s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        uint64_t *slot = calloc(cap, sizeof *slot);
        if (!slot) return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->slot[i]) {
                size_t h = pair_hash(s->slot[i], cap);
                while (slot[h])
                    h = (h + 1) & (cap - 1);
                slot[h] = s->slot[i];
            }
        free(s->slot);
        s->slot = slot, s->cap = cap;
    }
    uint64_t k = pair_key(item, key);
    size_t h = pair_hash(k, s->cap);
    for (; s->slot[h]; h = (h + 1) & (s->cap - 1))
        if (s->slot[h] == k) return 0;
    s->slot[h] = k;
    s->n++;
    return 1;
}

static int pair_set_has(const pair_set *s, int item, int key)
{
    if (!s->cap) return 0;
    uint64_t k = pair_key(item, key);
    for (size_t h = pair_hash(k, s->cap); s->slot[h]; h = (h + 1) & (s->cap - 1))
        if (s->slot[h] == k) return 1;
    return 0;
}

/* ---- the pairs to judge ---- */

typedef struct {
    int n, cap;
    int *item, *key;
} pair_list;

static int pair_list_add(pair_list *l, pair_set *seen, int item, int key)
{
    int r = pair_set_add(seen, item, key);
    if (r <= 0) return r;
    if (l->n == l->cap) {
        int cap = l->cap ? l->cap * 2 : 1024;
        int *it = realloc(l->item, sizeof(int) * (size_t)cap);
        if (!it) return -1;
        l->item = it;
        int *k = realloc(l->key, sizeof(int) * (size_t)cap);
        if (!k) return -1;
        l->key = k;
        l->cap = cap;
    }
    l->item[l->n] = item;
    l->key[l->n++] = key;
    return 1;
}

/* Reads item_id<TAB>keyphrase_id rows; unknown ids are counted in *unknown. */
static int pairs_load(const char *path, const kp_texts *items, const kp_texts *keys, pair_list *l,
                      pair_set *seen, long *unknown, char *err, size_t errlen)
{
    char *b = NULL;
    size_t len;
    int rc = -1;
    if (kp_tsv_read_all(path, &b, &len, err, errlen)) return -1;
    kp_tsv_lines it = {b, b + len, 0};
    char *line, *f[3];
    if (kp_tsv_skip_header(&it, path, NULL, err, errlen)) goto err;
    while ((line = kp_tsv_next_line(&it))) {
        if (!line[0]) continue;
        if (kp_tsv_split(line, f, 3) < 2) {
            kp_errf(err, errlen, "%s:%d: expected item_id<TAB>keyphrase_id", path, it.lineno);
            goto err;
        }
        int i = kp_texts_find(items, f[0]), k = kp_texts_find(keys, f[1]);
        if (i < 0 || k < 0) {
            (*unknown)++;
            continue;
        }
        if (pair_list_add(l, seen, i, k) < 0) {
            kp_errf(err, errlen, "out of memory");
            goto err;
        }
    }
    rc = 0;
err:
    free(b);
    return rc;
}

/* For every item: its n_bm25 best BM25 keyphrases, then n_random other random ones. */
static int pairs_generate(const kp_texts *items, const kp_texts *keys, int n_bm25, int n_random,
                          uint64_t seed, pair_list *l, pair_set *seen, char *err, size_t errlen)
{
    int rc = -1;
    kp_bm25 *bm = NULL;
    int *doc = NULL;
    float *score = NULL;
    if (n_bm25 > 0) {
        if (!(bm = kp_bm25_build((const char *const *)keys->text, keys->n, KP_BM25_K1, KP_BM25_B,
                                 err, errlen)))
            goto err;
        doc = malloc(sizeof *doc * (size_t)n_bm25);
        score = malloc(sizeof *score * (size_t)n_bm25);
        if (!doc || !score) goto oom;
    }
    int want_random = n_random < keys->n ? n_random : keys->n;
    for (int i = 0; i < items->n; i++) {
        int got = 0;
        if (n_bm25 > 0) {
            got = kp_bm25_topk(bm, items->text[i], n_bm25, doc, score);
            if (got < 0) goto oom;
            for (int r = 0; r < got; r++)
                if (pair_list_add(l, seen, i, doc[r]) < 0) goto oom;
        }
        uint64_t s = kp_fnv1a_step(kp_fnv1a_str(items->id[i]), seed) | 1;
        /* distinct random keyphrases not already among this item's candidates */
        for (int added = 0, tries = 0; added < want_random && tries < 64 * (want_random + 1);
             tries++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            int k = (int)(s % (uint64_t)keys->n);
            int r = pair_list_add(l, seen, i, k);
            if (r < 0) goto oom;
            added += r;
        }
    }
    rc = 0;
    goto err;
oom:
    kp_errf(err, errlen, "out of memory");
err:
    free(doc);
    free(score);
    kp_bm25_free(bm);
    return rc;
}

/* ---- resume ---- */

/* Opens the output for appending: creates it with its header, or reads the pairs already in it
 * into done (cutting a torn last line). */
static FILE *out_open(const char *path, const kp_texts *items, const kp_texts *keys, pair_set *done,
                      long *n_done, char *err, size_t errlen)
{
    char *b = NULL;
    size_t len = 0;
    FILE *f = NULL;
    struct stat st;
    *n_done = 0;
    if (stat(path, &st) == 0 && st.st_size > 0) {
        if (kp_tsv_read_all(path, &b, &len, err, errlen)) goto err;
        size_t keep = len;
        while (keep && b[keep - 1] != '\n')
            keep--;
        if (keep < len) {
            kp_warn("label: %s: cutting a torn last line (%zu bytes)", path, len - keep);
            if (truncate(path, (off_t)keep)) {
                kp_errf(err, errlen, "%s: cannot truncate: %s", path, strerror(errno));
                goto err;
            }
            b[keep] = 0;
            len = keep;
        }
        kp_tsv_lines it = {b, b + len, 0};
        char *line, *hdr, *fl[5];
        if (kp_tsv_skip_header(&it, path, &hdr, err, errlen)) goto err;
        if (strcmp(hdr, OUT_HEADER)) {
            kp_errf(err, errlen, "%s: not a judgments file (header is not \"%s\")", path,
                    "pair_id<TAB>keyphrase_id<TAB>item_id<TAB>relevance");
            goto err;
        }
        while ((line = kp_tsv_next_line(&it))) {
            if (!line[0]) continue;
            if (kp_tsv_split(line, fl, 5) != 4) {
                kp_errf(err, errlen, "%s:%d: expected 4 columns", path, it.lineno);
                goto err;
            }
            int i = kp_texts_find(items, fl[2]), k = kp_texts_find(keys, fl[1]);
            if (i >= 0 && k >= 0 && pair_set_add(done, i, k) < 0) {
                kp_errf(err, errlen, "out of memory");
                goto err;
            }
            (*n_done)++;
        }
        if (!(f = fopen(path, "ab"))) goto io;
    } else {
        if (!(f = fopen(path, "wb"))) goto io;
        if (fprintf(f, "%s\n", OUT_HEADER) < 0 || fflush(f)) goto io;
    }
    free(b);
    return f;
io:
    kp_errf(err, errlen, "%s: %s", path, strerror(errno));
err:
    if (f) fclose(f);
    free(b);
    return NULL;
}

/* ---- the run ---- */

/* A Judgment record waiting for its delivery report; o first: the producer's delivery callback
 * gets &o as the message opaque and sets o.state. */
typedef struct pending {
    kp_outmsg o;
    void *val;
    int pair, attempts;
    double grade;
    struct pending *next;
} pending;

typedef struct {
    const kp_texts *items, *keys;
    const kp_llm_pair *pairs;
    int gmin, gmax;
    FILE *out, *failed;
    const char *out_path;
    int io_error;
    /* publishing */
    kp_producer *prod;
    kp_codec *codec;
    const char *topic;
    pending *pend;
    long n_pending;
    /* counts */
    long judged, failed_pairs, delivered, delivery_failed, tokens, finished;
    kp_progress pr;
    char what[96];
} label_run;

static void write_failed(label_run *r, int i, int attempts, const char *reason)
{
    const kp_llm_pair *p = &r->pairs[i];
    kp_warn("label: pair (%s, %s) failed after %d attempt(s): %s", p->item_id, p->keyphrase_id,
            attempts, reason);
    if (r->failed && (fprintf(r->failed, "%s\t%s\t%d\t%s\n", p->item_id, p->keyphrase_id, attempts,
                              reason) < 0 ||
                      fflush(r->failed)))
        r->io_error = 1;
}

static void write_out(label_run *r, int i, double grade)
{
    if (!r->out) return;
    const kp_llm_pair *p = &r->pairs[i];
    char key[1024];
    snprintf(key, sizeof key, "%s\t%s", p->item_id, p->keyphrase_id);
    double rel = 1.0 + 2.0 * (grade - r->gmin) / (r->gmax - r->gmin);
    if (fprintf(r->out, "llm-%016" PRIx64 "\t%s\t%s\t%.6g\n", kp_fnv1a_str(key), p->keyphrase_id,
                p->item_id, rel) < 0 ||
        fflush(r->out)) {
        kp_error("label: %s: write failed: %s", r->out_path, strerror(errno));
        r->io_error = 1;
    }
}

/* Collects delivery reports: a delivered record's line goes to the output file. */
static void sweep(label_run *r)
{
    for (pending **pp = &r->pend; *pp;) {
        pending *e = *pp;
        if (e->o.state == KP_OUT_PENDING) {
            pp = &e->next;
            continue;
        }
        if (e->o.state == KP_OUT_DONE) {
            r->delivered++;
            r->judged++;
            write_out(r, e->pair, e->grade);
        } else {
            r->delivery_failed++;
            write_failed(r, e->pair, e->attempts,
                         "judged, but its Judgment record was not "
                         "delivered (see the producer's warning)");
        }
        *pp = e->next;
        free(e->val);
        free(e);
        r->n_pending--;
    }
}

static void tick(void *ctx)
{
    label_run *r = ctx;
    if (r->prod) {
        rd_kafka_poll(kp_producer_handle(r->prod), 0);
        sweep(r);
    }
    snprintf(r->what, sizeof r->what, "label [%ld tokens, %ld failed]", r->tokens,
             r->failed_pairs + r->delivery_failed);
    kp_progress_update(&r->pr, r->finished);
}

static void on_result(void *ctx, int i, const kp_llm_result *res)
{
    label_run *r = ctx;
    r->tokens += res->tokens;
    r->finished++;
    if (!res->ok) {
        r->failed_pairs++;
        write_failed(r, i, res->attempts, res->reason);
        return;
    }
    if (!r->prod) {
        r->judged++;
        write_out(r, i, res->grade);
        return;
    }
    const kp_llm_pair *p = &r->pairs[i];
    double score = (res->grade - r->gmin) / (r->gmax - r->gmin);
    kp_judgment v = {(char *)p->item_id,
                     (char *)p->title,
                     (char *)p->keyphrase,
                     KP_JUDGE_LLM,
                     score < 0   ? 0
                     : score > 1 ? 1
                                 : score,
                     kp_now_ms()};
    pending *e = calloc(1, sizeof *e);
    size_t len = 0;
    if (!e || kp_encode_judgment(r->codec, &v, &e->val, &len)) {
        free(e);
        r->delivery_failed++;
        write_failed(r, i, res->attempts,
                     e ? kp_codec_last_error(r->codec) : "out of memory encoding the record");
        return;
    }
    e->pair = i;
    e->o.topic = r->topic;
    e->o.key = p->item_id;
    e->o.keylen = strlen(p->item_id);
    e->o.val = e->val;
    e->o.vallen = len;
    e->o.state = KP_OUT_PENDING;
    rd_kafka_t *rk = kp_producer_handle(r->prod);
    rd_kafka_resp_err_t pe;
    while ((pe = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(r->topic), RD_KAFKA_V_KEY((void *)p->item_id, e->o.keylen),
                RD_KAFKA_V_VALUE(e->val, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                RD_KAFKA_V_OPAQUE(&e->o), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(rk, 50);
    if (pe) {
        free(e->val);
        free(e);
        r->delivery_failed++;
        write_failed(r, i, res->attempts, rd_kafka_err2str(pe));
        return;
    }
    /* the line is written once the delivery report is back (sweep) */
    e->grade = res->grade;
    e->attempts = res->attempts;
    e->next = r->pend;
    r->pend = e;
    r->n_pending++;
}

/* Drains the delivery reports (a second signal stops waiting). */
static void drain(label_run *r)
{
    if (!r->prod) return;
    rd_kafka_t *rk = kp_producer_handle(r->prod);
    while (r->pend && label_signals < 2) {
        rd_kafka_poll(rk, 100);
        sweep(r);
    }
}

static int parse_grades(const char *s, int *lo, int *hi)
{
    char a[32];
    const char *colon = strchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof a) return -1;
    memcpy(a, s, (size_t)(colon - s));
    a[colon - s] = 0;
    if (kp_parse_int(a, -1000000, 1000000, lo) || kp_parse_int(colon + 1, -1000000, 1000000, hi))
        return -1;
    return *lo < *hi ? 0 : -1;
}

static char *read_text(const char *path, char *err, size_t errlen)
{
    char *b = NULL;
    size_t len;
    if (kp_tsv_read_all(path, &b, &len, err, errlen)) return NULL;
    return b;
}

int kp_cmd_label(int argc, char **argv)
{
    enum {
        O_ITEMS = 256,
        O_KEYS,
        O_PAIRS,
        O_PER_ITEM,
        O_RANDOM,
        O_OUT,
        O_FAILED,
        O_PUBLISH,
        O_TOPIC,
        O_BASE_URL,
        O_MODEL,
        O_KEY_ENV,
        O_TEMPLATE,
        O_RF,
        O_GRADES,
        O_TIMEOUT,
        O_RETRIES,
        O_BACKOFF,
        O_RATE,
        O_CONC,
        O_LIMIT,
        O_SEED,
        O_EMB,
        O_QUIET
    };
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"items", required_argument, 0, O_ITEMS},
                                         {"keyphrases", required_argument, 0, O_KEYS},
                                         {"pairs", required_argument, 0, O_PAIRS},
                                         {"per-item", required_argument, 0, O_PER_ITEM},
                                         {"random", required_argument, 0, O_RANDOM},
                                         {"out", required_argument, 0, O_OUT},
                                         {"failed", required_argument, 0, O_FAILED},
                                         {"publish", no_argument, 0, O_PUBLISH},
                                         {"topic", required_argument, 0, O_TOPIC},
                                         {"base-url", required_argument, 0, O_BASE_URL},
                                         {"model", required_argument, 0, O_MODEL},
                                         {"api-key-env", required_argument, 0, O_KEY_ENV},
                                         {"template", required_argument, 0, O_TEMPLATE},
                                         {"response-format", required_argument, 0, O_RF},
                                         {"grades", required_argument, 0, O_GRADES},
                                         {"timeout-ms", required_argument, 0, O_TIMEOUT},
                                         {"retries", required_argument, 0, O_RETRIES},
                                         {"backoff-ms", required_argument, 0, O_BACKOFF},
                                         {"rate", required_argument, 0, O_RATE},
                                         {"concurrency", required_argument, 0, O_CONC},
                                         {"limit", required_argument, 0, O_LIMIT},
                                         {"seed", required_argument, 0, O_SEED},
                                         {"embeddings", no_argument, 0, O_EMB},
                                         {"quiet", no_argument, 0, O_QUIET},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *cfg_path = NULL, *items_path = NULL, *keys_path = NULL, *pairs_path = NULL;
    const char *out_path = NULL, *failed_path = NULL, *topic = NULL, *key_env = "OPENAI_API_KEY";
    const char *tmpl_path = NULL;
    int per_item = -1, n_random = 0, publish = 0, concurrency = 4, quiet = 0;
    long limit = 0;
    kp_llm_config lc;
    kp_llm_config_default(&lc);
    int ch, bad = 0;
    const char *bad_opt = NULL;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            cfg_path = optarg;
            break;
        case O_ITEMS:
            items_path = optarg;
            break;
        case O_KEYS:
            keys_path = optarg;
            break;
        case O_PAIRS:
            pairs_path = optarg;
            break;
        case O_OUT:
            out_path = optarg;
            break;
        case O_FAILED:
            failed_path = optarg;
            break;
        case O_PUBLISH:
            publish = 1;
            break;
        case O_TOPIC:
            topic = optarg;
            break;
        case O_BASE_URL:
            lc.base_url = optarg;
            break;
        case O_MODEL:
            lc.model = optarg;
            break;
        case O_KEY_ENV:
            key_env = optarg;
            break;
        case O_TEMPLATE:
            tmpl_path = optarg;
            break;
        case O_EMB:
            lc.embeddings = 1;
            break;
        case O_QUIET:
            quiet = 1;
            break;
        case O_RF:
            bad_opt = "--response-format";
            if (!strcmp(optarg, "json_object"))
                lc.response_format = KP_LLM_RF_JSON_OBJECT;
            else if (!strcmp(optarg, "json_schema"))
                lc.response_format = KP_LLM_RF_JSON_SCHEMA;
            else if (!strcmp(optarg, "none"))
                lc.response_format = KP_LLM_RF_NONE;
            else
                bad = 1;
            break;
        case O_GRADES:
            bad = parse_grades(optarg, &lc.grade_min, &lc.grade_max), bad_opt = "--grades";
            break;
        case O_PER_ITEM:
            bad = kp_parse_int(optarg, 0, 100000, &per_item), bad_opt = "--per-item";
            break;
        case O_RANDOM:
            bad = kp_parse_int(optarg, 0, 100000, &n_random), bad_opt = "--random";
            break;
        case O_TIMEOUT:
            bad = kp_parse_int(optarg, 1, 3600000, &lc.timeout_ms), bad_opt = "--timeout-ms";
            break;
        case O_RETRIES:
            bad = kp_parse_int(optarg, 0, 100, &lc.retries), bad_opt = "--retries";
            break;
        case O_BACKOFF:
            bad = kp_parse_int(optarg, 0, 600000, &lc.backoff_ms), bad_opt = "--backoff-ms";
            if (!bad && lc.backoff_max_ms < lc.backoff_ms) lc.backoff_max_ms = lc.backoff_ms;
            break;
        case O_RATE:
            bad = kp_parse_double(optarg, 0, 1e6, &lc.rate), bad_opt = "--rate";
            break;
        case O_CONC:
            bad = kp_parse_int(optarg, 1, 1024, &concurrency), bad_opt = "--concurrency";
            break;
        case O_LIMIT:
            bad = kp_parse_long(optarg, 0, 1000000000L, &limit), bad_opt = "--limit";
            break;
        case O_SEED: {
            int64_t s;
            bad = kp_parse_i64(optarg, 0, INT64_MAX, &s), bad_opt = "--seed";
            lc.seed = (uint64_t)s;
            break;
        }
        case 'h':
            label_usage(stdout);
            return 0;
        default:
            label_usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "kprec label: bad value '%s' for %s (kprec label --help)\n", optarg,
                    bad_opt);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kprec label: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!items_path || !keys_path || (!pairs_path) == (per_item < 0)) {
        fprintf(stderr, "kprec label: --items, --keyphrases and one of --pairs or --per-item are "
                        "required (kprec label --help)\n");
        return 2;
    }
    if (!out_path && !publish) {
        fprintf(stderr, "kprec label: nothing to write: give --out FILE and/or --publish\n");
        return 2;
    }
    if (publish && !cfg_path) {
        fprintf(stderr, "kprec label: --publish needs -c CONFIG\n");
        return 2;
    }
    if (pairs_path && n_random) {
        fprintf(stderr, "kprec label: --random applies to --per-item only\n");
        return 2;
    }

    char err[1024];
    int rc = 1, have_cfg = 0;
    kp_texts items = {0}, keys = {0};
    pair_list all = {0};
    pair_set seen = {0}, done = {0};
    kp_llm_pair *pairs = NULL;
    kp_llm_judge *judge = NULL;
    char *tmpl = NULL;
    long n_unknown = 0, n_in_file = 0, n_skipped = 0;
    kp_config cfg;
    label_run r;
    memset(&r, 0, sizeof r);
    r.out_path = out_path;
    if (kp_texts_load(items_path, &items, err, sizeof err) ||
        kp_texts_load(keys_path, &keys, err, sizeof err))
        goto err;
    if (keys.n == 0) {
        kp_errf(err, sizeof err, "%s has no keyphrases", keys_path);
        goto err;
    }
    if (tmpl_path && !(tmpl = read_text(tmpl_path, err, sizeof err))) goto err;
    lc.tmpl_text = tmpl;
    const char *key = getenv(key_env);
    lc.api_key = key && key[0] ? key : NULL;
    if (!(judge = kp_llm_judge_new(&lc, err, sizeof err))) goto err;

    if (pairs_path) {
        if (pairs_load(pairs_path, &items, &keys, &all, &seen, &n_unknown, err, sizeof err))
            goto err;
        if (n_unknown)
            kp_warn("label: %ld pair(s) of %s skipped: unknown item or keyphrase id", n_unknown,
                    pairs_path);
    } else if (pairs_generate(&items, &keys, per_item, n_random, lc.seed, &all, &seen, err,
                              sizeof err)) {
        goto err;
    }
    if (limit > 0 && all.n > limit) all.n = (int)limit;
    if (out_path &&
        !(r.out = out_open(out_path, &items, &keys, &done, &n_in_file, err, sizeof err)))
        goto err;
    if (failed_path) {
        if (!(r.failed = fopen(failed_path, "wb")) ||
            fprintf(r.failed, "%s\n", FAILED_HEADER) < 0 || fflush(r.failed)) {
            kp_errf(err, sizeof err, "%s: %s", failed_path, strerror(errno));
            goto err;
        }
    }
    if (!(pairs = calloc((size_t)all.n + 1, sizeof *pairs))) {
        kp_errf(err, sizeof err, "out of memory");
        goto err;
    }
    int n_todo = 0;
    for (int p = 0; p < all.n; p++) {
        if (pair_set_has(&done, all.item[p], all.key[p])) {
            n_skipped++;
            continue;
        }
        pairs[n_todo++] = (kp_llm_pair){items.id[all.item[p]], items.text[all.item[p]],
                                        keys.id[all.key[p]], keys.text[all.key[p]]};
    }
    if (publish) {
        if (kp_cli_config(&cfg, cfg_path)) {
            rc = 2;
            goto out;
        }
        have_cfg = 1;
        r.topic = topic ? topic : cfg.topic_judgments;
        if (!(r.codec = kp_codec_new(err, sizeof err)) ||
            !(r.prod = kp_producer_new(&cfg, err, sizeof err)))
            goto err;
    }
    r.items = &items, r.keys = &keys, r.pairs = pairs;
    r.gmin = lc.grade_min, r.gmax = lc.grade_max;
    snprintf(r.what, sizeof r.what, "label");
    kp_progress_start(&r.pr, r.what, n_todo, quiet);
    if (n_skipped)
        kp_info("label: %ld of %d pair(s) already in %s: skipped", n_skipped, all.n, out_path);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int64_t t0 = kp_mono_ms();
    int run_rc = kp_llm_run(judge, pairs, n_todo, concurrency, &label_stop, on_result, tick, &r,
                            err, sizeof err);
    drain(&r);
    tick(&r);
    kp_progress_done(&r.pr, r.finished);
    double el = (double)(kp_mono_ms() - t0) / 1000.0;
    if (run_rc) kp_error("label: %s", err);
    if (r.n_pending)
        kp_error("label: %ld record(s) still waiting for their delivery report", r.n_pending);
    printf("label: %d pairs: %ld judged, %ld already in the output, %ld failed, %ld delivery "
           "failure(s)%s; %ld requests, %ld tokens, %.1f s, %.1f pairs/s\n",
           all.n, r.judged, n_skipped, r.failed_pairs, r.delivery_failed + r.n_pending,
           publish ? "" : " (not publishing)", kp_llm_requests(judge), r.tokens, el,
           el > 0 ? (double)r.finished / el : 0.0);
    fflush(stdout);
    rc = (run_rc || r.failed_pairs || r.delivery_failed || r.n_pending || r.io_error) ? 1 : 0;
    goto out;
err:
    fprintf(stderr, "kprec label: %s\n", err);
    rc = 1;
out:
    if (r.prod) {
        int left = kp_producer_free(r.prod, label_signals < 2 ? 10000 : 0);
        if (left) rc = 1;
    }
    for (pending *e = r.pend, *nx; e; e = nx) {
        nx = e->next;
        free(e->val);
        free(e);
    }
    kp_codec_free(r.codec);
    if (have_cfg) kp_config_free(&cfg);
    if (r.out && fclose(r.out)) rc = 1;
    if (r.failed && fclose(r.failed)) rc = 1;
    kp_llm_judge_free(judge);
    free(pairs);
    free(all.item);
    free(all.key);
    free(seen.slot);
    free(done.slot);
    free(tmpl);
    kp_texts_free(&items);
    kp_texts_free(&keys);
    return rc;
}
