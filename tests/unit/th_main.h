/* th_main.h - the main() of a cmocka unit test file. Include after <cmocka.h>.
 *
 *   TH_MAIN(cmocka_unit_test(test_a), cmocka_unit_test(test_b), ...)
 *
 * defines int main(void) running the given tests as one group, without group set-up or
 * tear-down (the group is named "tests", as cmocka_run_group_tests names it after the array).
 * TH_MAIN_GROUP(setup, teardown, tests...) is the same with that group set-up and tear-down. */
#ifndef KP_TH_MAIN_H
#define KP_TH_MAIN_H

#define TH_MAIN(...) TH_MAIN_GROUP(NULL, NULL, __VA_ARGS__)

#define TH_MAIN_GROUP(setup, teardown, ...)                                                        \
    int main(void)                                                                                 \
    {                                                                                              \
        const struct CMUnitTest tests[] = {__VA_ARGS__};                                           \
        return cmocka_run_group_tests(tests, setup, teardown);                                     \
    }

#endif
