/* xdmctl's data management: online backup and restore of a deployment's data directory.
 *
 * ROOT is the directory `tools/xdm run --data` uses: one LMDB environment per process in
 * ROOT/shared-list, ROOT/presence, ROOT/rls and ROOT/aggproxy. Every function prints its report
 * and its errors ("xdmctl: ...") itself and returns the process exit status (0 success, 1 error).
 */
#ifndef XDM_XDMCTL_DATA_H
#define XDM_XDMCTL_DATA_H

#include <stdbool.h>

/* Copies every environment present under root into dest (created; an existing dest must be an
 * empty directory) while the servers keep running, then writes dest/MANIFEST. Each environment
 * is consistent in itself (one LMDB read transaction); the four are copied one after the other. */
int xdmctl_data_backup(const char *root, const char *dest);

/* Puts the environments of the backup src (with its MANIFEST, sizes checked) under root. Refuses
 * while a process has one of root's environments open, and refuses a root that already holds one
 * of them unless force. Environments the backup does not hold are left alone. */
int xdmctl_data_restore(const char *root, const char *src, bool force);

#endif
