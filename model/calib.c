/* calib: p(relevant | score) by isotonic regression (PAV) or Platt scaling. See calib.h. */
#include "model/calib.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/ckpt.h"

struct kp_calib {
    kp_calib_method method;
    kp_calib_input input;
    double a, b;        /* platt */
    int nb;             /* isotonic blocks */
    float *lo, *hi, *v; /* [nb] */
};

/* ---- PAV ------------------------------------------------------------------------------------- */

typedef struct {
    float x;
    int i;
} xi;

static int cmp_xi(const void *pa, const void *pb)
{
    const xi *a = pa, *b = pb;
    if (a->x < b->x) return -1;
    if (a->x > b->x) return 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static int check_points(const float *x, const float *y, const float *w, int n)
{
    if (n < 1 || !x || !y) return -1;
    for (int i = 0; i < n; i++)
        if (!isfinite(x[i]) || !isfinite(y[i]) || (w && !(w[i] > 0 && isfinite(w[i])))) return -1;
    return 0;
}

/* Sorted order of the points and their grouping by equal x: ord[n] (indices by x, then index),
 * grp[n] (group of ord position i), returns the number of groups; sums of w and w*y per group in
 * gw, gwy, and the group's x in gx. -1 on OOM. */
static int group_points(const float *x, const float *y, const float *w, int n, int *ord, int *grp,
                        double *gw, double *gwy, float *gx, int reference)
{
    for (int i = 0; i < n; i++)
        ord[i] = i;
    if (reference) { /* insertion sort: the plain way */
        for (int i = 1; i < n; i++) {
            int v = ord[i], j = i - 1;
            while (j >= 0 && (x[ord[j]] > x[v] || (x[ord[j]] == x[v] && ord[j] > v))) {
                ord[j + 1] = ord[j];
                j--;
            }
            ord[j + 1] = v;
        }
    } else {
        xi *t = malloc(sizeof *t * (size_t)n);
        if (!t) return -1;
        for (int i = 0; i < n; i++)
            t[i] = (xi){x[i], i};
        qsort(t, (size_t)n, sizeof *t, cmp_xi);
        for (int i = 0; i < n; i++)
            ord[i] = t[i].i;
        free(t);
    }
    int ng = 0;
    for (int i = 0; i < n; i++) {
        int p = ord[i];
        double wi = w ? (double)w[p] : 1.0;
        if (ng == 0 || gx[ng - 1] != x[p]) {
            gx[ng] = x[p];
            gw[ng] = 0;
            gwy[ng] = 0;
            ng++;
        }
        gw[ng - 1] += wi;
        gwy[ng - 1] += wi * (double)y[p];
        grp[i] = ng - 1;
    }
    return ng;
}

/* blk[g] = the block of group g, block b holding groups [bstart[b], bstart[b + 1]) (the last up
 * to ng). */
static void blocks_to_groups(int nb, const int *bstart, int ng, int *blk)
{
    for (int b = 0; b < nb; b++) {
        int end = b + 1 < nb ? bstart[b + 1] : ng;
        for (int g = bstart[b]; g < end; g++)
            blk[g] = b;
    }
}

/* Runs PAV over the groups; writes the block of every group to blk[ng] and block sums; returns
 * the number of blocks. */
static int pav_stack(int ng, const double *gw, const double *gwy, int *blk, double *bw, double *bwy,
                     int *bstart)
{
    int nb = 0;
    for (int g = 0; g < ng; g++) {
        bw[nb] = gw[g];
        bwy[nb] = gwy[g];
        bstart[nb] = g;
        nb++;
        /* merge while the previous block's mean is >= this one's (means strictly increase) */
        while (nb > 1 && bwy[nb - 2] * bw[nb - 1] >= bwy[nb - 1] * bw[nb - 2]) {
            bw[nb - 2] += bw[nb - 1];
            bwy[nb - 2] += bwy[nb - 1];
            nb--;
        }
    }
    blocks_to_groups(nb, bstart, ng, blk);
    return nb;
}

static int pav_ref_blocks(int ng, const double *gw, const double *gwy, int *blk, double *bw,
                          double *bwy, int *bstart)
{
    int nb = ng;
    for (int g = 0; g < ng; g++) {
        bw[g] = gw[g];
        bwy[g] = gwy[g];
        bstart[g] = g;
    }
    for (;;) {
        int i = 0;
        while (i + 1 < nb && bwy[i] / bw[i] < bwy[i + 1] / bw[i + 1])
            i++;
        if (i + 1 >= nb) break;
        bw[i] += bw[i + 1];
        bwy[i] += bwy[i + 1];
        for (int j = i + 1; j + 1 < nb; j++) {
            bw[j] = bw[j + 1];
            bwy[j] = bwy[j + 1];
            bstart[j] = bstart[j + 1];
        }
        nb--;
    }
    blocks_to_groups(nb, bstart, ng, blk);
    return nb;
}

/* Shared driver of the fast and the reference PAV; optionally returns the blocks' x ranges and
 * values (caller frees). */
static int pav_run(const float *x, const float *y, const float *w, int n, double *fit,
                   int reference, float **out_lo, float **out_hi, float **out_v)
{
    if (check_points(x, y, w, n)) return -1;
    int *ord = malloc(sizeof(int) * (size_t)n), *grp = malloc(sizeof(int) * (size_t)n);
    int *blk = malloc(sizeof(int) * (size_t)n), *bstart = malloc(sizeof(int) * (size_t)n);
    double *gw = malloc(sizeof(double) * (size_t)n), *gwy = malloc(sizeof(double) * (size_t)n);
    double *bw = malloc(sizeof(double) * (size_t)n), *bwy = malloc(sizeof(double) * (size_t)n);
    float *gx = malloc(sizeof(float) * (size_t)n);
    int nb = -1;
    if (!ord || !grp || !blk || !bstart || !gw || !gwy || !bw || !bwy || !gx) goto out;
    int ng = group_points(x, y, w, n, ord, grp, gw, gwy, gx, reference);
    if (ng < 0) goto out;
    nb = reference ? pav_ref_blocks(ng, gw, gwy, blk, bw, bwy, bstart)
                   : pav_stack(ng, gw, gwy, blk, bw, bwy, bstart);
    if (fit)
        for (int i = 0; i < n; i++) {
            int b = blk[grp[i]];
            fit[ord[i]] = bwy[b] / bw[b];
        }
    if (out_lo) {
        float *lo = malloc(sizeof(float) * (size_t)nb), *hi = malloc(sizeof(float) * (size_t)nb);
        float *v = malloc(sizeof(float) * (size_t)nb);
        if (!lo || !hi || !v) {
            free(lo), free(hi), free(v);
            nb = -1;
            goto out;
        }
        for (int b = 0; b < nb; b++) {
            int end = b + 1 < nb ? bstart[b + 1] : ng;
            lo[b] = gx[bstart[b]];
            hi[b] = gx[end - 1];
            v[b] = (float)(bwy[b] / bw[b]);
        }
        *out_lo = lo, *out_hi = hi, *out_v = v;
    }
out:
    free(ord), free(grp), free(blk), free(bstart), free(gw), free(gwy), free(bw), free(bwy);
    free(gx);
    return nb;
}

int kp_calib_pav(const float *x, const float *y, const float *w, int n, double *fit)
{
    return pav_run(x, y, w, n, fit, 0, NULL, NULL, NULL);
}

int kp_calib_pav_ref(const float *x, const float *y, const float *w, int n, double *fit)
{
    return pav_run(x, y, w, n, fit, 1, NULL, NULL, NULL);
}

/* ---- fit ------------------------------------------------------------------------------------- */

kp_calib *kp_calib_fit_isotonic(const float *score, const float *label, int n, kp_calib_input input)
{
    kp_calib *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->method = KP_CALIB_ISOTONIC;
    c->input = input;
    c->nb = pav_run(score, label, NULL, n, NULL, 0, &c->lo, &c->hi, &c->v);
    if (c->nb < 1) {
        free(c);
        return NULL;
    }
    return c;
}

kp_calib *kp_calib_new_platt(double a, double b, kp_calib_input input)
{
    kp_calib *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->method = KP_CALIB_PLATT;
    c->input = input;
    c->a = a;
    c->b = b;
    return c;
}

/* log(1 + exp(z)), stable */
static double softplus(double z)
{
    return z > 0 ? z + log1p(exp(-z)) : log1p(exp(z));
}

static double sigmoid(double z)
{
    return z >= 0 ? 1.0 / (1.0 + exp(-z)) : exp(z) / (1.0 + exp(z));
}

/* Mean log-loss of sigmoid(a s + b) against targets t: t softplus(-z) + (1 - t) softplus(z). */
static double platt_loss(const float *s, const double *t, int n, double a, double b)
{
    double L = 0;
    for (int i = 0; i < n; i++) {
        double z = a * s[i] + b;
        L += t[i] * softplus(-z) + (1 - t[i]) * softplus(z);
    }
    return L / n;
}

kp_calib *kp_calib_fit_platt(const float *score, const float *label, int n, kp_calib_input input)
{
    if (check_points(score, label, NULL, n)) return NULL;
    double *t = malloc(sizeof(double) * (size_t)n);
    if (!t) return NULL;
    double np = 0;
    for (int i = 0; i < n; i++)
        np += label[i];
    double nn = n - np, hi_t = (np + 1) / (np + 2), lo_t = 1 / (nn + 2);
    for (int i = 0; i < n; i++)
        t[i] = label[i] * hi_t + (1 - label[i]) * lo_t;
    double a = 0, b = log((np + 1) / (nn + 1));
    double L = platt_loss(score, t, n, a, b);
    for (int it = 0; it < 100; it++) {
        double ga = 0, gb = 0, haa = 1e-12, hab = 0, hbb = 1e-12;
        for (int i = 0; i < n; i++) {
            double s = score[i], p = sigmoid(a * s + b), d = p - t[i], q = p * (1 - p);
            ga += d * s, gb += d;
            haa += q * s * s, hab += q * s, hbb += q;
        }
        if (fabs(ga) < 1e-9 * n && fabs(gb) < 1e-9 * n) break;
        double det = haa * hbb - hab * hab;
        if (!(det > 0)) break;
        double da = -(hbb * ga - hab * gb) / det, db = -(haa * gb - hab * ga) / det;
        double step = 1, Ln = L;
        while (step > 1e-10) {
            Ln = platt_loss(score, t, n, a + step * da, b + step * db);
            if (Ln <= L + 1e-4 * step * (ga * da + gb * db) / n) break;
            step /= 2;
        }
        if (step <= 1e-10) break;
        a += step * da, b += step * db;
        if (L - Ln < 1e-14) {
            L = Ln;
            break;
        }
        L = Ln;
    }
    free(t);
    if (!isfinite(a) || !isfinite(b)) return NULL;
    return kp_calib_new_platt(a, b, input);
}

void kp_calib_free(kp_calib *c)
{
    if (!c) return;
    free(c->lo), free(c->hi), free(c->v);
    free(c);
}

kp_calib_method kp_calib_get_method(const kp_calib *c)
{
    return c->method;
}

kp_calib_input kp_calib_get_input(const kp_calib *c)
{
    return c->input;
}

const char *kp_calib_method_name(kp_calib_method m)
{
    return m == KP_CALIB_PLATT ? "platt" : "isotonic";
}

const char *kp_calib_input_name(kp_calib_input in)
{
    return in == KP_CALIB_INPUT_CE ? "ce" : "be";
}

void kp_calib_platt_params(const kp_calib *c, double *a, double *b)
{
    *a = c->method == KP_CALIB_PLATT ? c->a : 0;
    *b = c->method == KP_CALIB_PLATT ? c->b : 0;
}

int kp_calib_n_blocks(const kp_calib *c)
{
    return c->method == KP_CALIB_ISOTONIC ? c->nb : 0;
}

float kp_calib_apply(const kp_calib *c, float s)
{
    if (isnan(s)) return NAN;
    if (c->method == KP_CALIB_PLATT) return (float)sigmoid(c->a * s + c->b);
    /* first block whose hi >= s */
    int lo = 0, hi = c->nb;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (c->hi[mid] < s)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == c->nb) return c->v[c->nb - 1];
    if (s >= c->lo[lo] || lo == 0) return c->v[lo];
    double x0 = c->hi[lo - 1], x1 = c->lo[lo], y0 = c->v[lo - 1], y1 = c->v[lo];
    return (float)(y0 + (y1 - y0) * ((double)s - x0) / (x1 - x0));
}

void kp_calib_apply_n(const kp_calib *c, const float *score, int n, float *out)
{
    for (int i = 0; i < n; i++)
        out[i] = kp_calib_apply(c, score[i]);
}

double kp_calib_logloss(const float *p, const float *y, int n)
{
    if (n < 1) return NAN;
    double L = 0;
    for (int i = 0; i < n; i++) {
        double q = p[i] < 1e-6 ? 1e-6 : p[i] > 1 - 1e-6 ? 1 - 1e-6 : p[i];
        L -= y[i] * log(q) + (1 - y[i]) * log(1 - q);
    }
    return L / n;
}

double kp_calib_brier(const float *p, const float *y, int n)
{
    if (n < 1) return NAN;
    double B = 0;
    for (int i = 0; i < n; i++)
        B += ((double)p[i] - y[i]) * ((double)p[i] - y[i]);
    return B / n;
}

/* ---- file ------------------------------------------------------------------------------------ */

int kp_calib_save(const kp_calib *c, const char *path, const char *const *extra_keys,
                  const char *const *extra_vals, int n_extra, char *err, size_t errlen)
{
    char buf[64];
    kp_ckpt_writer *w = kp_ckpt_writer_new(path, KP_CALIB_KIND, err, errlen);
    if (!w) return -1;
    kp_ckpt_put_u64(w, "calib_version", KP_CALIB_VERSION);
    kp_ckpt_put(w, "method", kp_calib_method_name(c->method));
    kp_ckpt_put(w, "input", kp_calib_input_name(c->input));
    snprintf(buf, sizeof buf, "%.17g", c->a);
    kp_ckpt_put(w, "a", buf);
    snprintf(buf, sizeof buf, "%.17g", c->b);
    kp_ckpt_put(w, "b", buf);
    for (int i = 0; i < n_extra; i++)
        kp_ckpt_put(w, extra_keys[i], extra_vals[i]);
    if (c->method == KP_CALIB_ISOTONIC) {
        float *t = malloc(sizeof(float) * 3 * (size_t)c->nb);
        if (!t) {
            kp_ckpt_writer_abort(w);
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
        for (int i = 0; i < c->nb; i++)
            t[3 * i] = c->lo[i], t[3 * i + 1] = c->hi[i], t[3 * i + 2] = c->v[i];
        uint64_t dims[2] = {(uint64_t)c->nb, 3};
        kp_ckpt_put_tensor(w, "blocks", t, 2, dims);
        free(t);
    }
    return kp_ckpt_writer_commit(w, err, errlen);
}

static int get_double(const kp_ckpt_reader *r, const char *key, double *out)
{
    const char *v = kp_ckpt_get(r, key);
    if (!v || !*v) return -1;
    char *end;
    *out = strtod(v, &end);
    return (*end || !isfinite(*out)) ? -1 : 0;
}

kp_calib *kp_calib_load(const char *path, char *err, size_t errlen)
{
    kp_calib *c = NULL;
    kp_ckpt_reader *r = kp_ckpt_open(path, err, errlen);
    if (!r) return NULL;
    uint64_t ver;
    const char *method = kp_ckpt_get(r, "method"), *input = kp_ckpt_get(r, "input");
    if (strcmp(kp_ckpt_kind(r), KP_CALIB_KIND)) {
        snprintf(err, errlen, "%s: a '%s' checkpoint, not a calibration ('%s')", path,
                 kp_ckpt_kind(r), KP_CALIB_KIND);
        goto out;
    }
    if (kp_ckpt_get_u64(r, "calib_version", &ver) || ver != KP_CALIB_VERSION) {
        snprintf(err, errlen, "%s: unsupported calibration version (want %u)", path,
                 KP_CALIB_VERSION);
        goto out;
    }
    kp_calib_input in;
    if (input && !strcmp(input, "ce"))
        in = KP_CALIB_INPUT_CE;
    else if (input && !strcmp(input, "be"))
        in = KP_CALIB_INPUT_BE;
    else {
        snprintf(err, errlen, "%s: input must be 'ce' or 'be'", path);
        goto out;
    }
    if (method && !strcmp(method, "platt")) {
        double a, b;
        if (get_double(r, "a", &a) || get_double(r, "b", &b)) {
            snprintf(err, errlen, "%s: Platt parameters a, b missing or not finite", path);
            goto out;
        }
        if (!(c = kp_calib_new_platt(a, b, in))) snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (!method || strcmp(method, "isotonic")) {
        snprintf(err, errlen, "%s: method must be 'isotonic' or 'platt'", path);
        goto out;
    }
    int ndim;
    uint64_t dims[KP_CKPT_MAX_DIMS];
    if (kp_ckpt_tensor_shape(r, "blocks", &ndim, dims) || ndim != 2 || dims[1] != 3 ||
        dims[0] < 1 || dims[0] > KP_CALIB_MAX_BLOCKS) {
        snprintf(err, errlen, "%s: isotonic blocks missing or of a bad shape", path);
        goto out;
    }
    int nb = (int)dims[0];
    float *t = malloc(sizeof(float) * 3 * (size_t)nb);
    if (!(c = calloc(1, sizeof *c)) || !t) {
        free(t);
        free(c);
        c = NULL;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out;
    }
    c->method = KP_CALIB_ISOTONIC;
    c->input = in;
    c->nb = nb;
    c->lo = malloc(sizeof(float) * (size_t)nb);
    c->hi = malloc(sizeof(float) * (size_t)nb);
    c->v = malloc(sizeof(float) * (size_t)nb);
    if (!c->lo || !c->hi || !c->v || kp_ckpt_read_tensor(r, "blocks", t, 2, dims, err, errlen)) {
        if (!c->lo || !c->hi || !c->v) snprintf(err, errlen, "%s: out of memory", path);
        free(t);
        kp_calib_free(c);
        c = NULL;
        goto out;
    }
    int ok = 1;
    for (int i = 0; i < nb && ok; i++) {
        c->lo[i] = t[3 * i], c->hi[i] = t[3 * i + 1], c->v[i] = t[3 * i + 2];
        ok = isfinite(c->lo[i]) && isfinite(c->hi[i]) && c->lo[i] <= c->hi[i] && c->v[i] >= 0 &&
             c->v[i] <= 1 && (i == 0 || (c->lo[i] > c->hi[i - 1] && c->v[i] >= c->v[i - 1]));
    }
    free(t);
    if (!ok) {
        snprintf(err, errlen, "%s: isotonic blocks are not increasing or not in [0, 1]", path);
        kp_calib_free(c);
        c = NULL;
    }
out:
    kp_ckpt_close(r);
    return c;
}
