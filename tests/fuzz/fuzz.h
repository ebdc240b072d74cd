/* fuzz.h -- shared by the libFuzzer targets of tests/fuzz: a per-process scratch file for the
 * parsers that read a path (checkpoints, TSV files, INI files), and the small model of the delta
 * fuzzer. Header only. */
#ifndef KP_FUZZ_H
#define KP_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/bienc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes data[0..size) to a per-process file (in /dev/shm when it exists) and returns its path
 * (static; suffix tells several files of one target apart). Aborts when it cannot be written:
 * a fuzzer whose input never arrives would only waste time. */
static inline const char *fz_file(const char *suffix, const void *data, size_t size)
{
    static char path[4][256];
    static int next;
    char *p = path[next++ & 3];
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(p, 256, "%s/kprec-fuzz-%ld-%s", dir, (long)getpid(), suffix);
    FILE *f = fopen(p, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f)) {
        perror(p);
        abort();
    }
    return p;
}

/* The small bi-encoder config of the delta fuzzer and its seeds (tests/fuzz/seeds.c). */
static inline void fz_delta_cfg(kp_bienc_config *c, int shared)
{
    memset(c, 0, sizeof *c);
    c->n_buckets = 64;
    c->emb_dim = 8;
    c->hidden_dim = 8;
    c->out_dim = 4;
    c->shared_towers = shared;
    c->n_prefix = 1;
    c->prefix[0] = 4;
}

#endif
