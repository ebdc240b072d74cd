/* test_schemas_registry_reply.c - the registry's reply bodies parsed without a network
 * (schemas/registry_reply.h): the answers of Apicurio's ccompat API, and bodies a broken or
 * hostile registry (or a proxy in front of it) could send. tests/fuzz/fuzz_registry fuzzes the
 * same functions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "schemas/registry_reply.h"
#include "th_main.h"

static kp_sreg_rc schema_of(const char *body, char **json, size_t *len, char *err)
{
    return kp_sreg_reply_schema(body, strlen(body), 42, json, len, err, 256);
}

static void test_schema_reply(void **state)
{
    (void)state;
    char err[256], *json;
    size_t len;
    assert_int_equal(schema_of("{\"schema\":\"{\\\"type\\\":\\\"string\\\"}\"}", &json, &len, err),
                     KP_SREG_OK);
    assert_string_equal(json, "{\"type\":\"string\"}");
    assert_int_equal(len, strlen(json));
    free(json);
    assert_int_equal(
        schema_of("{\"schema\":\"\\\"long\\\"\",\"schemaType\":\"AVRO\"}", &json, &len, err),
        KP_SREG_OK);
    assert_string_equal(json, "\"long\"");
    free(json);
    /* another schema type: the registry answered no */
    assert_int_equal(
        schema_of("{\"schema\":\"syntax\",\"schemaType\":\"PROTOBUF\"}", &json, &len, err),
        KP_SREG_REFUSED);
    assert_null(json);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err, "schema id 42 is PROTOBUF, not Avro"));
    /* not the JSON expected: try again later */
    const char *bad[] = {"",
                         "<html>502</html>",
                         "{\"schema\":7}",
                         "[\"schema\"]",
                         "{\"schema\":\"a\\u0000b\"}",
                         "{\"schema\":\"x\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(schema_of(bad[i], &json, &len, err), KP_SREG_RETRY);
        assert_null(json);
        assert_int_equal(len, 0);
    }
    assert_int_equal(kp_sreg_reply_schema(NULL, 0, 1, &json, &len, err, sizeof err), KP_SREG_RETRY);
    /* a body that is not NUL-terminated: only n bytes are read */
    const char buf[] = "{\"schema\":\"\\\"int\\\"\"}garbage";
    assert_int_equal(kp_sreg_reply_schema(buf, strlen(buf) - 7, 1, &json, &len, err, sizeof err),
                     KP_SREG_OK);
    assert_string_equal(json, "\"int\"");
    free(json);
}

static void test_id_reply(void **state)
{
    (void)state;
    char err[256];
    int32_t id = -7;
    assert_int_equal(kp_sreg_reply_id("{\"id\":5}", 8, "/p", &id, err, sizeof err), KP_SREG_OK);
    assert_int_equal(id, 5);
    const char *bad[] = {
        "{\"id\":-1}", "{\"id\":2147483648}", "{\"id\":\"5\"}", "{\"id\":5.0}", "{}", "5",
        "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        id = -7;
        assert_int_equal(
            kp_sreg_reply_id(bad[i], strlen(bad[i]), "/subjects/x-value", &id, err, sizeof err),
            KP_SREG_RETRY);
        assert_int_equal(id, -7);
        assert_non_null(strstr(err, "no id in the reply to /subjects/x-value"));
    }
}

static void test_message(void **state)
{
    (void)state;
    char m[16];
    const char *b = "{\"error_code\":40403,\"message\":\"Schema 42 not found\"}";
    kp_sreg_reply_message(b, strlen(b), m, sizeof m);
    assert_string_equal(m, "Schema 42 not f"); /* truncated to the buffer */
    kp_sreg_reply_message("{\"message\":7}", 13, m, sizeof m);
    assert_string_equal(m, "");
    kp_sreg_reply_message(NULL, 0, m, sizeof m);
    assert_string_equal(m, "");
}

TH_MAIN(cmocka_unit_test(test_schema_reply), cmocka_unit_test(test_id_reply),
        cmocka_unit_test(test_message))
