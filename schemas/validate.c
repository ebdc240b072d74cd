/* validate.c - kp_validate_item_listed: what the worker requires of a listing beyond a
 * successful decode (see codec.h). */
#include "schemas/codec.h"

#include "common/util.h"

#include <string.h>

/* s (NULL counts as valid) must be well-formed UTF-8; what names it in the message. */
static int check_utf8(const char *what, const char *s, char *err, size_t errlen)
{
    size_t bad;
    if (s && !kp_utf8_valid(s, strlen(s), &bad)) {
        kp_errf(err, errlen, "%s is not valid UTF-8 (byte %zu)", what, bad);
        return -1;
    }
    return 0;
}

/* Check what the worker needs of listing v: item_id non-empty and at most KP_ITEM_ID_MAX bytes,
 * title not blank and at most max_title bytes, every string well-formed UTF-8 (NULL category and
 * seller_id are fine). Returns 0, or -1 with the first failed check in err, e.g. "missing
 * item_id", "empty title", "title is not valid UTF-8 (byte 17)": a dead-letter reason. */
int kp_validate_item_listed(const kp_item_listed *v, size_t max_title, char *err, size_t errlen)
{
    if (!v) {
        kp_errf(err, errlen, "no item");
        return -1;
    }
    if (!v->item_id || !v->item_id[0]) {
        kp_errf(err, errlen, "missing item_id");
        return -1;
    }
    size_t n = strlen(v->item_id);
    if (n > KP_ITEM_ID_MAX) {
        kp_errf(err, errlen, "item_id too long (%zu > %d bytes)", n, KP_ITEM_ID_MAX);
        return -1;
    }
    if (check_utf8("item_id", v->item_id, err, errlen)) return -1;
    if (!v->title) {
        kp_errf(err, errlen, "missing title");
        return -1;
    }
    n = strspn(v->title, " \t\r\n\v\f");
    if (v->title[n] == '\0') {
        kp_errf(err, errlen, "empty title");
        return -1;
    }
    n = strlen(v->title);
    if (n > max_title) {
        kp_errf(err, errlen, "title too long (%zu > %zu bytes)", n, max_title);
        return -1;
    }
    if (check_utf8("title", v->title, err, errlen) ||
        check_utf8("category", v->category, err, errlen) ||
        check_utf8("seller_id", v->seller_id, err, errlen))
        return -1;
    return 0;
}
