/* delta.h - model deltas: what a serving bi-encoder needs to go from version base to version v,
 * as a list of self-describing chunks small enough for one Kafka message each.
 *
 * Pure computation: builds and consumes byte buffers (the worker moves them over `kprec.model`).
 *
 * Payload (all integers and floats little-endian; floats are IEEE-754 binary32):
 *   config fingerprint: u32 n_buckets, u32 emb_dim E, u32 hidden_dim H, u32 out_dim D,
 *                       u32 shared_towers, u32 featurizer version, u32 n_towers (1 or 2)
 *   per tower t:        u32 nrows, u32 row ids [nrows] (ascending, unique),
 *                       f32 rows [nrows x E], f32 W1 [H x E], f32 b1 [H], f32 W2 [D x H], f32 b2
 * [D] A delta carries the changed embedding rows and ALL dense tensors (they are small).
 *
 * Chunk (the payload cut into slices, in order):
 *   magic "KPDL" | u32 format version (KP_DELTA_FORMAT_VERSION) | u64 version | u64 base_version |
 *   u32 index | u32 count | u64 payload length | u32 CRC-32 of the whole payload |
 *   u64 slice offset | u32 slice length | slice | u32 CRC-32 of every chunk byte before it.
 * Every chunk repeats the payload's length and CRC, so a reassembled payload is verified end to end
 * and two different deltas with the same version are never mixed. A chunk is KP_DELTA_OVERHEAD
 * bytes plus its slice.
 */
#ifndef KP_DELTA_H
#define KP_DELTA_H

#include <stddef.h>
#include <stdint.h>

#include "model/bienc.h"

#define KP_DELTA_MAGIC          "KPDL"
#define KP_DELTA_FORMAT_VERSION 1u
#define KP_DELTA_HEADER         56 /* bytes before the slice */
#define KP_DELTA_OVERHEAD       60 /* header + trailing CRC */

/* Builds the delta of m over base_version; its version is kp_bienc_version(m), which must be
 * greater than base_version. rows[t][0..nrows[t]) are the changed rows of tower t's embedding table
 * (t < kp_bienc_n_towers(m)); duplicates are allowed and written once; rows and nrows may be NULL
 * (no changed rows), and so may rows[t] when nrows[t] is 0. Every chunk is at most max_chunk bytes
 * (max_chunk > KP_DELTA_OVERHEAD). On success writes *nchunks malloc'd buffers (*chunks)[i] of
 * (*lens)[i] bytes, owned by the caller (free with kp_delta_chunks_free), and returns 0. Returns -1
 * with a message in err (may be NULL) on bad arguments (row id >= n_buckets, negative count,
 * max_chunk too small, version not after base) or OOM; the outputs are then NULL / 0. */
int kp_delta_build(const kp_bienc *m, uint64_t base_version, const uint32_t *const *rows,
                   const int *nrows, size_t max_chunk, void ***chunks, size_t **lens, int *nchunks,
                   char *err, size_t errlen);

/* Frees the n chunks and both arrays of kp_delta_build; accepts NULL. */
void kp_delta_chunks_free(void **chunks, size_t *lens, int n);

/* Reads a chunk's header without copying (any output may be NULL). Checks the magic, format
 * version, lengths and the chunk's CRC. 0, or -1 if it is not a valid delta chunk (the outputs are
 * then untouched). */
int kp_delta_peek(const void *chunk, size_t len, uint64_t *version, uint64_t *base_version,
                  int *index, int *count);

/* Reassembles one delta at a time from its chunks, in order. */
typedef struct kp_delta_asm kp_delta_asm;

/* Empty assembler; NULL on OOM. */
kp_delta_asm *kp_delta_asm_new(void);
/* Frees it; accepts NULL. */
void kp_delta_asm_free(kp_delta_asm *a);

/* Feeds a chunk (copied; the caller keeps it). Returns
 *    1  the delta is complete and its payload CRC verified (kp_delta_asm_apply may follow);
 *    0  more chunks are needed; also for a repeated chunk already taken (at-least-once delivery
 *       redelivers), which changes nothing;
 *   -1  bad chunk, with the reason in err: corrupted (checksum), truncated, foreign (not a delta
 *       chunk), out of order (a later chunk than the next expected one), inconsistent; OOM.
 * A valid chunk of another delta (other version, base, length or payload CRC) than the one held
 * drops the held one, partial or complete, and starts over: with its chunk 0 the assembly of the
 * new delta begins (0 or 1), any other chunk is out of order (-1, nothing held then). A bad chunk
 * changes nothing. */
int kp_delta_asm_add(kp_delta_asm *a, const void *chunk, size_t len, char *err, size_t errlen);

/* Version and base version of the delta held (partial or complete); 0 if none. */
uint64_t kp_delta_asm_version(const kp_delta_asm *a);
uint64_t kp_delta_asm_base(const kp_delta_asm *a);

/* Applies the complete delta held by a to m: writes its embedding rows and dense tensors and sets
 * m's version to the delta's. Returns 0, or -1 with a message in err, leaving m untouched, if no
 * complete delta is held, if the delta's config fingerprint differs from m's ("config mismatch:
 * ..."), if kp_bienc_version(m) != base ("gap: model is at version X, delta needs base Y"), or if
 * the payload is malformed. The delta stays held (it can be applied to another model). */
int kp_delta_asm_apply(kp_delta_asm *a, kp_bienc *m, char *err, size_t errlen);

#endif
