/* par.c - the model's two-way fan-out (see par.h). */
#include "model/par.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

static atomic_int g_width = 1;

void kp_par_set_threads(int n)
{
    if (n > 0) atomic_store(&g_width, n >= 2 ? 2 : 1);
}

int kp_par_threads(void)
{
    return atomic_load(&g_width);
}

typedef struct {
    void (*fn)(void *);
    void *arg;
} job;

static void *run(void *p)
{
    job *j = p;
    j->fn(j->arg);
    return NULL;
}

void kp_par_run2(void (*fn)(void *), void *a, void *b)
{
    job jb = {fn, b};
    pthread_t th;
    int made = pthread_create(&th, NULL, run, &jb) == 0;
    fn(a);
    if (made)
        pthread_join(th, NULL);
    else
        fn(b);
}
