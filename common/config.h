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

/* Command lines (DESIGN §1: every key has a command-line override). A program describes its
 * flags; each `--NAME VALUE` sets config key KEY, or, with key NULL, is a value the program reads
 * itself with config_args_value() (e.g. --role, which picks the sections). `--config FILE`,
 * repeatable `--option KEY=VALUE` and `--help` are always understood. */
struct config_flag {
    const char *name; /* long option without "--" */
    const char *key;  /* config key it sets, or NULL */
};

struct config_args;

enum config_args_rc { CONFIG_ARGS_OK, CONFIG_ARGS_HELP, CONFIG_ARGS_USAGE };

/* Parses argv (flags is terminated by {NULL, NULL}). CONFIG_ARGS_HELP: --help was given;
 * CONFIG_ARGS_USAGE: an unknown option, a missing value or a stray argument (errbuf says which;
 * *out is NULL). The caller prints its usage text in both cases. */
enum config_args_rc config_args_parse(int argc, char **argv, const struct config_flag *flags,
                                      struct config_args **out, char *errbuf, size_t errlen);
/* The last value of a flag (by name), or NULL. Borrowed from argv. */
const char *config_args_value(const struct config_args *a, const char *name);
/* Makes the configuration: config_new(sections), the --config file (required when given), then
 * every setting in command-line order, so command-line values beat the file. NULL with errbuf
 * filled on failure. */
struct config *config_args_load(const struct config_args *a, const char *const *sections,
                                char *errbuf, size_t errlen);
void config_args_free(struct config_args *a);

/* Splits "host:port" or "[v6]:port"; host and port are written into caller buffers. */
int config_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
