/* The simservs application usage (3GPP TS 24.623), xdms/au_simservs.c: what its constraints
 * decide, for the unit tests. Pure functions, reentrant. */
#ifndef XDM_AU_SIMSERVS_H
#define XDM_AU_SIMSERVS_H

#include <stdbool.h>

/* Whether t is a forward-to target TS 24.604 allows: a SIP or SIPS URI with a host (RFC 3261
 * §19.1), a global tel URI "tel:+digits" (visual separators allowed) or a local tel URI with a
 * phone-context parameter (RFC 3966 §5.1.5); no white space, at most 512 bytes. */
bool au_simservs_target_ok(const char *t);

#endif
