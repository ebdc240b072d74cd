/* assets.h -- the serve role's pipeline parts besides the bi-encoder: the cross-encoder ([model]
 * ce), the calibration ([model] calibration) and the BM25 index of the inventory ([model] hybrid).
 *
 * The CE and the calibration are loaded once per process (on the first recommender built) and
 * shared by every recommender the follower builds afterwards; the BM25 index is built once per
 * inventory content and shared (reference-counted: a recommender still serving keeps the index
 * of its inventory alive after the file changed). Failing to load them is a start-up error. */
#ifndef KP_ASSETS_H
#define KP_ASSETS_H

#include <stddef.h>

#include "common/config.h"
#include "model/recommender.h"

/* Sets r's pipeline from c's [model] keys (loading the CE / calibration the first time, building
 * the BM25 index when r's inventory is new). With none of them configured r is left as it is
 * (BE top-K, no gate). 0, or -1 with a message in err (r unchanged). Thread-safe. */
int kp_assets_attach(const kp_config *c, kp_recommender *r, char *err, size_t errlen);

/* Frees the CE and the calibration (call after every recommender was freed) and the current
 * BM25 index reference. */
void kp_assets_shutdown(void);

#endif
