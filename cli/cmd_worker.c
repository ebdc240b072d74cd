/* kprec worker: the stream worker (serve, train or both roles; consumer/). */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"
#include "cli/version.h"
#include "common/log.h"
#include "common/telemetry.h"
#include "consumer/group.h"
#include "consumer/learn.h"
#include "consumer/serve.h"

static void on_signal(int sig)
{
    (void)sig; /* lock-free atomics: safe here, and seen by every thread (consumer/group.h) */
    if (atomic_load(&kp_worker_stop)) atomic_store(&kp_worker_stop_hard, 1);
    atomic_store(&kp_worker_stop, 1);
}

typedef struct {
    const kp_config *c;
    int rc;
} trainer_arg;

static void *trainer_thread(void *p)
{
    trainer_arg *a = p;
    a->rc = kp_learn_run(a->c);
    if (a->rc)
        atomic_store(&kp_worker_stop, 1); /* role = both: no silent serving without its trainer */
    return NULL;
}

/* librdkafka before 2.6.1 appends its SCRAM client nonce a second time in the client-final message
 * (confluentinc/librdkafka#4895); Kafka 4.x checks the nonce strictly (RFC 5802) and refuses the
 * login. One line at start-up says so, before the broker's "authentication failed" does. */
static void warn_scram(const kp_config *c)
{
    const char *m = kp_config_kafka(c, "sasl.mechanism");
    if (!m) m = kp_config_kafka(c, "sasl.mechanisms"); /* librdkafka's alias */
    if (!m || strncasecmp(m, "SCRAM-", 6) || rd_kafka_version() >= 0x02060100) return;
    kp_warn("[kafka] sasl.mechanism = %s: librdkafka %s sends a SCRAM nonce that Kafka 4.x brokers "
            "reject (fixed in librdkafka 2.6.1): use SASL PLAIN or OAUTHBEARER over SASL_SSL, or "
            "build kprec against librdkafka >= 2.6.1",
            m, rd_kafka_version_str());
}

int kp_cmd_worker(int argc, char **argv)
{
    const char *path;
    int rc = kp_cli_config_only_opts(
        argc, argv,
        "usage: kprec worker -c FILE\n"
        "Runs the stream worker. [worker] role = serve: consumes [topics] items in the\n"
        "consumer group [kafka] group.id, caches recommendations in Redis, publishes\n"
        "suggestions, follows the model topic. role = train: learns from [topics]\n"
        "clicks and judgments, publishes model deltas. role = both: the two.\n"
        "SIGINT/SIGTERM: finish in-flight work, commit, exit (twice: stop waiting).\n"
        "  -c FILE   the configuration (config.example.ini documents every key and its\n"
        "            default; KPREC_<SECTION>_<KEY> variables override it)\n"
        "Example:\n"
        "  kprec worker -c /tmp/kp/kprec.ini\n",
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
    char info[2048];
    kp_build_info_line(info, sizeof info);
    kp_info("%s", info);
    kp_build_info_labels(info, sizeof info);
    kp_telemetry_set_build_info(info);
    warn_scram(&c);
    kp_telemetry_set_limits(c.health_max_paused_s, c.health_max_stall_s, c.metrics_max_connections,
                            c.metrics_timeout_s);
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
        atomic_store(&kp_worker_stop, 1); /* the serving loop ended: stop the trainer too */
        pthread_join(t, NULL);
        if (!rc) rc = a.rc;
    } else {
        rc = kp_serve_run(&c);
    }
    kp_config_free(&c);
    return rc;
}
