/* learn_buffer.c -- the trainer's ring of recent examples (contracts in learn_buffer.h). */
#include "consumer/learn_buffer.h"

#include <stdlib.h>
#include <string.h>

int kp_lbuf_init(kp_lbuf *b, int cap)
{
    memset(b, 0, sizeof *b);
    if (cap <= 0 || !(b->x = calloc((size_t)cap, sizeof *b->x))) return -1;
    b->cap = cap;
    return 0;
}

void kp_lbuf_free(kp_lbuf *b)
{
    for (int i = 0; b->x && i < b->cap; i++)
        kp_lexample_clear(&b->x[i]);
    free(b->x);
    memset(b, 0, sizeof *b);
}

int kp_lbuf_push(kp_lbuf *b, const kp_levent *ev)
{
    kp_lexample *x = &b->x[b->next];
    kp_lexample_clear(x);
    if (kp_lexample_set(x, ev)) {
        if (b->len == b->cap) b->len--; /* the slot was the oldest example's */
        return -1;
    }
    b->next = (b->next + 1) % b->cap;
    if (b->len < b->cap) b->len++;
    return 0;
}

void kp_lbuf_unpush(kp_lbuf *b, int k)
{
    for (; k > 0 && b->len > 0; k--) {
        b->next = (b->next - 1 + b->cap) % b->cap;
        kp_lexample_clear(&b->x[b->next]);
        b->len--;
    }
}

void kp_lbuf_draw(const kp_lbuf *b, kp_rng *rng, const kp_lexample **ex, int nnew, int nold)
{
    for (int e = 0; e < nnew; e++)
        ex[e] = &b->x[(b->next - nnew + e + b->cap) % b->cap];
    for (int e = 0; e < nold; e++) {
        uint64_t back = (uint64_t)nnew + kp_rng_below(rng, (uint64_t)(b->len - nnew));
        ex[nnew + e] = &b->x[(b->next - (int)back - 1 + 2 * b->cap) % b->cap];
    }
}
