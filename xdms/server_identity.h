/* server_identity: the asserted identity of an XDMS request (TS 24.109 §7) and the domains it
 * belongs to. A leaf under server.c; server_identity_in_domains() is declared in server.h. */
#ifndef XDMS_SERVER_IDENTITY_H
#define XDMS_SERVER_IDENTITY_H

/* The first URI of an X-3GPP-Asserted-Identity value ("sip:alice@example.com"[, "tel:+1..."]),
 * unquoted and percent-decoded like an XUI, in its canonical spelling; NULL when h is NULL or
 * holds none. The caller frees it. Thread-safe. */
char *server_identity_asserted(const char *h);

#endif
