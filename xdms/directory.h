/* The user's XML documents directory (OMA XDM Core 1.1 Appendix B, 2.0 §5.3.2):
 * each XDMS lists the documents of its own AUIDs; the Aggregation Proxy merges the folders of
 * every XDMS into the one document clients see. Generated on request, read-only. */
#ifndef XDM_DIRECTORY_H
#define XDM_DIRECTORY_H

#include "appusage.h"
#include "buf.h"
#include "store.h"
#include "xcap_names.h"

/* Appends <xcap-directory> with one <folder auid> per AUID of the role (empty folders too) and
 * one <entry uri etag last-modified size> per document of xui, uri absolute under xcap_root
 * (which ends with '/'). etag_out receives an ETag computed from the (auid, uri, etag) set, so
 * conditional GETs work (RFC 9110 §8.8.3). Returns 0, or -1 (storage error or out of memory). */
int directory_render(struct store *store, enum xdms_role role, const char *xcap_root,
                     const char *xui, struct buf *out, char etag_out[STORE_ETAG_MAX]);

#endif
