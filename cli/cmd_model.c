/* cmd_model.c -- `kprec model list` and `kprec model rollback VERSION`.
 *
 * list: reads the model topic (read_committed, every record authenticated with [model] hmac_key
 * by consumer/model_topic.h) and prints one line per version: type, lineage (generation and
 * parent), time, size, and for checkpoints written by a rollback the version they restore.
 *
 * rollback: publishes a NEW version (the topic's newest + 1) whose weights are those of an older
 * checkpoint, in a new lineage (generation = the topic's highest + 1), so every replica moves
 * forward in version (kp_model_decide loads a newer checkpoint) and back in weights. It goes
 * through the trainer's own rules: it opens the transactional producer with [train]
 * transactional_id first, which fences a running trainer (its next transaction fails and it stops;
 * restarted, it continues from the rollback), and only then reads the topic to its end, so no
 * trainer can publish between the read and the rollback. The checkpoint comes from the topic, or
 * from [train] checkpoint_dir (be-v<VERSION>-l<LINEAGE>.kpm) when retention deleted it there. The
 * optimiser state is not carried over: the next trainer starts Adam afresh on those weights. */
#include <dirent.h>
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/opts.h"
#include "common/util.h"
#include "consumer/model_topic.h"
#include "model/ckpt.h"
#include "producer/kafka.h"
#include "producer/producer.h"

#define WHO "kprec model"

/* One version seen on the topic (a delta or a checkpoint, all its chunks). */
typedef struct {
    kp_model_meta m;    /* of its first chunk */
    int64_t offset;     /* of its first chunk */
    int chunks;         /* chunks seen */
    unsigned char *buf; /* checkpoints we keep: the assembled file (size bytes) */
    uint64_t have;
} version_rec;

typedef struct {
    version_rec *v;
    int n, cap;
    uint64_t newest;  /* highest authentic version */
    uint32_t max_gen; /* highest lineage generation */
    long rejected;
} topic_scan;

static void scan_free(topic_scan *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->v[i].buf);
    free(s->v);
    memset(s, 0, sizeof *s);
}

static version_rec *find(topic_scan *s, const kp_model_meta *m)
{
    for (int i = s->n - 1; i >= 0; i--)
        if (s->v[i].m.type == m->type && s->v[i].m.version == m->version &&
            s->v[i].m.lineage == m->lineage)
            return &s->v[i];
    return NULL;
}

/* Notes one authentic record; keeps the bytes of checkpoint chunks when keep(version) says so. */
static int note(topic_scan *s, const rd_kafka_message_t *msg, const kp_model_meta *m,
                uint64_t keep_version)
{
    if (m->version > s->newest) s->newest = m->version;
    if ((uint32_t)(m->lineage >> 32) > s->max_gen) s->max_gen = (uint32_t)(m->lineage >> 32);
    version_rec *r = find(s, m);
    if (!r || m->index == 0) { /* a new version (or the same one published again) */
        if (s->n == s->cap) {
            int nc = s->cap ? s->cap * 2 : 64;
            version_rec *nv = realloc(s->v, sizeof *nv * (size_t)nc);
            if (!nv) return -1;
            s->v = nv;
            s->cap = nc;
        }
        r = &s->v[s->n++];
        *r = (version_rec){*m, msg->offset, 0, NULL, 0};
    }
    r->chunks++;
    int keep = m->type == KP_MODEL_REC_CHECKPOINT && (!keep_version || m->version == keep_version);
    if (keep && m->size && m->size <= (uint64_t)4 << 30) {
        if (!r->buf && !(r->buf = malloc((size_t)m->size))) return -1;
        if (r->have + msg->len <= m->size) {
            memcpy(r->buf + r->have, msg->payload, msg->len);
            r->have += msg->len;
        }
    }
    return 0;
}

/* Reads the model topic (partition 0, committed records) to its end. keep_version: the
 * checkpoint whose bytes to keep (0 = every checkpoint). 0, or -1 with err. */
static int scan_topic(const kp_config *c, uint64_t keep_version, topic_scan *s, char *err,
                      size_t errlen)
{
    char e[512];
    memset(s, 0, sizeof *s);
    rd_kafka_conf_t *conf = kp_kafka_conf_new(c, err, errlen);
    if (!conf) return -1;
    if (kp_kafka_conf_force(conf, "enable.auto.commit", "false", err, errlen) ||
        kp_kafka_conf_force(conf, "enable.partition.eof", "true", err, errlen) ||
        kp_kafka_conf_force(conf, "isolation.level", "read_committed", err, errlen) ||
        kp_kafka_conf_force(conf, "group.id", "kprec-model-cli", err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, e, sizeof e);
    if (!rk) {
        kp_errf(err, errlen, "%s", e);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    int rc = -1, done = 0;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, c->topic_model, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t ae = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (ae) {
        kp_errf(err, errlen, "assign %s: %s", c->topic_model, rd_kafka_err2str(ae));
        goto out;
    }
    uint64_t deadline = kp_mono_us() + 60000000u;
    while (!done) {
        if (kp_mono_us() > deadline) {
            kp_errf(err, errlen, "%s: not read to its end within 60 s", c->topic_model);
            goto out;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 500);
        if (!m) continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            done = 1;
        } else if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
                m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
                kp_errf(err, errlen, "%s: %s", c->topic_model, rd_kafka_message_errstr(m));
                rd_kafka_message_destroy(m);
                goto out;
            }
        } else {
            kp_model_meta mm;
            if (kp_model_verify_msg(c->model_hmac_key, m, &mm) != KP_MODEL_OK)
                s->rejected++;
            else if (note(s, m, &mm, keep_version)) {
                kp_errf(err, errlen, "out of memory");
                rd_kafka_message_destroy(m);
                goto out;
            }
        }
        rd_kafka_message_destroy(m);
    }
    rc = 0;
out:
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    if (rc) scan_free(s);
    return rc;
}

/* Writes buf[len] to a new temporary file; its path into out[cap]. 0 / -1. */
static int write_tmp(const unsigned char *buf, size_t len, char *out, size_t cap)
{
    const char *td = getenv("TMPDIR");
    snprintf(out, cap, "%s/kprec-model.XXXXXX", td && td[0] ? td : "/tmp");
    int fd = mkstemp(out);
    if (fd < 0) return -1;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
    if (off == len) return 0;
    unlink(out);
    return -1;
}

/* The version a checkpoint of the topic restores (its file's "rollback_of"), or 0. */
static uint64_t rollback_of(const version_rec *r)
{
    char path[1024], err[256];
    uint64_t v = 0;
    if (!r->buf || r->have != r->m.size || write_tmp(r->buf, r->have, path, sizeof path)) return 0;
    kp_ckpt_reader *rd = kp_ckpt_open(path, err, sizeof err);
    if (rd && kp_ckpt_get_u64(rd, "rollback_of", &v)) v = 0;
    kp_ckpt_close(rd);
    unlink(path);
    return v;
}

static int model_list(const kp_config *c, int as_json)
{
    char err[1024], when[32];
    topic_scan s;
    if (scan_topic(c, 0, &s, err, sizeof err)) {
        fprintf(stderr, WHO " list: %s\n", err);
        return 1;
    }
    if (!as_json)
        printf("%-8s %-10s %-22s %-10s %-20s %-8s %s\n", "VERSION", "TYPE", "LINEAGE (gen)",
               "PARENT", "TIME (UTC)", "CHUNKS", "NOTES");
    for (int i = 0; i < s.n; i++) {
        const version_rec *r = &s.v[i];
        int ck = r->m.type == KP_MODEL_REC_CHECKPOINT;
        int complete = r->chunks == r->m.count;
        uint64_t rb = ck ? rollback_of(r) : 0;
        time_t t = (time_t)(r->m.ts_ms / 1000);
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S", gmtime(&t));
        if (as_json) {
            printf("{\"version\":%" PRIu64 ",\"type\":\"%s\",\"lineage\":%" PRIu64
                   ",\"generation\":%" PRIu32 ",\"base\":%" PRIu64 ",\"offset\":%" PRId64
                   ",\"ts\":%" PRId64 ",\"chunks\":%d,\"count\":%d,\"bytes\":%" PRIu64
                   ",\"rollback_of\":%" PRIu64 "}\n",
                   r->m.version, ck ? "checkpoint" : "delta", r->m.lineage,
                   (uint32_t)(r->m.lineage >> 32), ck ? 0 : r->m.base, r->offset, r->m.ts_ms,
                   r->chunks, r->m.count, ck ? r->m.size : 0, rb);
            continue;
        }
        char lin[32], parent[24] = "-", notes[96] = "";
        snprintf(lin, sizeof lin, "%08" PRIx64 " (%" PRIu32 ")", r->m.lineage & 0xffffffffu,
                 (uint32_t)(r->m.lineage >> 32));
        if (!ck) snprintf(parent, sizeof parent, "%" PRIu64, r->m.base);
        if (rb) snprintf(notes, sizeof notes, "rollback to the weights of %" PRIu64, rb);
        if (!complete)
            snprintf(notes + strlen(notes), sizeof notes - strlen(notes), "%sincomplete",
                     notes[0] ? "; " : "");
        printf("%-8" PRIu64 " %-10s %-22s %-10s %-20s %3d/%-4d %s\n", r->m.version,
               ck ? "checkpoint" : "delta", lin, parent, when, r->chunks, r->m.count, notes);
    }
    if (!as_json)
        printf("newest version %" PRIu64 ", %d record group(s), %ld rejected record(s)\n", s.newest,
               s.n, s.rejected);
    scan_free(&s);
    return 0;
}

/* The cached checkpoint file of version v in dir (any lineage), into out[cap]. 0 / -1. */
static int cached_checkpoint(const char *dir, uint64_t v, char *out, size_t cap)
{
    char prefix[64];
    int found = -1;
    snprintf(prefix, sizeof prefix, "be-v%" PRIu64 "-l", v);
    DIR *d = dir[0] ? opendir(dir) : NULL;
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (!strncmp(e->d_name, prefix, strlen(prefix)) && n > 4 &&
            !strcmp(e->d_name + n - 4, ".kpm")) {
            snprintf(out, cap, "%s/%s", dir, e->d_name);
            found = 0;
        }
    }
    if (d) closedir(d);
    return found;
}

static int put_rollback_of(kp_ckpt_writer *w, void *ctx)
{
    return kp_ckpt_put_u64(w, "rollback_of", *(const uint64_t *)ctx);
}

/* Reads a whole file. NULL on failure. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n = -1;
    if (f && !fseek(f, 0, SEEK_END) && (n = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) &&
        (buf = malloc((size_t)n)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (f) fclose(f);
    *len = buf ? (size_t)n : 0;
    return buf;
}

/* The rollback checkpoint: the weights of version `to` (topic or cache), as version v_new. Its
 * bytes, or NULL with err. */
static unsigned char *rollback_bytes(const kp_config *c, const topic_scan *s, uint64_t to,
                                     uint64_t v_new, size_t *len, char *err, size_t errlen)
{
    char src[1100] = "", out[1100];
    const version_rec *r = NULL;
    for (int i = 0; i < s->n; i++)
        if (s->v[i].m.type == KP_MODEL_REC_CHECKPOINT && s->v[i].m.version == to &&
            s->v[i].have == s->v[i].m.size && s->v[i].buf)
            r = &s->v[i]; /* the last complete one */
    int tmp = 0;
    if (r) {
        if (write_tmp(r->buf, r->have, src, sizeof src)) {
            kp_errf(err, errlen, "cannot write a temporary file");
            return NULL;
        }
        tmp = 1;
    } else if (cached_checkpoint(c->train_checkpoint_dir, to, src, sizeof src)) {
        kp_errf(err, errlen,
                "no checkpoint of version %" PRIu64 " on %s or in [train] checkpoint_dir "
                "(kprec model list shows the checkpoints; a delta version cannot be restored)",
                to, c->topic_model);
        return NULL;
    }
    unsigned char *buf = NULL;
    kp_bienc *m = kp_bienc_load(src, err, errlen);
    if (m && kp_bienc_version(m) != to) {
        kp_errf(err, errlen, "%s holds version %" PRIu64 ", not %" PRIu64, src, kp_bienc_version(m),
                to);
    } else if (m) {
        kp_bienc_set_version(m, v_new);
        if (write_tmp((const unsigned char *)"", 0, out, sizeof out) == 0) {
            if (!kp_bienc_save_ext(m, out, put_rollback_of, &to, err, errlen) &&
                !(buf = slurp(out, len)))
                kp_errf(err, errlen, "cannot read %s back", out);
            unlink(out);
        } else {
            kp_errf(err, errlen, "cannot write a temporary file");
        }
    }
    kp_bienc_free(m);
    if (tmp) unlink(src);
    return buf;
}

static int model_rollback(const kp_config *c, uint64_t to, int dry_run)
{
    char err[1024];
    topic_scan s = {0};
    kp_producer *p = NULL;
    unsigned char *ck = NULL;
    kp_outmsg *out = NULL;
    rd_kafka_headers_t **hdrs = NULL;
    size_t len = 0;
    int count = 0, rc = 1;
    /* fence a running trainer first: after this, nobody publishes but us */
    if (!dry_run &&
        !(p = kp_producer_new_txn(c, c->train_transactional_id, 60000, err, sizeof err))) {
        fprintf(stderr, WHO " rollback: transactional producer (%s): %s\n",
                c->train_transactional_id, err);
        return 1;
    }
    if (scan_topic(c, to, &s, err, sizeof err)) goto fail;
    if (to >= s.newest) {
        kp_errf(err, sizeof err, "version %" PRIu64 " is not older than the newest (%" PRIu64 ")",
                to, s.newest);
        goto fail;
    }
    if (s.max_gen == UINT32_MAX) {
        kp_errf(err, sizeof err, "lineage generations exhausted");
        goto fail;
    }
    uint64_t v_new = s.newest + 1, lineage = kp_model_new_lineage(s.max_gen + 1);
    if (!(ck = rollback_bytes(c, &s, to, v_new, &len, err, sizeof err))) goto fail;
    if (dry_run) {
        printf("would publish version %" PRIu64 " (lineage %" PRIu64
               ") with the weights of %" PRIu64 " (%zu bytes)\n",
               v_new, lineage, to, len);
        rc = 0;
        goto out;
    }
    size_t cs = (size_t)c->train_max_chunk - 1024; /* room for the headers, as the trainer */
    count = (int)((len + cs - 1) / cs);
    if (count > KP_MODEL_MAX_CHUNKS || !(out = calloc((size_t)count, sizeof *out)) ||
        !(hdrs = calloc((size_t)count, sizeof *hdrs))) {
        kp_errf(err, sizeof err, "checkpoint of %zu bytes: too many chunks, or out of memory", len);
        goto fail;
    }
    for (int i = 0; i < count; i++) {
        size_t off = (size_t)i * cs, n = len - off < cs ? len - off : cs;
        kp_model_meta mm = {
            KP_MODEL_REC_CHECKPOINT, v_new, lineage, 0, 0, i, count, len, kp_now_ms()};
        if (!(hdrs[i] = kp_model_headers(&mm, c->model_hmac_key, c->topic_model, KP_MODEL_KEY,
                                         strlen(KP_MODEL_KEY), ck + off, n))) {
            kp_errf(err, sizeof err, "out of memory");
            goto fail;
        }
        out[i] =
            (kp_outmsg){c->topic_model, KP_MODEL_KEY, strlen(KP_MODEL_KEY), ck + off, n, hdrs[i], 0,
                        KP_OUT_PENDING};
    }
    if (kp_producer_txn_publish(p, out, count, NULL, NULL, NULL, NULL, err, sizeof err) !=
        KP_TXN_COMMITTED)
        goto fail;
    printf("published version %" PRIu64 " (lineage %" PRIu64 ", generation %" PRIu32
           ") with the weights of version %" PRIu64 " (%zu bytes in %d chunk(s))\n",
           v_new, lineage, s.max_gen + 1, to, len, count);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, WHO " rollback: %s\n", err);
out:
    for (int i = 0; hdrs && i < count; i++)
        if (hdrs[i]) rd_kafka_headers_destroy(hdrs[i]);
    free(hdrs);
    free(out);
    free(ck);
    scan_free(&s);
    if (kp_producer_free(p, 10000) && !rc) rc = 1;
    return rc;
}

static void model_usage(FILE *f)
{
    fprintf(f,
            "usage: kprec model list [-c FILE] [--json]\n"
            "       kprec model rollback [-c FILE] [--dry-run] VERSION\n"
            "list: every version on the model topic ([topics] model, read_committed, records\n"
            "  authenticated with [model] hmac_key): type, lineage (generation), parent, time,\n"
            "  chunks; --json prints one object per version.\n"
            "rollback: publishes a new version (the newest + 1, a new lineage) with the\n"
            "  weights of the checkpoint VERSION (from the topic, else [train] checkpoint_dir);\n"
            "  replicas move forward in version and back in weights. It opens the trainer's\n"
            "  transactional producer ([train] transactional_id) first, which FENCES a running\n"
            "  trainer: that trainer stops; restart it and it continues from the rollback.\n"
            "  --dry-run checks and says what it would publish (fences nothing).\n"
            "Example:\n"
            "  kprec model list -c /tmp/kp/kprec.ini\n"
            "  kprec model rollback -c /tmp/kp/kprec.ini 12\n");
}

int kp_cmd_model(int argc, char **argv)
{
    const char *path = NULL;
    int as_json = 0, dry_run = 0, argi = 0;
    const kp_opt opts[] = {{"config", 'c', KP_OPT_STR, .out = &path},
                           {"json", 0, KP_OPT_FLAG, .out = &as_json},
                           {"dry-run", 0, KP_OPT_FLAG, .out = &dry_run},
                           {0}};
    if (argc < 2 || (strcmp(argv[1], "list") && strcmp(argv[1], "rollback"))) {
        if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
            model_usage(stdout);
            return 0;
        }
        model_usage(stderr);
        return 2;
    }
    int rollback = !strcmp(argv[1], "rollback");
    int r = kp_opts_parse(rollback ? WHO " rollback" : WHO " list", model_usage, opts, argc - 1,
                          argv + 1, rollback ? &argi : NULL);
    if (r != KP_OPTS_GO) return r;
    uint64_t to = 0;
    if (rollback) {
        argi += 1; /* index in argv */
        if (argi != argc - 1) {
            fprintf(stderr, WHO " rollback: wants one VERSION\n");
            return 2;
        }
        if (kp_opt_u64(WHO " rollback", "VERSION", argv[argi], 1, UINT64_MAX - 1, &to)) return 2;
    }
    kp_config c;
    if (kp_cli_config(&c, path)) return 2;
    int rc = rollback ? model_rollback(&c, to, dry_run) : model_list(&c, as_json);
    kp_config_free(&c);
    return rc;
}
