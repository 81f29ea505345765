/* The one INI configuration file of all processes (DESIGN §1), plus command-line overrides.
 *
 * A process reads keys from an ordered list of sections (e.g. "xdms" then "presence"); the last
 * section that has a key wins, and an override given with config_set() beats every file value.
 * Values are strings; typed getters parse and reject bad values with a message. */
#ifndef XDM_CONFIG_H
#define XDM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config;

/* Creates an empty configuration that reads the given sections, in order of increasing priority.
 * sections is NULL-terminated and copied. */
struct config *config_new(const char *const *sections);
void config_free(struct config *cfg);

/* Loads an INI file. A missing file is an error only when required. On a syntax error returns -1
 * and writes "file:line: message" to errbuf. */
int config_load(struct config *cfg, const char *path, bool required, char *errbuf, size_t errlen);

/* Sets an override "key=value" (as from --option key=value or a dedicated flag). Returns -1 when
 * kv has no '='. */
int config_set_kv(struct config *cfg, const char *kv);
int config_set(struct config *cfg, const char *key, const char *value);

/* Borrowed value of key, or def when unset. */
const char *config_get(const struct config *cfg, const char *key, const char *def);
/* Typed getters: return 0 and store the value (def when unset), or -1 when the value does not
 * parse (and log an error naming the key). Sizes accept K, M, G suffixes (powers of 1024). */
int config_get_uint(const struct config *cfg, const char *key, uint64_t def, uint64_t *out);
int config_get_size(const struct config *cfg, const char *key, uint64_t def, uint64_t *out);
int config_get_bool(const struct config *cfg, const char *key, bool def, bool *out);

/* Every value of a key that may repeat inside a section (e.g. trusted_peer), in file order,
 * followed by overrides. Calls fn for each; stops and returns fn's non-zero result. */
int config_each(const struct config *cfg, const char *key, int (*fn)(void *cls, const char *value),
                void *cls);

/* Splits "host:port" or "[v6]:port"; host and port are written into caller buffers. */
int config_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
