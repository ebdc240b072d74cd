/* featurize.h - text -> hashed sparse feature ids (DSSM-style word hashing).
 *
 * Normalisation: the text is decoded as UTF-8 (invalid or overlong sequences and surrogates are
 * skipped byte by byte, never an error); ASCII and common Unicode letters (Latin-1 Supplement,
 * Latin Extended-A, Greek, Cyrillic, fullwidth ASCII) are lower-cased; combining marks, zero-width
 * characters and variation selectors are dropped; every other code point that is not a letter or
 * digit (punctuation, symbols, spaces, emoji, controls) separates tokens. Code points in scripts
 * without a table here (CJK, Arabic, ...) are kept as letters.
 *
 * Features of a text, in this priority order (truncation at max_ids drops the later kinds first):
 *   1. word unigrams, 2. word bigrams (adjacent tokens, ordered), 3. letter trigrams of "#word#"
 *   (on code points). Each is hashed with 64-bit FNV-1a over code points plus a splitmix64
 *   finaliser, with a distinct salt per feature kind, then reduced modulo n_buckets.
 * Duplicates are kept (a repeated word counts twice in a mean bag). The mapping depends only on
 * the bytes of the text: no locale, pointer or run-to-run dependence. Change KP_FEAT_VERSION
 * whenever the mapping changes (checkpoints store it).
 */
#ifndef KP_FEATURIZE_H
#define KP_FEATURIZE_H

#include <stddef.h>
#include <stdint.h>

#define KP_FEAT_MAX_IDS 512
#define KP_FEAT_VERSION 1

/* Writes the feature ids of text[0..len) into ids (each < n_buckets) and returns how many
 * (<= max_ids). Returns 0 for an empty text (no tokens), n_buckets == 0, max_ids <= 0 or NULL
 * pointers. text need not be NUL-terminated. Never allocates. */
int kp_featurize(const char *text, size_t len, uint32_t n_buckets, uint32_t *ids, int max_ids);

/* Order-independent 64-bit key of the *set* of normalised word tokens: "Red Shoes",
 * "shoes red" and "shoes, RED red" give the same key. 0 for a text without tokens.
 * Allocates only for texts with more than 128 distinct tokens; if that allocation fails the key
 * is still order-independent but counts repeated tokens beyond the first 128. */
uint64_t kp_feat_tokenset_key(const char *text, size_t len);

/* Writes the normalised tokens, separated by single spaces, as UTF-8 into out and NUL-terminates
 * it (when outcap > 0). Output that does not fit is cut at a code-point boundary. Returns the
 * number of bytes written, excluding the NUL. The output is never longer than len. */
size_t kp_feat_normalize(const char *text, size_t len, char *out, size_t outcap);

/* Normalises one code point: returns the lower-cased code point for letters and digits,
 * KP_FEAT_SEP for separators and KP_FEAT_SKIP for code points that are dropped. Exposed for
 * tests and for other tokenisers (cross-encoder) that must agree with this one. */
#define KP_FEAT_SEP  (-1)
#define KP_FEAT_SKIP (-2)
int32_t kp_feat_norm_cp(uint32_t cp);

/* Decodes one UTF-8 code point at s[*pos] (pos < len), advancing *pos. Returns the code point or
 * -1 for an invalid byte (then *pos advances by exactly one byte). */
int32_t kp_feat_utf8_next(const unsigned char *s, size_t len, size_t *pos);

#endif
