/* llm_judge.c -- the LLM teacher's HTTP client: sends the requests of offline/llm_request.c with
 * libcurl, retries, a rate limit shared by the worker threads, and the run handing results to the
 * calling thread. */
#include "offline/llm_judge.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/util.h"
#include "offline/llm_internal.h"

#define BODY_MAX   (8u << 20) /* a response body larger than this is an error */
#define TICK_MS    100
#define SLEEP_STEP 50

/* ---- the judge ---- */

struct kp_llm_judge {
    kp_llm_config c;
    char *base_url, *model, *api_key;
    char *url; /* base_url + "/chat/completions" or "/embeddings" */
    kp_llm_template tmpl;
    pthread_mutex_t mu; /* rate limiter and counters */
    double next_ms;     /* earliest start of the next request */
    long requests;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

kp_llm_judge *kp_llm_judge_new(const kp_llm_config *c, char *err, size_t errlen)
{
    kp_llm_judge *j = NULL;
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK) {
        kp_errf(err, errlen, "curl_global_init: %s", curl_easy_strerror(curl_init_rc));
        return NULL;
    }
    if (!c->base_url || !c->base_url[0] || !c->model || !c->model[0]) {
        kp_errf(err, errlen, "base URL and model must not be empty");
        return NULL;
    }
    if (c->grade_min >= c->grade_max || c->timeout_ms < 1 || c->retries < 0 || c->backoff_ms < 0 ||
        c->backoff_max_ms < c->backoff_ms || !(c->rate >= 0)) {
        kp_errf(err, errlen,
                "bad judge configuration (grade scale, timeout, retries, backoff "
                "or rate)");
        return NULL;
    }
    if (!(j = calloc(1, sizeof *j))) goto oom;
    j->c = *c;
    if (!(j->base_url = strdup(c->base_url)) || !(j->model = strdup(c->model)) ||
        !(j->api_key = strdup(c->api_key ? c->api_key : "")))
        goto oom;
    size_t bl = strlen(j->base_url);
    while (bl && j->base_url[bl - 1] == '/')
        j->base_url[--bl] = 0;
    j->c.base_url = j->base_url, j->c.model = j->model, j->c.api_key = j->api_key;
    j->c.tmpl_text = NULL;
    if (!(j->url = malloc(bl + 32))) goto oom;
    snprintf(j->url, bl + 32, "%s%s", j->base_url,
             c->embeddings ? "/embeddings" : "/chat/completions");
    if (!c->embeddings &&
        kp_llm_template_parse(c->tmpl_text ? c->tmpl_text : kp_llm_default_template, &j->tmpl, err,
                              errlen))
        goto err;
    pthread_mutex_init(&j->mu, NULL);
    return j;
oom:
    kp_errf(err, errlen, "out of memory");
err:
    if (j) {
        kp_llm_template_free(&j->tmpl);
        free(j->url), free(j->base_url), free(j->model), free(j->api_key);
        free(j);
    }
    return NULL;
}

void kp_llm_judge_free(kp_llm_judge *j)
{
    if (!j) return;
    pthread_mutex_destroy(&j->mu);
    kp_llm_template_free(&j->tmpl);
    free(j->url);
    free(j->base_url);
    free(j->model);
    if (j->api_key) memset(j->api_key, 0, strlen(j->api_key));
    free(j->api_key);
    free(j);
}

long kp_llm_requests(const kp_llm_judge *j)
{
    kp_llm_judge *m = (kp_llm_judge *)j;
    pthread_mutex_lock(&m->mu);
    long n = m->requests;
    pthread_mutex_unlock(&m->mu);
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Sleeps until the monotonic time until_ms, in slices; returns -1 if *stop became set. */
static int sleep_until(double until_ms, volatile sig_atomic_t *stop)
{
    for (;;) {
        if (stop && *stop) return -1;
        double left = until_ms - (double)kp_mono_ms();
        if (left <= 0) return 0;
        sleep_ms(left < SLEEP_STEP ? (int)left + 1 : SLEEP_STEP);
    }
}

/* Rate limiter: reserves the next request slot and waits for it. */
static int rate_acquire(kp_llm_judge *j, volatile sig_atomic_t *stop)
{
    pthread_mutex_lock(&j->mu);
    double now = (double)kp_mono_ms(), at = now;
    if (j->c.rate > 0) {
        if (j->next_ms > at) at = j->next_ms;
        j->next_ms = at + 1000.0 / j->c.rate;
    }
    j->requests++;
    pthread_mutex_unlock(&j->mu);
    return at > now ? sleep_until(at, stop) : 0;
}

typedef struct {
    buf body;
    long retry_after_ms;
} reply;

static size_t on_body(char *p, size_t size, size_t nmemb, void *opaque)
{
    reply *r = opaque;
    size_t n = size * nmemb;
    if (r->body.n + n > BODY_MAX) return 0; /* aborts the transfer */
    buf_add(&r->body, p, n);
    return r->body.oom ? 0 : n;
}

static size_t on_header(char *p, size_t size, size_t nmemb, void *opaque)
{
    reply *r = opaque;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof name - 1 && !strncasecmp(p, name, sizeof name - 1)) {
        char v[64];
        size_t k = n - (sizeof name - 1);
        if (k >= sizeof v) k = sizeof v - 1;
        memcpy(v, p + sizeof name - 1, k);
        v[k] = 0;
        r->retry_after_ms = kp_llm_retry_after_ms(v);
    }
    return n;
}

/* Replaces every occurrence of key in s by "***" (in place; s only shrinks or keeps its size
 * as long as the key has >= 3 bytes; shorter keys are replaced by as many '*'). */
static void redact(char *s, const char *key)
{
    size_t kl = key ? strlen(key) : 0;
    if (!s || !kl) return;
    size_t rl = kl < 3 ? kl : 3;
    char *p;
    while ((p = strstr(s, key))) {
        memset(p, '*', rl);
        memmove(p + rl, p + kl, strlen(p + kl) + 1);
    }
}

/* Tabs and line ends become spaces, so a reason fits in one TSV field. */
static void one_line(char *s)
{
    for (; *s; s++)
        if (*s == '\t' || *s == '\n' || *s == '\r') *s = ' ';
}

/* One request. Returns the HTTP status (0 = transport error with the reason in err). */
static long perform(kp_llm_judge *j, CURL *h, struct curl_slist *hdrs, const char *body, reply *r,
                    char *err, size_t errlen)
{
    char ebuf[CURL_ERROR_SIZE] = "";
    r->body.n = 0;
    if (r->body.p) r->body.p[0] = 0;
    r->body.oom = 0;
    r->retry_after_ms = -1;
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, j->url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)j->c.timeout_ms);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)j->c.timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    CURLcode cc = curl_easy_perform(h);
    buf_add(&r->body, "", 0);
    if (cc != CURLE_OK) {
        kp_errf(err, errlen, "request failed: %s", ebuf[0] ? ebuf : curl_easy_strerror(cc));
        return 0;
    }
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    if (r->body.p) redact(r->body.p, j->api_key); /* before anything quotes it */
    return status;
}

/* Judges one pair, retries included. */
static void judge_pair(kp_llm_judge *j, CURL *h, uint64_t *rng, const kp_llm_pair *p,
                       kp_llm_result *res, volatile sig_atomic_t *stop)
{
    char *body = NULL, *sys = NULL, *user = NULL, *content = NULL;
    struct curl_slist *hdrs = NULL, *nh;
    char why[sizeof res->reason] = "";
    reply r = {{0}, -1};
    memset(res, 0, sizeof *res);
    hdrs = curl_slist_append(NULL, "Content-Type: application/json");
    if (hdrs && j->api_key[0]) {
        size_t n = strlen(j->api_key) + 32;
        char *auth = malloc(n);
        nh = NULL;
        if (auth) {
            snprintf(auth, n, "Authorization: Bearer %s", j->api_key);
            nh = curl_slist_append(hdrs, auth);
            memset(auth, 0, n);
            free(auth);
        }
        if (!nh) {
            curl_slist_free_all(hdrs);
            hdrs = NULL;
        }
    }
    if (j->c.embeddings) {
        body = kp_llm_embeddings_request(&j->c, p->title, p->keyphrase);
    } else {
        kp_llm_vars v = {p->title,        p->keyphrase,   p->item_id,
                         p->keyphrase_id, j->c.grade_min, j->c.grade_max};
        sys = kp_llm_fill(j->tmpl.system, &v);
        user = kp_llm_fill(j->tmpl.user, &v);
        if (sys && user) body = kp_llm_chat_request(&j->c, sys, user);
    }
    if (!hdrs || !body) {
        kp_errf(res->reason, sizeof res->reason, "out of memory");
        goto out;
    }
    for (int attempt = 0; attempt <= j->c.retries; attempt++) {
        int delay = 0;
        if (rate_acquire(j, stop)) {
            kp_errf(why, sizeof why, "interrupted");
            break;
        }
        res->attempts++;
        long status = perform(j, h, hdrs, body, &r, why, sizeof why);
        kp_llm_verdict vd = kp_llm_classify_status(status);
        if (vd == KP_LLM_OK) {
            long tokens = 0;
            char perr[256];
            if (j->c.embeddings) {
                double cosv;
                if (!kp_llm_parse_embeddings_response(r.body.p, &cosv, &tokens, perr,
                                                      sizeof perr)) {
                    double s = cosv < 0 ? 0 : cosv > 1 ? 1 : cosv;
                    res->tokens += tokens;
                    res->grade = j->c.grade_min + s * (j->c.grade_max - j->c.grade_min);
                    res->ok = 1;
                    goto out;
                }
            } else {
                int g;
                free(content);
                content = NULL;
                if (!kp_llm_parse_chat_response(r.body.p, &content, &tokens, perr, sizeof perr) &&
                    !kp_llm_parse_grade(content, j->c.grade_min, j->c.grade_max, &g, perr,
                                        sizeof perr)) {
                    res->tokens += tokens;
                    res->grade = g;
                    res->ok = 1;
                    goto out;
                }
            }
            res->tokens += tokens;
            kp_errf(why, sizeof why, "malformed answer: %s", perr);
            vd = KP_LLM_RETRY;
        } else if (status) {
            kp_errf(why, sizeof why, "HTTP %ld: %.*s", status, SNIPPET, r.body.p ? r.body.p : "");
            if (status == 429 && r.retry_after_ms >= 0) delay = (int)r.retry_after_ms;
        }
        if (vd == KP_LLM_FAIL || vd == KP_LLM_FATAL) {
            res->fatal = vd == KP_LLM_FATAL;
            break;
        }
        if (attempt == j->c.retries) break;
        int b = kp_llm_backoff_ms(attempt, j->c.backoff_ms, j->c.backoff_max_ms, rng);
        if (b > delay) delay = b;
        if (sleep_until((double)kp_mono_ms() + delay, stop)) {
            kp_errf(why, sizeof why, "interrupted");
            break;
        }
    }
    snprintf(res->reason, sizeof res->reason, "%s", why);
out:
    redact(res->reason, j->api_key);
    one_line(res->reason);
    free(content);
    free(r.body.p);
    free(body);
    free(sys);
    free(user);
    curl_slist_free_all(hdrs);
}

/* ---- the run: worker threads, results handed to the calling thread ---- */

typedef struct {
    kp_llm_judge *j;
    const kp_llm_pair *pairs;
    int n;
    volatile sig_atomic_t *stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int next;               /* next pair to take */
    int *ready, head, tail; /* finished pairs, FIFO */
    kp_llm_result *res;
    int active; /* threads still running */
    int fatal;
    char fatal_reason[sizeof((kp_llm_result *)0)->reason];
} run_state;

typedef struct {
    run_state *s;
    int t;
} worker_arg;

static void *worker(void *opaque)
{
    worker_arg *a = opaque;
    run_state *s = a->s;
    uint64_t rng = (s->j->c.seed ^ (0x9e3779b97f4a7c15ULL * (uint64_t)(a->t + 1))) | 1;
    CURL *h = curl_easy_init();
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int i = -1;
        if (h && !s->fatal && !(s->stop && *s->stop) && s->next < s->n) i = s->next++;
        pthread_mutex_unlock(&s->mu);
        if (i < 0) break;
        judge_pair(s->j, h, &rng, &s->pairs[i], &s->res[i], s->stop);
        pthread_mutex_lock(&s->mu);
        s->ready[s->tail++] = i;
        if (s->res[i].fatal && !s->fatal) {
            s->fatal = 1;
            snprintf(s->fatal_reason, sizeof s->fatal_reason, "%s", s->res[i].reason);
        }
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    if (h) curl_easy_cleanup(h);
    pthread_mutex_lock(&s->mu);
    s->active--;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int kp_llm_run(kp_llm_judge *j, const kp_llm_pair *pairs, int n, int concurrency,
               volatile sig_atomic_t *stop, kp_llm_result_fn on_result, kp_llm_tick_fn tick,
               void *ctx, char *err, size_t errlen)
{
    if (!j || n < 0 || (n && !pairs) || !on_result) {
        kp_errf(err, errlen, "kp_llm_run: bad arguments");
        return -1;
    }
    if (n == 0) return 0;
    if (concurrency < 1) concurrency = 1;
    if (concurrency > n) concurrency = n;
    int rc = -1, started = 0, reported = 0;
    run_state s;
    memset(&s, 0, sizeof s);
    s.j = j, s.pairs = pairs, s.n = n, s.stop = stop;
    pthread_t *th = calloc((size_t)concurrency, sizeof *th);
    worker_arg *args = calloc((size_t)concurrency, sizeof *args);
    s.ready = calloc((size_t)n, sizeof *s.ready);
    s.res = calloc((size_t)n, sizeof *s.res);
    if (!th || !args || !s.ready || !s.res) {
        kp_errf(err, errlen, "out of memory");
        free(th), free(args), free(s.ready), free(s.res);
        return -1;
    }
    pthread_mutex_init(&s.mu, NULL);
    pthread_cond_init(&s.cv, NULL);
    pthread_mutex_lock(&s.mu);
    for (int t = 0; t < concurrency; t++) {
        args[t].s = &s, args[t].t = t;
        if (pthread_create(&th[t], NULL, worker, &args[t])) break;
        started++;
        s.active++;
    }
    int64_t last_tick = kp_mono_ms();
    while (started) {
        if (s.head == s.tail && s.active > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += TICK_MS * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&s.cv, &s.mu, &ts);
        }
        while (s.head < s.tail) {
            int i = s.ready[s.head++];
            pthread_mutex_unlock(&s.mu);
            on_result(ctx, i, &s.res[i]);
            reported++;
            pthread_mutex_lock(&s.mu);
        }
        int done = s.active == 0 && s.head == s.tail;
        pthread_mutex_unlock(&s.mu);
        if (tick && (done || kp_mono_ms() - last_tick >= TICK_MS)) {
            tick(ctx);
            last_tick = kp_mono_ms();
        }
        pthread_mutex_lock(&s.mu);
        if (done) break;
    }
    pthread_mutex_unlock(&s.mu);
    for (int t = 0; t < started; t++)
        pthread_join(th[t], NULL);
    if (!started)
        kp_errf(err, errlen, "cannot start a judge thread");
    else if (s.fatal)
        kp_errf(err, errlen, "stopped after a fatal error: %s", s.fatal_reason);
    else if (reported < n)
        kp_errf(err, errlen, "interrupted after %d of %d pairs", reported, n);
    else
        rc = 0;
    pthread_cond_destroy(&s.cv);
    pthread_mutex_destroy(&s.mu);
    free(th), free(args), free(s.ready), free(s.res);
    return rc;
}
