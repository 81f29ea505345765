/* main_keys: the configuration keys of the xdms binary and its per-role default addresses
 * (docs/configuration.md), read by xdms/main.c. Data only: no functions. */
#ifndef XDMS_MAIN_KEYS_H
#define XDMS_MAIN_KEYS_H

#include "config.h"

/* Indexed by enum xdms_role (appusage.h): the default HTTP, SIP and admin listeners. */
extern const char *const main_keys_default_http[];
extern const char *const main_keys_default_sip[];
extern const char *const main_keys_default_metrics[];

/* Every key an XDMS reads, terminated by a zeroed entry. */
extern const struct config_key main_keys[];

#endif
