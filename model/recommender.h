/* recommender.h -- the serving side of the model: a bi-encoder plus its embedded keyphrase
 * inventory. recommend() = featurize -> item tower forward -> one GEMM against the keyphrase
 * matrix -> top-K (de-duplicated by token set, min score), for a whole micro-batch at once.
 *
 * Not thread-safe (it keeps scratch buffers): one recommender per serving thread. */
#ifndef KP_RECOMMENDER_H
#define KP_RECOMMENDER_H

#include <stddef.h>
#include <stdint.h>

#include "model/bienc.h"

typedef struct kp_recommender kp_recommender;

/* One suggestion for an item. The strings are borrowed from the recommender (valid until it is
 * freed). This is the one list the serve path builds per item: the cache writes it as JSON, the
 * codec as Avro. */
typedef struct {
    const char *keyphrase_id;
    const char *keyphrase;
    float score;
} kp_rec_suggestion;

/* Builds a recommender over n keyphrases (ids[i], texts[i] are copied), embedding them with m's
 * keyphrase tower. Takes ownership of m (freed with the recommender, also on error).
 * prefix_dim: Matryoshka first-pass size (0 = full size only). NULL with err on failure. */
kp_recommender *kp_rec_new(kp_bienc *m, const char *const *ids, const char *const *texts, int n,
                           int prefix_dim, char *err, size_t errlen);

/* Frees everything, including the model. Accepts NULL. */
void kp_rec_free(kp_recommender *r);

/* The number of keyphrases indexed, the model's version, the model (owned by r). */
int kp_rec_size(const kp_recommender *r);
uint64_t kp_rec_version(const kp_recommender *r);
const kp_bienc *kp_rec_model(const kp_recommender *r);

/* Text and id of keyphrase i (owned by r), or NULL when i is out of range. */
const char *kp_rec_keyphrase(const kp_recommender *r, int i);
const char *kp_rec_keyphrase_id(const kp_recommender *r, int i);

/* For n item titles, writes up to k results per item: ids[i*k + j] (keyphrase index), scores[...],
 * counts[i]. Returns 0, or -1 on OOM / bad arguments. */
int kp_rec_recommend(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                     float min_score, int *ids, float *scores, int *counts);

/* As kp_rec_recommend, as suggestion lists: item i's are out[i*k + 0 .. i*k + counts[i] - 1], best
 * first. Returns 0, or -1 on OOM / bad arguments (out and counts then undefined). */
int kp_rec_suggest(kp_recommender *r, const char *const *titles, const size_t *lens, int n, int k,
                   float min_score, kp_rec_suggestion *out, int *counts);

#endif
