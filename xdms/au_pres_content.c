/* The presence content usage (OMA-TS-Presence_SIMPLE_Content_XDM), served by the presence XDMS:
 * status icons a watcher fetches. Local limits: the icon's MIME type and size. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "appusage.h"
#include "xdoc.h"

#define AU_PRES_CONTENT_NS "urn:oma:xml:prs:pres-content"

/* Decoded size of base64 text (RFC 4648 §4; white space between groups is allowed, as in
 * line-wrapped data). Returns -1 when s is not base64. */
static long long au_pres_content_base64_size(const char *s)
{
    size_t n = 0, pad = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n')
            continue;
        if (ch == '=') {
            if (++pad > 2)
                return -1;
        } else if (pad || !((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
                            (ch >= '0' && ch <= '9') || ch == '+' || ch == '/')) {
            return -1;
        }
        n++;
    }
    if (n % 4 != 0)
        return -1;
    return (long long)(n / 4 * 3 - pad);
}

/* OMA-TS-Presence_SIMPLE_Content_XDM, "Application Unique ID" and RCS: icons are stored as
 * oma_status-icon/<name> (OMA; RCS clients use the document name rcs_status_icon there) or, for
 * older RCS clients, rcs_status_icon/<name>. A document anywhere else would never be found by a
 * watcher, so it is refused rather than stored. */
static bool au_pres_content_path_ok(const char *path)
{
    static const char *const dirs[] = {"oma_status-icon/", "rcs_status_icon/"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        size_t n = strlen(dirs[i]);
        if (strncmp(path, dirs[i], n) == 0 && path[n] && !strchr(path + n, '/'))
            return true;
    }
    return false;
}

static enum xcap_status au_pres_content_check(const struct appusage_check *c, xmlNodePtr root,
                                              struct xcap_err *err)
{
    if (!au_pres_content_path_ok(c->key->path))
        return xcap_fail(err, XCAP_CONSTRAINT_FAILURE,
                         "presence content is stored as oma_status-icon/<name> "
                         "(or rcs_status_icon/<name>)");
    xmlNodePtr mime = NULL, enc = NULL, data = NULL;
    for (xmlNodePtr ch = xdoc_first_child(root); ch; ch = xdoc_next(ch)) {
        if (xdoc_is(ch, AU_PRES_CONTENT_NS, "mime-type"))
            mime = ch;
        else if (xdoc_is(ch, AU_PRES_CONTENT_NS, "encoding"))
            enc = ch;
        else if (xdoc_is(ch, AU_PRES_CONTENT_NS, "data"))
            data = ch;
    }
    enum xcap_status st = XCAP_OK;
    char *m = mime ? xdoc_text_dup(mime) : NULL;
    char *e = enc ? xdoc_text_dup(enc) : NULL;
    char *d = data ? xdoc_text_dup(data) : NULL;
    if ((mime && !m) || (enc && !e) || (data && !d)) {
        st = xcap_fail(err, XCAP_INTERNAL, "out of memory");
        goto done;
    }
    if (m && strcasecmp(m, "image/jpeg") != 0 && strcasecmp(m, "image/gif") != 0 &&
        strcasecmp(m, "image/png") != 0) {
        st = xcap_fail(err, XCAP_LOCAL_CONSTRAINT_FAILURE,
                       "mime-type \"%.100s\" is not accepted: use image/jpeg, image/gif or "
                       "image/png",
                       m);
        goto done;
    }
    long long size = d ? (long long)strlen(d) : 0;
    if (e && strcasecmp(e, "base64") == 0 && d) {
        /* The encoding is the document's own format, not local policy: wrong data breaks every
         * watcher that decodes it, so it is a constraint failure (RFC 4825 §8.2.5). */
        if ((size = au_pres_content_base64_size(d)) < 0) {
            st = xcap_fail(err, XCAP_CONSTRAINT_FAILURE, "<data> is not valid base64");
            goto done;
        }
    }
    if ((unsigned long long)size > c->max_icon_size)
        st = xcap_fail(err, XCAP_LOCAL_CONSTRAINT_FAILURE,
                       "the icon is %lld bytes; at most %zu bytes are accepted", size,
                       c->max_icon_size);
done:
    free(m);
    free(e);
    free(d);
    return st;
}

const struct appusage au_pres_content = {
    .auid = "org.openmobilealliance.pres-content",
    .mime = "application/vnd.oma.pres-content+xml",
    /* OMA-TS-Presence_SIMPLE_Content_XDM (pres-content usage), "Default Namespace" */
    .default_ns = AU_PRES_CONTENT_NS,
    .role = ROLE_PRESENCE,
    .subdirs = true, /* icons live in oma_status-icon/<name> */
    .root = "content",
    .xsd = "prs_presContent-v1_0.xsd",
    .check = au_pres_content_check,
};
