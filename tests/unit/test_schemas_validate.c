/* test_schemas_validate.c - kp_validate_item_listed and kp_utf8_valid (schemas/validate.c,
 * schemas/scan.c): no codec needed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "schemas/codec.h"
#include "th_main.h"

#define ERRLEN KP_CODEC_ERRLEN

static void test_validate_item_listed(void **state)
{
    (void)state;
    char err[ERRLEN], id257[258], title[5001];
    memset(id257, 'x', 257);
    id257[257] = '\0';
    memset(title, 'a', 5000);
    title[5000] = '\0';
    struct {
        kp_item_listed v;
        size_t max_title;
        const char *want; /* NULL: valid */
    } cases[] = {
        {{"i1", "Drill", "", "", 0, 0}, 1024, NULL},
        {{"i1", "Dr\xc3\xa9ll \xf0\x9f\x94\xa7", NULL, NULL, 0, 0}, 1024, NULL},
        {{id257 + 1, "t", "", "", 0, 0}, 1024, NULL}, /* exactly 256 bytes */
        {{NULL, "t", "", "", 0, 0}, 1024, "missing item_id"},
        {{"", "t", "", "", 0, 0}, 1024, "missing item_id"},
        {{id257, "t", "", "", 0, 0}, 1024, "item_id too long (257 > 256 bytes)"},
        {{"i1", NULL, "", "", 0, 0}, 1024, "missing title"},
        {{"i1", "", "", "", 0, 0}, 1024, "empty title"},
        {{"i1", " \t\n", "", "", 0, 0}, 1024, "empty title"},
        {{"i1", title, "", "", 0, 0}, 1024, "title too long (5000 > 1024 bytes)"},
        {{"i1", title, "", "", 0, 0}, 5000, NULL},
        {{"i1", "ab\xc3\x28", "", "", 0, 0}, 1024, "title is not valid UTF-8 (byte 2)"},
        {{"i\xff", "t", "", "", 0, 0}, 1024, "item_id is not valid UTF-8 (byte 1)"},
        {{"i1", "t", "\xed\xa0\x80", "", 0, 0}, 1024, "category is not valid UTF-8 (byte 0)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        err[0] = '\0';
        int r = kp_validate_item_listed(&cases[i].v, cases[i].max_title, err, sizeof(err));
        if (cases[i].want) {
            assert_int_equal(r, -1);
            assert_string_equal(err, cases[i].want);
        } else {
            if (r != 0) print_error("case %zu: %s\n", i, err);
            assert_int_equal(r, 0);
        }
    }
    assert_int_equal(kp_validate_item_listed(NULL, 10, err, sizeof(err)), -1);
}

static void test_utf8(void **state)
{
    (void)state;
    struct {
        const char *s;
        int ok;
        size_t bad;
    } cases[] = {
        {"plain ascii", 1, 0},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x94\xa7", 1, 0}, /* 2, 3 and 4-byte sequences */
        {"\xf4\x8f\xbf\xbf", 1, 0},                     /* U+10FFFF */
        {"a\xc0\xaf", 0, 1},                            /* overlong '/' */
        {"ab\xe0\x80\x80", 0, 2},                       /* overlong 3-byte */
        {"\xed\xa0\x80", 0, 0},                         /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 0, 0},                     /* above U+10FFFF */
        {"abc\xe2\x82", 0, 3},                          /* cut sequence */
        {"\x80", 0, 0},                                 /* lone continuation */
        {"\xf8\x88\x80\x80\x80", 0, 0},                 /* 5-byte form */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t bad = 999;
        assert_int_equal(kp_utf8_valid(cases[i].s, strlen(cases[i].s), &bad), cases[i].ok);
        if (!cases[i].ok) assert_int_equal(bad, cases[i].bad);
    }
    assert_int_equal(kp_utf8_valid("", 0, NULL), 1);
}

TH_MAIN(cmocka_unit_test(test_validate_item_listed), cmocka_unit_test(test_utf8))
