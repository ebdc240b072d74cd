#include "model/blas.h"

#include <cblas.h>
#include <stdatomic.h>

void kp_blas_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

int kp_blas_threads(void)
{
    return openblas_get_num_threads();
}

static atomic_int g_par = 1;

void kp_par_set_threads(int n)
{
    if (n > 0) atomic_store(&g_par, n >= 2 ? 2 : 1);
}

int kp_par_threads(void)
{
    return atomic_load(&g_par);
}
