/* ckpt.h - checkpoint files: a generic container of named float tensors + a key/value header,
 * and the bi-encoder's save/load on top of it.
 *
 * Layout (all integers little-endian):
 *   magic "KPREC\0CK" (8 bytes) | u32 format version (KP_CKPT_FORMAT_VERSION) |
 *   u16 kind length | kind ("bienc", "ce", ...) |
 *   records: 'K' u16 key length, key, u32 value length, value            (key/value, text)
 *            'T' u16 name length, name, u32 ndim, u64 dims[ndim], u32 dtype (0 = f32 LE), data
 *   'E' | u32 CRC-32 (IEEE) of every byte before it.
 * Writers write to "<path>.tmp.<pid>", fsync, then rename over path: a reader never sees a
 * half-written checkpoint. Readers validate magic, version, every length against the file size,
 * the checksum and that nothing follows it, before any tensor is handed out.
 */
#ifndef KP_CKPT_H
#define KP_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "model/bienc.h"

#define KP_CKPT_MAGIC          "KPREC\0CK"
#define KP_CKPT_FORMAT_VERSION 1u
#define KP_CKPT_MAX_DIMS       8
#define KP_CKPT_MAX_NAME       255
#define KP_CKPT_MAX_VALUE      65536
#define KP_CKPT_MAX_RECORDS    4096

/* ---- generic writer -------------------------------------------------------------------------- */
typedef struct kp_ckpt_writer kp_ckpt_writer;

/* Starts a checkpoint of the given kind (1..255 bytes) at path. NULL with a message in err on
 * failure (cannot create the temporary file, OOM, bad args). */
kp_ckpt_writer *kp_ckpt_writer_new(const char *path, const char *kind, char *err, size_t errlen);
/* Adds a key/value record (key 1..255 bytes, value <= 64 KiB, both text). Errors are sticky and
 * reported by kp_ckpt_writer_commit; the return value is 0 or -1 as well. */
int kp_ckpt_put(kp_ckpt_writer *w, const char *key, const char *value);
int kp_ckpt_put_u64(kp_ckpt_writer *w, const char *key, uint64_t value);
/* Adds a float tensor of shape dims[0..ndim) (1 <= ndim <= KP_CKPT_MAX_DIMS). */
int kp_ckpt_put_tensor(kp_ckpt_writer *w, const char *name, const float *data, int ndim,
                       const uint64_t *dims);
/* Writes the trailer, fsyncs and renames into place. Always frees w. 0, or -1 with a message in
 * err (the temporary file is then removed and path is untouched). */
int kp_ckpt_writer_commit(kp_ckpt_writer *w, char *err, size_t errlen);
/* Discards the checkpoint (removes the temporary file) and frees w; accepts NULL. */
void kp_ckpt_writer_abort(kp_ckpt_writer *w);

/* ---- generic reader -------------------------------------------------------------------------- */
typedef struct kp_ckpt_reader kp_ckpt_reader;

/* Opens and fully validates a checkpoint (one streaming pass for the checksum). NULL with a clear
 * message in err on a missing, truncated, foreign, corrupted or unsupported file. */
kp_ckpt_reader *kp_ckpt_open(const char *path, char *err, size_t errlen);
void kp_ckpt_close(kp_ckpt_reader *r); /* accepts NULL */
const char *kp_ckpt_kind(const kp_ckpt_reader *r);
/* Value of key (owned by r) or NULL. */
const char *kp_ckpt_get(const kp_ckpt_reader *r, const char *key);
/* Parses key's value as an unsigned decimal. 0, or -1 if missing or not a number. */
int kp_ckpt_get_u64(const kp_ckpt_reader *r, const char *key, uint64_t *out);
int kp_ckpt_n_tensors(const kp_ckpt_reader *r);
const char *kp_ckpt_tensor_name(const kp_ckpt_reader *r, int i); /* NULL if out of range */
/* Shape of a tensor: 0, or -1 if there is no tensor of that name. */
int kp_ckpt_tensor_shape(const kp_ckpt_reader *r, const char *name, int *ndim,
                         uint64_t dims[KP_CKPT_MAX_DIMS]);
/* 0 if r has tensor `name` of exactly the shape dims[0..ndim), else -1 with "header sizes do
 * not match the tensors: 'item.emb' should be [..], the file has [..]" in err. A loader calls it
 * for every tensor a header's sizes imply before it allocates from them: the reader has checked
 * each tensor's data against the file size, so a lying header cannot make it allocate more than
 * the file holds. */
int kp_ckpt_expect_tensor(const kp_ckpt_reader *r, const char *name, int ndim, const uint64_t *dims,
                          char *err, size_t errlen);
/* Reads tensor `name` into dst, which must have exactly the shape dims[0..ndim). 0, or -1 with a
 * message in err (missing tensor, shape mismatch, I/O error). */
int kp_ckpt_read_tensor(kp_ckpt_reader *r, const char *name, float *dst, int ndim,
                        const uint64_t *dims, char *err, size_t errlen);

/* ---- bi-encoder ------------------------------------------------------------------------------ */
#define KP_CKPT_KIND_BIENC "bienc"

/* Saves config, model version, featurizer version and all tensors. 0, or -1 with err. */
int kp_bienc_save(const kp_bienc *m, const char *path, char *err, size_t errlen);
/* kp_bienc_save, plus the records extra(w, ctx) adds (e.g. the trainer's optimiser state, tensors
 * named "opt.*", which kp_bienc_load skips) before the commit; extra may be NULL and returns 0 or
 * -1 (the checkpoint is then not written). */
int kp_bienc_save_ext(const kp_bienc *m, const char *path, int (*extra)(kp_ckpt_writer *, void *),
                      void *ctx, char *err, size_t errlen);
/* Loads a bi-encoder checkpoint (tensors named "opt.*" are not the model's and are skipped); NULL
 * with a message in err on any problem (also: another kind, another featurizer version,
 * config/tensor shape mismatch). */
kp_bienc *kp_bienc_load(const char *path, char *err, size_t errlen);

/* CRC-32 (IEEE 802.3, reflected 0xEDB88320) of buf, continuing from crc (start with 0). */
uint32_t kp_crc32(uint32_t crc, const void *buf, size_t len);

#endif
