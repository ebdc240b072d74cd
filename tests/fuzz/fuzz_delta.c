/* Model deltas (model/delta.h): kp_delta_peek, the assembler and kp_delta_asm_apply on any
 * chunks. Input byte 0 picks the mode:
 *   bit 0 set:   the rest is [u8 slices][payload]: the harness cuts the payload into 1..4 slices
 *                and wraps them in chunks with correct headers and CRCs (version 2 over base 1),
 *                so mutations reach the payload parser of kp_delta_asm_apply;
 *   bit 0 clear: the rest is a list of chunks, each [u16 LE length][bytes]; with bit 1 set the
 *                harness rewrites each chunk's trailing CRC (so the header checks are reached).
 * Complete deltas are applied to a small shared-towers and a small two-tower bi-encoder whose
 * version is set to the delta's base first. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/bienc.h"
#include "model/ckpt.h"
#include "model/delta.h"
#include "tests/fuzz/fuzz.h"

static kp_bienc *models[2];
static kp_delta_asm *as;

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void feed(const uint8_t *chunk, size_t len)
{
    char err[512];
    uint64_t v, b;
    int idx, cnt;
    kp_delta_peek(chunk, len, &v, &b, &idx, &cnt);
    if (kp_delta_asm_add(as, chunk, len, err, sizeof err) != 1) return;
    for (int i = 0; i < 2; i++) {
        kp_bienc_set_version(models[i], kp_delta_asm_base(as));
        kp_delta_asm_apply(as, models[i], err, sizeof err);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (!as) {
        kp_bienc_config c;
        for (int i = 0; i < 2; i++) {
            fz_delta_cfg(&c, i == 0);
            if (!(models[i] = kp_bienc_new(&c, 7))) abort();
        }
        if (!(as = kp_delta_asm_new())) abort();
    }
    kp_delta_asm_free(as); /* a fresh assembler per input: runs do not depend on each other */
    as = kp_delta_asm_new();
    if (n < 1) return 0;
    if (d[0] & 1) {
        if (n < 3) return 0;
        const uint8_t *pl = d + 2;
        size_t total = n - 2, nsl = 1 + d[1] % 4;
        if (nsl > total) nsl = total;
        uint32_t pcrc = kp_crc32(0, pl, total);
        size_t slice = (total + nsl - 1) / nsl;
        for (size_t i = 0, off = 0; off < total; i++, off += slice) {
            size_t sl = total - off < slice ? total - off : slice;
            uint8_t *ch = malloc(KP_DELTA_OVERHEAD + sl);
            memcpy(ch, KP_DELTA_MAGIC, 4);
            put_le(ch + 4, KP_DELTA_FORMAT_VERSION, 4);
            put_le(ch + 8, 2, 8);
            put_le(ch + 16, 1, 8);
            put_le(ch + 24, i, 4);
            put_le(ch + 28, (total + slice - 1) / slice, 4);
            put_le(ch + 32, total, 8);
            put_le(ch + 40, pcrc, 4);
            put_le(ch + 44, off, 8);
            put_le(ch + 52, sl, 4);
            memcpy(ch + KP_DELTA_HEADER, pl + off, sl);
            put_le(ch + KP_DELTA_HEADER + sl, kp_crc32(0, ch, KP_DELTA_HEADER + sl), 4);
            feed(ch, KP_DELTA_OVERHEAD + sl);
            free(ch);
        }
        return 0;
    }
    size_t pos = 1;
    while (pos + 2 <= n) {
        size_t len = (size_t)d[pos] | (size_t)d[pos + 1] << 8;
        pos += 2;
        if (len > n - pos) len = n - pos;
        uint8_t *ch = malloc(len + 1);
        memcpy(ch, d + pos, len);
        if ((d[0] & 2) && len >= 4) put_le(ch + len - 4, kp_crc32(0, ch, len - 4), 4);
        feed(ch, len);
        free(ch);
        pos += len;
    }
    return 0;
}
