/* The pidf-manipulation application usage (RFC 4827 §4), served by the presence XDMS: the
 * presence a user publishes through XCAP. Its schema says it all (the ids are xs:ID, unique
 * through the schema). */
#include "appusage.h"

/* The PIDF extensions a published document commonly carries (RFC 4479 data model, RFC 4480
 * RPID). */
static const char *const au_pidf_manipulation_namespaces[] = {
    "urn:ietf:params:xml:ns:pidf:data-model",
    "urn:ietf:params:xml:ns:pidf:rpid",
    NULL,
};

const struct appusage au_pidf_manipulation = {
    .auid = "pidf-manipulation",
    .mime = "application/pidf+xml",
    /* RFC 4827 §4 (pidf-manipulation usage), "Default Namespace": PIDF (RFC 3863) */
    .default_ns = "urn:ietf:params:xml:ns:pidf",
    .role = ROLE_PRESENCE,
    .root = "presence",
    .xsd = "usage-pidf-manipulation.xsd",
    .namespaces = au_pidf_manipulation_namespaces,
};
