/* Shared main for the CUnit suites: registers the suites, runs them with the basic runner and
 * prints the closing line "counts: P passed, F failed" (tests, not assertions) that tools/xdm sums.
 * Returns non-zero when any test failed (the basic runner does not). */
#ifndef XDM_TEST_UNIT_H
#define XDM_TEST_UNIT_H

#include <CUnit/CUnit.h>

int unit_run(CU_SuiteInfo *suites);

#endif
