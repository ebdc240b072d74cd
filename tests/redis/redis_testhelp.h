/* redis_testhelp.h - the set-up shared by the tests against a real redis-server (with_redis.sh).
 */
#ifndef KP_REDIS_TESTHELP_H
#define KP_REDIS_TESTHELP_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include "common/config.h"

/* *cfg = the defaults + the environment (KPREC_REDIS_PORT and the rest), which must name the
 * test's own server (not port 6379). */
static inline void th_redis_config(kp_config *cfg)
{
    char err[256];
    extern char **environ;
    kp_config_defaults(cfg);
    assert_int_equal(kp_config_apply_env(cfg, environ, err, sizeof err), 0);
    assert_int_not_equal(cfg->redis_port, 6379); /* the test's own server, not a system one */
}

#endif
