/* Tests for consumer/inventory's file source (the reload of [model] keyphrases: a change is seen
 * to the nanosecond, and only once the file stopped changing) and for the Keyphrase record of the
 * inventory topic (schemas/6-Keyphrase.avsc). */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "consumer/inventory.h"
#include "schemas/codec.h"
#include "th_main.h"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* Sets path's mtime (and atime) to sec + nsec. */
static void set_mtime(const char *path, time_t sec, long nsec)
{
    struct timespec ts[2] = {{sec, nsec}, {sec, nsec}};
    assert_int_equal(utimensat(AT_FDCWD, path, ts, 0), 0);
}

static char *tmp_path(void)
{
    static char p[256];
    const char *d = getenv("TMPDIR");
    snprintf(p, sizeof p, "%s/kprec-inv-XXXXXX", d && d[0] ? d : "/tmp");
    int fd = mkstemp(p);
    assert_true(fd >= 0);
    close(fd);
    return p;
}

/* The issue: a writer rewrites the file within the same second as the version read (here a
 * half-written one of the same size). Whole-second mtimes miss it and the half file is served
 * for good; the nanosecond signature sees it. */
static void test_rewrite_in_the_same_second(void **state)
{
    (void)state;
    const char *p = tmp_path();
    write_file(p, "keyphrase_id\tkeyphrase\nk1\tred sh\n");
    time_t t = time(NULL) - 100;
    set_mtime(p, t, 100000000);
    kp_inv_watch w;
    kp_inv_watch_init(&w, p);
    assert_int_equal(kp_inv_watch_poll(&w, p), 0);          /* nothing new */
    write_file(p, "keyphrase_id\tkeyphrase\nk1\tred ok\n"); /* same size */
    set_mtime(p, t, 900000000);                             /* same second */
    assert_int_equal(kp_inv_watch_poll(&w, p), 0);          /* changed: seen once */
    assert_int_equal(kp_inv_watch_poll(&w, p), 1);          /* unchanged since: reload */
    assert_int_equal(kp_inv_watch_poll(&w, p), 0);          /* acted on */
    kp_texts t2;
    char err[256];
    assert_int_equal(kp_inv_file_load(p, &t2, err, sizeof err), 0);
    assert_string_equal(t2.text[kp_texts_find(&t2, "k1")], "red ok");
    kp_texts_free(&t2);
    unlink(p);
}

/* A file that is still being written (its signature differs at every check) is not reported
 * until it stays the same for one check; a file replaced by rename is seen too. */
static void test_reported_once_stable(void **state)
{
    (void)state;
    char p[256], q[300];
    snprintf(p, sizeof p, "%s", tmp_path());
    snprintf(q, sizeof q, "%s.new", p);
    write_file(p, "keyphrase_id\tkeyphrase\n");
    kp_inv_watch w;
    kp_inv_watch_init(&w, p);
    time_t t = time(NULL) - 50;
    for (int i = 0; i < 4; i++) { /* a writer appending between the checks */
        FILE *f = fopen(p, "a");
        fprintf(f, "k%d\tkeyphrase %d\n", i, i);
        fclose(f);
        set_mtime(p, t, 1000L * i);
        assert_int_equal(kp_inv_watch_poll(&w, p), 0);
    }
    assert_int_equal(kp_inv_watch_poll(&w, p), 1);
    /* rename into place, with the very same mtime and size: the inode tells */
    write_file(q, "keyphrase_id\tkeyphrase\nk0\tkeyphrase 0\nk1\tkeyphrase 1\nk2\tkeyphrase 2\n"
                  "k3\tkeyphrase 9\n");
    set_mtime(q, t, 3000L);
    assert_int_equal(rename(q, p), 0);
    assert_int_equal(kp_inv_watch_poll(&w, p), 0);
    assert_int_equal(kp_inv_watch_poll(&w, p), 1);
    /* a file that disappears is never reported (the old inventory stays) */
    unlink(p);
    assert_int_equal(kp_inv_watch_poll(&w, p), 0);
    assert_int_equal(kp_inv_watch_poll(&w, p), 0);
    kp_texts t2;
    char err[256];
    assert_int_equal(kp_inv_file_load(p, &t2, err, sizeof err), -1);
}

/* Without a reader, kp_inventory_load reads [model] keyphrases (and needs one). */
static void test_load_from_file(void **state)
{
    (void)state;
    kp_config c;
    kp_config_defaults(&c);
    kp_texts t;
    uint64_t seq = 7;
    char err[512];
    assert_int_equal(kp_inventory_load(&c, &t, &seq, err, sizeof err), -1);
    assert_non_null(strstr(err, "keyphrases"));
    const char *p = tmp_path();
    write_file(p, "keyphrase_id\tkeyphrase\na\tblue lamp\nb\tdesk\n");
    snprintf(c.model_keyphrases, sizeof c.model_keyphrases, "%s", p);
    assert_int_equal(kp_inventory_load(&c, &t, &seq, err, sizeof err), 0);
    assert_int_equal(t.n, 2);
    assert_int_equal(seq, 0);
    kp_texts_free(&t);
    kp_config_free(&c);
    unlink(p);
    /* a reader needs its topic */
    assert_null(kp_inventory_start(&c, err, sizeof err));
    assert_non_null(strstr(err, "[topics] inventory"));
}

static void test_keyphrase_record(void **state)
{
    (void)state;
    char err[KP_CODEC_ERRLEN];
    kp_codec *c = kp_codec_new(err, sizeof err);
    assert_non_null(c);
    kp_keyphrase in = {"kp-17", "waterproof hiking boots", "shoes", 1700000000000}, out;
    void *buf;
    size_t len;
    assert_int_equal(kp_encode_keyphrase(c, &in, &buf, &len), 0);
    int32_t id;
    assert_int_equal(kp_wire_schema_id(buf, len, &id, err, sizeof err), 0);
    assert_int_equal(id, KP_SCHEMA_ID_KEYPHRASE);
    assert_int_equal(kp_decode_keyphrase(c, buf, len, &out, err, sizeof err), 0);
    assert_string_equal(out.keyphrase_id, "kp-17");
    assert_string_equal(out.keyphrase, "waterproof hiking boots");
    assert_string_equal(out.category, "shoes");
    assert_true(out.updated_at == in.updated_at);
    kp_keyphrase_clear(&out);
    /* truncated: an error, never a crash */
    assert_int_equal(kp_decode_keyphrase(c, buf, len - 3, &out, err, sizeof err), -1);
    free(buf);
    kp_keyphrase bad = {NULL, "x", "", 0};
    assert_int_equal(kp_encode_keyphrase(c, &bad, &buf, &len), -1);
    /* another type's record is refused */
    kp_item_listed it = {"i", "t", "", "", 0, 0};
    assert_int_equal(kp_encode_item_listed(c, &it, &buf, &len), 0);
    assert_int_equal(kp_decode_keyphrase(c, buf, len, &out, err, sizeof err), -1);
    free(buf);
    kp_codec_free(c);
}

TH_MAIN(cmocka_unit_test(test_rewrite_in_the_same_second),
        cmocka_unit_test(test_reported_once_stable), cmocka_unit_test(test_load_from_file),
        cmocka_unit_test(test_keyphrase_record))
