/* common/log.c: level names, and that log.h and <syslog.h> live in one file (its levels carry
 * their own prefix; syslog's LOG_INFO and LOG_DEBUG keep their values). */
#include <syslog.h>

#include "log.h"
#include "unit.h"

static void test_level_parse(void)
{
    enum log_level l = LOG_LEVEL_ERROR;
    CU_ASSERT_EQUAL(log_level_parse("debug", &l), 0);
    CU_ASSERT_EQUAL(l, LOG_LEVEL_DEBUG);
    CU_ASSERT_EQUAL(log_level_parse("info", &l), 0);
    CU_ASSERT_EQUAL(l, LOG_LEVEL_INFO);
    CU_ASSERT_EQUAL(log_level_parse("warn", &l), 0);
    CU_ASSERT_EQUAL(l, LOG_LEVEL_WARN);
    CU_ASSERT_EQUAL(log_level_parse("error", &l), 0);
    CU_ASSERT_EQUAL(l, LOG_LEVEL_ERROR);
    CU_ASSERT_EQUAL(log_level_parse("INFO", &l), -1);
    CU_ASSERT_EQUAL(log_level_parse("warning", &l), -1);
    CU_ASSERT_EQUAL(log_level_parse("", &l), -1);
    CU_ASSERT_EQUAL(l, LOG_LEVEL_ERROR); /* unchanged on a bad name */
}

static void test_syslog_levels_untouched(void)
{
    /* RFC 5424 §6.2.1 severities, as <syslog.h> defines them. */
    CU_ASSERT_EQUAL(LOG_ERR, 3);
    CU_ASSERT_EQUAL(LOG_WARNING, 4);
    CU_ASSERT_EQUAL(LOG_INFO, 6);
    CU_ASSERT_EQUAL(LOG_DEBUG, 7);
    CU_ASSERT(LOG_LEVEL_ERROR < LOG_LEVEL_WARN && LOG_LEVEL_WARN < LOG_LEVEL_INFO &&
              LOG_LEVEL_INFO < LOG_LEVEL_DEBUG);
}

static CU_TestInfo log_tests[] = {
    {"level names", test_level_parse},
    {"<syslog.h> and log.h together", test_syslog_levels_untouched},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"log", NULL, NULL, NULL, NULL, log_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
