/* main_keys: the configuration keys of the aggproxy binary (docs/configuration.md,
 * docs/proxy.md), read by aggproxy/main.c. Data only: no functions. */
#ifndef AGGPROXY_MAIN_KEYS_H
#define AGGPROXY_MAIN_KEYS_H

#include "config.h"

/* Every key the proxy reads from [aggproxy], terminated by a zeroed entry. */
extern const struct config_key main_keys[];

#endif
