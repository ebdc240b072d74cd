/* inventory: the keyphrase inventory from its compacted topic, or from the file (inventory.h). */
#include "consumer/inventory.h"

#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "common/util.h"
#include "consumer/assets.h"
#include "consumer/group.h"
#include "producer/kafka.h"
#include "schemas/codec.h"

#define INV_ID_MAX   KP_ITEM_ID_MAX /* bytes of a keyphrase_id */
#define INV_TEXT_MAX 1024           /* bytes of a keyphrase */

/* One change of the set: text NULL = removed. */
typedef struct {
    uint64_t seq;
    char *id, *text;
} inv_change;

/* One keyphrase of the set: "id\0text\0" in one allocation. */
typedef struct {
    char *id, *text;
} inv_entry;

struct kp_inventory {
    const kp_config *cfg;
    pthread_t thread;
    atomic_int stop, at_end;
    pthread_mutex_t lock; /* guards everything below */
    inv_entry *ent;       /* [n] the current set */
    int n, ecap;
    int *map; /* id -> entry: open addressing, -1 empty, -2 removed */
    int mapcap, mapgone;
    uint64_t seq;    /* changes applied to the set */
    int logging;     /* a snapshot was taken: changes go to the log from then on */
    inv_change *log; /* [head, nlog) hold changes trimmed_to+1 .. seq */
    int head, nlog, lcap;
    uint64_t trimmed_to; /* every change up to it was dropped from the log */
    uint64_t snap_seq, served_seq;
    long rejected;
};

static kp_inventory *current; /* the process's reader */
static pthread_mutex_t current_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- the set: id -> entry --------------------------------------------------------------------
 */

static size_t home(const char *id, int cap)
{
    return (size_t)(kp_fnv1a(id, strlen(id)) * 0x9e3779b97f4a7c15ull >> 17) & (size_t)(cap - 1);
}

/* Map slot of id, or -1. */
static long set_find(const kp_inventory *v, const char *id)
{
    if (!v->mapcap) return -1;
    for (size_t h = home(id, v->mapcap), m = (size_t)v->mapcap - 1;; h = (h + 1) & m) {
        int e = v->map[h];
        if (e == -1) return -1;
        if (e >= 0 && strcmp(v->ent[e].id, id) == 0) return (long)h;
    }
}

static void set_put(kp_inventory *v, const char *id, int e)
{
    size_t h = home(id, v->mapcap), m = (size_t)v->mapcap - 1;
    while (v->map[h] >= 0)
        h = (h + 1) & m;
    if (v->map[h] == -2) v->mapgone--;
    v->map[h] = e;
}

/* Room for one more entry (map rehashed without removal marks when due). 0 / -1. */
static int set_room(kp_inventory *v)
{
    if (v->n == v->ecap) {
        int nc = v->ecap ? 2 * v->ecap : 1024;
        inv_entry *ne = realloc(v->ent, sizeof *ne * (size_t)nc);
        if (!ne) return -1;
        v->ent = ne, v->ecap = nc;
    }
    if ((int64_t)(v->n + 1 + v->mapgone) * 2 <= v->mapcap) return 0;
    int nc = 1024;
    while (nc < 4 * (v->n + 1))
        nc *= 2;
    int *nm = malloc(sizeof *nm * (size_t)nc);
    if (!nm) return -1;
    for (int i = 0; i < nc; i++)
        nm[i] = -1;
    free(v->map);
    v->map = nm, v->mapcap = nc, v->mapgone = 0;
    for (int i = 0; i < v->n; i++)
        set_put(v, v->ent[i].id, i);
    return 0;
}

static void set_remove(kp_inventory *v, long h)
{
    int e = v->map[h], last = v->n - 1;
    v->map[h] = -2;
    v->mapgone++;
    free(v->ent[e].id);
    if (e != last) {
        v->ent[e] = v->ent[last];
        long hm = set_find(v, v->ent[e].id);
        if (hm >= 0) v->map[hm] = e;
    }
    v->n--;
}

/* Appends a change to the log (when logging). 0 / -1. */
static int log_add(kp_inventory *v, const char *id, const char *text)
{
    if (!v->logging) return 0;
    if (v->nlog == v->lcap) {
        if (v->head > 0) { /* drop the trimmed part first */
            memmove(v->log, v->log + v->head, sizeof *v->log * (size_t)(v->nlog - v->head));
            v->nlog -= v->head, v->head = 0;
        }
        if (v->nlog == v->lcap) {
            int nc = v->lcap ? 2 * v->lcap : 256;
            inv_change *nl = realloc(v->log, sizeof *nl * (size_t)nc);
            if (!nl) return -1;
            v->log = nl, v->lcap = nc;
        }
    }
    inv_change *c = &v->log[v->nlog];
    c->id = strdup(id);
    c->text = text ? strdup(text) : NULL;
    if (!c->id || (text && !c->text)) {
        free(c->id), free(c->text);
        return -1;
    }
    c->seq = v->seq;
    v->nlog++;
    return 0;
}

/* Drops the changes nobody needs any more: those up to the older of the served recommender's point
 * and the last snapshot's (a recommender built from it may still be taken). */
static void log_trim(kp_inventory *v)
{
    uint64_t floor = v->served_seq < v->snap_seq ? v->served_seq : v->snap_seq;
    while (v->head < v->nlog && v->log[v->head].seq <= floor) {
        free(v->log[v->head].id), free(v->log[v->head].text);
        v->trimmed_to = v->log[v->head++].seq;
    }
    if (floor > v->trimmed_to && v->head == v->nlog) v->trimmed_to = floor;
}

/* Sets id to text (NULL: removes it). Under lock. 1 changed, 0 nothing to do, -1 OOM. */
static int set_apply(kp_inventory *v, const char *id, const char *text)
{
    long h = set_find(v, id);
    if (h >= 0 && text && strcmp(v->ent[v->map[h]].text, text) == 0) return 0;
    if (h < 0 && !text) return 0;
    if (text && set_room(v)) return -1;
    v->seq++;
    if (log_add(v, id, text)) {
        v->seq--;
        return -1;
    }
    if (h >= 0) set_remove(v, set_find(v, id));
    if (!text) return 1;
    size_t a = strlen(id), b = strlen(text);
    char *s = malloc(a + b + 2);
    if (!s) return -1; /* the log has it: recommenders still get it */
    memcpy(s, id, a + 1), memcpy(s + a + 1, text, b + 1);
    v->ent[v->n] = (inv_entry){s, s + a + 1};
    set_put(v, s, v->n++);
    return 1;
}

/* ---- the reader thread -----------------------------------------------------------------------
 */

typedef struct {
    kp_inventory *v;
    rd_kafka_t *rk;
    kp_codec *codec;
    int nparts, eofs;
    unsigned char *at_eof;
    rd_kafka_t *dlq; /* dead-letter producer, made on the first bad record */
} inv_run;

/* Waits for the topic, then assigns every partition from the beginning. 0, or -1 when stopped. */
static int assign_all(inv_run *r)
{
    const char *topic = r->v->cfg->topic_inventory;
    int warned = 0;
    while (!r->v->stop &&
           (r->nparts = kp_topic_partitions(r->rk, r->v->cfg->topic_inventory)) <= 0) {
        if (!warned)
            kp_warn("inventory: topic %s %s; retrying", topic,
                    r->nparts < 0 ? "unreachable (no broker answer)"
                                  : "does not exist (an empty inventory until it does)");
        warned = 1;
        if (r->nparts == 0) r->v->at_end = 1; /* an absent topic is an empty inventory */
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
    }
    if (r->nparts <= 0 || !(r->at_eof = calloc((size_t)r->nparts, 1))) return -1;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(r->nparts);
    for (int p = 0; p < r->nparts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e) kp_error("inventory: assign %s: %s", topic, rd_kafka_err2str(e));
    return e ? -1 : 0;
}

/* A clean id or text: valid UTF-8, no tab or line break (the set is written back as TSV). */
static int clean(const char *s, size_t n, size_t max)
{
    if (!n || n > max || memchr(s, '\0', n) || !kp_utf8_valid(s, n, NULL)) return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\t' || s[i] == '\n' || s[i] == '\r') return 0;
    return 1;
}

/* A bad record: logged and dead-lettered (original key and bytes, headers topic, partition,
 * offset, error), as the serve path does with bad items. The set is left as it was. */
static void reject(inv_run *r, const rd_kafka_message_t *m, const char *why)
{
    const kp_config *c = r->v->cfg;
    char err[512];
    if (r->v->rejected++ < 20 || r->v->rejected % 1000 == 0)
        kp_warn("inventory: dead-lettered %s[%" PRId32 "]@%" PRId64 ": %s (%ld so far)",
                c->topic_inventory, m->partition, m->offset, why, r->v->rejected);
    if (!r->dlq) {
        rd_kafka_conf_t *conf = kp_kafka_producer_conf(c, "5", NULL, err, sizeof err);
        if (conf && !(r->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err)))
            rd_kafka_conf_destroy(conf);
        if (!r->dlq) {
            kp_error("inventory: dead-letter producer: %s", err);
            return;
        }
    }
    rd_kafka_headers_t *h = kp_dlq_headers(m, why);
    if (!h) return;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        r->dlq, RD_KAFKA_V_TOPIC(c->topic_dlq), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, m->len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e) {
        rd_kafka_headers_destroy(h);
        kp_error("inventory: dead-letter %s@%" PRId64 ": %s", c->topic_inventory, m->offset,
                 rd_kafka_err2str(e));
    }
    rd_kafka_poll(r->dlq, 0);
}

static void on_record(inv_run *r, const rd_kafka_message_t *m)
{
    char id[INV_ID_MAX + 1], err[KP_CODEC_ERRLEN];
    if (!m->key || !clean(m->key, m->key_len, INV_ID_MAX)) {
        reject(r, m, "missing or bad key (keyphrase_id)");
        return;
    }
    memcpy(id, m->key, m->key_len);
    id[m->key_len] = 0;
    kp_keyphrase k = {0};
    int rc;
    if (!m->payload) { /* tombstone */
        pthread_mutex_lock(&r->v->lock);
        rc = set_apply(r->v, id, NULL);
        pthread_mutex_unlock(&r->v->lock);
    } else if (kp_decode_keyphrase(r->codec, m->payload, m->len, &k, err, sizeof err)) {
        reject(r, m, err);
        return;
    } else if (strcmp(k.keyphrase_id, id) != 0) {
        reject(r, m, "keyphrase_id differs from the key");
        rc = 0;
    } else if (!clean(k.keyphrase, strlen(k.keyphrase), INV_TEXT_MAX)) {
        reject(r, m, "empty, too long or not clean UTF-8 keyphrase");
        rc = 0;
    } else {
        pthread_mutex_lock(&r->v->lock);
        rc = set_apply(r->v, id, k.keyphrase);
        pthread_mutex_unlock(&r->v->lock);
    }
    kp_keyphrase_clear(&k);
    if (rc < 0) kp_error("inventory: out of memory applying %s", id);
}

static void on_eof(inv_run *r, const rd_kafka_message_t *m)
{
    if (m->partition < 0 || m->partition >= r->nparts || r->at_eof[m->partition]) return;
    r->at_eof[m->partition] = 1;
    if (++r->eofs == r->nparts && !r->v->at_end) {
        kp_info("inventory: read %s to its end: %d keyphrases", r->v->cfg->topic_inventory,
                kp_inventory_size(r->v));
    }
    if (r->eofs == r->nparts) r->v->at_end = 1;
}

static void *run(void *arg)
{
    inv_run r = {.v = arg};
    char err[512];
    const kp_config *c = r.v->cfg;
    if (!(r.codec = kp_codec_new(err, sizeof err)) ||
        (c->schemas_dir[0] && kp_codec_load_dir(r.codec, c->schemas_dir, err, sizeof err) < 0))
        kp_error("inventory: schemas: %s", err);
    else if ((r.rk = kp_reader_consumer(c, "inventory", "kprec-inventory-reader")) &&
             !assign_all(&r))
        while (!r.v->stop) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(r.rk, 200);
            if (!m) continue;
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                on_eof(&r, m);
            } else if (m->err) {
                kp_warn("inventory: %s", rd_kafka_message_errstr(m));
            } else {
                on_record(&r, m);
                if (m->partition >= 0 && m->partition < r.nparts && r.at_eof[m->partition])
                    r.at_eof[m->partition] = 0, r.eofs--;
            }
            rd_kafka_message_destroy(m);
        }
    if (r.rk) {
        rd_kafka_consumer_close(r.rk);
        rd_kafka_destroy(r.rk);
    }
    if (r.dlq) {
        if (rd_kafka_flush(r.dlq, 10000))
            kp_error("inventory: %d dead-letter records undelivered", rd_kafka_outq_len(r.dlq));
        rd_kafka_destroy(r.dlq);
    }
    kp_codec_free(r.codec);
    free(r.at_eof);
    r.v->at_end = 1; /* never leave a waiter hanging */
    return NULL;
}

/* ---- lifetime ---------------------------------------------------------------------------------
 */

static void inv_free(kp_inventory *v)
{
    for (int i = 0; i < v->n; i++)
        free(v->ent[i].id);
    for (int i = v->head; i < v->nlog; i++)
        free(v->log[i].id), free(v->log[i].text);
    pthread_mutex_destroy(&v->lock);
    KP_FREE_ALL(v->ent, v->map, v->log, v);
}

kp_inventory *kp_inventory_start(const kp_config *c, char *err, size_t errlen)
{
    if (!c->topic_inventory[0]) {
        kp_errf(err, errlen, "[topics] inventory: no inventory topic configured");
        return NULL;
    }
    kp_inventory *v = calloc(1, sizeof *v);
    if (!v) {
        kp_errf(err, errlen, "inventory: out of memory");
        return NULL;
    }
    v->cfg = c;
    pthread_mutex_init(&v->lock, NULL);
    pthread_mutex_lock(&current_lock);
    int busy = current != NULL;
    if (!busy) current = v;
    pthread_mutex_unlock(&current_lock);
    if (busy || pthread_create(&v->thread, NULL, run, v)) {
        kp_errf(err, errlen,
                busy ? "inventory: a reader is already running"
                     : "inventory: cannot start the reader thread");
        if (!busy) {
            pthread_mutex_lock(&current_lock);
            current = NULL;
            pthread_mutex_unlock(&current_lock);
        }
        inv_free(v);
        return NULL;
    }
    return v;
}

void kp_inventory_stop(kp_inventory *inv)
{
    if (!inv) return;
    inv->stop = 1;
    pthread_join(inv->thread, NULL);
    pthread_mutex_lock(&current_lock);
    if (current == inv) current = NULL;
    pthread_mutex_unlock(&current_lock);
    inv_free(inv);
}

int kp_inventory_wait_end(kp_inventory *inv, int timeout_ms, kp_stop_flag *stop)
{
    for (int waited = 0; !inv->at_end && waited < timeout_ms && !(stop && *stop); waited += 50) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return inv->at_end;
}

int kp_inventory_put(kp_inventory *inv, const char *id, const char *text)
{
    pthread_mutex_lock(&inv->lock);
    int rc = set_apply(inv, id, text);
    pthread_mutex_unlock(&inv->lock);
    return rc;
}

int kp_inventory_size(kp_inventory *inv)
{
    pthread_mutex_lock(&inv->lock);
    int n = inv->n;
    pthread_mutex_unlock(&inv->lock);
    return n;
}

/* ---- snapshots and the change log --------------------------------------------------------------
 */

int kp_inventory_load(const kp_config *c, kp_texts *out, uint64_t *seq, char *err, size_t errlen)
{
    pthread_mutex_lock(&current_lock); /* held: the reader cannot go away meanwhile */
    kp_inventory *v = current;
    int rc = -1;
    *seq = 0;
    if (!v) {
        pthread_mutex_unlock(&current_lock);
        if (!c->model_keyphrases[0]) {
            kp_errf(err, errlen,
                    "[model] keyphrases: no keyphrase inventory file configured (nor [topics] "
                    "inventory)");
            return -1;
        }
        return kp_inv_file_load(c->model_keyphrases, out, err, errlen);
    }
    pthread_mutex_lock(&v->lock);
    const char **ids = malloc(sizeof *ids * (size_t)(v->n + 1)),
               **texts = malloc(sizeof *texts * (size_t)(v->n + 1));
    if (ids && texts) {
        for (int i = 0; i < v->n; i++)
            ids[i] = v->ent[i].id, texts[i] = v->ent[i].text;
        rc = kp_texts_build(ids, texts, v->n, out, err, errlen);
    } else {
        kp_errf(err, errlen, "inventory: out of memory");
    }
    if (!rc) {
        if (!v->logging) v->trimmed_to = v->seq; /* the log starts here */
        v->logging = 1;
        *seq = v->snap_seq = v->seq;
        log_trim(v);
    }
    pthread_mutex_unlock(&v->lock);
    pthread_mutex_unlock(&current_lock);
    free((void *)ids), free((void *)texts);
    return rc;
}

/* Copies the changes after seq (at most max) out of the log, keeping the last change of each id.
 * Under both locks. Returns the count (ids[i]/texts[i] owned by the caller, texts[i] NULL for a
 * removal) and the point they bring r to in *upto; -2 when the log no longer reaches back to seq,
 * -1 on OOM. */
static int take_changes(kp_inventory *v, uint64_t seq, int max, char **ids, char **texts,
                        uint64_t *upto)
{
    *upto = seq;
    if (seq < v->trimmed_to) return -2;
    int m = 0;
    for (int i = v->head; i < v->nlog && m < max; i++) {
        const inv_change *c = &v->log[i];
        if (c->seq <= seq) continue;
        int j = 0; /* the same id earlier in this chunk: overwritten */
        while (j < m && strcmp(ids[j], c->id) != 0)
            j++;
        if (j == m) {
            if (!(ids[m] = strdup(c->id))) return -1;
            texts[m++] = NULL;
        }
        free(texts[j]);
        texts[j] = c->text ? strdup(c->text) : NULL;
        if (c->text && !texts[j]) return -1;
        *upto = c->seq;
    }
    return m;
}

/* Brings r to the reader's whole current set when the log no longer reaches back to r's point (a
 * recommender built from an older snapshot was taken after the log was trimmed past it): removes
 * what the set lacks and upserts the set, which embeds only what differs. Returns the number of
 * keyphrases changed, or -1 with err. */
static int resync(const kp_config *c, kp_recommender *r, char *err, size_t errlen)
{
    kp_texts t;
    uint64_t seq;
    if (kp_inventory_load(c, &t, &seq, err, errlen)) return -1;
    int n = kp_rec_size(r), nrm = 0, rc = -1;
    char **rm = calloc((size_t)n + 1, sizeof *rm);
    for (int i = 0; rm && i < n; i++)
        if (kp_texts_find(&t, kp_rec_keyphrase_id(r, i)) < 0 &&
            !(rm[nrm++] = strdup(kp_rec_keyphrase_id(r, i))))
            goto out;
    int a = rm ? kp_rec_remove(r, (const char *const *)rm, nrm) : -1;
    int b = a >= 0 ? kp_rec_upsert(r, (const char *const *)t.id, (const char *const *)t.text, t.n,
                                   err, errlen)
                   : -1;
    if (a >= 0 && b >= 0) {
        kp_rec_set_seq(r, seq);
        rc = a + b;
        kp_warn("inventory: the recommender was behind the change log: re-synced with the %d "
                "keyphrases of the set (%d changed)",
                t.n, rc);
    }
out:
    if (rc < 0 && !err[0]) kp_errf(err, errlen, "inventory: out of memory re-syncing");
    for (int i = 0; rm && i < nrm; i++)
        free(rm[i]);
    free(rm);
    kp_texts_free(&t);
    return rc;
}

int kp_inventory_apply(const kp_config *c, kp_recommender *r, int max_changes, char *err,
                       size_t errlen)
{
    int max = max_changes > 0 ? max_changes : 256, m = -1, rc = -1;
    char **ids = calloc((size_t)max, sizeof *ids), **texts = calloc((size_t)max, sizeof *texts);
    uint64_t upto = kp_rec_seq(r);
    pthread_mutex_lock(&current_lock);
    kp_inventory *v = current;
    if (!v) {
        pthread_mutex_unlock(&current_lock);
        free(ids), free(texts);
        return 0;
    }
    pthread_mutex_lock(&v->lock);
    if (ids && texts) m = take_changes(v, kp_rec_seq(r), max, ids, texts, &upto);
    pthread_mutex_unlock(&v->lock);
    pthread_mutex_unlock(&current_lock);
    int nrm = 0, nup = 0, changed = 0;
    if (m == -2) { /* behind the log: the whole set (embedding only what differs) */
        if (err && errlen) err[0] = 0;
        m = 0;
        if ((changed = resync(c, r, err, errlen)) < 0) goto out;
        upto = kp_rec_seq(r);
        rc = 0;
        goto applied;
    }
    if (m < 0) {
        kp_errf(err, errlen, "inventory: out of memory taking the changes");
        goto out;
    }
    const char **rm = malloc(sizeof *rm * (size_t)(m + 1)), **ui = malloc(sizeof *ui * (m + 1)),
               **ut = malloc(sizeof *ut * (size_t)(m + 1));
    if (rm && ui && ut) {
        for (int j = 0; j < m; j++) {
            if (texts[j])
                ui[nup] = ids[j], ut[nup++] = texts[j];
            else
                rm[nrm++] = ids[j];
        }
        int a = kp_rec_remove(r, rm, nrm), b = kp_rec_upsert(r, ui, ut, nup, err, errlen);
        if (a >= 0 && b >= 0) changed = a + b, rc = 0;
    } else {
        kp_errf(err, errlen, "inventory: out of memory");
    }
    free((void *)rm), free((void *)ui), free((void *)ut);
    if (rc) goto out;
    kp_rec_set_seq(r, upto);
applied:
    pthread_mutex_lock(&current_lock);
    if (current == v) {
        pthread_mutex_lock(&v->lock);
        v->served_seq = upto;
        log_trim(v);
        pthread_mutex_unlock(&v->lock);
    }
    pthread_mutex_unlock(&current_lock);
    if (changed) atomic_store(&kp_m.keyphrases, kp_rec_size(r));
    /* a change drops the BM25 index of the old list; so may a failed attach: retried each call */
    const kp_pipeline *p = kp_rec_pipeline(r);
    if ((changed || (c->model_hybrid > 0 && (!p || !p->bm25))) &&
        kp_assets_attach(c, r, err, errlen))
        rc = -1;
    if (!rc) rc = changed;
out:
    for (int j = 0; ids && texts && j < (m > 0 ? m : 0); j++)
        free(ids[j]), free(texts[j]);
    free(ids), free(texts);
    return rc;
}

/* ---- the file source ---------------------------------------------------------------------------
 */

kp_inv_file_sig kp_inv_file_sig_of(const char *path)
{
    struct stat st;
    kp_inv_file_sig s = {0};
    if (!path || !path[0] || stat(path, &st)) return s;
    s.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
    s.size = (int64_t)st.st_size;
    s.ino = (uint64_t)st.st_ino;
    s.dev = (uint64_t)st.st_dev;
    s.ok = 1;
    return s;
}

int kp_inv_file_sig_eq(const kp_inv_file_sig *a, const kp_inv_file_sig *b)
{
    return a->ok == b->ok && a->mtime_ns == b->mtime_ns && a->size == b->size && a->ino == b->ino &&
           a->dev == b->dev;
}

void kp_inv_watch_init(kp_inv_watch *w, const char *path)
{
    w->loaded = w->pending = kp_inv_file_sig_of(path);
}

int kp_inv_watch_poll(kp_inv_watch *w, const char *path)
{
    kp_inv_file_sig now = kp_inv_file_sig_of(path);
    int stable = kp_inv_file_sig_eq(&now, &w->pending);
    w->pending = now;
    if (!now.ok || kp_inv_file_sig_eq(&now, &w->loaded) || !stable) return 0;
    w->loaded = now;
    return 1;
}

int kp_inv_file_load(const char *path, kp_texts *out, char *err, size_t errlen)
{
    kp_inv_file_sig before = kp_inv_file_sig_of(path);
    if (kp_texts_load(path, out, err, errlen)) return -1;
    kp_inv_file_sig after = kp_inv_file_sig_of(path);
    if (!kp_inv_file_sig_eq(&before, &after)) {
        kp_texts_free(out);
        kp_errf(err, errlen, "%s: changed while being read (will retry)", path);
        return -1;
    }
    return 0;
}
