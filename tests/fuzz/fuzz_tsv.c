/* The TSV loaders (model/tsv.c, offline/datasets.c) on any file: the id -> text table (the
 * worker's keyphrase inventory, item titles), judgments and click logs against small tables whose
 * ids the seeds use (items i1 i2 i3, keyphrases k1 k2 k3). */
#include <stdint.h>
#include <stdlib.h>

#include "model/tsv.h"
#include "offline/datasets.h"
#include "tests/fuzz/fuzz.h"

static kp_texts items, keys;

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    char err[512];
    if (!items.n) {
        const char *ii[] = {"i1", "i2", "i3"}, *it[] = {"red shoe", "blue hat", ""};
        const char *ki[] = {"k1", "k2", "k3"}, *kt[] = {"shoe", "hat", "red"};
        if (kp_texts_build(ii, it, 3, &items, err, sizeof err) ||
            kp_texts_build(ki, kt, 3, &keys, err, sizeof err))
            abort();
    }
    const char *path = fz_file("tsv", d, n);
    kp_texts t;
    if (!kp_texts_load(path, &t, err, sizeof err)) {
        for (int i = 0; i < t.n; i++)
            if (kp_texts_find(&t, t.id[i]) != i) abort();
        kp_texts_free(&t);
    }
    kp_judgments j;
    int skipped;
    if (!kp_judgments_load(path, &items, &keys, &j, &skipped, err, sizeof err)) {
        int *off, *idx;
        if (!kp_judgments_relevant_csr(&j, items.n, 2.0f, &off, &idx, err, sizeof err))
            free(off), free(idx);
        kp_judgments_free(&j);
    }
    kp_clicklog cl;
    if (!kp_clicklog_load(path, &items, &keys, &cl, &skipped, err, sizeof err))
        kp_clicklog_free(&cl);
    return 0;
}
