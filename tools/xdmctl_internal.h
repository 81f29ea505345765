/* What the files of xdmctl's data management share (xdmctl_data.c: backup, restore, export,
 * xdmctl_export.c: export, import; xdmctl_check.c: check). Not for use outside tools/xdmctl_*.c. */
#ifndef XDM_XDMCTL_INTERNAL_H
#define XDM_XDMCTL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

/* Longest path under a data directory. */
#define XDMCTL_DATA_PATH_MAX 4096
/* The environments of a data directory: the four XDMS roles, then the proxy's. */
#define XDMCTL_DATA_N_ENVS 5
#define XDMCTL_DATA_N_XDMS 4
extern const char *const xdmctl_data_envs[XDMCTL_DATA_N_ENVS];

/* Prints "xdmctl: " and the message to stderr; returns 1 (the exit status of a failure). */
__attribute__((format(printf, 1, 2))) int xdmctl_data_fail(const char *fmt, ...);
/* dir/name (name may be NULL) into out; -1 when too long. */
int xdmctl_data_path(char out[XDMCTL_DATA_PATH_MAX], const char *dir, const char *name,
                     const char *file);

/* Creates dir (mode 0700) when missing; an existing one must be empty when want_empty. Returns 0,
 * or 1 after printing the error. */
int xdmctl_data_mkdir(const char *dir, bool want_empty);

/* The store of XDMS role i, as the servers' configuration names it (xdmctl_data.h): */
struct xdmctl_data_stores;
/* what to call it in messages (its LMDB directory dir, or its database, without the conninfo); */
const char *xdmctl_data_where(const struct xdmctl_data_stores *st, size_t i, const char *dir,
                              char out[XDMCTL_DATA_PATH_MAX]);
/* opened with the options o (LMDB in dir, or its PostgreSQL database with one connection and no
 * pruning). Returns the store's rc. */
/* whether it is on PostgreSQL; */
bool xdmctl_data_is_pg(const struct xdmctl_data_stores *st, size_t i);
/* or */
enum store_rc xdmctl_data_open(const struct xdmctl_data_stores *st, size_t i, const char *dir,
                               struct store_options *o, struct store **s);

#endif
