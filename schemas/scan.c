/* scan.c - checks that a body really holds a value of its writer schema before Avro C reads it,
 * and UTF-8 validation (see codec.h and codec_int.h).
 *
 * Avro C's binary reader mallocs whatever length a varint says, and reads past the end of a short
 * buffer into its next read. So decode.c first walks the writer schema over the bytes here: every
 * string, bytes and fixed length must fit the bytes left, array and map block counts must fit too
 * (each item takes at least min_size bytes), enum and union indexes must be in range, ints must
 * fit 32 bits, varints must end within 10 bytes, and the body must be consumed exactly.
 */
#include "schemas/codec_int.h"

#include "common/util.h"

#include <stdint.h>
#include <string.h>

/* ---- UTF-8 -------------------------------------------------------------------------------- */

int kp_utf8_valid(const char *s, size_t n, size_t *bad_at)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t len;
        uint32_t cp, min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            goto bad;
        }
        if (n - i < len) goto bad;
        for (size_t k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80) goto bad;
            cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) goto bad;
        i += len;
    }
    return 1;
bad:
    if (bad_at) *bad_at = i;
    return 0;
}

/* ---- pre-scan: check a body against its writer schema before Avro C reads it --------------- */

typedef struct {
    const unsigned char *p;
    size_t len, pos;
    char *err;
    size_t errlen;
} kp_scan;

static int scan_truncated(kp_scan *s)
{
    kp_errf(s->err, s->errlen, "truncated (at body offset %zu of %zu)", s->pos, s->len);
    return -1;
}

/* Zig-zag varint of at most 10 bytes that fits in 64 bits. */
static int scan_varint(kp_scan *s, int64_t *out)
{
    uint64_t v = 0;
    size_t start = s->pos;
    for (int i = 0;; i++) {
        if (s->pos >= s->len) return scan_truncated(s);
        unsigned b = s->p[s->pos++];
        if (i == 9 && b > 1) {
            kp_errf(s->err, s->errlen, "varint overflow at body offset %zu", start);
            return -1;
        }
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if (!(b & 0x80)) break;
    }
    *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
    return 0;
}

static int scan_skip(kp_scan *s, uint64_t n)
{
    if (n > s->len - s->pos) return scan_truncated(s);
    s->pos += (size_t)n;
    return 0;
}

/* A length prefix: 0 <= n <= bytes left. */
static int scan_len(kp_scan *s, const char *what, int64_t *n)
{
    size_t at = s->pos;
    if (scan_varint(s, n)) return -1;
    if (*n < 0) {
        kp_errf(s->err, s->errlen, "bad %s length %lld at body offset %zu", what, (long long)*n,
                at);
        return -1;
    }
    if ((uint64_t)*n > s->len - s->pos) return scan_truncated(s);
    return 0;
}

/* Smallest number of bytes a value of schema t can take (a lower bound for deep nesting). */
static size_t min_size(avro_schema_t t, int depth)
{
    t = kp_deref(t);
    if (!t || depth > 8) return 0;
    switch (avro_typeof(t)) {
    case AVRO_NULL:
        return 0;
    case AVRO_FLOAT:
        return 4;
    case AVRO_DOUBLE:
        return 8;
    case AVRO_FIXED:
        return (size_t)avro_schema_fixed_size(t);
    case AVRO_RECORD: {
        size_t sum = 0;
        for (size_t i = 0; i < avro_schema_record_size(t); i++)
            sum += min_size(avro_schema_record_field_get_by_index(t, (int)i), depth + 1);
        return sum;
    }
    case AVRO_UNION: {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < avro_schema_union_size(t); i++) {
            size_t m = min_size(avro_schema_union_branch(t, (int)i), depth + 1);
            if (m < best) best = m;
        }
        return 1 + (best == SIZE_MAX ? 0 : best);
    }
    default:
        return 1; /* string, bytes, int, long, boolean, enum, array, map */
    }
}

static int scan_value(kp_scan *s, avro_schema_t t, int depth)
{
    int64_t v;
    size_t at = s->pos;
    t = kp_deref(t);
    if (!t || depth > KP_MAX_DEPTH) {
        kp_errf(s->err, s->errlen, "schema nested too deeply");
        return -1;
    }
    switch (avro_typeof(t)) {
    case AVRO_NULL:
        return 0;
    case AVRO_STRING:
    case AVRO_BYTES:
        if (scan_len(s, "string", &v)) return -1;
        return scan_skip(s, (uint64_t)v);
    case AVRO_INT32:
        if (scan_varint(s, &v)) return -1;
        if (v < INT32_MIN || v > INT32_MAX) {
            kp_errf(s->err, s->errlen, "int out of range at body offset %zu", at);
            return -1;
        }
        return 0;
    case AVRO_INT64:
        return scan_varint(s, &v);
    case AVRO_FLOAT:
        return scan_skip(s, 4);
    case AVRO_DOUBLE:
        return scan_skip(s, 8);
    case AVRO_BOOLEAN:
        if (s->pos >= s->len) return scan_truncated(s);
        if (s->p[s->pos] > 1) {
            kp_errf(s->err, s->errlen, "bad boolean byte 0x%02x at body offset %zu", s->p[s->pos],
                    at);
            return -1;
        }
        s->pos++;
        return 0;
    case AVRO_FIXED:
        return scan_skip(s, (uint64_t)avro_schema_fixed_size(t));
    case AVRO_ENUM:
        if (scan_varint(s, &v)) return -1;
        if (v < 0 || v >= avro_schema_enum_number_of_symbols(t)) {
            kp_errf(s->err, s->errlen, "enum index %lld out of range at body offset %zu",
                    (long long)v, at);
            return -1;
        }
        return 0;
    case AVRO_UNION:
        if (scan_varint(s, &v)) return -1;
        if (v < 0 || (uint64_t)v >= avro_schema_union_size(t)) {
            kp_errf(s->err, s->errlen, "union index %lld out of range at body offset %zu",
                    (long long)v, at);
            return -1;
        }
        return scan_value(s, avro_schema_union_branch(t, (int)v), depth + 1);
    case AVRO_RECORD:
        for (size_t i = 0; i < avro_schema_record_size(t); i++)
            if (scan_value(s, avro_schema_record_field_get_by_index(t, (int)i), depth + 1))
                return -1;
        return 0;
    case AVRO_ARRAY:
    case AVRO_MAP: {
        int is_map = avro_typeof(t) == AVRO_MAP;
        avro_schema_t item = is_map ? avro_schema_map_values(t) : avro_schema_array_items(t);
        size_t minsz = min_size(item, 0) + (is_map ? 1 : 0);
        uint64_t total = 0;
        for (;;) {
            int64_t count, bytes = -1;
            at = s->pos;
            if (scan_varint(s, &count)) return -1;
            if (count == 0) return 0;
            if (count < 0) {
                if (count == INT64_MIN) {
                    kp_errf(s->err, s->errlen, "bad block count at body offset %zu", at);
                    return -1;
                }
                count = -count;
                if (scan_len(s, "block", &bytes)) return -1;
            }
            size_t start = s->pos;
            total += (uint64_t)count;
            if (minsz > 0 ? (uint64_t)count > (s->len - s->pos) / minsz : total > KP_MAX_ZERO_SZ)
                return scan_truncated(s);
            for (int64_t k = 0; k < count; k++) {
                if (is_map && scan_len(s, "map key", &v)) return -1;
                if (is_map && scan_skip(s, (uint64_t)v)) return -1;
                if (scan_value(s, item, depth + 1)) return -1;
            }
            if (bytes >= 0 && (uint64_t)bytes != s->pos - start) {
                kp_errf(s->err, s->errlen, "block size %lld does not match its %zu bytes",
                        (long long)bytes, s->pos - start);
                return -1;
            }
        }
    }
    default:
        kp_errf(s->err, s->errlen, "unsupported schema type");
        return -1;
    }
}

int kp_scan_body(avro_schema_t writer, const unsigned char *body, size_t len, char *err,
                 size_t errlen)
{
    kp_scan s = {body, len, 0, err, errlen};
    if (scan_value(&s, writer, 0)) return -1;
    if (s.pos != s.len) {
        kp_errf(err, errlen, "trailing bytes (%zu after the record)", s.len - s.pos);
        return -1;
    }
    return 0;
}
