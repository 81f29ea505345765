/* Names fixed by XCAP and OMA XDM that both servers use: media types, namespaces, AUIDs and
 * document names of the resources every XCAP server has, defined once. */
#ifndef XDM_XCAP_NAMES_H
#define XDM_XCAP_NAMES_H

/* The resources below a document (RFC 4825 §15.2.1-15.2.3). */
#define XCAP_MIME_ELEMENT "application/xcap-el+xml"
#define XCAP_MIME_ATTRIBUTE "application/xcap-att+xml"
#define XCAP_MIME_NAMESPACE "application/xcap-ns+xml"

/* Error reports (RFC 4825 §11, §15.2.4). */
#define XCAP_ERROR_MIME "application/xcap-error+xml"
#define XCAP_ERROR_NS "urn:ietf:params:xml:ns:xcap-error"
/* OMA's error extension, inside <extension> (OMA-TS-XDM_Core, local constraint failures). */
#define XDM_ERROR_NS "urn:oma:xml:xdm:xcap-error"

/* The server capabilities usage (RFC 4825 §12): one document, global/index. */
#define XCAP_CAPS_AUID "xcap-caps"
#define XCAP_CAPS_MIME "application/xcap-caps+xml"
#define XCAP_CAPS_NS "urn:ietf:params:xml:ns:xcap-caps"

/* The user's XML documents directory (OMA XDM Core 1.1 Appendix B, 2.0 §5.3.2):
 * users/<xui>/directory.xml. */
#define XDM_DIRECTORY_AUID "org.openmobilealliance.xcap-directory"
#define XDM_DIRECTORY_MIME "application/vnd.oma.xcap-directory+xml"
#define XDM_DIRECTORY_NS "urn:oma:xml:xdm:xcap-directory"
#define XDM_DIRECTORY_DOC "directory.xml"

#endif
