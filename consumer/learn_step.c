/* learn_step.c -- a training step over ready events (contracts in learn_step.h). */
#include "consumer/learn_step.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/telemetry.h"
#include "consumer/learn_queue.h"

static int intern(const char ***tab, int *n, const char *s)
{
    for (int i = *n - 1; i >= 0; i--)
        if (!strcmp((*tab)[i], s)) return i;
    (*tab)[*n] = s;
    return (*n)++;
}

/* Adds the rows the last step changed to the rows of the next delta. */
static void mark_changed_rows(kp_lstate *s)
{
    for (int t = 0; t < kp_bienc_n_towers(s->model); t++) {
        const kp_rowgrad *g = kp_trainer_changed_rows(s->trainer, (kp_tower)t);
        for (int j = 0; j < g->n; j++) {
            uint32_t row = g->rows[j];
            if (!s->row_mark[t][row]) {
                s->row_mark[t][row] = 1;
                s->rows[t][s->nrows[t]++] = row;
            }
        }
    }
}

int kp_lstep_take(kp_lstate *s, kp_levent *ev, int n, char *why, size_t whylen)
{
    const kp_config *c = s->cfg;
    int neg = s->teacher ? c->train_negatives : 0;
    for (int e = 0; e < n; e++)
        if (kp_lbuf_push(&s->buf, &ev[e])) {
            kp_lbuf_unpush(&s->buf, e);
            snprintf(why, whylen, "out of memory");
            return -1;
        }
    int nnew = n, nold = s->buf.len - n < n ? s->buf.len - n : n;
    int m = nnew + nold;
    int maxk = m * (1 + neg) + 1, rc = -1;
    unsigned char *mask = NULL;
    const kp_lexample **ex = malloc(sizeof(kp_lexample *) * (size_t)m);
    const char **items = malloc(sizeof(char *) * (size_t)m);
    const char **keys = malloc(sizeof(char *) * (size_t)maxk);
    int *ia = malloc(sizeof(int) * (size_t)maxk * 4), *ka = ia + maxk, *pos = ia + 2 * maxk;
    int *si = ia + 3 * maxk;
    int *sk = malloc(sizeof(int) * (size_t)maxk * 4), *di = sk + maxk, *dk = sk + 2 * maxk;
    int *soft_i = sk + 3 * maxk;
    int *soft_k = malloc(sizeof(int) * (size_t)maxk);
    float *lab = malloc(sizeof(float) * (size_t)maxk * 3), *slab = lab + maxk, *dt = lab + 2 * maxk;
    const char **ti = malloc(sizeof(char *) * (size_t)maxk),
               **tk = malloc(sizeof(char *) * (size_t)maxk);
    if (!ex || !items || !keys || !ia || !sk || !soft_k || !lab || !ti || !tk) goto out;
    kp_lbuf_draw(&s->buf, &s->rng, ex, nnew, nold);
    int ni = 0, nk = 0, nb = 0, ns = 0, nd = 0, nsoft = 0;
    for (int e = 0; e < m; e++) {
        const kp_lexample *x = ex[e];
        int i = intern(&items, &ni, x->title);
        int k = intern(&keys, &nk, x->key);
        if (x->kind == KP_LEX_JUDGMENT) {
            si[ns] = i, sk[ns] = k, slab[ns++] = x->label;
        } else {
            ia[nb] = i, ka[nb] = k, pos[nb] = x->position, lab[nb++] = x->label;
            if (x->kind == KP_LEX_CLICK) soft_i[nsoft] = i, soft_k[nsoft++] = k;
        }
        if (neg) di[nd] = i, dk[nd++] = k;
    }
    /* distillation candidates: the events' pairs plus random keyphrases of the inventory */
    for (int i = 0; neg && s->inv.n && i < ni; i++)
        for (int r = 0; r < neg && nd < maxk && nk < maxk; r++) {
            int k = intern(&keys, &nk, s->inv.text[kp_rng_below(&s->rng, (uint64_t)s->inv.n)]);
            di[nd] = i, dk[nd++] = k;
        }
    if (nd) {
        for (int j = 0; j < nd; j++)
            ti[j] = items[di[j]], tk[j] = keys[dk[j]];
        if (kp_ce_score(s->teacher, ti, tk, nd, dt)) {
            kp_warn("trainer: teacher failed; step without distillation");
            nd = 0;
        }
    }
    /* in-batch softmax: another keyphrase clicked for the same item in this batch is no negative */
    mask = nsoft ? calloc((size_t)nsoft * (size_t)nk, 1) : NULL;
    for (int r = 0; mask && r < nsoft; r++)
        for (int q = 0; q < nsoft; q++)
            if (soft_i[q] == soft_i[r]) mask[(size_t)r * (size_t)nk + (size_t)soft_k[q]] = 1;
    kp_train_batch b = {0};
    b.n_items = ni, b.items = items, b.n_keys = nk, b.keys = keys;
    b.n_soft = nsoft, b.soft_item = soft_i, b.soft_key = soft_k, b.soft_mask = mask;
    b.n_bce = nb, b.bce_item = ia, b.bce_key = ka, b.bce_pos = pos, b.bce_label = lab;
    b.n_sr = ns, b.sr_item = si, b.sr_key = sk, b.sr_label = slab;
    b.n_dis = nd, b.dis_item = di, b.dis_key = dk, b.dis_teacher = dt;
    kp_train_losses L;
    if (kp_trainer_step(s->trainer, &b, &L, why, whylen)) {
        rc = 1; /* the caller finds the event the trainer rejects */
        goto out;
    }
    atomic_fetch_add(&kp_m.train_steps, 1);
    atomic_fetch_add(&kp_m.train_events, (unsigned long long)n);
    atomic_store(&kp_m.train_loss_micro, (unsigned long long)(L.total * 1e6));
    mark_changed_rows(s);
    s->steps_since_delta++;
    rc = 0;
out:
    if (rc == -1) snprintf(why, whylen, "out of memory");
    if (rc) kp_lbuf_unpush(&s->buf, n);
    free((void *)ex), free(items), free((void *)keys), free(ia), free(sk), free(soft_k), free(lab);
    free((void *)ti), free((void *)tk), free(mask);
    return rc;
}

/* A ready event trained on: done (its offset goes with the next delta). */
static void event_done(kp_lstate *s, kp_levent *ev)
{
    atomic_fetch_add(&kp_m.processed[ev->is_click_topic ? KP_MT_CLICKS : KP_MT_JUDGMENTS], 1);
    kp_lq_mark_done(s, ev->msg);
    kp_levent_clear(ev);
}

int kp_lstep_ready(kp_lstate *s, int n)
{
    char why[512];
    int rc = kp_lstep_take(s, s->ready, n, why, sizeof why);
    if (rc == 0) {
        for (int i = 0; i < n; i++)
            event_done(s, &s->ready[i]);
    } else if (rc == 1) {
        kp_warn("trainer: step of %d event(s) rejected (%s): trying them one by one", n, why);
        rc = 0;
        for (int i = 0; i < n && !rc; i++) {
            kp_levent *ev = &s->ready[i];
            int r = n > 1 ? kp_lstep_take(s, ev, 1, why, sizeof why) : 1;
            if (r == 0) {
                event_done(s, ev);
            } else if (r == 1) {
                char reason[600];
                snprintf(reason, sizeof reason, "rejected by the training step: %s", why);
                if (kp_lq_dead_letter(s, ev->msg, reason))
                    ev->held = 1, rc = -1;
                else
                    kp_levent_clear(ev);
            } else {
                rc = -1;
            }
        }
    } else {
        kp_error("trainer: step not taken: %s", why);
    }
    for (int i = 0; i < n; i++) {
        if (s->ready[i].msg && kp_lq_push(s, &s->ready[i])) kp_levent_clear(&s->ready[i]);
        memset(&s->ready[i], 0, sizeof s->ready[i]);
    }
    return rc ? -1 : 0;
}
