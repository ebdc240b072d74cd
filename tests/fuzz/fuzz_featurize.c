/* The featurizer and the tokenisers on any bytes (titles and keyphrases come from the outside):
 * hashed features, the token-set key, normalisation into buffers of every size, the
 * cross-encoder's tokeniser, the UTF-8 check of the codec. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/ce.h"
#include "model/featurize.h"
#include "schemas/codec.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static uint32_t ids[KP_FEAT_MAX_IDS];
    static kp_ce_tokbuf tb;
    const char *t = (const char *)d;
    uint32_t buckets = n ? 1u + d[0] * 977u : 1u << 18;
    int k = kp_featurize(t, n, buckets, ids, KP_FEAT_MAX_IDS);
    if (k < 0 || k > KP_FEAT_MAX_IDS) abort();
    for (int i = 0; i < k; i++)
        if (ids[i] >= buckets) abort();
    kp_featurize(t, n, 1u << 18, ids, n ? 1 + d[n - 1] % 8 : 1);
    kp_feat_tokenset_key(t, n);
    char *out = malloc(n + 1);
    size_t cap = n ? d[0] % (n + 1) : 0;
    size_t w = kp_feat_normalize(t, n, out, n + 1);
    if (w > n) abort();
    w = kp_feat_normalize(t, n, out, cap);
    if (cap && w >= cap) abort();
    free(out);
    size_t bad;
    kp_utf8_valid(t, n, &bad);
    char *z = malloc(n + 1); /* NUL-terminated copy for the cross-encoder's tokeniser */
    memcpy(z, d, n);
    z[n] = 0;
    kp_ce_text ct = kp_ce_tokenize(z, 1u << 17, &tb);
    if (ct.n < 0 || ct.n > KP_CE_MAX_TOK) abort();
    free(z);
    return 0;
}
