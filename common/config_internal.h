/* What the files of the configuration code share (config.c: the file, keys and getters;
 * config_args.c: command lines; config_diff.c: what a reload changed; config_value.c: the value
 * parsers, a leaf the others call). Not for use outside common/config*.c. */
#ifndef XDM_CONFIG_INTERNAL_H
#define XDM_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* Problems kept for config_errors(); more are only counted. */
#define CONFIG_MAX_ERRORS 20

struct config_item {
    char *key;
    char *value;
    int rank;         /* index of the section it came from; overrides rank above every section */
    int load;         /* which config_load() call it came from (0 for overrides) */
    const char *file; /* borrowed from cfg->files; NULL for overrides */
    int line;
};

struct config {
    char **sections;
    size_t n_sections;
    const struct config_key *keys;
    struct config_item *items;
    size_t n_items;
    char **files; /* every path loaded, for config_item.file */
    size_t n_files;
    char *errors; /* "...\n...\n", then the "N more" line once problems are dropped */
    size_t errors_len;
    unsigned n_errors, n_dropped;
};

/* config.c: records one problem in cfg (formatted like printf). */
__attribute__((format(printf, 2, 3))) void config_error(struct config *cfg, const char *fmt, ...);
/* Copies the problems recorded since mark (a count of errors) into errbuf, one per line. */
void config_errors_since(const struct config *cfg, size_t mark, char *errbuf, size_t errlen);
/* config_value.c: strtoull for decimal digits only (no sign, no space): 0, or -1 on no digits or overflow. */
int config_strtou64(const char *v, char **end, unsigned long long *n);
/* Value parsers of the key types: 0, or -1 when v is not a value of the type. */
int config_parse_uint(const char *v, uint64_t *out);
int config_parse_size(const char *v, uint64_t *out);
int config_parse_bool(const char *v, bool *out);

#endif
