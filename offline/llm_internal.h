/* llm_internal.h -- what offline/llm_request.c and offline/llm_judge.c share: a growing byte buffer
 * and the length of server text quoted in a reason. Not an API: no file outside offline/llm_*.c
 * includes it. */
#ifndef KP_LLM_INTERNAL_H
#define KP_LLM_INTERNAL_H

#include <stdlib.h>
#include <string.h>

#define SNIPPET 160 /* bytes of server text quoted in a reason */

/* A NUL-terminated byte buffer; oom is set (and later adds ignored) when it cannot grow. */
typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} buf;

static inline void buf_add(buf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

#endif
