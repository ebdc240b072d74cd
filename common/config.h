/* config.h -- the worker's configuration: an INI file (parsed by inih), then environment overrides.
 *
 * Every known key lives in one table (config.c) with its type and default; config.example.ini
 * documents the same keys (a unit test checks that both agree). Any key of a [kafka] section is
 * kept verbatim and handed to librdkafka as-is, so SASL/SSL and tuning need no code.
 * Environment: KPREC_<SECTION>_<KEY>=value overrides the file (KPREC_REDIS_PORT=6380); in the kafka
 * section underscores become dots (KPREC_KAFKA_BOOTSTRAP_SERVERS -> bootstrap.servers). */
#ifndef KP_CONFIG_H
#define KP_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define KP_CONFIG_MAX_KAFKA 64
/* Longest line of a config file, in bytes without its line end: libinih's line buffer
 * (INI_MAX_LINE, 200 as Debian builds it) minus the '\n' and the NUL. A longer line is an error
 * ("FILE:LINE: line longer than 198 bytes"), never cut in two (inih would parse the tail as a line
 * of its own). Long values belong in files: ssl.key.location, not ssl.key.pem. */
#define KP_CONFIG_MAX_LINE 198
/* What `kprec config` and every message print instead of a secret value. */
#define KP_CONFIG_REDACTED "[redacted]"

typedef struct {
    /* [worker] */
    char role[16];       /* serve | train | both */
    int batch_size;      /* max events per micro-batch */
    int batch_linger_ms; /* max wait to fill a micro-batch */
    int overlap;      /* 1: score batch N+1 while batch N's sinks work (consumer/serve_writer.h) */
    int top_k;        /* suggestions per item */
    double min_score; /* drop suggestions scoring below this */
    int max_title_bytes;  /* longer titles are dead-lettered */
    int retry_backoff_ms; /* first retry delay when Redis/Kafka fail; doubles up to max */
    int retry_backoff_max_ms;
    int metrics_port; /* 0 = no HTTP endpoint */
    char metrics_bind[64];
    int metrics_max_connections; /* HTTP connections at once; more are refused */
    int metrics_timeout_s;       /* an idle HTTP connection is closed after this long */
    int health_max_paused_s;     /* /healthz: 503 when paused longer (0 = off) */
    int health_max_stall_s; /* /healthz: 503 when a loop or Redis is stuck this long (0 = off) */
    /* [topics] */
    char topic_items[256], topic_clicks[256], topic_judgments[256], topic_suggestions[256],
        topic_model[256], topic_dlq[256];
    char topic_shadow[256];    /* the shadow model's lists ([model] shadow); never cached */
    int topic_partitions;      /* used by `kprec topics` when creating them */
    char topic_inventory[256]; /* compacted keyphrase inventory topic; empty = [model] keyphrases */
    /* [redis] */
    char redis_host[256];
    int redis_port;
    char redis_user[256]; /* ACL user (AUTH user password); empty = the default user */
    char redis_password[256];
    int redis_db;
    int redis_connect_timeout_ms, redis_command_timeout_ms;
    int redis_ttl_s;           /* TTL of kprec:rec:* keys; 0 = no expiry */
    char redis_prefix[64];     /* key prefix, default "kprec:" */
    int redis_title_ttl_s;     /* TTL of kprec:item:* (refreshed by every title lookup); 0 = none */
    char redis_cluster[512];   /* Redis Cluster seeds host:port,...; empty = one node (host/port) */
    int redis_cluster_wait_ms; /* cluster: WAIT for 1 replica after writes, this long (0 = no) */
    /* [model] */
    char model_path[1024];       /* bi-encoder checkpoint; empty = seeded initialisation */
    char model_keyphrases[1024]; /* keyphrase inventory TSV: keyphrase_id<TAB>keyphrase, header */
    long model_seed;
    int model_prefix_dim; /* Matryoshka first pass size; 0 = full size only */
    int model_ivf_nprobe; /* > 0: IVF index (model/ivf.h) probing this many lists; 0 = exact */
    int model_ivf_nlist;  /* IVF lists (0 = about sqrt(keyphrases)) */
    char model_ivf_first_pass[8]; /* IVF lists scored from: fp32 (the rows) | int8 | bf16 copy */
    int model_ivf_rescore;        /* int8 / bf16: candidates rescored exactly = this x k */
    int model_blas_threads;       /* BLAS threads of the worker (0 = OpenBLAS default) */
    int model_threads;    /* the model's own fan-out width, 1 or 2 (kp_par_threads, model/blas.h) */
    int model_follow;     /* 1: serve workers follow the model topic (deltas, checkpoints) */
    int model_rebuild_ms; /* at most one re-embedding of the inventory per this many ms */
    int model_reload_s;   /* re-read the inventory file when it changed, checked this often
                             (0 = never) */
    /* the serving pipeline (model/recommender.h): retrieve -> re-rank -> calibrate -> gate */
    char model_ce[1024];          /* cross-encoder re-ranking the candidates; empty = none */
    int model_candidates;         /* BE top-N candidates (0 = [worker] top_k) */
    int model_hybrid;             /* + BM25 top-M of the title (0 = off) */
    char model_calibration[1024]; /* kprec calibrate's file: score -> p(relevant); empty = none */
    double model_threshold;       /* publish only p >= threshold (0 = no gate) */
    char model_hmac_key[256];     /* HMAC-SHA-256 key of the model topic's records (secret) */
    int model_max_behind_s; /* /healthz answers 503 when the model is behind this long (0 = off) */
    /* model lifecycle (consumer/arms.h): shadow scoring and an A/B split */
    char model_shadow[1024];       /* checkpoint scored beside the live model; empty = none */
    char model_ab_candidate[1024]; /* checkpoint of the A/B split's candidate arm; empty = none */
    int model_ab_weight;           /* percent of items (hash of item_id) the candidate scores */
    /* [train] */
    char train_group[256];            /* consumer group of the trainer */
    char train_checkpoint_dir[1024];  /* optional local cache of checkpoints (any role) */
    int train_checkpoint_keep;        /* checkpoint files kept in it */
    char train_transactional_id[256]; /* the trainer's Kafka transactional.id (fences zombies) */
    char train_teacher[1024];         /* cross-encoder checkpoint for distillation; empty = none */
    int train_batch_size;             /* events per training step */
    int train_batch_linger_ms;
    double train_lr, train_lr_emb;
    double train_w_ctr, train_w_bce, train_w_sr, train_w_distill;
    int train_buffer;             /* training buffer: examples kept for replay */
    int train_negatives;          /* random keyphrases per item among the distillation candidates */
    int train_delta_steps;        /* publish a delta every N steps ... */
    int train_delta_ms;           /* ... or every T ms, whichever comes first */
    int train_checkpoint_every;   /* write a checkpoint every M versions */
    int train_resolve_timeout_ms; /* an event whose item has no title is retried this long */
    int train_max_chunk;          /* bytes per model-topic record */
    int train_max_pending;        /* events waiting for titles; when reached, pause the input */
    /* [schemas] */
    char schemas_dir[1024]; /* extra writer schemas <id>-<Name>.avsc; empty = built-in only */
    /* [schemas] registry: a Confluent-compatible schema registry (schemas/registry_http.h) */
    char schemas_registry[1024];          /* base URL; empty = the built-in id table */
    char schemas_registry_user[256];      /* HTTP basic auth (empty = none) */
    char schemas_registry_password[256];  /* (secret) */
    char schemas_registry_ca[1024];       /* CA bundle for https (empty = the system's) */
    char schemas_registry_cert[1024];     /* client certificate (PEM) for mutual TLS */
    char schemas_registry_key[1024];      /* its private key (PEM) */
    int schemas_registry_timeout_ms;      /* per request */
    int schemas_registry_startup_wait_ms; /* producers: how long to retry registering at start */
    /* [kafka]: passed through */
    int n_kafka;
    char *kafka_key[KP_CONFIG_MAX_KAFKA];
    char *kafka_val[KP_CONFIG_MAX_KAFKA];
} kp_config;

/* Fills c with every default. Never fails. */
void kp_config_defaults(kp_config *c);

/* Loads path over the defaults, then applies KPREC_* environment overrides. On error returns -1
 * and writes "FILE:LINE: message naming the key" into err; c is then partly filled and must still
 * be released with kp_config_free. The caller owns c's strings (kp_config_free). */
int kp_config_load(kp_config *c, const char *path, char *err, size_t errlen);

/* As kp_config_load, from an open stream f (read to its end, not closed); path only names the
 * source in messages. */
int kp_config_load_stream(kp_config *c, FILE *f, const char *path, char *err, size_t errlen);

/* Applies one setting (section, key, value) as the file would. Returns 0, or -1 with a message. */
int kp_config_set(kp_config *c, const char *section, const char *key, const char *value, char *err,
                  size_t errlen);

/* Applies KPREC_<SECTION>_<KEY> variables from envp (NULL-terminated, e.g. environ). */
int kp_config_apply_env(kp_config *c, char **envp, char *err, size_t errlen);

/* Returns the value of a [kafka] key, or NULL. */
const char *kp_config_kafka(const kp_config *c, const char *key);

/* Frees the [kafka] strings. Accepts NULL. */
void kp_config_free(kp_config *c);

/* Iterates over the known (non-kafka) keys: returns 0 and sets *section, *key for index i, or -1
 * past the end. Used by tests and `kprec config`. */
int kp_config_key_at(int i, const char **section, const char **key);

/* 1 if the value of key (of section; any case) is a secret that must never be printed: passwords,
 * secrets, tokens, credentials, private keys (ssl.key.pem, ssl_key), sasl.oauthbearer.config and
 * .extensions, the [redis] password. Public values (certificates, user names, paths) are 0. */
int kp_config_is_secret(const char *section, const char *key);

/* Writes the effective configuration as INI text to f, the value of every non-empty secret key
 * (kp_config_is_secret) replaced by KP_CONFIG_REDACTED. */
void kp_config_dump(const kp_config *c, FILE *f);

#endif
