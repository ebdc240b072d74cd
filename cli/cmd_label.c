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
#include "cli/label_pairs.h"
#include "cli/opts.h"
#include "common/log.h"
#include "common/progress.h"
#include "common/util.h"
#include "model/bm25.h"
#include "offline/llm_judge.h"
#include "model/tsv.h"
#include "producer/producer.h"
#include "schemas/codec.h"
#include "schemas/registry_http.h"

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

/* ---- resume ---- */

/* Opens the output for appending: creates it with its header, or reads the pairs already in it
 * into done (cutting a torn last line). */
static FILE *out_open(const char *path, const kp_texts *items, const kp_texts *keys,
                      kp_pairset *done, long *n_done, char *err, size_t errlen)
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
            if (i >= 0 && k >= 0 && kp_pairset_add(done, i, k) < 0) {
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

/* ---- the command line ---- */

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

static const struct option label_longopts[] = {{"config", required_argument, 0, 'c'},
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

/* What the command line asked for. */
typedef struct {
    const char *cfg_path, *items_path, *keys_path, *pairs_path, *out_path, *failed_path, *topic;
    const char *key_env, *tmpl_path;
    int per_item, n_random, publish, concurrency, quiet;
    long limit;
    kp_llm_config lc;
} label_opts;

/* Options that take no value or a string (pointing into argv). Returns 1 if ch is one. */
static int opt_string(label_opts *o, int ch, const char *arg)
{
    switch (ch) {
    case 'c':
        o->cfg_path = arg;
        break;
    case O_ITEMS:
        o->items_path = arg;
        break;
    case O_KEYS:
        o->keys_path = arg;
        break;
    case O_PAIRS:
        o->pairs_path = arg;
        break;
    case O_OUT:
        o->out_path = arg;
        break;
    case O_FAILED:
        o->failed_path = arg;
        break;
    case O_PUBLISH:
        o->publish = 1;
        break;
    case O_TOPIC:
        o->topic = arg;
        break;
    case O_BASE_URL:
        o->lc.base_url = arg;
        break;
    case O_MODEL:
        o->lc.model = arg;
        break;
    case O_KEY_ENV:
        o->key_env = arg;
        break;
    case O_TEMPLATE:
        o->tmpl_path = arg;
        break;
    case O_EMB:
        o->lc.embeddings = 1;
        break;
    case O_QUIET:
        o->quiet = 1;
        break;
    default:
        return 0;
    }
    return 1;
}

static int parse_rf(const char *s, kp_llm_rf *rf)
{
    if (!strcmp(s, "json_object"))
        *rf = KP_LLM_RF_JSON_OBJECT;
    else if (!strcmp(s, "json_schema"))
        *rf = KP_LLM_RF_JSON_SCHEMA;
    else if (!strcmp(s, "none"))
        *rf = KP_LLM_RF_NONE;
    else
        return -1;
    return 0;
}

/* Options with a checked value. Returns 0, or -1 with *name set to the option's name; 1 if ch is
 * not one of them. */
static int opt_value(label_opts *o, int ch, const char *arg, const char **name)
{
    kp_llm_config *lc = &o->lc;
    int64_t seed;
    int bad;
    switch (ch) {
    case O_RF:
        bad = parse_rf(arg, &lc->response_format), *name = "--response-format";
        break;
    case O_GRADES:
        bad = parse_grades(arg, &lc->grade_min, &lc->grade_max), *name = "--grades";
        break;
    case O_PER_ITEM:
        bad = kp_parse_int(arg, 0, 100000, &o->per_item), *name = "--per-item";
        break;
    case O_RANDOM:
        bad = kp_parse_int(arg, 0, 100000, &o->n_random), *name = "--random";
        break;
    case O_TIMEOUT:
        bad = kp_parse_int(arg, 1, 3600000, &lc->timeout_ms), *name = "--timeout-ms";
        break;
    case O_RETRIES:
        bad = kp_parse_int(arg, 0, 100, &lc->retries), *name = "--retries";
        break;
    case O_BACKOFF:
        bad = kp_parse_int(arg, 0, 600000, &lc->backoff_ms), *name = "--backoff-ms";
        if (!bad && lc->backoff_max_ms < lc->backoff_ms) lc->backoff_max_ms = lc->backoff_ms;
        break;
    case O_RATE:
        bad = kp_parse_double(arg, 0, 1e6, &lc->rate), *name = "--rate";
        break;
    case O_CONC:
        bad = kp_parse_int(arg, 1, 1024, &o->concurrency), *name = "--concurrency";
        break;
    case O_LIMIT:
        bad = kp_parse_long(arg, 0, 1000000000L, &o->limit), *name = "--limit";
        break;
    case O_SEED:
        bad = kp_parse_i64(arg, 0, INT64_MAX, &seed), *name = "--seed";
        if (!bad) lc->seed = (uint64_t)seed;
        break;
    default:
        return 1;
    }
    return bad ? -1 : 0;
}

/* The rules between options. Returns KP_OPTS_GO, or 2 after printing why not. */
static int opts_check(const label_opts *o)
{
    const char *why = NULL;
    if (!o->items_path || !o->keys_path || (!o->pairs_path) == (o->per_item < 0))
        why = "--items, --keyphrases and one of --pairs or --per-item are required (kprec label "
              "--help)";
    else if (!o->out_path && !o->publish)
        why = "nothing to write: give --out FILE and/or --publish";
    else if (o->publish && !o->cfg_path)
        why = "--publish needs -c CONFIG";
    else if (o->pairs_path && o->n_random)
        why = "--random applies to --per-item only";
    if (!why) return KP_OPTS_GO;
    fprintf(stderr, "kprec label: %s\n", why);
    return 2;
}

/* Parses argv into o. Returns KP_OPTS_GO, or the exit status once usage or an error was printed
 * (0 for --help, 2 for a usage error). */
static int label_parse(int argc, char **argv, label_opts *o)
{
    memset(o, 0, sizeof *o);
    o->key_env = "OPENAI_API_KEY";
    o->per_item = -1, o->concurrency = 4;
    kp_llm_config_default(&o->lc);
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", label_longopts, NULL)) != -1) {
        const char *name = NULL;
        if (ch == 'h') {
            label_usage(stdout);
            return 0;
        }
        if (opt_string(o, ch, optarg)) continue;
        int r = opt_value(o, ch, optarg, &name);
        if (r > 0) {
            label_usage(stderr);
            return 2;
        }
        if (r < 0) {
            fprintf(stderr, "kprec label: bad value '%s' for %s (kprec label --help)\n", optarg,
                    name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kprec label: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    return opts_check(o);
}

/* ---- the stages of a run ---- */

/* Everything a run holds; label_free releases it (each member NULL / zero when not made). */
typedef struct {
    kp_texts items, keys;
    kp_pairlist all;
    kp_pairset seen, done;
    kp_llm_pair *pairs; /* the pairs still to judge */
    int n_todo;
    long n_skipped; /* pairs already in the output file */
    kp_llm_judge *judge;
    char *tmpl;
    kp_config cfg;
    label_run r;
    char err[1024];
} label_state;

/* Stages return 0, 1 with s->err set, or 2 (a bad config, already printed). */

/* Loads the items, the keyphrases and the template, and makes the judge. */
static int label_load(label_opts *o, label_state *s)
{
    if (kp_texts_load(o->items_path, &s->items, s->err, sizeof s->err) ||
        kp_texts_load(o->keys_path, &s->keys, s->err, sizeof s->err))
        return 1;
    if (s->keys.n == 0) {
        kp_errf(s->err, sizeof s->err, "%s has no keyphrases", o->keys_path);
        return 1;
    }
    if (o->tmpl_path && !(s->tmpl = read_text(o->tmpl_path, s->err, sizeof s->err))) return 1;
    o->lc.tmpl_text = s->tmpl;
    const char *key = getenv(o->key_env);
    o->lc.api_key = key && key[0] ? key : NULL;
    if (!(s->judge = kp_llm_judge_new(&o->lc, s->err, sizeof s->err))) return 1;
    return 0;
}

/* The pairs of the run: read from --pairs or generated, cut to --limit. */
static int label_pairs(const label_opts *o, label_state *s)
{
    if (o->pairs_path) {
        long n_unknown = 0;
        if (kp_pairs_load(o->pairs_path, &s->items, &s->keys, &s->all, &s->seen, &n_unknown, s->err,
                          sizeof s->err))
            return 1;
        if (n_unknown)
            kp_warn("label: %ld pair(s) of %s skipped: unknown item or keyphrase id", n_unknown,
                    o->pairs_path);
    } else if (kp_pairs_generate(&s->items, &s->keys, o->per_item, o->n_random, o->lc.seed, &s->all,
                                 &s->seen, s->err, sizeof s->err)) {
        return 1;
    }
    if (o->limit > 0 && s->all.n > o->limit) s->all.n = (int)o->limit;
    return 0;
}

/* Opens the output (reading the pairs already in it) and the failed file, and lists the pairs
 * still to judge. */
static int label_resume(const label_opts *o, label_state *s)
{
    long n_in_file = 0;
    label_run *r = &s->r;
    r->out_path = o->out_path;
    if (o->out_path && !(r->out = out_open(o->out_path, &s->items, &s->keys, &s->done, &n_in_file,
                                           s->err, sizeof s->err)))
        return 1;
    if (o->failed_path && (!(r->failed = fopen(o->failed_path, "wb")) ||
                           fprintf(r->failed, "%s\n", FAILED_HEADER) < 0 || fflush(r->failed))) {
        kp_errf(s->err, sizeof s->err, "%s: %s", o->failed_path, strerror(errno));
        return 1;
    }
    if (!(s->pairs = calloc((size_t)s->all.n + 1, sizeof *s->pairs))) {
        kp_errf(s->err, sizeof s->err, "out of memory");
        return 1;
    }
    for (int p = 0; p < s->all.n; p++) {
        int i = s->all.item[p], k = s->all.key[p];
        if (kp_pairset_has(&s->done, i, k)) {
            s->n_skipped++;
            continue;
        }
        s->pairs[s->n_todo++] =
            (kp_llm_pair){s->items.id[i], s->items.text[i], s->keys.id[k], s->keys.text[k]};
    }
    return 0;
}

/* With --publish: the config, the codec and the producer. */
static int label_publish(const label_opts *o, label_state *s)
{
    if (!o->publish) return 0;
    if (kp_cli_config(&s->cfg, o->cfg_path)) return 2;
    s->r.topic = o->topic ? o->topic : s->cfg.topic_judgments;
    if (!(s->r.codec = kp_codec_new(s->err, sizeof s->err)) ||
        !(s->r.prod = kp_producer_new(&s->cfg, s->err, sizeof s->err)))
        return 1;
    kp_sreg *reg = NULL; /* [schemas] registry: write the id of Judgment under <topic>-value */
    int rc = kp_sreg_open(&s->cfg, &reg, s->err, sizeof s->err) ||
             (reg && kp_sreg_use_writer(reg, s->r.codec, s->r.topic, KP_SCHEMA_ID_JUDGMENT,
                                        s->cfg.schemas_registry_startup_wait_ms, NULL, NULL, s->err,
                                        sizeof s->err) != KP_SREG_OK);
    kp_sreg_free(reg);
    return rc;
}

/* Judges the pairs to do (SIGINT / SIGTERM stop it) and waits for the delivery reports. Returns
 * kp_llm_run's result (s->err set when not 0); *secs is the time it took. */
static int label_judge(const label_opts *o, label_state *s, double *secs)
{
    label_run *r = &s->r;
    r->items = &s->items, r->keys = &s->keys, r->pairs = s->pairs;
    r->gmin = o->lc.grade_min, r->gmax = o->lc.grade_max;
    snprintf(r->what, sizeof r->what, "label");
    kp_progress_start(&r->pr, r->what, s->n_todo, o->quiet);
    if (s->n_skipped)
        kp_info("label: %ld of %d pair(s) already in %s: skipped", s->n_skipped, s->all.n,
                o->out_path);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    int64_t t0 = kp_mono_ms();
    int run_rc = kp_llm_run(s->judge, s->pairs, s->n_todo, o->concurrency, &label_stop, on_result,
                            tick, r, s->err, sizeof s->err);
    drain(r);
    tick(r);
    kp_progress_done(&r->pr, r->finished);
    *secs = (double)(kp_mono_ms() - t0) / 1000.0;
    return run_rc;
}

/* Prints the run's summary line; returns the exit status of the run. */
static int label_report(const label_opts *o, label_state *s, int run_rc, double el)
{
    const label_run *r = &s->r;
    if (run_rc) kp_error("label: %s", s->err);
    if (r->n_pending)
        kp_error("label: %ld record(s) still waiting for their delivery report", r->n_pending);
    printf("label: %d pairs: %ld judged, %ld already in the output, %ld failed, %ld delivery "
           "failure(s)%s; %ld requests, %ld tokens, %.1f s, %.1f pairs/s\n",
           s->all.n, r->judged, s->n_skipped, r->failed_pairs, r->delivery_failed + r->n_pending,
           o->publish ? "" : " (not publishing)", kp_llm_requests(s->judge), r->tokens, el,
           el > 0 ? (double)r->finished / el : 0.0);
    fflush(stdout);
    return (run_rc || r->failed_pairs || r->delivery_failed || r->n_pending || r->io_error) ? 1 : 0;
}

/* Releases everything in s (flushing the producer first); returns rc, or 1 when the producer
 * still held records or closing a file failed. */
static int label_free(label_state *s, int rc)
{
    label_run *r = &s->r;
    if (r->prod && kp_producer_free(r->prod, label_signals < 2 ? 10000 : 0)) rc = 1;
    for (pending *e = r->pend, *nx; e; e = nx) {
        nx = e->next;
        free(e->val);
        free(e);
    }
    kp_codec_free(r->codec);
    kp_config_free(&s->cfg);
    if (r->out && fclose(r->out)) rc = 1;
    if (r->failed && fclose(r->failed)) rc = 1;
    kp_llm_judge_free(s->judge);
    free(s->pairs);
    free(s->all.item);
    free(s->all.key);
    free(s->seen.slot);
    free(s->done.slot);
    free(s->tmpl);
    kp_texts_free(&s->items);
    kp_texts_free(&s->keys);
    return rc;
}

int kp_cmd_label(int argc, char **argv)
{
    label_opts o;
    label_state s;
    double el = 0;
    int run_rc, rc = label_parse(argc, argv, &o);
    if (rc != KP_OPTS_GO) return rc;
    memset(&s, 0, sizeof s);
    if ((rc = label_load(&o, &s)) || (rc = label_pairs(&o, &s)) || (rc = label_resume(&o, &s)) ||
        (rc = label_publish(&o, &s)))
        goto err;
    run_rc = label_judge(&o, &s, &el);
    rc = label_report(&o, &s, run_rc, el);
    goto out;
err:
    if (rc == 1) fprintf(stderr, "kprec label: %s\n", s.err);
out:
    return label_free(&s, rc);
}
