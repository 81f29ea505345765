/* The xcap-caps document of one XDMS (RFC 4825 §12): generated, global, read-only. */
#ifndef XDM_CAPS_H
#define XDM_CAPS_H

#include "appusage.h"
#include "buf.h"
#include "xcap_names.h"

/* Appends the document listing the role's AUIDs (and xcap-caps itself) and the namespaces the
 * role understands. Returns 0 or -1. */
int caps_render(enum xdms_role role, struct buf *out);

#endif
