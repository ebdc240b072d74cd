/* tsv: reading the tab-separated data files of kprec, and the id -> text table (keyphrase
 * inventories, item titles) that the worker and the offline tools share.
 *
 * Format: UTF-8, one header row (skipped), fields separated by '\t', no quoting, '\n' or "\r\n"
 * line ends. Empty lines are ignored. Ids are opaque strings.
 *
 * Memory: a loaded file lives in one arena (the file's bytes, split in place); rows are pointers or
 * indices into it, so there is no allocation per row. Ids are found through an open-addressing hash
 * map (FNV-1a, linear probing).
 *
 * Errors: every function returning int returns 0 on success and -1 on error, with a message naming
 * the file and the 1-based line written to err (when err != NULL and errlen > 0), e.g.
 * "judgments.tsv:17: expected 4 columns, got 3". On error the output struct is left zeroed and owns
 * nothing. */
#ifndef KP_TSV_H
#define KP_TSV_H

#include <stddef.h>
#include <stdint.h>

/* ---- reading ---- */

/* Lines of a buffer read by kp_tsv_read_all. */
typedef struct {
    char *p, *end; /* unread part of the buffer */
    int lineno;    /* 1-based number of the line last returned */
} kp_tsv_lines;

/* Reads the whole file into a fresh NUL-terminated buffer (*buf, caller frees) of *len bytes.
 * Errors: unreadable file, larger than INT_MAX bytes, a NUL byte inside, out of memory. */
int kp_tsv_read_all(const char *path, char **buf, size_t *len, char *err, size_t errlen);

/* Next line, NUL-terminated in place without its "\n" / "\r\n", or NULL at the end. */
char *kp_tsv_next_line(kp_tsv_lines *it);

/* Splits line at tabs in place; stores up to maxf field pointers in f, returns the field count
 * (which may exceed maxf). */
int kp_tsv_split(char *line, char **f, int maxf);

/* Number of lines in buf (an upper bound on the rows). */
int kp_tsv_count_lines(const char *buf, size_t len);

/* Reads the header line into *header (may be NULL); errors if the file has none. */
int kp_tsv_skip_header(kp_tsv_lines *it, const char *path, char **header, char *err, size_t errlen);

/* ---- the id -> text table ---- */

/* Id -> text table (items: item_id/title, keyphrases: keyphrase_id/keyphrase). */
typedef struct {
    int n;       /* rows */
    char **id;   /* [n] NUL-terminated, unique, non-empty; point into arena */
    char **text; /* [n] NUL-terminated (may be empty); point into arena */
    char *arena; /* all strings */
    int *slot;   /* [cap] hash map slots: row index or -1 (private) */
    int cap;     /* power of two >= 2n (private) */
} kp_texts;

/* Loads a 2-column file (id, text). Errors: unreadable file, no header, a row without exactly 2
 * columns, an empty id, a duplicate id. On success the caller owns *out (kp_texts_free). */
int kp_texts_load(const char *path, kp_texts *out, char *err, size_t errlen);

/* Builds a table from n in-memory (id, text) pairs, copying the strings into one arena. Same
 * validation as kp_texts_load (ids non-empty and unique, no '\t' or '\n' in ids or texts, so that
 * the table can be written back as TSV). The caller owns *out. */
int kp_texts_build(const char *const *ids, const char *const *texts, int n, kp_texts *out,
                   char *err, size_t errlen);

/* Frees what *t owns and zeroes it. Accepts NULL. */
void kp_texts_free(kp_texts *t);

/* Row index of id, or -1 when absent (or t/id NULL). */
int kp_texts_find(const kp_texts *t, const char *id);

#endif /* KP_TSV_H */
