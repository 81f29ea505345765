/* xdm-sipua: a small xcap-diff subscriber (RFC 5875 over RFC 6665) for the end-to-end tests.
 *
 * It sends one SUBSCRIBE, answers every NOTIFY with 200, optionally refreshes once, unsubscribes
 * with Expires: 0 when --duration ends or --count NOTIFYs arrived, waits at most 2 s for the final
 * NOTIFY and exits. Every response and NOTIFY is printed on stdout as one JSON object per line:
 *
 *   {"event":"response","method":"SUBSCRIBE","kind":"initial","status":200,"expires":3600}
 *   {"event":"notify","cseq":1,"subscription_state":"active;expires=3599",
 *    "content_type":"application/xcap-diff+xml","body":"<xcap-diff ...>"}
 *
 * "kind" is initial, refresh or unsubscribe; "expires" appears when the response has an Expires
 * header and "contact" (its URI) when it has a Contact; a NOTIFY also says which "transport" (udp
 * or tcp) carried it, its "contact" and the sent-by of its top Via ("via": "HOST:PORT", which
 * instance sent it when several serve one role).
 *
 * With --stdin-commands it reads lines on stdin: "refresh [HOST:PORT]" sends a refresh now and
 * "unsubscribe [HOST:PORT]" ends the subscription now; HOST:PORT, when given, becomes the next
 * hop of this and every later request (a SIP load balancer that now picks another instance).
 *
 * It plays both the user agent and the SIP proxy in front of the XDMS: every SUBSCRIBE carries
 * P-Asserted-Identity (RFC 3325) with --identity (default: the target) unless --no-pai, and
 * From is --from (default: the identity), so a test can show that From is not believed.
 *
 * With --apply ADDR it keeps a client copy of every document a NOTIFY reports, as an
 * xcap-diff client would (RFC 5874): operations are applied (tests/sipua/xpatch.c) when the
 * copy is at the previous ETag, <body-not-changed/> only moves the ETag, anything else is
 * fetched with a GET straight from the XDMS (with X-3GPP-Asserted-Identity) at ADDR: unix:PATH,
 * the XDMS's UNIX-domain socket (the one place it believes that header without TLS), or
 * HOST:PORT (a TCP peer, e.g. one configured as trusted_peer by certificate). One line per
 * document follows its NOTIFY:
 *
 *   {"event":"copy","sel":"resource-lists/users/...","etag":"7-ab","how":"patch","ops":2}
 *
 * "how" is patch, unchanged, fetch, deleted or error (with "error"). With --verify the copy is
 * then compared with a fresh GET (inclusive C14N with comments): "match":true or false.
 *
 * Exit status: 0 when the initial SUBSCRIBE got a 2xx, else 1 (2 for usage errors). It binds
 * only to 127.0.0.1 (UDP and TCP, a free port) and depends on sofia-sip and libxml2 only. */
#define SU_ROOT_MAGIC_T struct ua
#define SU_TIMER_ARG_T struct ua
#define SU_WAKEUP_ARG_T struct ua
#define NTA_LEG_MAGIC_T struct ua
#define NTA_OUTGOING_MAGIC_T struct ua

#include <arpa/inet.h>
#include <getopt.h>
#include <libxml/parser.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_wait.h>

#include "xpatch.h"

#define UA_MAX_ENTRIES 256
#define UA_MAX_COPIES 64
#define UA_MAX_FETCH (4 << 20)
#define UA_FETCH_TIMEOUT_S 5
#define UA_RESPONSE_WAIT_MS 5000
#define UA_FINAL_WAIT_MS 2000
#define UA_MAX_BODY (64 * 1024)

enum ua_phase { UA_INITIAL, UA_ACTIVE, UA_UNSUBSCRIBING, UA_DONE };

/* A client copy of one document (--apply). */
struct ua_copy {
    char *sel;
    char etag[128];
    xmlDocPtr doc;
};

struct ua {
    /* options */
    const char *server;
    const char *target;
    const char *transport;
    const char *identity; /* P-Asserted-Identity (NULL = target) */
    const char *from;     /* From (NULL = identity) */
    bool no_pai;
    const char *event_param;
    const char *accept;
    long expires; /* -1 = no Expires header */
    bool no_body;
    long duration;
    long count;
    long refresh_after; /* -1 = no refresh */
    const char *apply;  /* unix:PATH or HOST:PORT of the XDMS to fetch from, or NULL */
    bool verify;
    bool stdin_commands;
    const char *entries[UA_MAX_ENTRIES];
    size_t n_entries;
    const char *refresh_entries[UA_MAX_ENTRIES];
    size_t n_refresh;

    /* state */
    su_home_t home[1];
    su_root_t *root;
    nta_agent_t *agent;
    nta_leg_t *leg;
    nta_outgoing_t *orq;
    const char *orq_kind;
    char route[320];   /* next hop: the notifier, with the chosen transport */
    char contact[320]; /* our Contact */
    su_timer_t *t_response, *t_duration, *t_refresh, *t_final;
    int stdin_index; /* registered stdin (--stdin-commands), or -1 */
    char line[512];
    size_t line_len;
    enum ua_phase phase;
    long notifies;
    bool accepted;
    bool unsubscribe_due;
    bool sending;    /* inside nta_outgoing_tcreate() */
    int sync_status; /* final status reported while sending */
    struct ua_copy copies[UA_MAX_COPIES];
    size_t n_copies;
};

/* ---- JSON output ---- */

/* Writes s[0..len) as a JSON string: quotes, backslashes and control characters escaped, invalid
 * UTF-8 bytes replaced by U+FFFD so the line stays valid JSON. */
static void json_string(FILE *f, const char *s, size_t len)
{
    fputc('"', f);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            fputc('\\', f);
            fputc(c, f);
            i++;
        } else if (c == '\n') {
            fputs("\\n", f);
            i++;
        } else if (c == '\r') {
            fputs("\\r", f);
            i++;
        } else if (c == '\t') {
            fputs("\\t", f);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(f, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, f);
            i++;
        } else {
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            bool ok = n > 0 && c <= 0xf4 && i + n <= len;
            for (size_t k = 1; ok && k < n; k++)
                ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
            if (ok && n == 3) {
                unsigned char c1 = (unsigned char)s[i + 1];
                ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
            } else if (ok && n == 4) {
                unsigned char c1 = (unsigned char)s[i + 1];
                ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
            }
            if (ok) {
                fwrite(s + i, 1, n, f);
                i += n;
            } else {
                fputs("\\ufffd", f);
                i++;
            }
        }
    }
    fputc('"', f);
}

static void json_cstr(FILE *f, const char *s)
{
    json_string(f, s, strlen(s));
}

/* ,"contact":"URI" when sip has a Contact. */
static void print_contact(const sip_t *sip)
{
    if (!sip || !sip->sip_contact)
        return;
    char uri[512];
    if (url_e(uri, sizeof uri, sip->sip_contact->m_url) < 0)
        return;
    uri[sizeof uri - 1] = '\0';
    printf(",\"contact\":");
    json_cstr(stdout, uri);
}

static void print_response(const char *kind, int status, const sip_t *sip)
{
    printf("{\"event\":\"response\",\"method\":\"SUBSCRIBE\",\"kind\":");
    json_cstr(stdout, kind);
    printf(",\"status\":%d", status);
    if (sip && sip->sip_expires)
        printf(",\"expires\":%lu", (unsigned long)sip->sip_expires->ex_delta);
    print_contact(sip);
    printf("}\n");
    fflush(stdout);
}

static void print_notify(const sip_t *sip, const char *transport)
{
    printf("{\"event\":\"notify\",\"cseq\":%lu", (unsigned long)sip->sip_cseq->cs_seq);
    printf(",\"transport\":\"%s\"", transport);
    print_contact(sip);
    if (sip->sip_via && sip->sip_via->v_host) {
        char via[300];
        snprintf(via, sizeof via, "%s:%s", sip->sip_via->v_host,
                 sip->sip_via->v_port ? sip->sip_via->v_port : "5060");
        printf(",\"via\":");
        json_cstr(stdout, via);
    }
    printf(",\"subscription_state\":");
    const sip_subscription_state_t *ss = sip->sip_subscription_state;
    if (ss && ss->ss_substate) {
        char state[512];
        size_t len = (size_t)snprintf(state, sizeof state, "%s", ss->ss_substate);
        for (const char *const *p = ss->ss_params; p && *p && len < sizeof state; p++)
            len += (size_t)snprintf(state + len, sizeof state - len, ";%s", *p);
        json_cstr(stdout, state);
    } else {
        printf("null");
    }
    printf(",\"content_type\":");
    if (sip->sip_content_type && sip->sip_content_type->c_type)
        json_cstr(stdout, sip->sip_content_type->c_type);
    else
        printf("null");
    printf(",\"body\":");
    if (sip->sip_payload)
        json_string(stdout, sip->sip_payload->pl_data, sip->sip_payload->pl_len);
    else
        json_string(stdout, "", 0);
    printf("}\n");
    fflush(stdout);
}

/* ---- SIP ---- */

static void ua_finish(struct ua *ua)
{
    if (ua->phase != UA_DONE) {
        ua->phase = UA_DONE;
        su_root_break(ua->root);
    }
}

static int xml_escape_append(char *out, size_t max, size_t *len, const char *s)
{
    for (; *s; s++) {
        const char *rep = NULL;
        char one[2] = {*s, '\0'};
        switch (*s) {
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '&':
            rep = "&amp;";
            break;
        case '"':
            rep = "&quot;";
            break;
        default:
            rep = one;
            break;
        }
        size_t rl = strlen(rep);
        if (*len + rl >= max)
            return -1;
        memcpy(out + *len, rep, rl);
        *len += rl;
        out[*len] = '\0';
    }
    return 0;
}

/* The application/resource-lists+xml body (RFC 4826) listing the entries to watch. */
static char *resource_list(const char *const *entries, size_t n)
{
    char *body = malloc(UA_MAX_BODY);
    if (!body)
        return NULL;
    int w = snprintf(body, UA_MAX_BODY,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                     "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">\n"
                     "  <list>\n");
    size_t len = (size_t)w;
    for (size_t i = 0; i < n; i++) {
        w = snprintf(body + len, UA_MAX_BODY - len, "    <entry uri=\"");
        if (w < 0 || (size_t)w >= UA_MAX_BODY - len)
            goto full;
        len += (size_t)w;
        if (xml_escape_append(body, UA_MAX_BODY, &len, entries[i]) < 0)
            goto full;
        w = snprintf(body + len, UA_MAX_BODY - len, "\"/>\n");
        if (w < 0 || (size_t)w >= UA_MAX_BODY - len)
            goto full;
        len += (size_t)w;
    }
    w = snprintf(body + len, UA_MAX_BODY - len, "  </list>\n</resource-lists>\n");
    if (w < 0 || (size_t)w >= UA_MAX_BODY - len)
        goto full;
    return body;
full:
    fprintf(stderr, "xdm-sipua: resource list over %d bytes\n", UA_MAX_BODY);
    free(body);
    return NULL;
}

static int ua_on_response(struct ua *ua, nta_outgoing_t *orq, const sip_t *sip);
static void ua_on_response_timeout(struct ua *ua, su_timer_t *t, struct ua *arg);

/* Sends a SUBSCRIBE in the leg (the dialog once established). expires < 0 leaves Expires out;
 * entries NULL sends no body. */
static int ua_subscribe(struct ua *ua, const char *kind, long expires, const char *const *entries,
                        size_t n_entries)
{
    char event[256], exp[32];
    snprintf(event, sizeof event, "xcap-diff%s%s", ua->event_param ? ";" : "",
             ua->event_param ? ua->event_param : "");
    snprintf(exp, sizeof exp, "%ld", expires);
    char *body = NULL;
    if (entries && !(body = resource_list(entries, n_entries)))
        return -1;
    char pai[400] = "";
    if (!ua->no_pai)
        snprintf(pai, sizeof pai, "P-Asserted-Identity: <%s>",
                 ua->identity ? ua->identity : ua->target);
    bool initial = ua->phase == UA_INITIAL;
    ua->orq_kind = kind;
    ua->sending = true;
    ua->sync_status = 0;
    nta_outgoing_t *orq = nta_outgoing_tcreate(
        ua->leg, ua_on_response, ua, URL_STRING_MAKE(ua->route), SIP_METHOD_SUBSCRIBE,
        initial ? URL_STRING_MAKE(ua->target) : NULL, SIPTAG_CONTACT_STR(ua->contact),
        SIPTAG_EVENT_STR(event), SIPTAG_ACCEPT_STR(ua->accept),
        TAG_IF(expires >= 0, SIPTAG_EXPIRES_STR(exp)), TAG_IF(pai[0], SIPTAG_HEADER_STR(pai)),
        TAG_IF(body, SIPTAG_CONTENT_TYPE_STR("application/resource-lists+xml")),
        TAG_IF(body, SIPTAG_PAYLOAD_STR(body)), TAG_END());
    free(body);
    ua->sending = false;
    if (!orq) {
        fprintf(stderr, "xdm-sipua: cannot send SUBSCRIBE\n");
        return -1;
    }
    ua->orq = orq;
    su_timer_set_interval(ua->t_response, ua_on_response_timeout, ua, UA_RESPONSE_WAIT_MS);
    if (ua->sync_status >= 200) /* a transport error reported from inside the call above */
        ua_on_response(ua, orq, NULL);
    return 0;
}

static void ua_on_final_timeout(struct ua *ua, su_timer_t *t, struct ua *arg)
{
    (void)t;
    (void)arg;
    fprintf(stderr, "xdm-sipua: no final NOTIFY within %d ms\n", UA_FINAL_WAIT_MS);
    ua_finish(ua);
}

/* RFC 6665 §4.1.2.3: unsubscribe = SUBSCRIBE with Expires: 0, then wait for the final NOTIFY. */
static void ua_unsubscribe(struct ua *ua)
{
    if (ua->phase != UA_ACTIVE)
        return;
    if (ua->orq) {
        ua->unsubscribe_due = true; /* after the transaction in progress */
        return;
    }
    ua->phase = UA_UNSUBSCRIBING;
    su_timer_reset(ua->t_duration);
    su_timer_reset(ua->t_refresh);
    su_timer_set_interval(ua->t_final, ua_on_final_timeout, ua, UA_FINAL_WAIT_MS);
    if (ua_subscribe(ua, "unsubscribe", 0, NULL, 0) < 0)
        ua_finish(ua);
}

static void ua_on_response_timeout(struct ua *ua, su_timer_t *t, struct ua *arg)
{
    (void)t;
    (void)arg;
    if (!ua->orq)
        return;
    nta_outgoing_destroy(ua->orq);
    ua->orq = NULL;
    print_response(ua->orq_kind, 408, NULL);
    if (ua->phase == UA_INITIAL || ua->phase == UA_UNSUBSCRIBING)
        ua_finish(ua);
}

static void ua_on_duration(struct ua *ua, su_timer_t *t, struct ua *arg)
{
    (void)t;
    (void)arg;
    ua_unsubscribe(ua);
}

static void ua_on_refresh(struct ua *ua, su_timer_t *t, struct ua *arg)
{
    (void)t;
    (void)arg;
    if (ua->phase != UA_ACTIVE)
        return;
    if (ua->orq) {
        su_timer_set_interval(ua->t_refresh, ua_on_refresh, ua, 100);
        return;
    }
    if (ua_subscribe(ua, "refresh", ua->expires, ua->n_refresh ? ua->refresh_entries : NULL,
                     ua->n_refresh) < 0)
        ua_finish(ua);
}

/* The next hop of requests from now on. Returns 0 or -1 (too long). */
static int ua_set_server(struct ua *ua, const char *server)
{
    char route[sizeof ua->route];
    if ((size_t)snprintf(route, sizeof route, "sip:%s;transport=%s", server, ua->transport) >=
        sizeof route)
        return -1;
    memcpy(ua->route, route, sizeof route);
    return 0;
}

/* One --stdin-commands line: "refresh [HOST:PORT]" or "unsubscribe [HOST:PORT]". */
static void ua_command(struct ua *ua, char *line)
{
    char *cmd = strtok(line, " \t\r");
    char *server = cmd ? strtok(NULL, " \t\r") : NULL;
    if (!cmd)
        return;
    if (server && ua_set_server(ua, server) < 0) {
        fprintf(stderr, "xdm-sipua: server too long: %s\n", server);
        return;
    }
    if (strcmp(cmd, "refresh") == 0)
        ua_on_refresh(ua, NULL, ua);
    else if (strcmp(cmd, "unsubscribe") == 0)
        ua_unsubscribe(ua);
    else
        fprintf(stderr, "xdm-sipua: unknown command: %s\n", cmd);
}

static int ua_on_stdin(struct ua *ua, su_wait_t *w, struct ua *arg)
{
    (void)w;
    (void)arg;
    ssize_t r = read(0, ua->line + ua->line_len, sizeof ua->line - 1 - ua->line_len);
    if (r <= 0) {
        su_root_deregister(ua->root, ua->stdin_index);
        ua->stdin_index = -1;
        return 0;
    }
    ua->line_len += (size_t)r;
    ua->line[ua->line_len] = '\0';
    char *nl;
    while ((nl = strchr(ua->line, '\n')) != NULL) {
        *nl = '\0';
        ua_command(ua, ua->line);
        size_t rest = ua->line_len - (size_t)(nl + 1 - ua->line);
        memmove(ua->line, nl + 1, rest + 1);
        ua->line_len = rest;
    }
    if (ua->line_len == sizeof ua->line - 1)
        ua->line_len = 0; /* a line too long: dropped */
    return 0;
}

static int ua_on_response(struct ua *ua, nta_outgoing_t *orq, const sip_t *sip)
{
    if (ua->sending) {
        ua->sync_status = nta_outgoing_status(orq);
        return 0;
    }
    int status = ua->sync_status ? ua->sync_status : nta_outgoing_status(orq);
    ua->sync_status = 0;
    if (status < 200)
        return 0;
    su_timer_reset(ua->t_response);
    const char *kind = ua->orq_kind;
    print_response(kind, status, sip);
    /* sip belongs to orq's response: orq is destroyed only once sip is no longer read. */
    ua->orq = NULL;
    if (ua->phase == UA_INITIAL) {
        if (status >= 300 || !sip) {
            nta_outgoing_destroy(orq);
            ua_finish(ua);
            return 0;
        }
        ua->accepted = true;
        ua->phase = UA_ACTIVE;
        /* RFC 6665 §4.1.2.1: the 2xx establishes the dialog. */
        if (sip->sip_to && sip->sip_to->a_tag)
            nta_leg_rtag(ua->leg, sip->sip_to->a_tag);
        nta_leg_client_route(ua->leg, sip->sip_record_route, sip->sip_contact);
        su_timer_set_interval(ua->t_duration, ua_on_duration, ua, ua->duration * 1000);
        if (ua->refresh_after >= 0)
            su_timer_set_interval(ua->t_refresh, ua_on_refresh, ua, ua->refresh_after * 1000);
        if (ua->count > 0 && ua->notifies >= ua->count)
            ua_unsubscribe(ua);
    } else if (ua->phase == UA_UNSUBSCRIBING && status >= 300) {
        ua_finish(ua);
    } else if (ua->phase == UA_ACTIVE && ua->unsubscribe_due) {
        ua_unsubscribe(ua);
    }
    nta_outgoing_destroy(orq);
    return 0;
}

/* ---- client copies (--apply) ---- */

struct ua_fetch {
    int status;
    char etag[128];
    char *body; /* malloc'd */
    size_t len;
};

/* A connected stream socket to ua->apply (unix:PATH or IPv4 HOST:PORT), or -1. */
static int ua_connect_xdms(struct ua *ua)
{
    if (strncmp(ua->apply, "unix:", 5) == 0) {
        struct sockaddr_un u = {.sun_family = AF_UNIX};
        size_t len = strlen(ua->apply + 5);
        if (len == 0 || len >= sizeof u.sun_path)
            return -1;
        memcpy(u.sun_path, ua->apply + 5, len + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&u, sizeof u) != 0) {
            close(fd);
            fd = -1;
        }
        return fd;
    }
    char host[64];
    const char *colon = strrchr(ua->apply, ':');
    if (!colon || (size_t)(colon - ua->apply) >= sizeof host)
        return -1;
    snprintf(host, sizeof host, "%.*s", (int)(colon - ua->apply), ua->apply);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
        return -1;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* GET path from the XDMS at ua->apply as the subscriber (RFC 4825, the hop the proxy uses).
 * Returns 0 with *out filled, or -1. */
static int ua_get(struct ua *ua, const char *path, struct ua_fetch *out)
{
    memset(out, 0, sizeof *out);
    int fd = ua_connect_xdms(ua);
    if (fd < 0)
        return -1;
    struct timeval tv = {.tv_sec = UA_FETCH_TIMEOUT_S};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char *req = NULL;
    int rl = asprintf(&req,
                      "GET %s HTTP/1.1\r\nHost: %s\r\nX-3GPP-Asserted-Identity: \"%s\"\r\n"
                      "Connection: close\r\n\r\n",
                      path, strncmp(ua->apply, "unix:", 5) == 0 ? "localhost" : ua->apply,
                      ua->identity ? ua->identity : ua->target);
    char *buf = malloc(UA_MAX_FETCH + 1);
    size_t got = 0;
    int rc = -1;
    if (rl > 0 && buf && send(fd, req, (size_t)rl, MSG_NOSIGNAL) == rl) {
        ssize_t r;
        while (got < UA_MAX_FETCH && (r = recv(fd, buf + got, UA_MAX_FETCH - got, 0)) > 0)
            got += (size_t)r;
        buf[got] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end && strncmp(buf, "HTTP/1.", 7) == 0) {
            out->status = atoi(buf + 9);
            for (char *h = strstr(buf, "\r\n"); h && h < end; h = strstr(h + 2, "\r\n")) {
                if (strncasecmp(h + 2, "ETag:", 5) == 0) {
                    const char *v = h + 7;
                    while (*v == ' ' || *v == '"')
                        v++;
                    size_t vl = strcspn(v, "\"\r");
                    snprintf(out->etag, sizeof out->etag, "%.*s", (int)vl, v);
                }
            }
            out->len = got - (size_t)(end + 4 - buf);
            out->body = malloc(out->len + 1);
            if (out->body) {
                memcpy(out->body, end + 4, out->len);
                out->body[out->len] = '\0';
                rc = 0;
            }
        }
    }
    free(buf);
    free(req);
    close(fd);
    return rc;
}

static struct ua_copy *ua_copy_of(struct ua *ua, const char *sel, bool create)
{
    for (size_t i = 0; i < ua->n_copies; i++)
        if (strcmp(ua->copies[i].sel, sel) == 0)
            return &ua->copies[i];
    if (!create || ua->n_copies == UA_MAX_COPIES)
        return NULL;
    struct ua_copy *c = &ua->copies[ua->n_copies];
    memset(c, 0, sizeof *c);
    if (!(c->sel = strdup(sel)))
        return NULL;
    ua->n_copies++;
    return c;
}

/* The path of a document below the XCAP root named by the xcap-diff's xcap-root. */
static char *ua_path(const char *root, const char *sel)
{
    const char *p = strstr(root, "://");
    p = p ? strchr(p + 3, '/') : NULL;
    size_t len = p ? strlen(p) : 0;
    while (len > 0 && p[len - 1] == '/')
        len--;
    char *out = NULL;
    if (asprintf(&out, "%.*s/%s", (int)len, p ? p : "", sel) < 0)
        return NULL;
    return out;
}

static void ua_copy_fetch(struct ua *ua, struct ua_copy *c, const char *path, const char **how,
                          char *err, size_t errlen)
{
    struct ua_fetch f;
    if (c->doc)
        xmlFreeDoc(c->doc);
    c->doc = NULL;
    c->etag[0] = '\0';
    if (ua_get(ua, path, &f) < 0) {
        *how = "error";
        snprintf(err, errlen, "GET %s failed", path);
        return;
    }
    if (f.status == 200) {
        c->doc = xmlReadMemory(f.body, (int)f.len, NULL, "UTF-8", XML_PARSE_NONET);
        snprintf(c->etag, sizeof c->etag, "%s", f.etag);
        *how = c->doc ? "fetch" : "error";
        if (!c->doc)
            snprintf(err, errlen, "GET %s: not well-formed", path);
    } else if (f.status == 404) {
        *how = "deleted";
    } else {
        *how = "error";
        snprintf(err, errlen, "GET %s: %d", path, f.status);
    }
    free(f.body);
}

/* Compares the copy with the XDMS's current document. Returns 1 equal, 0 different, -1 when the
 * document moved on meanwhile (another ETag) or cannot be read. */
static int ua_copy_verify(struct ua *ua, const struct ua_copy *c, const char *path)
{
    struct ua_fetch f;
    if (ua_get(ua, path, &f) < 0)
        return -1;
    int rc = -1;
    if (f.status == 404) {
        rc = c->doc ? 0 : 1;
    } else if (f.status == 200 && strcmp(f.etag, c->etag) == 0) {
        char *want = xpatch_c14n_bytes(f.body, f.len);
        char *got = c->doc ? xpatch_c14n(c->doc) : NULL;
        rc = want && got && strcmp(want, got) == 0;
        if (rc == 0)
            fprintf(stderr, "xdm-sipua: copy of %s differs\n  server %s\n  client %s\n", c->sel,
                    want ? want : "-", got ? got : "-");
        xmlFree(want);
        xmlFree(got);
    }
    free(f.body);
    return rc;
}

static void ua_apply_document(struct ua *ua, const char *root, xmlNodePtr d)
{
    xmlChar *sel = xmlGetNoNsProp(d, (const xmlChar *)"sel");
    xmlChar *prev = xmlGetNoNsProp(d, (const xmlChar *)"previous-etag");
    xmlChar *next = xmlGetNoNsProp(d, (const xmlChar *)"new-etag");
    struct ua_copy *c = sel ? ua_copy_of(ua, (const char *)sel, true) : NULL;
    char *path = sel ? ua_path(root, (const char *)sel) : NULL;
    const char *how = "error";
    char err[512] = "";
    int ops = 0;
    bool unchanged = false;
    for (xmlNodePtr k = d->children; k; k = k->next) {
        if (k->type != XML_ELEMENT_NODE)
            continue;
        if (strcmp((const char *)k->name, "body-not-changed") == 0)
            unchanged = true;
        else
            ops++;
    }
    bool at_prev = c && prev && c->doc && strcmp(c->etag, (const char *)prev) == 0;
    if (!c || !path) {
        snprintf(err, sizeof err, "no sel, or too many documents");
    } else if (!next) {
        if (c->doc)
            xmlFreeDoc(c->doc);
        c->doc = NULL;
        c->etag[0] = '\0';
        how = "deleted";
    } else if (at_prev && unchanged) {
        snprintf(c->etag, sizeof c->etag, "%s", (const char *)next);
        how = "unchanged";
    } else if (at_prev && ops > 0) {
        if (xpatch_apply(c->doc, d, err, sizeof err) == 0) {
            snprintf(c->etag, sizeof c->etag, "%s", (const char *)next);
            how = "patch";
        } else {
            fprintf(stderr, "xdm-sipua: patch of %s failed: %s\n", c->sel, err);
            ua_copy_fetch(ua, c, path, &how, err, sizeof err);
            how = "error";
        }
    } else if (c->doc && strcmp(c->etag, (const char *)next) == 0) {
        how = "unchanged"; /* a full state naming the version we have */
    } else {
        ua_copy_fetch(ua, c, path, &how, err, sizeof err);
    }
    printf("{\"event\":\"copy\",\"sel\":");
    json_cstr(stdout, sel ? (const char *)sel : "");
    printf(",\"etag\":");
    json_cstr(stdout, c ? c->etag : "");
    printf(",\"how\":\"%s\",\"ops\":%d", how, ops);
    if (err[0]) {
        printf(",\"error\":");
        json_cstr(stdout, err);
    }
    if (ua->verify && c && path) {
        int m = ua_copy_verify(ua, c, path);
        printf(",\"match\":%s", m < 0 ? "null" : m ? "true" : "false");
    }
    printf("}\n");
    fflush(stdout);
    free(path);
    xmlFree(sel);
    xmlFree(prev);
    xmlFree(next);
}

static void ua_apply(struct ua *ua, const sip_t *sip)
{
    if (!sip->sip_payload || sip->sip_payload->pl_len == 0 || sip->sip_payload->pl_len > 0x7fffffff)
        return;
    xmlDocPtr x = xmlReadMemory(sip->sip_payload->pl_data, (int)sip->sip_payload->pl_len, NULL,
                                "UTF-8", XML_PARSE_NONET | XML_PARSE_NOERROR);
    xmlNodePtr root = x ? xmlDocGetRootElement(x) : NULL;
    xmlChar *xroot = root ? xmlGetNoNsProp(root, (const xmlChar *)"xcap-root") : NULL;
    for (xmlNodePtr d = root ? root->children : NULL; xroot && d; d = d->next)
        if (d->type == XML_ELEMENT_NODE && strcmp((const char *)d->name, "document") == 0)
            ua_apply_document(ua, (const char *)xroot, d);
    xmlFree(xroot);
    if (x)
        xmlFreeDoc(x);
}

static const char *ua_transport(nta_incoming_t *irq)
{
    msg_t *msg = nta_incoming_getrequest(irq);
    su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
    const char *t = ai && ai->ai_protocol == IPPROTO_TCP ? "tcp" : "udp";
    if (msg)
        msg_destroy(msg);
    return t;
}

static int ua_on_request(struct ua *ua, nta_leg_t *leg, nta_incoming_t *irq, const sip_t *sip)
{
    (void)leg;
    if (sip->sip_request->rq_method != sip_method_notify)
        return 405;
    print_notify(sip, ua_transport(irq));
    if (ua->apply)
        ua_apply(ua, sip);
    ua->notifies++;
    const sip_subscription_state_t *ss = sip->sip_subscription_state;
    bool terminated = ss && ss->ss_substate && strcasecmp(ss->ss_substate, "terminated") == 0;
    if (terminated) {
        /* The reply goes out after we return; the loop only stops on the next turn. */
        ua_finish(ua);
    } else if (ua->count > 0 && ua->notifies >= ua->count && ua->phase == UA_ACTIVE) {
        ua_unsubscribe(ua);
    }
    return 200;
}

/* ---- main ---- */

static void usage(FILE *f)
{
    fputs(
        "usage: xdm-sipua --server HOST:PORT --target SIP-URI [options]\n"
        "  --transport udp|tcp          transport to the server (default udp)\n"
        "  --identity SIP-URI           P-Asserted-Identity, as a trusted SIP proxy asserts it\n"
        "                               (default: the target)\n"
        "  --from SIP-URI               From (default: the identity)\n"
        "  --no-pai                     send no P-Asserted-Identity\n"
        "  --entry URI                  resource-list entry (repeatable)\n"
        "  --event-param NAME=VALUE     Event header parameter, e.g. diff-processing=aggregate\n"
        "  --accept TYPE                Accept header (default application/xcap-diff+xml)\n"
        "  --expires N                  Expires header (default: none sent)\n"
        "  --no-body                    send the initial SUBSCRIBE without a body\n"
        "  --duration SEC               stay subscribed this long (default 10), then unsubscribe\n"
        "  --count N                    unsubscribe once N NOTIFYs arrived; the final NOTIFY of\n"
        "                               the unsubscription is printed too, then it exits\n"
        "  --refresh-after SEC          send one in-dialog refresh after SEC seconds\n"
        "  --refresh-entry URI          entries of the refresh body (repeatable; none = no body)\n"
        "  --apply unix:PATH|HOST:PORT  keep client copies of the reported documents, fetching\n"
        "                               from the XDMS (its socket, or a TCP address) when a\n"
        "                               NOTIFY has no patch\n"
        "  --verify                     with --apply: compare each copy with a fresh GET\n"
        "  --stdin-commands             read \"refresh [HOST:PORT]\" and \"unsubscribe "
        "[HOST:PORT]\"\n"
        "                               lines on stdin (HOST:PORT: the next hop from then on)\n"
        "Prints one JSON object per line (responses and NOTIFYs); answers NOTIFYs with 200.\n"
        "Exit 0 when the initial SUBSCRIBE got a 2xx, 1 otherwise, 2 on usage errors.\n",
        f);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_args(struct ua *ua, int argc, char **argv)
{
    enum {
        O_SERVER = 1000,
        O_TARGET,
        O_TRANSPORT,
        O_IDENTITY,
        O_FROM,
        O_NO_PAI,
        O_ENTRY,
        O_EVENT_PARAM,
        O_ACCEPT,
        O_EXPIRES,
        O_NO_BODY,
        O_DURATION,
        O_COUNT,
        O_REFRESH_AFTER,
        O_REFRESH_ENTRY,
        O_APPLY,
        O_VERIFY,
        O_STDIN_COMMANDS,
        O_HELP,
    };
    static const struct option opts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"target", required_argument, NULL, O_TARGET},
        {"transport", required_argument, NULL, O_TRANSPORT},
        {"identity", required_argument, NULL, O_IDENTITY},
        {"from", required_argument, NULL, O_FROM},
        {"no-pai", no_argument, NULL, O_NO_PAI},
        {"entry", required_argument, NULL, O_ENTRY},
        {"event-param", required_argument, NULL, O_EVENT_PARAM},
        {"accept", required_argument, NULL, O_ACCEPT},
        {"expires", required_argument, NULL, O_EXPIRES},
        {"no-body", no_argument, NULL, O_NO_BODY},
        {"duration", required_argument, NULL, O_DURATION},
        {"count", required_argument, NULL, O_COUNT},
        {"refresh-after", required_argument, NULL, O_REFRESH_AFTER},
        {"refresh-entry", required_argument, NULL, O_REFRESH_ENTRY},
        {"apply", required_argument, NULL, O_APPLY},
        {"verify", no_argument, NULL, O_VERIFY},
        {"stdin-commands", no_argument, NULL, O_STDIN_COMMANDS},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_SERVER:
            ua->server = optarg;
            break;
        case O_TARGET:
            ua->target = optarg;
            break;
        case O_TRANSPORT:
            if (strcmp(optarg, "udp") != 0 && strcmp(optarg, "tcp") != 0)
                return fprintf(stderr, "xdm-sipua: --transport udp|tcp\n"), -1;
            ua->transport = optarg;
            break;
        case O_IDENTITY:
            ua->identity = optarg;
            break;
        case O_FROM:
            ua->from = optarg;
            break;
        case O_NO_PAI:
            ua->no_pai = true;
            break;
        case O_ENTRY:
            if (ua->n_entries == UA_MAX_ENTRIES)
                return fprintf(stderr, "xdm-sipua: too many --entry\n"), -1;
            ua->entries[ua->n_entries++] = optarg;
            break;
        case O_EVENT_PARAM:
            ua->event_param = optarg;
            break;
        case O_ACCEPT:
            ua->accept = optarg;
            break;
        case O_EXPIRES:
            if (!parse_long(optarg, 0, 0xffffffffL, &ua->expires))
                return fprintf(stderr, "xdm-sipua: bad --expires\n"), -1;
            break;
        case O_NO_BODY:
            ua->no_body = true;
            break;
        case O_DURATION:
            if (!parse_long(optarg, 0, 86400, &ua->duration))
                return fprintf(stderr, "xdm-sipua: bad --duration\n"), -1;
            break;
        case O_COUNT:
            if (!parse_long(optarg, 1, 1000000, &ua->count))
                return fprintf(stderr, "xdm-sipua: bad --count\n"), -1;
            break;
        case O_REFRESH_AFTER:
            if (!parse_long(optarg, 0, 86400, &ua->refresh_after))
                return fprintf(stderr, "xdm-sipua: bad --refresh-after\n"), -1;
            break;
        case O_REFRESH_ENTRY:
            if (ua->n_refresh == UA_MAX_ENTRIES)
                return fprintf(stderr, "xdm-sipua: too many --refresh-entry\n"), -1;
            ua->refresh_entries[ua->n_refresh++] = optarg;
            break;
        case O_APPLY:
            ua->apply = optarg;
            break;
        case O_VERIFY:
            ua->verify = true;
            break;
        case O_STDIN_COMMANDS:
            ua->stdin_commands = true;
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            return -1;
        }
    }
    if (optind != argc || !ua->server || !ua->target)
        return fprintf(stderr, "xdm-sipua: --server and --target are required\n"), -1;
    if (ua->verify && !ua->apply)
        return fprintf(stderr, "xdm-sipua: --verify needs --apply\n"), -1;
    if (ua->n_refresh > 0 && ua->refresh_after < 0)
        return fprintf(stderr, "xdm-sipua: --refresh-entry needs --refresh-after\n"), -1;
    if (strncmp(ua->target, "sip:", 4) != 0 && strncmp(ua->target, "sips:", 5) != 0)
        return fprintf(stderr, "xdm-sipua: --target must be a SIP URI\n"), -1;
    return 0;
}

static int ua_setup(struct ua *ua)
{
    if (!(ua->root = su_root_create(ua)))
        return fprintf(stderr, "xdm-sipua: su_root_create failed\n"), -1;
    /* Loopback only, both transports, a free port (port 0). */
    ua->agent = nta_agent_create(ua->root, URL_STRING_MAKE("sip:127.0.0.1:0"), NULL, NULL,
                                 NTATAG_UA(1), TAG_END());
    if (!ua->agent)
        return fprintf(stderr, "xdm-sipua: cannot bind 127.0.0.1\n"), -1;
    const sip_contact_t *m = nta_agent_contact(ua->agent);
    const char *port = m && m->m_url->url_port ? m->m_url->url_port : "5060";
    bool tcp = strcmp(ua->transport, "tcp") == 0;
    snprintf(ua->contact, sizeof ua->contact, "<sip:xdm-sipua@127.0.0.1:%s%s>", port,
             tcp ? ";transport=tcp" : "");
    if (ua_set_server(ua, ua->server) < 0)
        return fprintf(stderr, "xdm-sipua: --server too long\n"), -1;
    if (ua->stdin_commands) {
        su_wait_t w;
        if (su_wait_create(&w, 0, SU_WAIT_IN) < 0 ||
            (ua->stdin_index = su_root_register(ua->root, &w, ua_on_stdin, ua, 0)) < 0)
            return fprintf(stderr, "xdm-sipua: cannot watch stdin\n"), -1;
    }

    const char *me = ua->from ? ua->from : ua->identity ? ua->identity : ua->target;
    char from[400], to[400];
    snprintf(from, sizeof from, "<%s>", me);
    snprintf(to, sizeof to, "<%s>", ua->target);
    sip_from_t *f = sip_from_make(ua->home, from);
    sip_to_t *t = sip_to_make(ua->home, to);
    sip_call_id_t *i = sip_call_id_create(ua->home, "127.0.0.1");
    if (!f || !t || !i)
        return fprintf(stderr, "xdm-sipua: bad --from, --identity or --target\n"), -1;
    ua->leg = nta_leg_tcreate(ua->agent, ua_on_request, ua, SIPTAG_CALL_ID(i), SIPTAG_FROM(f),
                              SIPTAG_TO(t), TAG_END());
    if (!ua->leg || !nta_leg_tag(ua->leg, NULL))
        return fprintf(stderr, "xdm-sipua: cannot create the dialog\n"), -1;
    ua->t_response = su_timer_create(su_root_task(ua->root), 0);
    ua->t_duration = su_timer_create(su_root_task(ua->root), 0);
    ua->t_refresh = su_timer_create(su_root_task(ua->root), 0);
    ua->t_final = su_timer_create(su_root_task(ua->root), 0);
    if (!ua->t_response || !ua->t_duration || !ua->t_refresh || !ua->t_final)
        return fprintf(stderr, "xdm-sipua: cannot create timers\n"), -1;
    return 0;
}

static void ua_teardown(struct ua *ua)
{
    if (ua->stdin_index > 0)
        su_root_deregister(ua->root, ua->stdin_index);
    su_timer_destroy(ua->t_response);
    su_timer_destroy(ua->t_duration);
    su_timer_destroy(ua->t_refresh);
    su_timer_destroy(ua->t_final);
    if (ua->orq)
        nta_outgoing_destroy(ua->orq);
    if (ua->leg)
        nta_leg_destroy(ua->leg);
    if (ua->agent)
        nta_agent_destroy(ua->agent);
    if (ua->root)
        su_root_destroy(ua->root);
}

int main(int argc, char **argv)
{
    struct ua ua = {
        .transport = "udp",
        .accept = "application/xcap-diff+xml",
        .expires = -1,
        .duration = 10,
        .refresh_after = -1,
        .stdin_index = -1,
    };
    if (parse_args(&ua, argc, argv) < 0) {
        usage(stderr);
        return 2;
    }
    su_init();
    su_home_init(ua.home);
    int rc = 1;
    if (ua_setup(&ua) == 0 && ua_subscribe(&ua, "initial", ua.expires,
                                           ua.no_body ? NULL : ua.entries, ua.n_entries) == 0) {
        su_root_run(ua.root);
        /* Let the 200 to a final NOTIFY leave before the agent goes away. */
        su_root_step(ua.root, 50);
        rc = ua.accepted ? 0 : 1;
    }
    ua_teardown(&ua);
    for (size_t i = 0; i < ua.n_copies; i++) {
        free(ua.copies[i].sel);
        if (ua.copies[i].doc)
            xmlFreeDoc(ua.copies[i].doc);
    }
    xmlCleanupParser();
    su_home_deinit(ua.home);
    su_deinit();
    return rc;
}
