/* Conditional requests on the documents the proxy generates itself (xcap-caps, xcap-directory):
 * RFC 9110 §13.1.1-13.1.2 over an entity-tag list. Pure functions. */
#ifndef XDM_AGGPROXY_COND_H
#define XDM_AGGPROXY_COND_H

#include <stdbool.h>

/* If-Match: true when the list holds "*" or etag (a quoted strong tag) by strong comparison
 * (a weak W/"..." tag never matches). */
bool cond_if_match(const char *header, const char *etag);

/* If-None-Match: true when the list holds "*" or etag by weak comparison (W/ ignored), i.e. when
 * a GET is answered 304. */
bool cond_if_none_match(const char *header, const char *etag);

#endif
