/* clicksim: turns judged (item, keyphrase) pairs into the biased click log that the old search
 * engine would have produced.
 *
 * Model, for every item with at least one judged pair, sessions_per_item times:
 *   - the old engine ranks the item's judged keyphrases (and only those) by
 *     relevance + N(0, noise_sd²) (fresh noise per session; ties by judgment order) and shows the
 *     first max_shown of them (0 = all) at positions 1..n;
 *   - every shown pair logs an impression; position r is examined with probability 1 / r^eta;
 *   - an examined pair is clicked with probability eps + (1 − eps)·((rel − 1) / 2)^gamma
 *     (rel clamped to [1, 3]), logging a click. rel is on the internal 1..3 scale of
 *     kp_judgments (offline/datasets.h), so (rel − 1) / 2 = (g − MIN) / (MAX − MIN) for the grade
 *     g of a file graded on MIN..MAX (kprec simulate-clicks --grades).
 * Events of a session: its impressions by position, then its clicks by position. Impressions have
 * ts = t0_ms + g·session_gap_ms for the g-th simulated session (items in index order), clicks
 * that ts + 1000.
 *
 * Lexical old engine (kp_clicksim_lexical): the engine only has the keyphrases of its own BM25 top
 * N of the item (offline/bm25 over the keyphrase inventory, the item's title as the query); judged
 * keyphrases outside that list are never shown, so never clicked. kp_clicksim_lexical keeps the
 * judgments whose keyphrase is in the item's BM25 top N; kp_clicksim_run on them is the lexical
 * regime.
 *
 * Randomness: splitmix64, one stream per item derived from (seed, item index): the same seed gives
 * the same log, and an item's sessions do not depend on the other items. */
#ifndef KP_CLICKSIM_H
#define KP_CLICKSIM_H

#include <stddef.h>
#include <stdint.h>

#include "model/bm25.h"
#include "offline/datasets.h"

typedef struct {
    int sessions_per_item; /* S >= 1 */
    int max_shown;         /* positions shown per session, >= 0 (0 = all judged pairs) */
    float noise_sd;        /* >= 0: noise of the old engine's score */
    float eta;             /* >= 0: examination probability 1 / rank^eta */
    float eps;             /* in [0, 1]: click probability of an examined irrelevant pair */
    float gamma;           /* >= 0: shape of the click probability in the grade */
    uint64_t seed;
    int64_t t0_ms;          /* >= 0: ts of the first session */
    int64_t session_gap_ms; /* >= 0: time between consecutive sessions */
} kp_clicksim_config;

/* Fills *c with the defaults: S = 20, max_shown = 0, noise_sd = 0.5, eta = 1, eps = 0.05,
 * gamma = 1, seed = 42, t0_ms = 1700000000000 (2023-11-14), session_gap_ms = 60000. */
void kp_clicksim_config_default(kp_clicksim_config *c);

/* Examination probability of 1-based position under c (0 for position < 1). */
double kp_clicksim_exam_prob(const kp_clicksim_config *c, int position);

/* Click probability of an examined pair of relevance rel under c. */
double kp_clicksim_click_prob(const kp_clicksim_config *c, float rel);

/* Simulates the log of judgments j (item indices in [0, n_items), keyphrase indices in
 * [0, n_keys)) and appends it to *out (initialise with {0}; the caller owns it, kp_clicklog_free).
 * Errors: invalid config, an out-of-range index or non-finite relevance in j, out of memory (out
 * may then hold a partial log, still owned by the caller). */
int kp_clicksim_run(const kp_judgments *j, int n_items, int n_keys, const kp_clicksim_config *c,
                    kp_clicklog *out, char *err, size_t errlen);

/* The judgments of j whose keyphrase is among the top_n keyphrases BM25 index bm (document d =
 * keyphrase row d) retrieves for the item's text items->text[item], in j's order, into *out (the
 * caller owns it, kp_judgments_free). *n_dropped (may be NULL) = judgments left out. Errors: bad
 * arguments (top_n < 1, an index outside items / bm's documents), BM25 failure, out of memory. */
int kp_clicksim_lexical(const kp_judgments *j, const kp_bm25 *bm, const kp_texts *items, int top_n,
                        kp_judgments *out, int *n_dropped, char *err, size_t errlen);

#endif /* KP_CLICKSIM_H */
