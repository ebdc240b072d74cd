/* What an LLM server sends back (offline/llm_judge.c): chat-completions and embeddings response
 * bodies, the grade inside the content; and the prompt template (a user file) with its
 * placeholders filled. Input byte 0 picks the parser, the rest is the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "offline/llm_judge.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    if (n < 1) return 0;
    char err[512];
    char *z = malloc(n);
    memcpy(z, d + 1, n - 1);
    z[n - 1] = 0;
    char *content;
    long tokens;
    double cos;
    int grade;
    kp_llm_template t;
    switch (d[0] % 4) {
    case 0:
        if (!kp_llm_parse_chat_response(z, &content, &tokens, err, sizeof err)) {
            kp_llm_parse_grade(content, 1, 3, &grade, err, sizeof err);
            free(content);
        }
        break;
    case 1:
        kp_llm_parse_embeddings_response(z, &cos, &tokens, err, sizeof err);
        break;
    case 2:
        kp_llm_parse_grade(z, 0, 3, &grade, err, sizeof err);
        kp_llm_retry_after_ms(z);
        break;
    case 3:
        if (!kp_llm_template_parse(z, &t, err, sizeof err)) {
            kp_llm_vars v = {"a {title} title", "kp", "i1", "k1", 1, 3};
            free(kp_llm_fill(t.system, &v));
            free(kp_llm_fill(t.user, &v));
            kp_llm_template_free(&t);
        }
        break;
    }
    free(z);
    return 0;
}
