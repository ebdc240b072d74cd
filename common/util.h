/* util.h -- small helpers every room uses: error messages, clocks, number parsing, hashing,
 * freeing a list of pointers and a thread fan-out.
 *
 * No dependencies beyond libc and pthreads, so model/ links it (common/ is below every room). */
#ifndef KP_UTIL_H
#define KP_UTIL_H

#include <stddef.h>
#include <stdint.h>

/* ---- errors ---- */

/* Writes a printf-formatted message to err[errlen] (truncated, always NUL-terminated). Does
 * nothing when err is NULL or errlen is 0, so callers may pass (NULL, 0) to ignore messages. */
void kp_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- clocks ---- */

/* Wall-clock time in ms since the Unix epoch (CLOCK_REALTIME): for timestamps in records. */
int64_t kp_now_ms(void);

/* Monotonic time in ms and in us (CLOCK_MONOTONIC): for deadlines and durations. */
int64_t kp_mono_ms(void);
uint64_t kp_mono_us(void);

/* ---- number parsing ---- */

/* Parses the whole of s as a base-10 integer in [lo, hi]. Returns 0 and sets *out, or -1 (empty,
 * leading white space, trailing characters, overflow, out of range) leaving *out unchanged. */
int kp_parse_long(const char *s, long lo, long hi, long *out);

/* As kp_parse_long, for an int64_t. */
int kp_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);

/* As kp_parse_long, for an int (lo and hi within int's range). */
int kp_parse_int(const char *s, int lo, int hi, int *out);

/* Parses the whole of s as a finite floating-point number in [lo, hi]. 0 or -1 as above. */
int kp_parse_double(const char *s, double lo, double hi, double *out);

/* ---- escaping bytes from the outside for log lines ---- */

/* kp_escape flag: a backslash is doubled too, so that the escaped text is unambiguous. */
#define KP_ESC_BACKSLASH 1

/* Copies s[0..n) into out[cap] (NUL-terminated when cap > 0) with every byte that a terminal or a
 * log reader must not get raw written as \xHH: C0 controls (newline, ESC, ...), DEL, and bytes
 * that are not part of well-formed UTF-8 (valid multi-byte characters are kept). With
 * KP_ESC_BACKSLASH a backslash is doubled. Output that does not fit is cut at a character
 * boundary and ends in "...". Returns out. For item ids, keys and other text from the outside. */
char *kp_escape(const char *s, size_t n, char *out, size_t cap, int flags);

/* ---- hashing: 64-bit FNV-1a ---- */

#define KP_FNV_OFFSET 0xcbf29ce484222325ULL
#define KP_FNV_PRIME  0x100000001b3ULL

/* One FNV-1a step: h' = (h ^ v) * prime. */
static inline uint64_t kp_fnv1a_step(uint64_t h, uint64_t v)
{
    return (h ^ v) * KP_FNV_PRIME;
}

/* FNV-1a of n bytes, and of a NUL-terminated string. */
uint64_t kp_fnv1a(const void *p, size_t n);
uint64_t kp_fnv1a_str(const char *s);

/* ---- memory ---- */

/* free() of each of the n pointers p[0..n-1], in order (NULL ones do nothing, as in free). */
void kp_free_each(void *const *p, size_t n);

/* A large table (an embedding table, its Adam moments): n bytes of zeroed memory, mapped lazily
 * (a page takes memory on its first touch, as with calloc), 2 MiB-aligned and advised as
 * transparent huge pages (MADV_HUGEPAGE; the kernel may decline). The rows of such a table are
 * read in random order, so on 4 KiB pages nearly every row costs a TLB miss. NULL on failure or
 * n == 0. Release with kp_big_free only (not free). */
void *kp_big_alloc(size_t n);
/* Releases what kp_big_alloc returned; accepts NULL. */
void kp_big_free(void *p);

/* kp_free_each over its arguments: KP_FREE_ALL(a->x, a->y, a) frees a->x, then a->y, then a
 * (every argument is read before the first is freed). */
/* In a function that returns int: resizes the array p to n elements (realloc), or returns -1
 * from that function on OOM, p unchanged. */
#define KP_GROW_OR_FAIL(p, n)                                                                      \
    do {                                                                                           \
        void *np_ = realloc((void *)(p), sizeof *(p) * (size_t)(n));                               \
        if (!np_) return -1;                                                                       \
        (p) = np_;                                                                                 \
    } while (0)

#define KP_FREE_ALL(...)                                                                           \
    kp_free_each((void *[]){__VA_ARGS__}, sizeof((void *[]){__VA_ARGS__}) / sizeof(void *))

/* ---- thread fan-out ---- */

/* Work on range [lo, hi) by thread t (0 = the calling thread). Returns 0, or non-zero on failure.
 */
typedef int (*kp_range_fn)(void *ctx, int t, int lo, int hi);

/* Splits [0, n) into min(threads, n) contiguous ranges (range t = [n*t/T, n*(t+1)/T)), runs range
 * t on thread t and range 0 on the calling thread; a range whose thread cannot be started runs on
 * the calling thread, so the result never depends on thread creation. Threads 1.. are helpers kept
 * between calls (started on first use, signals blocked, idle ones asleep after ~100 us); a call
 * made while another is using them (another thread's, or one from inside a range) or in a forked
 * child starts threads of its own. Returns 0 when every range returned 0, else -1. threads < 1
 * counts as 1; n <= 0 does nothing. Thread-safe. */
int kp_parallel_for(int threads, int n, kp_range_fn fn, void *ctx);

/* Splits [0, n) into min(parts, n) ranges as kp_parallel_for does with that many threads (range t
 * = [n*t/P, n*(t+1)/P)), whatever the thread count: with threads >= P, as kp_parallel_for(P, ..);
 * with fewer, every range runs on the calling thread, in order (fn's t is the range). So the calls
 * fn makes (a GEMM over its rows, say) are the same at every thread count, and so are their
 * results bit for bit, even where a BLAS computes an element differently by its row's place in a
 * call. Returns as kp_parallel_for. */
int kp_parallel_parts(int threads, int parts, int n, kp_range_fn fn, void *ctx);

/* Called as ranges finish: done of total items; on the calling thread only. */
typedef void (*kp_done_fn)(void *ctx, long done, long total);

/* Dynamic fan-out: threads take chunks of `chunk` items from a shared counter until [0, n) is
 * done; fn gets the taking thread's index. on_done (may be NULL) is called on the calling thread
 * after each of its chunks and once at the end with the final count. Use it where ranges cost
 * unequal time and the result does not depend on which thread did which chunk. Returns as
 * kp_parallel_for. */
int kp_parallel_chunks(int threads, int n, int chunk, kp_range_fn fn, void *ctx, kp_done_fn on_done,
                       void *done_ctx);

#endif
