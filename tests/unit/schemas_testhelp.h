/* schemas_testhelp.h - fixtures shared by the test_schemas_* unit tests (static inline, so a test
 * that uses none of them pays nothing). Include after <cmocka.h>.
 *
 *   ERRLEN                       size of an error buffer (KP_CODEC_ERRLEN)
 *   new_codec                    a codec with the built-in schemas, or the test fails
 *   wire_id / put_wire_header    the schema id of a wire-format header, and writing one
 *   write_text / rm_dir          a file in a scratch directory, and removing that directory
 */
#ifndef KP_SCHEMAS_TESTHELP_H
#define KP_SCHEMAS_TESTHELP_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "schemas/codec.h"
#include "th_main.h"

#define ERRLEN KP_CODEC_ERRLEN

static inline kp_codec *new_codec(void)
{
    char err[ERRLEN] = "";
    kp_codec *c = kp_codec_new(err, sizeof(err));
    if (!c) print_error("kp_codec_new: %s\n", err);
    assert_non_null(c);
    return c;
}

static inline int32_t wire_id(const void *buf)
{
    const unsigned char *b = buf;
    return (int32_t)((uint32_t)b[1] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 8 | b[4]);
}

/* b[0..4] = magic byte 0 and schema id `id` (< 65536). */
static inline void put_wire_header(unsigned char *b, int32_t id)
{
    b[0] = 0, b[1] = 0, b[2] = 0, b[3] = (unsigned char)(id >> 8), b[4] = (unsigned char)id;
}

static inline void write_text(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* Remove the files of dir and dir itself. */
static inline void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[1024];
    if (!d) return;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    closedir(d);
    rmdir(dir);
}

#endif
