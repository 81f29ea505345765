/* The one INI configuration file of all processes (docs/configuration.md), plus command-line
 * overrides.
 *
 * A process reads keys from an ordered list of sections (e.g. "xdms" then "presence"); the last
 * section that has a key wins, and an override given with config_set() beats every file value.
 *
 * Every process describes the keys it knows in one table of struct config_key (name, type,
 * limits, default, command-line flag, help). Everything is checked against that table when it is
 * read, so a mistake stops the process at start with its place named:
 * - a section that no process knows (config_section_known()), a key outside any section;
 * - a key not in the table, in a section the process reads or on the command line;
 * - a value that does not parse as its type or lies outside its limits;
 * - a key that may not repeat given twice in one section of one file;
 * - an indented line, which inih would silently append to the previous value;
 * - a line longer than the parser handles.
 * Sections the process does not read (another process's) are not checked beyond their name.
 * Problems are collected, not just the first one: see config_errors().
 *
 * Thread-safety: a configuration is built once at start and then only read. */
#ifndef XDM_CONFIG_H
#define XDM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* How a value is checked, and which getter reads it. */
enum config_type {
    CONFIG_STR,      /* any text; at most max bytes when max > 0 */
    CONFIG_UINT,     /* decimal integer in min..max */
    CONFIG_SIZE,     /* bytes, with optional K, M, G suffix (powers of 1024), in min..max */
    CONFIG_BOOL,     /* yes/no, true/false, on/off, 1/0 */
    CONFIG_ENUM,     /* one of the words in choices ("a|b|c") */
    CONFIG_HOSTPORT, /* HOST:PORT or [v6]:PORT, host shorter than CONFIG_HOST_MAX */
    CONFIG_ADDR,     /* a numeric IPv4 or IPv6 address */
    CONFIG_FILE,     /* the path of a readable regular file */
};

/* struct config_key.flags */
#define CONFIG_REPEAT 1u /* may be given on several lines; every value is used (config_each) */
#define CONFIG_OFF 2u    /* CONFIG_HOSTPORT: "off" or an empty value means "none" */

/* Room for the host of a CONFIG_HOSTPORT value, including the terminating NUL. */
#define CONFIG_HOST_MAX 64

/* One row of a process's key table; a table ends with a row whose name is NULL ({0}). */
struct config_key {
    const char *name;      /* as written in the file and in --option NAME=VALUE */
    enum config_type type; /* how the value is checked */
    uint64_t min, max;     /* UINT, SIZE: inclusive limits; STR: longest value when max > 0 */
    const char *def;       /* default, written as in the file; NULL: unset or computed (see help) */
    const char *flag;      /* long option that sets it ("http" for --http), or NULL */
    unsigned flags;        /* CONFIG_REPEAT, CONFIG_OFF */
    const char *choices;   /* CONFIG_ENUM: the accepted words, '|'-separated; else NULL */
    const char *help;      /* one line, shown by --help */
};

/* Whether some process of the family reads section name: aggproxy, xdms, shared-list, presence,
 * rls, charging. The one list of known sections. */
bool config_section_known(const char *name);

struct config;

/* Creates an empty configuration that reads the given sections, in order of increasing priority,
 * and knows the keys of table keys (borrowed: it must outlive the configuration). sections is
 * NULL-terminated and copied. Returns NULL when out of memory or when the table itself is wrong
 * (a duplicate name or flag, a default that fails its own check): that is a program bug, and a
 * message says which row. */
struct config *config_new(const char *const *sections, const struct config_key *keys);
void config_free(struct config *cfg);

/* Loads and checks an INI file. A missing file is an error only when required. Returns 0, or -1
 * when the file cannot be read or has any problem; then errbuf holds every problem of this file,
 * one per line, each starting "FILE:LINE: " (also kept for config_errors()). Values are kept even
 * when -1 is returned, so that a caller may go on collecting problems. */
int config_load(struct config *cfg, const char *path, bool required, char *errbuf, size_t errlen);

/* Sets an override (as from the command line) that beats every file value; a repeatable key gets
 * one more value. as_given names the setting in messages ("--option k=v", "--http v"); NULL means
 * "KEY=VALUE". Returns -1 (with the problem recorded for config_errors()) for an unknown key or a
 * bad value. config_set_kv splits "key=value" at the first '=' (-1 without one). */
int config_set(struct config *cfg, const char *key, const char *value);
int config_set_as(struct config *cfg, const char *key, const char *value, const char *as_given);
int config_set_kv(struct config *cfg, const char *kv);

/* Every problem found so far by config_load() and config_set(), one per line, each ending in
 * '\n'; "" when there is none. At most 20 are kept; a last line says how many more there were.
 * Borrowed: valid until the next call that changes cfg. */
const char *config_errors(const struct config *cfg);

/* Writes each line of msgs to f as "PROG: line". */
void config_print_errors(FILE *f, const char *prog, const char *msgs);

/* Table-driven getters: the value of key, or its default from the table. The key must be a row
 * of the table with a matching type (the program aborts otherwise: a bug, caught at the first
 * start). Values were checked when they were set, so these cannot fail.
 * config_str: CONFIG_STR, ENUM, HOSTPORT, ADDR, FILE; NULL when unset without a default.
 * config_u64: CONFIG_UINT, SIZE; 0 when unset without a default. config_bool: CONFIG_BOOL. */
const char *config_str(const struct config *cfg, const char *key);
uint64_t config_u64(const struct config *cfg, const char *key);
bool config_bool(const struct config *cfg, const char *key);

/* Getters with the default given by the caller, for keys whose default the program computes (the
 * table's default is NULL; e.g. one thread per CPU). The key must be in the table (abort
 * otherwise). config_get returns a borrowed value or def; the typed ones return 0 and store the
 * value (def when unset), or -1 when the value does not parse (logged). */
const char *config_get(const struct config *cfg, const char *key, const char *def);
/* Where the effective value of key was set, for messages: "FILE:LINE", "the command line", or
 * "the default" when it is unset. Written to buf (always NUL-terminated); returns buf. */
const char *config_where_key(const struct config *cfg, const char *key, char *buf, size_t len);
int config_get_uint(const struct config *cfg, const char *key, uint64_t def, uint64_t *out);
int config_get_size(const struct config *cfg, const char *key, uint64_t def, uint64_t *out);
int config_get_bool(const struct config *cfg, const char *key, bool def, bool *out);

/* Every value of a key that may repeat (CONFIG_REPEAT, e.g. trusted_peer): sections in priority
 * order, file order inside a section, then overrides. Calls fn for each; stops and returns fn's
 * non-zero result. */
int config_each(const struct config *cfg, const char *key, int (*fn)(void *cls, const char *value),
                void *cls);

/* Where a value read with config_str() or config_each() was set, for a problem the program finds
 * in it later (one that needs more than the key table to see): "FILE:LINE", "the command line",
 * or "the default" when no setting has that value. Writes into out (len bytes) and returns out. */
#define CONFIG_WHERE_MAX 512
const char *config_where(const struct config *cfg, const char *key, const char *value, char *out,
                         size_t len);

/* Calls fn (when not NULL) with the name of each key of the table whose effective value (the
 * default when unset; numbers and booleans by value; every value of a repeatable key, in order)
 * differs between a and b, which must share one key table. Returns how many differ. For a
 * reload: which keys changed. */
size_t config_diff(const struct config *a, const struct config *b,
                   void (*fn)(void *cls, const char *key), void *cls);

/* For a reload: logs a warning "KEY changed; it needs a restart" for every key whose value differs
 * between run and fresh (config_diff) and that is in neither NULL-terminated list reloadable nor
 * also (either may be NULL). */
void config_warn_restart(const struct config *run, const struct config *fresh,
                         const char *const *reloadable, const char *const *also);

/* Writes one line per key of the table (name, default, help) for --help. */
void config_keys_usage(FILE *f, const struct config_key *keys);

/* Command lines (every key has a command-line override,
 * docs/configuration.md). Each key with a flag in the
 * table is set by `--FLAG VALUE`; program_values names further `--NAME VALUE` options that the
 * program reads itself with config_args_value() (e.g. --role, which picks the sections).
 * `--config FILE`, repeatable `--option KEY=VALUE`, `--check-config` and `--help` are always
 * understood. */
struct config_args;

enum config_args_rc { CONFIG_ARGS_OK, CONFIG_ARGS_HELP, CONFIG_ARGS_USAGE };

/* Parses argv (program_values is NULL-terminated, may be NULL). CONFIG_ARGS_HELP: --help was
 * given; CONFIG_ARGS_USAGE: an unknown option, a missing value, a stray argument or --config
 * given twice (errbuf says which; *out is NULL). The caller prints its usage text in both cases.
 * keys is borrowed by *out. */
enum config_args_rc config_args_parse(int argc, char **argv, const char *const *program_values,
                                      const struct config_key *keys, struct config_args **out,
                                      char *errbuf, size_t errlen);
/* The last value of a program value option (by name), or NULL. Borrowed from argv. */
const char *config_args_value(const struct config_args *a, const char *name);
/* Whether --check-config was given: check the configuration, print "configuration OK", exit. */
bool config_args_check_only(const struct config_args *a);
/* Makes the configuration: config_new(sections, keys of config_args_parse), the --config file
 * (required when given), then every setting in command-line order, so command-line values beat
 * the file. Returns NULL with every problem in errbuf (one per line, "FILE:LINE: ..." or "the
 * command line: --option K=V: ...") when anything is wrong. */
struct config *config_args_load(const struct config_args *a, const char *const *sections,
                                char *errbuf, size_t errlen);
void config_args_free(struct config_args *a);

/* Splits "host:port" or "[v6]:port"; host and port are written into caller buffers. */
int config_parse_hostport(const char *s, char *host, size_t hostlen, uint16_t *port);

#endif
