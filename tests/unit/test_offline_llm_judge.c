/* Unit tests for offline/llm_judge: the strict grade parser, template parsing and filling,
 * request bodies, response parsing, backoff and Retry-After, status classification. No network. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "offline/llm_judge.h"
#include "th_main.h"

/* Expects kp_llm_parse_grade to fail with a reason containing want. */
static void bad_grade(const char *content, const char *want)
{
    char err[256] = "";
    int g = -99;
    assert_int_equal(kp_llm_parse_grade(content, 1, 3, &g, err, sizeof err), -1);
    assert_int_equal(g, -99);
    if (!strstr(err, want)) fail_msg("content %s: reason '%s' lacks '%s'", content, err, want);
}

static void test_parse_grade_good(void **state)
{
    (void)state;
    char err[256];
    int g = 0;
    assert_int_equal(kp_llm_parse_grade("{\"grade\": 2}", 1, 3, &g, err, sizeof err), 0);
    assert_int_equal(g, 2);
    assert_int_equal(kp_llm_parse_grade("  {\"grade\":3}\n", 1, 3, &g, err, sizeof err), 0);
    assert_int_equal(g, 3);
    assert_int_equal(
        kp_llm_parse_grade("{\"grade\": 1.0, \"why\": \"x\"}", 1, 3, &g, err, sizeof err), 0);
    assert_int_equal(g, 1);
    assert_int_equal(kp_llm_parse_grade("{\"grade\": 0}", 0, 4, &g, err, sizeof err), 0);
    assert_int_equal(g, 0);
    assert_int_equal(kp_llm_parse_grade("{\"grade\": -2}", -3, 3, &g, err, sizeof err), 0);
    assert_int_equal(g, -2);
}

static void test_parse_grade_malformed(void **state)
{
    (void)state;
    bad_grade("Grade: 2", "not a JSON object");
    bad_grade("Sure! {\"grade\": 2}", "not a JSON object");
    bad_grade("{\"grade\": 2} thanks", "not a JSON object");
    bad_grade("```json\n{\"grade\": 2}\n```", "not a JSON object");
    bad_grade("", "not a JSON object");
    bad_grade("2", "not a JSON object");
    bad_grade("[2]", "not a JSON object but an array");
    bad_grade("{\"grade\": \"2\"}", "is a string, not a number");
    bad_grade("{\"grade\": true}", "is a boolean, not a number");
    bad_grade("{\"grade\": null}", "is null, not a number");
    bad_grade("{\"grade\": [2]}", "is an array, not a number");
    bad_grade("{\"grade\": 4}", "grade 4 is outside 1:3");
    bad_grade("{\"grade\": 0}", "grade 0 is outside 1:3");
    bad_grade("{\"grade\": 3.5}", "grade 3.5 is not an integer");
    bad_grade("{\"grade\": 7.0}", "is outside 1:3");
    bad_grade("{\"score\": 2}", "no \"grade\" member");
    bad_grade("{\"Grade\": 2}", "no \"grade\" member");
    bad_grade("{\"grade\": 2, \"grade\": 3}", "not a JSON object");
    bad_grade("{\"grade\": 99999999999999999999}", "not a JSON object");
    char err[64];
    int g;
    assert_int_equal(kp_llm_parse_grade(NULL, 1, 3, &g, err, sizeof err), -1);
    assert_int_equal(kp_llm_parse_grade("{}", 1, 3, &g, NULL, 0), -1); /* err may be NULL */
}

static void test_template_default(void **state)
{
    (void)state;
    kp_llm_template t;
    char err[256];
    assert_int_equal(kp_llm_template_parse(kp_llm_default_template, &t, err, sizeof err), 0);
    assert_true(strlen(t.system) > 20);
    assert_null(strstr(t.system, "---"));
    kp_llm_vars v = {"Red Mug", "coffee mug", "i1", "k1", 1, 3};
    char *u = kp_llm_fill(t.user, &v);
    assert_non_null(u);
    assert_non_null(strstr(u, "Item title: Red Mug\nKeyphrase: coffee mug\n"));
    assert_non_null(strstr(u, "from 1 (irrelevant) to 3 (highly relevant)"));
    assert_non_null(strstr(u, "{\"grade\": G}")); /* braces that are no placeholder stay */
    assert_null(strstr(u, "{title}"));
    free(u);
    kp_llm_template_free(&t);
    kp_llm_template_free(&t); /* zeroed: a second free is harmless */
    kp_llm_template_free(NULL);
}

static void test_template_parse(void **state)
{
    (void)state;
    kp_llm_template t;
    char err[256];
    assert_int_equal(kp_llm_template_parse("S {grade_max}\r\n---\r\nT={title} K={keyphrase} "
                                           "{item_id}/{keyphrase_id} {} {Title} {a-b}\n",
                                           &t, err, sizeof err),
                     0);
    assert_string_equal(t.system, "S {grade_max}");
    kp_llm_vars v = {"t\"itle", "kp", "I", "K", 0, 4};
    char *s = kp_llm_fill(t.system, &v), *u = kp_llm_fill(t.user, &v);
    assert_string_equal(s, "S 4");
    assert_string_equal(u, "T=t\"itle K=kp I/K {} {Title} {a-b}");
    free(s), free(u);
    kp_llm_template_free(&t);
    /* NULL values fill as "" */
    kp_llm_vars nv = {NULL, "k", NULL, NULL, 1, 3};
    u = kp_llm_fill("[{title}][{keyphrase}]", &nv);
    assert_string_equal(u, "[][k]");
    free(u);
    assert_null(kp_llm_fill("{nope}", &nv));
    assert_null(kp_llm_fill(NULL, &nv));
    /* no "---": all of it is the user message */
    assert_int_equal(kp_llm_template_parse("{title} / {keyphrase}", &t, err, sizeof err), 0);
    assert_string_equal(t.system, "");
    assert_string_equal(t.user, "{title} / {keyphrase}");
    kp_llm_template_free(&t);
    /* errors */
    assert_int_equal(kp_llm_template_parse("{title} {keyphrase} {colour}", &t, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "unknown placeholder {colour} in the user message"));
    assert_null(t.user);
    assert_int_equal(kp_llm_template_parse("{bad}\n---\n{title} {keyphrase}", &t, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "in the system message"));
    assert_int_equal(kp_llm_template_parse("sys {title}\n---\n{keyphrase}", &t, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "must contain {title} and {keyphrase}"));
    assert_int_equal(kp_llm_template_parse(NULL, &t, err, sizeof err), -1);
}

static void test_chat_request(void **state)
{
    (void)state;
    kp_llm_config c;
    kp_llm_config_default(&c);
    c.model = "m1";
    json_error_t je;
    for (int rf = 0; rf < 3; rf++) {
        c.response_format = (kp_llm_rf)rf;
        char *body = kp_llm_chat_request(&c, "sys", "user \"q\"\n");
        assert_non_null(body);
        json_t *r = json_loads(body, 0, &je);
        assert_non_null(r);
        assert_string_equal(json_string_value(json_object_get(r, "model")), "m1");
        assert_true(json_is_integer(json_object_get(r, "temperature")));
        assert_int_equal(json_integer_value(json_object_get(r, "temperature")), 0);
        json_t *m = json_object_get(r, "messages");
        assert_int_equal(json_array_size(m), 2);
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "role")),
                            "system");
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, 1), "content")),
                            "user \"q\"\n");
        json_t *f = json_object_get(r, "response_format");
        if (rf == KP_LLM_RF_NONE) {
            assert_null(f);
        } else if (rf == KP_LLM_RF_JSON_OBJECT) {
            assert_string_equal(json_string_value(json_object_get(f, "type")), "json_object");
        } else {
            assert_string_equal(json_string_value(json_object_get(f, "type")), "json_schema");
            json_t *g = json_object_get(
                json_object_get(
                    json_object_get(json_object_get(json_object_get(f, "json_schema"), "schema"),
                                    "properties"),
                    "grade"),
                "maximum");
            assert_int_equal(json_integer_value(g), 3);
        }
        json_decref(r);
        free(body);
    }
    /* no system message when the template has none */
    char *body = kp_llm_chat_request(&c, "", "u");
    json_t *r = json_loads(body, 0, &je);
    assert_int_equal(json_array_size(json_object_get(r, "messages")), 1);
    json_decref(r);
    free(body);
}

static void test_responses(void **state)
{
    (void)state;
    char err[256], *content;
    long tokens;
    assert_int_equal(kp_llm_parse_chat_response("{\"choices\":[{\"message\":{\"content\":"
                                                "\"{\\\"grade\\\": 2}\"}}],\"usage\":{"
                                                "\"total_tokens\":45}}",
                                                &content, &tokens, err, sizeof err),
                     0);
    assert_string_equal(content, "{\"grade\": 2}");
    assert_int_equal(tokens, 45);
    free(content);
    assert_int_equal(kp_llm_parse_chat_response("{\"choices\":[{\"message\":{\"content\":\"x\"}}],"
                                                "\"usage\":{\"prompt_tokens\":4,"
                                                "\"completion_tokens\":3}}",
                                                &content, &tokens, err, sizeof err),
                     0);
    assert_int_equal(tokens, 7);
    free(content);
    assert_int_equal(kp_llm_parse_chat_response("nope", &content, &tokens, err, sizeof err), -1);
    assert_null(content);
    assert_int_equal(
        kp_llm_parse_chat_response("{\"choices\":[]}", &content, &tokens, err, sizeof err), -1);
    assert_non_null(strstr(err, "no choices"));
    assert_int_equal(kp_llm_parse_chat_response("{\"choices\":[{\"message\":{\"content\":null}}]}",
                                                &content, &tokens, err, sizeof err),
                     -1);
    assert_non_null(strstr(err, "not a string"));
    double cosv;
    assert_int_equal(kp_llm_parse_embeddings_response(
                         "{\"data\":[{\"index\":1,\"embedding\":[0,2]},{\"index\":0,"
                         "\"embedding\":[1,1]}]}",
                         &cosv, &tokens, err, sizeof err),
                     0);
    assert_true(fabs(cosv - 1 / sqrt(2.0)) < 1e-9);
    assert_int_equal(kp_llm_parse_embeddings_response("{\"data\":[{\"embedding\":[0,0]},"
                                                      "{\"embedding\":[1,1]}]}",
                                                      &cosv, &tokens, err, sizeof err),
                     -1);
    assert_int_equal(kp_llm_parse_embeddings_response("{\"data\":[{\"embedding\":[1]},"
                                                      "{\"embedding\":[1,1]}]}",
                                                      &cosv, &tokens, err, sizeof err),
                     -1);
}

static void test_backoff_and_status(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (int r = 0; r < 12; r++) {
        int d = 100;
        for (int i = 0; i < r && d < 5000; i++)
            d *= 2;
        if (d > 5000) d = 5000;
        for (int k = 0; k < 50; k++) {
            int b = kp_llm_backoff_ms(r, 100, 5000, &rng);
            assert_true(b >= d / 2 && b <= d);
        }
    }
    /* jitter: not all equal */
    int a = kp_llm_backoff_ms(3, 100, 5000, &rng), same = 1;
    for (int k = 0; k < 20; k++)
        same &= kp_llm_backoff_ms(3, 100, 5000, &rng) == a;
    assert_false(same);
    assert_int_equal(kp_llm_retry_after_ms("1"), 1000);
    assert_int_equal(kp_llm_retry_after_ms(" 7\r\n"), 7000);
    assert_int_equal(kp_llm_retry_after_ms("0"), 0);
    assert_int_equal(kp_llm_retry_after_ms("99999"), 600000);
    assert_int_equal(kp_llm_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), -1);
    assert_int_equal(kp_llm_retry_after_ms("-1"), -1);
    assert_int_equal(kp_llm_retry_after_ms(""), -1);
    assert_int_equal(kp_llm_retry_after_ms(NULL), -1);
    assert_int_equal(kp_llm_classify_status(200), KP_LLM_OK);
    assert_int_equal(kp_llm_classify_status(0), KP_LLM_RETRY);
    assert_int_equal(kp_llm_classify_status(429), KP_LLM_RETRY);
    assert_int_equal(kp_llm_classify_status(408), KP_LLM_RETRY);
    assert_int_equal(kp_llm_classify_status(503), KP_LLM_RETRY);
    assert_int_equal(kp_llm_classify_status(400), KP_LLM_FAIL);
    assert_int_equal(kp_llm_classify_status(401), KP_LLM_FATAL);
    assert_int_equal(kp_llm_classify_status(404), KP_LLM_FATAL);
}

static void test_judge_new(void **state)
{
    (void)state;
    kp_llm_config c;
    char err[256];
    kp_llm_config_default(&c);
    kp_llm_judge *j = kp_llm_judge_new(&c, err, sizeof err);
    assert_non_null(j);
    assert_int_equal(kp_llm_requests(j), 0);
    kp_llm_judge_free(j);
    kp_llm_judge_free(NULL);
    c.grade_min = 3, c.grade_max = 3;
    assert_null(kp_llm_judge_new(&c, err, sizeof err));
    kp_llm_config_default(&c);
    c.tmpl_text = "{title} only";
    assert_null(kp_llm_judge_new(&c, err, sizeof err));
    assert_non_null(strstr(err, "{keyphrase}"));
}

TH_MAIN(cmocka_unit_test(test_parse_grade_good), cmocka_unit_test(test_parse_grade_malformed),
        cmocka_unit_test(test_template_default), cmocka_unit_test(test_template_parse),
        cmocka_unit_test(test_chat_request), cmocka_unit_test(test_responses),
        cmocka_unit_test(test_backoff_and_status), cmocka_unit_test(test_judge_new))
