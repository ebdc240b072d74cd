/* Model-topic records (consumer/model_topic.c): the checkpoint announcement "VERSION PATH" as
 * read by every serve worker's follower, any bytes. */
#include <stdint.h>

#include "consumer/model_topic.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    uint64_t v;
    char path[1024], small[8];
    kp_model_announce_parse(d, n, &v, path, sizeof path);
    kp_model_announce_parse(d, n, &v, small, sizeof small);
    return 0;
}
