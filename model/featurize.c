/* featurize.c - UTF-8 normalisation, tokens and hashed features (see featurize.h). */
#include "model/featurize.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/rng.h"

/* One salt per feature kind, so "ab" as a word and "ab" inside a trigram hash apart. */
#define SALT_UNI 0x9ae16a3b2f90404fULL
#define SALT_BI  0xc3a5c85c97cb3127ULL
#define SALT_TRI 0xb492b66fbe98f273ULL
#define SALT_SET 0x2545f4914f6cdd1dULL

int32_t kp_feat_utf8_next(const unsigned char *s, size_t len, size_t *pos)
{
    size_t p = *pos;
    unsigned c = s[p];
    *pos = p + 1;
    if (c < 0x80) return (int32_t)c;
    int n;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 1, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 2, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 3, cp = c & 0x07, min = 0x10000;
    } else {
        return -1; /* continuation byte, C0/C1 overlong lead, or F5..FF */
    }
    if (len - (p + 1) < (size_t)n) return -1;
    for (int i = 1; i <= n; i++) {
        unsigned cc = s[p + (size_t)i];
        if ((cc & 0xC0) != 0x80) return -1;
        cp = (cp << 6) | (cc & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
    *pos = p + 1 + (size_t)n;
    return (int32_t)cp;
}

static int32_t norm_latin1(uint32_t cp)
{
    if (cp == 0xAD) return KP_FEAT_SKIP; /* soft hyphen */
    if (cp == 0xB2) return '2';
    if (cp == 0xB3) return '3';
    if (cp == 0xB9) return '1';
    if (cp == 0xAA || cp == 0xB5 || cp == 0xBA) return (int32_t)cp;
    if (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7) return (int32_t)(cp + 0x20);
    if (cp >= 0xDF && cp <= 0xFF && cp != 0xF7) return (int32_t)cp;
    return KP_FEAT_SEP;
}

static int32_t norm_latin_ext_a(uint32_t cp) /* U+0100..U+017F */
{
    if (cp == 0x130) return 'i';
    if (cp == 0x178) return 0xFF;
    if (cp <= 0x137 || (cp >= 0x14A && cp <= 0x177)) return (int32_t)(cp | 1);
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
        return (int32_t)((cp & 1) ? cp + 1 : cp);
    return (int32_t)cp; /* U+0138, U+0149, U+017F: lower-case only */
}

static int32_t norm_greek(uint32_t cp) /* U+0370..U+03FF */
{
    if (cp <= 0x373) return (int32_t)(cp | 1);
    if (cp == 0x376 || cp == 0x377) return 0x377;
    if (cp >= 0x37A && cp <= 0x37D) return (int32_t)cp;
    if (cp == 0x37F) return 0x3F3;
    if (cp == 0x386) return 0x3AC;
    if (cp >= 0x388 && cp <= 0x38A) return (int32_t)(cp + 0x25);
    if (cp == 0x38C) return 0x3CC;
    if (cp == 0x38E || cp == 0x38F) return (int32_t)(cp + 0x3F);
    if (cp == 0x390) return 0x390;
    if ((cp >= 0x391 && cp <= 0x3A1) || (cp >= 0x3A3 && cp <= 0x3AB)) return (int32_t)(cp + 0x20);
    if (cp == 0x3C2) return 0x3C3; /* final sigma */
    if (cp >= 0x3AC && cp <= 0x3CE) return (int32_t)cp;
    if (cp == 0x3CF) return 0x3D7;
    if (cp >= 0x3D8 && cp <= 0x3EF) return (int32_t)(cp | 1);
    if (cp == 0x3F6) return KP_FEAT_SEP;
    if (cp == 0x3F7 || cp == 0x3F8) return 0x3F8;
    if (cp == 0x3F9) return 0x3F2;
    if (cp == 0x3FA || cp == 0x3FB) return 0x3FB;
    if (cp >= 0x3FD) return (int32_t)(cp - 0x82); /* U+03FD..U+03FF -> U+037B..U+037D */
    if (cp >= 0x3D0) return (int32_t)cp;
    return KP_FEAT_SEP; /* U+0374/5 numeral signs, U+037E question mark, tonos, ano teleia */
}

static int32_t norm_cyrillic(uint32_t cp) /* U+0400..U+052F */
{
    if (cp <= 0x40F) return (int32_t)(cp + 0x50);
    if (cp <= 0x42F) return (int32_t)(cp + 0x20);
    if (cp <= 0x45F) return (int32_t)cp;
    if (cp <= 0x481) return (int32_t)(cp | 1);
    if (cp == 0x482) return KP_FEAT_SEP;
    if (cp <= 0x489) return KP_FEAT_SKIP; /* combining titlo etc. */
    if (cp <= 0x4BF) return (int32_t)(cp | 1);
    if (cp == 0x4C0) return 0x4CF;
    if (cp <= 0x4CE) return (int32_t)((cp & 1) ? cp + 1 : cp);
    if (cp == 0x4CF) return 0x4CF;
    return (int32_t)(cp | 1); /* U+04D0..U+052F: even upper, odd lower */
}

int32_t kp_feat_norm_cp(uint32_t cp)
{
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z') return (int32_t)(cp + 32);
        if ((cp >= 'a' && cp <= 'z') || (cp >= '0' && cp <= '9')) return (int32_t)cp;
        return KP_FEAT_SEP;
    }
    if (cp < 0xA0) return KP_FEAT_SEP; /* C1 controls */
    if (cp <= 0xFF) return norm_latin1(cp);
    if (cp <= 0x17F) return norm_latin_ext_a(cp);
    if (cp <= 0x24F) return (int32_t)cp; /* Latin Extended-B, IPA: letters, no case table */
    if (cp <= 0x2AF) return (int32_t)cp;
    if (cp <= 0x2FF) return KP_FEAT_SEP;  /* spacing modifier letters (accents as symbols) */
    if (cp <= 0x36F) return KP_FEAT_SKIP; /* combining diacritical marks */
    if (cp <= 0x3FF) return norm_greek(cp);
    if (cp <= 0x52F) return norm_cyrillic(cp);
    if (cp >= 0x2000 && cp <= 0x206F) {
        if ((cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2060 && cp <= 0x2064)) return KP_FEAT_SKIP;
        return KP_FEAT_SEP; /* spaces, dashes, quotes, bullets */
    }
    if (cp >= 0x2070 && cp <= 0x209F) {
        if (cp == 0x2070) return '0';
        if (cp >= 0x2074 && cp <= 0x2079) return (int32_t)('4' + (cp - 0x2074));
        if (cp >= 0x2080 && cp <= 0x2089) return (int32_t)('0' + (cp - 0x2080));
        return KP_FEAT_SEP;
    }
    if (cp >= 0x20A0 && cp <= 0x2BFF) return KP_FEAT_SEP;  /* currency, symbols, arrows, math */
    if (cp >= 0x2E00 && cp <= 0x2E7F) return KP_FEAT_SEP;  /* supplemental punctuation */
    if (cp >= 0x3000 && cp <= 0x303F) return KP_FEAT_SEP;  /* CJK symbols and punctuation */
    if (cp >= 0xD800 && cp <= 0xF8FF) return KP_FEAT_SEP;  /* surrogates (never decoded), PUA */
    if (cp >= 0xFE00 && cp <= 0xFE0F) return KP_FEAT_SKIP; /* variation selectors */
    if (cp >= 0xFE10 && cp <= 0xFE6F) return KP_FEAT_SEP;  /* vertical/small form punctuation */
    if (cp == 0xFEFF) return KP_FEAT_SKIP;                 /* BOM / ZWNBSP */
    if (cp >= 0xFF00 && cp <= 0xFFEF) {
        if (cp >= 0xFF10 && cp <= 0xFF19) return (int32_t)('0' + (cp - 0xFF10));
        if (cp >= 0xFF21 && cp <= 0xFF3A) return (int32_t)('a' + (cp - 0xFF21));
        if (cp >= 0xFF41 && cp <= 0xFF5A) return (int32_t)('a' + (cp - 0xFF41));
        if (cp <= 0xFF65) return KP_FEAT_SEP;
        return (int32_t)cp; /* halfwidth katakana / hangul */
    }
    if (cp >= 0xFFF0 && cp <= 0xFFFF) return KP_FEAT_SEP;    /* specials, U+FFFD */
    if (cp >= 0x1F000 && cp <= 0x1FAFF) return KP_FEAT_SEP;  /* emoji, pictographs */
    if (cp >= 0xE0000 && cp <= 0xE007F) return KP_FEAT_SKIP; /* tag characters */
    if (cp >= 0xF0000) return KP_FEAT_SEP;                   /* supplementary private use */
    return (int32_t)cp;
}

/* Next normalised code point or KP_FEAT_SEP; skipped and invalid input is consumed silently.
 * Returns 0 at the end of the text. */
static int next_norm(const unsigned char *s, size_t len, size_t *pos, int32_t *out)
{
    while (*pos < len) {
        int32_t cp = kp_feat_utf8_next(s, len, pos);
        if (cp < 0) continue;
        int32_t n = kp_feat_norm_cp((uint32_t)cp);
        if (n == KP_FEAT_SKIP) continue;
        *out = n;
        return 1;
    }
    return 0;
}

static uint32_t bucket(uint64_t h, uint32_t n_buckets)
{
    return (uint32_t)(kp_mix64(h) % n_buckets);
}

static uint64_t trigram_hash(uint32_t a, uint32_t b, uint32_t c)
{
    uint64_t h = KP_FNV_OFFSET;
    h = kp_fnv1a_step(h, a);
    h = kp_fnv1a_step(h, b);
    h = kp_fnv1a_step(h, c);
    return h ^ SALT_TRI;
}

static uint64_t bigram_hash(uint64_t prev, uint64_t cur)
{
    return ((prev << 23) | (prev >> 41)) ^ cur ^ SALT_BI;
}

enum { PASS_UNI, PASS_BI, PASS_TRI };

/* One walk over the tokens of the text emitting features of one kind into ids[n..max). */
static int feat_pass(const unsigned char *s, size_t len, int kind, uint32_t nb, uint32_t *ids,
                     int n, int max)
{
    size_t pos = 0;
    uint64_t h = KP_FNV_OFFSET, prev = 0;
    int tl = 0, have_prev = 0;
    uint32_t a = '#', b = 0; /* last two code points of "#word" for trigrams */
    while (n < max) {
        int32_t cp = 0;
        int more = next_norm(s, len, &pos, &cp);
        if (more && cp != KP_FEAT_SEP) {
            if (kind == PASS_TRI) {
                if (tl == 0) {
                    a = '#', b = (uint32_t)cp;
                } else {
                    ids[n++] = bucket(trigram_hash(a, b, (uint32_t)cp), nb);
                    a = b, b = (uint32_t)cp;
                }
            }
            h = kp_fnv1a_step(h, (uint32_t)cp);
            tl++;
            continue;
        }
        if (tl > 0) {
            if (kind == PASS_UNI) {
                ids[n++] = bucket(h ^ SALT_UNI, nb);
            } else if (kind == PASS_BI) {
                if (have_prev) ids[n++] = bucket(bigram_hash(prev, h), nb);
            } else {
                ids[n++] = bucket(trigram_hash(a, b, '#'), nb);
            }
            prev = h, have_prev = 1;
            h = KP_FNV_OFFSET, tl = 0;
        }
        if (!more) break;
    }
    return n;
}

int kp_featurize(const char *text, size_t len, uint32_t n_buckets, uint32_t *ids, int max_ids)
{
    if (!text || !ids || n_buckets == 0 || max_ids <= 0) return 0;
    const unsigned char *s = (const unsigned char *)text;
    int n = feat_pass(s, len, PASS_UNI, n_buckets, ids, 0, max_ids);
    n = feat_pass(s, len, PASS_BI, n_buckets, ids, n, max_ids);
    n = feat_pass(s, len, PASS_TRI, n_buckets, ids, n, max_ids);
    return n;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return (a > b) - (a < b);
}

uint64_t kp_feat_tokenset_key(const char *text, size_t len)
{
    if (!text) return 0;
    const unsigned char *s = (const unsigned char *)text;
    uint64_t local[128], *hs = local, overflow_sum = 0;
    size_t n = 0, cap = 128, pos = 0;
    uint64_t h = KP_FNV_OFFSET;
    int tl = 0;
    for (;;) {
        int32_t cp = 0;
        int more = next_norm(s, len, &pos, &cp);
        if (more && cp != KP_FEAT_SEP) {
            h = kp_fnv1a_step(h, (uint32_t)cp);
            tl++;
            continue;
        }
        if (tl > 0) {
            if (n == cap) {
                uint64_t *bigger = NULL;
                if (cap < (SIZE_MAX / sizeof(uint64_t)) / 2)
                    bigger = malloc(2 * cap * sizeof(uint64_t));
                if (bigger) {
                    memcpy(bigger, hs, n * sizeof(uint64_t));
                    if (hs != local) free(hs);
                    hs = bigger, cap *= 2;
                }
            }
            if (n < cap)
                hs[n++] = h;
            else
                overflow_sum += kp_mix64(h ^ SALT_SET); /* OOM fallback: commutative sum */
            h = KP_FNV_OFFSET, tl = 0;
        }
        if (!more) break;
    }
    if (n == 0) return 0;
    qsort(hs, n, sizeof(uint64_t), cmp_u64);
    uint64_t key = SALT_SET;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && hs[i] == hs[i - 1]) continue;
        key = kp_mix64(key ^ hs[i]) + 0x9e3779b97f4a7c15ULL;
    }
    if (hs != local) free(hs);
    key = kp_mix64(key + overflow_sum);
    return key ? key : 1; /* 0 is reserved for "no tokens" */
}

static size_t utf8_put(uint32_t cp, unsigned char *o)
{
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t kp_feat_normalize(const char *text, size_t len, char *out, size_t outcap)
{
    if (!out || outcap == 0) return 0;
    out[0] = '\0';
    if (!text) return 0;
    const unsigned char *s = (const unsigned char *)text;
    size_t pos = 0, w = 0;
    int in_tok = 0, any = 0;
    int32_t cp = 0;
    while (next_norm(s, len, &pos, &cp)) {
        if (cp == KP_FEAT_SEP) {
            in_tok = 0;
            continue;
        }
        unsigned char buf[5];
        size_t k = 0;
        if (!in_tok && any) buf[k++] = ' ';
        k += utf8_put((uint32_t)cp, buf + k);
        if (w + k > outcap - 1) break;
        memcpy(out + w, buf, k);
        w += k;
        in_tok = 1, any = 1;
    }
    out[w] = '\0';
    return w;
}
