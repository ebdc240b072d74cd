/* Checkpoint files (model/ckpt.h): the generic reader and the bi-encoder and cross-encoder
 * loaders, on any file. Input byte 0 picks the mode:
 *   bit 0 set: the rest is a checkpoint up to and including its 'E' tag; the harness appends the
 *              right CRC-32, so mutations reach the record parsers instead of dying on the
 *              checksum;
 *   bit 0 clear: the rest is the file as it is;
 *   (byte 0 >> 1) % 3 picks the reader: 0 kp_ckpt_open (then every small tensor is read),
 *              1 kp_bienc_load, 2 kp_ce_load (each open allocates its record table: one reader
 *              per input keeps the target fast). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/bienc.h"
#include "model/ce.h"
#include "model/ckpt.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1) return 0;
    char err[512];
    const uint8_t *body = d + 1;
    size_t len = n - 1;
    uint8_t *buf = malloc(len + 4);
    memcpy(buf, body, len);
    if (d[0] & 1) {
        uint32_t crc = kp_crc32(0, body, len);
        for (int i = 0; i < 4; i++)
            buf[len + (size_t)i] = (uint8_t)(crc >> (8 * i));
        len += 4;
    }
    const char *path = fz_file("ckpt", buf, len);
    free(buf);
    int which = (d[0] >> 1) % 3;
    kp_ckpt_reader *r = which == 0 ? kp_ckpt_open(path, err, sizeof err) : NULL;
    if (r) {
        kp_ckpt_kind(r);
        kp_ckpt_get(r, "version");
        uint64_t v;
        kp_ckpt_get_u64(r, "version", &v);
        for (int i = 0; i < kp_ckpt_n_tensors(r); i++) {
            const char *name = kp_ckpt_tensor_name(r, i);
            int nd;
            uint64_t dims[KP_CKPT_MAX_DIMS], total = 1;
            if (!name || kp_ckpt_tensor_shape(r, name, &nd, dims)) abort();
            for (int k = 0; k < nd; k++)
                total = dims[k] && total <= (1u << 20) ? total * dims[k] : (1u << 21);
            if (total > (1u << 20)) continue;
            float *x = malloc((size_t)total * sizeof *x + 1);
            kp_ckpt_read_tensor(r, name, x, nd, dims, err, sizeof err);
            free(x);
        }
        kp_ckpt_close(r);
    }
    if (which == 1) kp_bienc_free(kp_bienc_load(path, err, sizeof err));
    if (which == 2) kp_ce_free(kp_ce_load(path, err, sizeof err));
    return 0;
}
