#include "model/blas.h"

#include <cblas.h>

void kp_blas_set_threads(int n)
{
    if (n > 0) openblas_set_num_threads(n);
}

int kp_blas_threads(void)
{
    return openblas_get_num_threads();
}
