/* The stream verbs: worker, replay, get, topics, dump, config. */
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache/cache.h"
#include "cli/cli.h"
#include "common/log.h"
#include "common/telemetry.h"
#include "consumer/learn.h"
#include "consumer/serve.h"
#include "producer/producer.h"
#include "producer/replay.h"
#include "schemas/codec.h"

int kp_cli_config(kp_config *c, const char *path)
{
    char err[1024];
    kp_config_defaults(c);
    if (path) {
        if (kp_config_load(c, path, err, sizeof err)) {
            fprintf(stderr, "kprec: %s\n", err);
            kp_config_free(c);
            return -1;
        }
    } else {
        extern char **environ;
        if (kp_config_apply_env(c, environ, err, sizeof err)) {
            fprintf(stderr, "kprec: environment: %s\n", err);
            kp_config_free(c);
            return -1;
        }
    }
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    if (kp_worker_stop) kp_worker_stop_hard = 1;
    kp_worker_stop = 1;
}

typedef struct {
    const kp_config *c;
    int rc;
} trainer_arg;

static void *trainer_thread(void *p)
{
    trainer_arg *a = p;
    a->rc = kp_learn_run(a->c);
    if (a->rc) kp_worker_stop = 1; /* role = both: no silent serving without its trainer */
    return NULL;
}

/* Options of a verb that takes only -c FILE and --help. Returns -1 with *path set (NULL when not
 * given) to go on, or the exit code once usage was printed (0 for --help). */
static int config_only_opts(int argc, char **argv, const char *usage, const char **path)
{
    static const struct option opts[] = {
        {"config", required_argument, 0, 'c'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int ch;
    *path = NULL;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (ch != 'c') {
            fputs(usage, ch == 'h' ? stdout : stderr);
            return ch == 'h' ? 0 : 2;
        }
        *path = optarg;
    }
    return -1;
}

int kp_cmd_worker(int argc, char **argv)
{
    const char *path;
    int rc = config_only_opts(
        argc, argv,
        "usage: kprec worker -c FILE\n"
        "Runs the stream worker. [worker] role = serve: consumes [topics] items in the\n"
        "consumer group [kafka] group.id, caches recommendations in Redis, publishes\n"
        "suggestions, follows the model topic. role = train: learns from [topics]\n"
        "clicks and judgments, publishes model deltas. role = both: the two.\n"
        "SIGINT/SIGTERM: finish in-flight work, commit, exit (twice: stop waiting).\n",
        &path);
    if (rc >= 0) return rc;
    if (!path) {
        fprintf(stderr, "kprec worker: -c FILE is required\n");
        return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    if (strcmp(c.role, "serve") && strcmp(c.role, "train") && strcmp(c.role, "both")) {
        fprintf(stderr, "kprec: %s: [worker] role must be serve, train or both, not '%s'\n", path,
                c.role);
        kp_config_free(&c);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    if (!strcmp(c.role, "train")) {
        if (kp_telemetry_http_start(c.metrics_bind, c.metrics_port)) {
            kp_config_free(&c);
            return 2;
        }
        rc = kp_learn_run(&c);
        kp_telemetry_http_stop();
    } else if (!strcmp(c.role, "both")) {
        /* one process, two threads: the trainer and the serving loop (which owns /metrics) */
        pthread_t t;
        trainer_arg a = {&c, 0};
        if (pthread_create(&t, NULL, trainer_thread, &a)) {
            fprintf(stderr, "kprec: cannot start the trainer thread\n");
            kp_config_free(&c);
            return 1;
        }
        rc = kp_serve_run(&c);
        kp_worker_stop = 1; /* the serving loop ended: stop the trainer too */
        pthread_join(t, NULL);
        if (!rc) rc = a.rc;
    } else {
        rc = kp_serve_run(&c);
    }
    kp_config_free(&c);
    return rc;
}

int kp_cmd_replay(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"items", required_argument, 0, 'i'},
                                         {"rate", required_argument, 0, 'r'},
                                         {"count", required_argument, 0, 'n'},
                                         {"bad", required_argument, 0, 'b'},
                                         {"v0-every", required_argument, 0, 'o'},
                                         {"topic", required_argument, 0, 't'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"clicks", required_argument, 0, 'C'},
                                         {"judgments", required_argument, 0, 'J'},
                                         {"keyphrases", required_argument, 0, 'K'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    kp_replay_opts o = {0};
    int ch;
    while ((ch = getopt_long(argc, argv, "c:i:r:n:b:o:t:qC:J:K:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c':
            path = optarg;
            break;
        case 'i':
            o.items_path = optarg;
            break;
        case 'r':
            o.rate = atof(optarg);
            break;
        case 'n':
            o.count = atol(optarg);
            break;
        case 'b':
            o.bad = atol(optarg);
            break;
        case 'o':
            o.v0_every = atol(optarg);
            break;
        case 't':
            o.topic = optarg;
            break;
        case 'q':
            o.quiet = 1;
            break;
        case 'C':
            o.clicks_path = optarg;
            break;
        case 'J':
            o.judgments_path = optarg;
            break;
        case 'K':
            o.keyphrases_path = optarg;
            break;
        default:
            fprintf(
                ch == 'h' ? stdout : stderr,
                "usage: kprec replay -c FILE --items TSV [--rate N] [--count N] [--bad N]\n"
                "                    [--v0-every N] [--topic T] [--quiet]\n"
                "Publishes one ItemListed event per row of TSV (item_id<TAB>title, header row)\n"
                "to [topics] items, keyed by item_id.\n"
                "  --rate N      events per second (default: as fast as the broker takes them)\n"
                "  --count N     send N events, starting the file over with ids suffixed ~1, ~2..\n"
                "  --bad N       also send N malformed records (tests the dead-letter path)\n"
                "  --v0-every N  every Nth event uses the older ItemListed v0 schema\n"
                "Other streams (--keyphrases TSV gives the keyphrase texts):\n"
                "  --clicks LOG     AdEvents to [topics] clicks from a click log (kprec\n"
                "                   simulate-clicks: item_id keyphrase_id kind position ts)\n"
                "  --judgments TSV  Judgments to [topics] judgments (pair_id keyphrase_id item_id\n"
                "                   relevance 1..3; titles from --items)\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (!o.items_path && !o.clicks_path) {
        fprintf(stderr, "kprec replay: --items TSV is required\n");
        return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    int rc = kp_replay_run(&c, &o);
    kp_config_free(&c);
    return rc;
}

/* `kprec get --json`: one line per item. 0, or 1 when the cached text is not valid JSON. */
static int print_entry_json(const char *item, uint64_t ver, int64_t gen, const char *sugg)
{
    char err[512];
    char *line = kp_cache_entry_json(item, ver, gen, sugg, err, sizeof err);
    if (!line) {
        fprintf(stderr, "kprec get: %s: cached suggestions are %s\n", item, err);
        return 1;
    }
    puts(line);
    free(line);
    return 0;
}

/* `kprec get`: the item, its model version and time, one numbered line per suggestion. */
static int print_entry_text(const char *item, const char *title, uint64_t ver, int64_t gen,
                            const char *sugg)
{
    char err[512], when[64];
    kp_cache_suggestions s;
    if (kp_cache_suggestions_parse(sugg, &s, err, sizeof err)) {
        fprintf(stderr, "kprec get: %s: cached suggestions are %s\n", item, err);
        return 1;
    }
    time_t t = (time_t)(gen / 1000);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", gmtime(&t));
    printf("%s  %s\n  model version %" PRIu64 ", generated %s\n", item, title ? title : "", ver,
           when);
    for (int i = 0; i < s.n; i++)
        printf("  %3d. %6.3f  %s\n", i + 1, s.items[i].score,
               s.items[i].keyphrase ? s.items[i].keyphrase : "(null)");
    kp_cache_suggestions_clear(&s);
    return 0;
}

int kp_cmd_get(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, 0, 'c'},
                                         {"json", no_argument, 0, 'j'},
                                         {"help", no_argument, 0, 'h'},
                                         {0, 0, 0, 0}};
    const char *path = NULL;
    int ch, as_json = 0;
    while ((ch = getopt_long(argc, argv, "c:jh", opts, NULL)) != -1) {
        if (ch == 'c')
            path = optarg;
        else if (ch == 'j')
            as_json = 1;
        else {
            fprintf(ch == 'h' ? stdout : stderr,
                    "usage: kprec get [-c FILE] [--json] ITEM_ID...\n"
                    "Prints the cached recommendations of each item (exit 1 if one has none).\n");
            return ch == 'h' ? 0 : 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "kprec get: ITEM_ID is required\n");
        return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    kp_cache *k = kp_cache_new(&c);
    int rc = 0;
    for (int a = optind; k && a < argc; a++) {
        uint64_t ver;
        int64_t gen;
        char *sugg = NULL, *title = NULL, err[512];
        int f = kp_cache_get(k, argv[a], &ver, &gen, &sugg, &title, err, sizeof err);
        if (f < 0) {
            fprintf(stderr, "kprec get: %s\n", err);
            rc = 1;
            break;
        }
        if (f == 0) {
            fprintf(stderr, "kprec get: %s: no recommendations cached\n", argv[a]);
            rc = 1;
            continue;
        }
        if (as_json)
            rc |= print_entry_json(argv[a], ver, gen, sugg);
        else
            rc |= print_entry_text(argv[a], title, ver, gen, sugg);
        free(sugg);
        free(title);
    }
    kp_cache_free(k);
    kp_config_free(&c);
    return rc;
}

int kp_cmd_topics(int argc, char **argv)
{
    const char *path;
    int urc = config_only_opts(
        argc, argv,
        "usage: kprec topics [-c FILE]\n"
        "Creates every topic named in [topics] with [topics] partitions partitions\n"
        "(the model topic gets 1); topics that exist are left as they are.\n",
        &path);
    if (urc >= 0) return urc;
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    char err[512], e[512];
    int rc = 1;
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *q = NULL;
    rd_kafka_NewTopic_t *nt[6] = {0};
    const char *names[6] = {c.topic_items, c.topic_clicks,      c.topic_judgments,
                            c.topic_model, c.topic_suggestions, c.topic_dlq};
    if (kp_kafka_conf_apply(conf, &c, err, sizeof err)) {
        fprintf(stderr, "kprec topics: %s\n", err);
        rd_kafka_conf_destroy(conf);
        rc = 2;
        goto out;
    }
    rd_kafka_conf_set_log_cb(conf, kp_kafka_log_cb);
    if (!(rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, e, sizeof e))) {
        fprintf(stderr, "kprec topics: %s\n", e);
        rd_kafka_conf_destroy(conf);
        goto out;
    }
    for (int i = 0; i < 6; i++) {
        nt[i] = rd_kafka_NewTopic_new(names[i], i == 3 ? 1 : c.topic_partitions, -1, e, sizeof e);
        if (!nt[i]) {
            fprintf(stderr, "kprec topics: %s: %s\n", names[i], e);
            goto out;
        }
    }
    q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(ao, 30000, e, sizeof e);
    rd_kafka_AdminOptions_set_request_timeout(ao, 30000, e, sizeof e);
    rd_kafka_CreateTopics(rk, nt, 6, ao, q);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 60000);
    if (!ev || rd_kafka_event_error(ev)) {
        fprintf(stderr, "kprec topics: %s\n",
                ev ? rd_kafka_event_error_string(ev) : "timed out waiting for the broker");
        if (ev) rd_kafka_event_destroy(ev);
        goto out;
    }
    size_t n;
    const rd_kafka_topic_result_t **res =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &n);
    rc = 0;
    for (size_t i = 0; i < n; i++) {
        rd_kafka_resp_err_t te = rd_kafka_topic_result_error(res[i]);
        if (te == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            printf("%s: exists\n", rd_kafka_topic_result_name(res[i]));
        } else if (te) {
            fprintf(stderr, "kprec topics: %s: %s\n", rd_kafka_topic_result_name(res[i]),
                    rd_kafka_topic_result_error_string(res[i]));
            rc = 1;
        } else {
            printf("%s: created\n", rd_kafka_topic_result_name(res[i]));
        }
    }
    rd_kafka_event_destroy(ev);
out:
    for (int i = 0; i < 6; i++)
        if (nt[i]) rd_kafka_NewTopic_destroy(nt[i]);
    if (q) rd_kafka_queue_destroy(q);
    if (rk) rd_kafka_destroy(rk);
    kp_config_free(&c);
    return rc;
}

int kp_cmd_config(int argc, char **argv)
{
    const char *path = argc > 2 && !strcmp(argv[1], "-c") ? argv[2] : NULL;
    if (argc > 1 && !path) {
        fprintf(strcmp(argv[1], "--help") ? stderr : stdout,
                "usage: kprec config [-c FILE]\nPrints the effective configuration.\n");
        return strcmp(argv[1], "--help") ? 2 : 0;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    kp_config_dump(&c, stdout);
    kp_config_free(&c);
    return 0;
}
