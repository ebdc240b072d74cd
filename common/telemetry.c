#include "common/telemetry.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"

kp_metrics kp_m;
const char *kp_mtopic_name[KP_MT_N] = {"items", "clicks", "judgments"};
const char *const kp_mrej_name[KP_MREJ_N] = {"ok",      "mac",     "malformed",
                                             "version", "lineage", "payload"};

static pthread_mutex_t lag_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char topic[128];
    int32_t partition;
    int64_t lag;
} lag_tab[KP_LAG_MAX];
static int lag_n;
static atomic_int max_behind_s;

void kp_telemetry_set_lag(const char *const *topics, const int32_t *partitions, const int64_t *lags,
                          int n)
{
    pthread_mutex_lock(&lag_lock);
    lag_n = 0;
    for (int i = 0; i < n && lag_n < KP_LAG_MAX; i++, lag_n++) {
        snprintf(lag_tab[lag_n].topic, sizeof lag_tab[lag_n].topic, "%s", topics[i]);
        lag_tab[lag_n].partition = partitions[i];
        lag_tab[lag_n].lag = lags[i];
    }
    pthread_mutex_unlock(&lag_lock);
}

void kp_telemetry_set_max_behind(int s)
{
    atomic_store(&max_behind_s, s);
}

double kp_telemetry_behind_s(void)
{
    long long since = atomic_load(&kp_m.model_behind_since_ms);
    if (!since) return 0;
    double d = (double)(kp_now_ms() - since) / 1000.0;
    return d > 0 ? d : 0;
}

/* ---- health ---- */

static atomic_int max_paused_s = 60, max_stall_s = 60, http_max_conns = 32, http_timeout_s = 10;
static atomic_llong loop_tick_ms[KP_LOOP_N];
static const char *const loop_name[KP_LOOP_N] = {"serve", "train"};
static atomic_llong cache_fail_since_ms; /* first failure of the current run of failures, 0 = ok */
static atomic_int cache_full;            /* the last failure was an OOM */
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static char cache_err[256];

void kp_telemetry_tick(kp_loop l)
{
    if (l >= 0 && l < KP_LOOP_N) atomic_store(&loop_tick_ms[l], kp_now_ms());
}

void kp_telemetry_set_paused(int paused)
{
    if (!paused)
        atomic_store(&kp_m.paused_since_ms, 0);
    else if (!atomic_load(&kp_m.paused_since_ms))
        atomic_store(&kp_m.paused_since_ms, kp_now_ms());
    atomic_store(&kp_m.paused, paused ? 1 : 0);
}

void kp_telemetry_cache_result(const char *err)
{
    if (!err || !err[0]) {
        atomic_store(&cache_fail_since_ms, 0);
        atomic_store(&cache_full, 0);
        return;
    }
    pthread_mutex_lock(&cache_lock);
    snprintf(cache_err, sizeof cache_err, "%s", err);
    pthread_mutex_unlock(&cache_lock);
    atomic_store(&cache_full, strstr(err, "OOM") != NULL);
    long long zero = 0;
    atomic_compare_exchange_strong(&cache_fail_since_ms, &zero, kp_now_ms());
}

void kp_telemetry_set_limits(int paused_s, int stall_s, int max_conns, int timeout_s)
{
    atomic_store(&max_paused_s, paused_s);
    atomic_store(&max_stall_s, stall_s);
    atomic_store(&http_max_conns, max_conns);
    atomic_store(&http_timeout_s, timeout_s);
}

/* Appends "; " and a reason to body[n] at *w (truncating). */
static void add_reason(char *body, size_t n, size_t *w, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void add_reason(char *body, size_t n, size_t *w, const char *fmt, ...)
{
    if (*w + 3 >= n) return;
    if (*w) *w += (size_t)snprintf(body + *w, n - *w, "; ");
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(body + *w, n - *w, fmt, ap);
    va_end(ap);
    if (k > 0) *w = *w + (size_t)k < n ? *w + (size_t)k : n - 1;
}

int kp_telemetry_health(char *body, size_t n)
{
    char why[768] = "";
    size_t w = 0;
    long long now = kp_now_ms();
    double behind = kp_telemetry_behind_s();
    int mb = atomic_load(&max_behind_s), mp = atomic_load(&max_paused_s);
    int ms = atomic_load(&max_stall_s);
    if (mb > 0 && behind > mb) add_reason(why, sizeof why, &w, "behind %.0fs > %ds", behind, mb);
    long long ps = atomic_load(&kp_m.paused_since_ms);
    if (mp > 0 && ps && atomic_load(&kp_m.paused) && now - ps > (long long)mp * 1000)
        add_reason(why, sizeof why, &w, "paused %llds > %ds", (now - ps) / 1000, mp);
    for (int l = 0; ms > 0 && l < KP_LOOP_N; l++) {
        long long t = atomic_load(&loop_tick_ms[l]);
        if (t && now - t > (long long)ms * 1000)
            add_reason(why, sizeof why, &w, "wedged: %s loop idle %llds > %ds", loop_name[l],
                       (now - t) / 1000, ms);
    }
    long long cf = atomic_load(&cache_fail_since_ms);
    if (cf) {
        char e[256];
        pthread_mutex_lock(&cache_lock);
        snprintf(e, sizeof e, "%s", cache_err);
        pthread_mutex_unlock(&cache_lock);
        if (atomic_load(&cache_full))
            add_reason(why, sizeof why, &w, "cache full: %s", e);
        else if (ms > 0 && now - cf > (long long)ms * 1000)
            add_reason(why, sizeof why, &w, "cache failing %llds > %ds: %s", (now - cf) / 1000, ms,
                       e);
    }
    int ok = w == 0;
    if (body && n)
        snprintf(body, n,
                 "%s model_version=%llu topic_version=%llu behind_s=%.1f stuck=%lld paused=%lld\n",
                 ok ? "ok" : why, (unsigned long long)atomic_load(&kp_m.model_version),
                 (unsigned long long)atomic_load(&kp_m.model_topic_version), behind,
                 atomic_load(&kp_m.model_stuck), atomic_load(&kp_m.paused));
    return ok;
}

/* Upper bounds of the batch latency buckets, seconds. */
static const double hist_le[KP_HIST_BUCKETS] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                                0.2,   0.5,   1,     2,    5,    10,   30};

void kp_telemetry_observe_batch(uint64_t us)
{
    int b = 0;
    while (b < KP_HIST_BUCKETS && (double)us / 1e6 > hist_le[b])
        b++;
    atomic_fetch_add(&kp_m.batch_hist[b], 1);
    atomic_fetch_add(&kp_m.batch_sum_us, us);
}

typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...)
{
    if (s->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            s->oom = 1;
            return;
        }
        if ((size_t)n < s->cap - s->len) {
            s->len += (size_t)n;
            return;
        }
        size_t ncap = s->cap * 2 + (size_t)n;
        char *nb = realloc(s->buf, ncap);
        if (!nb) {
            s->oom = 1;
            return;
        }
        s->buf = nb;
        s->cap = ncap;
    }
}

/* The counters and gauges of kp_m, in /metrics order: name, type, help, field. */
typedef struct {
    const char *name, *type, *help;
    size_t off;   /* of the field in kp_metrics */
    int is_llong; /* atomic_llong, else atomic_ullong */
    int n_topics; /* KP_MT_N: one atomic_ullong per input topic (a counter); 0: one value */
} metric_def;

#define TOPICS(n, h, f)                                                                            \
    {                                                                                              \
        n, "counter", h, offsetof(kp_metrics, f), 0, KP_MT_N                                       \
    }
#define COUNT(n, h, f)                                                                             \
    {                                                                                              \
        n, "counter", h, offsetof(kp_metrics, f), 0, 0                                             \
    }
#define GAUGE(n, h, f)                                                                             \
    {                                                                                              \
        n, "gauge", h, offsetof(kp_metrics, f), 0, 0                                               \
    }
#define GAUGE_S(n, h, f)                                                                           \
    {                                                                                              \
        n, "gauge", h, offsetof(kp_metrics, f), 1, 0                                               \
    }

static const metric_def metrics[] = {
    TOPICS("kprec_events_consumed_total", "Events read from Kafka.", consumed),
    TOPICS("kprec_events_processed_total", "Events fully handled.", processed),
    TOPICS("kprec_events_dead_lettered_total", "Events sent to the dead-letter topic.",
           dead_lettered),
    COUNT("kprec_suggestions_delivered_total", "Suggestion records acknowledged.",
          suggestions_delivered),
    COUNT("kprec_items_without_suggestions_total",
          "Items published with no suggestion (none passed the gate).", items_empty),
    COUNT("kprec_producer_errors_total", "Failed deliveries (retried).", producer_errors),
    COUNT("kprec_redis_errors_total", "Failed Redis round trips (retried).", redis_errors),
    COUNT("kprec_redis_writes_total", "Recommendation entries written to Redis.", redis_writes),
    COUNT("kprec_redis_stale_skipped_total",
          "Writes skipped because Redis held a newer model version.", stale_skipped),
    COUNT("kprec_batches_total", "Micro-batches processed.", batches),
    COUNT("kprec_rebalances_total", "Consumer group rebalances seen.", rebalances),
    GAUGE_S("kprec_in_flight", "Events taken from Kafka and not yet done.", in_flight),
    GAUGE_S("kprec_paused", "1 while input partitions are paused (backpressure).", paused),
    GAUGE_S("kprec_train_pending", "Trainer: events waiting for their item's title.",
            train_pending),
    GAUGE("kprec_model_version", "Version of the model scoring now.", model_version),
    GAUGE_S("kprec_keyphrases", "Keyphrases in the index.", keyphrases),
    GAUGE_S("kprec_consumer_lag_messages",
            "Messages behind the end of the assigned partitions, summed.", consumer_lag),
    COUNT("kprec_model_deltas_applied_total", "Model deltas applied.", deltas_applied),
    COUNT("kprec_model_checkpoints_loaded_total", "Model checkpoints loaded.", checkpoints_loaded),
    COUNT("kprec_model_swaps_total", "New models swapped into serving.", model_swaps),
    GAUGE_S("kprec_model_delta_lag_ms", "Last delta: published to applied, ms.", delta_lag_ms),
    GAUGE_S("kprec_model_reembed_ms", "Last re-embedding of the inventory, ms.", reembed_ms),
    COUNT("kprec_train_steps_total", "Trainer optimisation steps.", train_steps),
    COUNT("kprec_train_events_total", "Events used in training steps.", train_events),
    COUNT("kprec_model_deltas_published_total", "Model deltas published.", deltas_published),
    GAUGE("kprec_model_delta_bytes", "Size of the last published delta.", delta_bytes),
    GAUGE("kprec_model_topic_version", "Newest authentic model version seen on the model topic.",
          model_topic_version),
    GAUGE("kprec_model_follower_version", "Version of the model the follower holds.",
          model_follower_version),
    GAUGE_S("kprec_model_stuck",
            "1 while this replica is at a gap with no newer checkpoint on the topic.", model_stuck),
};

static void render_metric(sbuf *s, const metric_def *d)
{
    const char *p = (const char *)&kp_m + d->off;
    sb_printf(s, "# HELP %s %s\n# TYPE %s %s\n", d->name, d->help, d->name, d->type);
    if (d->n_topics) {
        atomic_ullong *v = (atomic_ullong *)p;
        for (int t = 0; t < d->n_topics; t++)
            sb_printf(s, "%s{topic=\"%s\"} %llu\n", d->name, kp_mtopic_name[t],
                      (unsigned long long)atomic_load(&v[t]));
    } else if (d->is_llong) {
        sb_printf(s, "%s %lld\n", d->name, (long long)atomic_load((atomic_llong *)p));
    } else {
        sb_printf(s, "%s %lld\n", d->name, (long long)atomic_load((atomic_ullong *)p));
    }
}

static char build_info[1024];

void kp_telemetry_set_build_info(const char *labels)
{
    snprintf(build_info, sizeof build_info, "%s", labels ? labels : "");
}

char *kp_telemetry_render(void)
{
    sbuf s = {malloc(4096), 0, 4096, 0};
    if (!s.buf) return NULL;
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++)
        render_metric(&s, &metrics[i]);
    sb_printf(&s,
              "# HELP kprec_model_behind_seconds How long the model topic has had a newer version "
              "than this replica holds (0 = current).\n"
              "# TYPE kprec_model_behind_seconds gauge\nkprec_model_behind_seconds %.3f\n",
              kp_telemetry_behind_s());
    sb_printf(&s,
              "# HELP kprec_model_lineage Lineage of the follower's model (0 = bootstrap).\n"
              "# TYPE kprec_model_lineage gauge\nkprec_model_lineage %llu\n",
              (unsigned long long)atomic_load(&kp_m.model_lineage));
    sb_printf(&s, "# HELP kprec_model_records_rejected_total Model-topic records dropped.\n"
                  "# TYPE kprec_model_records_rejected_total counter\n");
    for (int i = 1; i < KP_MREJ_N; i++)
        sb_printf(&s, "kprec_model_records_rejected_total{reason=\"%s\"} %llu\n", kp_mrej_name[i],
                  (unsigned long long)atomic_load(&kp_m.model_rejected[i]));
    sb_printf(&s, "# HELP kprec_consumer_lag Messages behind the end, per assigned "
                  "partition.\n# TYPE kprec_consumer_lag gauge\n");
    pthread_mutex_lock(&lag_lock);
    for (int i = 0; i < lag_n; i++)
        sb_printf(&s, "kprec_consumer_lag{topic=\"%s\",partition=\"%d\"} %lld\n", lag_tab[i].topic,
                  (int)lag_tab[i].partition, (long long)lag_tab[i].lag);
    pthread_mutex_unlock(&lag_lock);
    sb_printf(&s,
              "# HELP kprec_train_loss Last training step's loss.\n"
              "# TYPE kprec_train_loss gauge\nkprec_train_loss %.6f\n",
              (double)atomic_load(&kp_m.train_loss_micro) / 1e6);
    if (build_info[0])
        sb_printf(&s,
                  "# HELP kprec_build_info What this binary was built from and runs with.\n"
                  "# TYPE kprec_build_info gauge\nkprec_build_info{%s} 1\n",
                  build_info);
    sb_printf(&s, "# HELP kprec_batch_seconds Micro-batch latency, consume to done.\n"
                  "# TYPE kprec_batch_seconds histogram\n");
    unsigned long long cum = 0;
    for (int b = 0; b < KP_HIST_BUCKETS; b++) {
        cum += atomic_load(&kp_m.batch_hist[b]);
        sb_printf(&s, "kprec_batch_seconds_bucket{le=\"%g\"} %llu\n", hist_le[b], cum);
    }
    cum += atomic_load(&kp_m.batch_hist[KP_HIST_BUCKETS]);
    sb_printf(&s, "kprec_batch_seconds_bucket{le=\"+Inf\"} %llu\n", cum);
    sb_printf(&s, "kprec_batch_seconds_sum %.6f\nkprec_batch_seconds_count %llu\n",
              (double)atomic_load(&kp_m.batch_sum_us) / 1e6, cum);
    if (s.oom) {
        free(s.buf);
        return NULL;
    }
    return s.buf;
}

static struct MHD_Daemon *daemon_;
static int http_active; /* open connections: touched by MHD's one thread only */
static int http_limit;

/* Counts the open connections (MHD_OPTION_NOTIFY_CONNECTION). */
static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe)
{
    (void)cls, (void)conn, (void)socket_context;
    http_active += toe == MHD_CONNECTION_NOTIFY_STARTED ? 1 : -1;
}

/* Past the limit a new connection is accepted and closed at once (MHD_OPTION_ACCEPT_POLICY
 * refuses it): it neither holds a descriptor nor waits in the backlog ahead of later requests. */
static enum MHD_Result on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
    (void)cls, (void)addr, (void)addrlen;
    return http_active < http_limit ? MHD_YES : MHD_NO;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **state)
{
    (void)cls, (void)version, (void)upload, (void)upload_size, (void)state;
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
        static const char msg[] = "method not allowed\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
    } else if (!strcmp(url, "/metrics")) {
        char *body = kp_telemetry_render();
        if (!body) return MHD_NO;
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4");
    } else if (!strcmp(url, "/healthz")) {
        char body[1024];
        if (!kp_telemetry_health(body, sizeof body)) status = MHD_HTTP_SERVICE_UNAVAILABLE;
        r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_COPY);
    } else {
        static const char msg[] = "not found: try /metrics or /healthz\n";
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_FOUND;
    }
    if (!r) return MHD_NO;
    enum MHD_Result ret = MHD_queue_response(conn, status, r);
    MHD_destroy_response(r);
    return ret;
}

int kp_telemetry_http_start(const char *addr, int port)
{
    if (port == 0) return 0;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
        kp_error("metrics: bad bind address '%s'", addr);
        return -1;
    }
    /* Our own listening socket: SO_REUSEADDR (restart while old connections linger) but never
     * SO_REUSEPORT, so a second process on the same port fails here, with the reason. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, 64)) {
        int e = errno;
        kp_error("metrics: cannot listen on %s:%d: %s%s", addr, port, strerror(e),
                 e == EADDRINUSE ? " (another process has the port: is a second worker running "
                                   "with the same [worker] metrics_port?)"
                                 : "");
        if (fd >= 0) close(fd);
        return -1;
    }
    http_limit = atomic_load(&http_max_conns);
    http_active = 0;
    unsigned timeout = (unsigned)atomic_load(&http_timeout_s);
    /* MHD's own limit is a backstop above ours (at its limit it would stop accepting, and new
     * connections would queue in the backlog behind the idle ones) */
    daemon_ = MHD_start_daemon(MHD_USE_AUTO | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                               (uint16_t)port, on_accept, NULL, on_request, NULL,
                               MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT,
                               (unsigned)http_limit + 4, MHD_OPTION_CONNECTION_TIMEOUT, timeout,
                               MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_END);
    if (!daemon_) {
        kp_error("metrics: cannot serve on %s:%d", addr, port);
        close(fd);
        return -1;
    }
    kp_info("metrics: http://%s:%d/metrics", addr, port);
    return 0;
}

void kp_telemetry_http_stop(void)
{
    if (daemon_) MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
