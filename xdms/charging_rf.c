/* The Diameter Rf client of the charging records (charging_internal.h), through freeDiameter's
 * libfdcore: one Accounting-Request per record (RFC 6733 §9.7.1, 3GPP TS 32.299 §6.2.2), one in
 * flight at a time, answered by Accounting-Answer. The AVPs are listed in docs/charging.md.
 *
 * libfdcore keeps one global state per process (its configuration, peers and threads), so there
 * is at most one client, opened once and closed at exit. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <freeDiameter/freeDiameter-host.h>
#include <freeDiameter/libfdcore.h>

#include "charging_internal.h"
#include "log.h"

/* RFC 6733 §9.8: the base accounting application; ACR/ACA carry it in the header. */
#define CHARGING_RF_ACCT_APP 3u
/* 3GPP (TS 29.230) for Service-Information; the XDM AVPs use the documentation enterprise
 * number of RFC 5612, until an operator assigns its own vendor. */
#define CHARGING_RF_VENDOR_3GPP 10415u
#define CHARGING_RF_VENDOR_XDM 32473u
#define CHARGING_RF_SUCCESS 2001u

/* AVPs: code, vendor, name, type. Those of the base protocol come from freeDiameter's
 * dictionary; the others are added when missing (dict_dcca and dict_dcca_3gpp define some). */
enum charging_rf_avp {
    RF_SESSION_ID,
    RF_DEST_REALM,
    RF_DEST_HOST,
    RF_ACCT_APP_ID,
    RF_RECORD_TYPE,
    RF_RECORD_NUMBER,
    RF_USER_NAME,
    RF_EVENT_TIMESTAMP,
    RF_RESULT_CODE,
    RF_SERVICE_CONTEXT_ID,
    RF_SERVICE_INFORMATION,
    RF_XDM_INFORMATION,
    RF_XDM_EVENT,
    RF_XDM_SERVED_USER,
    RF_XDM_AUID,
    RF_XDM_DOCUMENT,
    RF_XDM_OPERATION,
    RF_XDM_RESULT,
    RF_XDM_BYTES_IN,
    RF_XDM_BYTES_OUT,
    RF_XDM_NODE,
    RF_XDM_CORRELATION_ID,
    RF_XDM_SEQUENCE,
    RF_XDM_REQUEST_TIME,
    RF_XDM_EVENT_TIME,
    RF_AVP_COUNT
};

static const struct {
    avp_code_t code;
    vendor_id_t vendor;
    const char *name;
    enum dict_avp_basetype type;
} charging_rf_avps[RF_AVP_COUNT] = {
    [RF_SESSION_ID] = {263, 0, "Session-Id", AVP_TYPE_OCTETSTRING},
    [RF_DEST_REALM] = {283, 0, "Destination-Realm", AVP_TYPE_OCTETSTRING},
    [RF_DEST_HOST] = {293, 0, "Destination-Host", AVP_TYPE_OCTETSTRING},
    [RF_ACCT_APP_ID] = {259, 0, "Acct-Application-Id", AVP_TYPE_UNSIGNED32},
    [RF_RECORD_TYPE] = {480, 0, "Accounting-Record-Type", AVP_TYPE_INTEGER32},
    [RF_RECORD_NUMBER] = {485, 0, "Accounting-Record-Number", AVP_TYPE_UNSIGNED32},
    [RF_USER_NAME] = {1, 0, "User-Name", AVP_TYPE_OCTETSTRING},
    [RF_EVENT_TIMESTAMP] = {55, 0, "Event-Timestamp", AVP_TYPE_OCTETSTRING},
    [RF_RESULT_CODE] = {268, 0, "Result-Code", AVP_TYPE_UNSIGNED32},
    [RF_SERVICE_CONTEXT_ID] = {461, 0, "Service-Context-Id", AVP_TYPE_OCTETSTRING},
    [RF_SERVICE_INFORMATION] = {873, CHARGING_RF_VENDOR_3GPP, "Service-Information",
                                AVP_TYPE_GROUPED},
    [RF_XDM_INFORMATION] = {1, CHARGING_RF_VENDOR_XDM, "XDM-Information", AVP_TYPE_GROUPED},
    [RF_XDM_EVENT] = {2, CHARGING_RF_VENDOR_XDM, "XDM-Event", AVP_TYPE_OCTETSTRING},
    [RF_XDM_SERVED_USER] = {3, CHARGING_RF_VENDOR_XDM, "XDM-Served-User", AVP_TYPE_OCTETSTRING},
    [RF_XDM_AUID] = {4, CHARGING_RF_VENDOR_XDM, "XDM-AUID", AVP_TYPE_OCTETSTRING},
    [RF_XDM_DOCUMENT] = {5, CHARGING_RF_VENDOR_XDM, "XDM-Document", AVP_TYPE_OCTETSTRING},
    [RF_XDM_OPERATION] = {6, CHARGING_RF_VENDOR_XDM, "XDM-Operation", AVP_TYPE_OCTETSTRING},
    [RF_XDM_RESULT] = {7, CHARGING_RF_VENDOR_XDM, "XDM-Result-Code", AVP_TYPE_UNSIGNED32},
    [RF_XDM_BYTES_IN] = {8, CHARGING_RF_VENDOR_XDM, "XDM-Bytes-In", AVP_TYPE_UNSIGNED64},
    [RF_XDM_BYTES_OUT] = {9, CHARGING_RF_VENDOR_XDM, "XDM-Bytes-Out", AVP_TYPE_UNSIGNED64},
    [RF_XDM_NODE] = {10, CHARGING_RF_VENDOR_XDM, "XDM-Serving-Node", AVP_TYPE_OCTETSTRING},
    [RF_XDM_CORRELATION_ID] = {11, CHARGING_RF_VENDOR_XDM, "XDM-Correlation-Id",
                               AVP_TYPE_OCTETSTRING},
    [RF_XDM_SEQUENCE] = {12, CHARGING_RF_VENDOR_XDM, "XDM-Record-Sequence", AVP_TYPE_UNSIGNED64},
    [RF_XDM_REQUEST_TIME] = {13, CHARGING_RF_VENDOR_XDM, "XDM-Request-Time-Ms",
                             AVP_TYPE_UNSIGNED64},
    [RF_XDM_EVENT_TIME] = {14, CHARGING_RF_VENDOR_XDM, "XDM-Event-Time-Ms", AVP_TYPE_UNSIGNED64},
};

struct charging_rf {
    struct charging_rf_config cfg;
    char *dest_realm, *dest_host, *service_ctx;
    struct dict_object *acr;
    struct dict_object *avp[RF_AVP_COUNT];
};

/* One request in flight: the answer callback and the waiting thread share it; the last of the
 * two to let go frees it (libfdcore calls exactly one of the answer and expiry callbacks). */
struct charging_rf_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;
    bool done;
    bool expired;
    uint32_t result;
};

static void charging_rf_wait_put(struct charging_rf_wait *w)
{
    pthread_mutex_lock(&w->mu);
    bool last = --w->refs == 0;
    pthread_mutex_unlock(&w->mu);
    if (last) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        free(w);
    }
}

/* Set once freeDiameter runs: from then on its error lines (e.g. a dump of every request it
 * could not route while the charging function is down) are debug lines, as the delivery thread
 * logs the outcome of each record itself. Before, they explain a configuration it refused. */
static atomic_bool charging_rf_started;

/* freeDiameter's own log lines go to ours. */
__attribute__((format(printf, 2, 0))) static void charging_rf_log(int level, const char *format,
                                                                  va_list args)
{
    char line[512];
    vsnprintf(line, sizeof line, format, args);
    if (level >= FD_LOG_ERROR && !atomic_load(&charging_rf_started))
        log_warn("charging: freeDiameter: %s", line);
    else
        log_debug("charging: freeDiameter: %s", line);
}

static struct dict_object *charging_rf_vendor(vendor_id_t id, const char *name)
{
    struct dict_object *v = NULL;
    if (fd_dict_search(fd_g_config->cnf_dict, DICT_VENDOR, VENDOR_BY_ID, &id, &v, ENOENT) == 0)
        return v;
    struct dict_vendor_data d = {id, (char *)name};
    return fd_dict_new(fd_g_config->cnf_dict, DICT_VENDOR, &d, NULL, &v) == 0 ? v : NULL;
}

static int charging_rf_dict(struct charging_rf *rf)
{
    struct dictionary *dict = fd_g_config->cnf_dict;
    if (fd_dict_search(dict, DICT_COMMAND, CMD_BY_NAME, "Accounting-Request", &rf->acr, ENOENT) !=
        0)
        return -1;
    if (!charging_rf_vendor(CHARGING_RF_VENDOR_3GPP, "3GPP") ||
        !charging_rf_vendor(CHARGING_RF_VENDOR_XDM, "XDM (RFC 5612 documentation number)"))
        return -1;
    for (int i = 0; i < RF_AVP_COUNT; i++) {
        struct dict_avp_request req = {.avp_vendor = charging_rf_avps[i].vendor,
                                       .avp_code = charging_rf_avps[i].code};
        if (fd_dict_search(dict, DICT_AVP, AVP_BY_CODE_AND_VENDOR, &req, &rf->avp[i], ENOENT) == 0)
            continue;
        bool vendor = charging_rf_avps[i].vendor != 0;
        struct dict_avp_data d = {
            .avp_code = charging_rf_avps[i].code,
            .avp_vendor = charging_rf_avps[i].vendor,
            .avp_name = (char *)charging_rf_avps[i].name,
            .avp_flag_mask = AVP_FLAG_VENDOR | AVP_FLAG_MANDATORY,
            .avp_flag_val = vendor ? AVP_FLAG_VENDOR : AVP_FLAG_MANDATORY,
            .avp_basetype = charging_rf_avps[i].type,
        };
        if (fd_dict_new(dict, DICT_AVP, &d, NULL, &rf->avp[i]) != 0) {
            log_error("charging: cannot define the AVP %s", charging_rf_avps[i].name);
            return -1;
        }
    }
    /* The base accounting application, advertised in the CER so that requests are routed. */
    application_id_t acct = CHARGING_RF_ACCT_APP;
    struct dict_object *app = NULL;
    if (fd_dict_search(dict, DICT_APPLICATION, APPLICATION_BY_ID, &acct, &app, ENOENT) != 0) {
        struct dict_application_data d = {acct, (char *)"Diameter Base Accounting"};
        if (fd_dict_new(dict, DICT_APPLICATION, &d, NULL, &app) != 0)
            return -1;
    }
    return fd_disp_app_support(app, NULL, 0, 1) == 0 ? 0 : -1;
}

int charging_rf_open(const struct charging_rf_config *cfg, struct charging_rf **out)
{
    *out = NULL;
    struct charging_rf *rf = calloc(1, sizeof *rf);
    if (!rf)
        return -1;
    rf->cfg = *cfg;
    rf->dest_realm = strdup(cfg->dest_realm);
    rf->dest_host = cfg->dest_host && cfg->dest_host[0] ? strdup(cfg->dest_host) : NULL;
    rf->service_ctx = strdup(cfg->service_ctx);
    fd_g_debug_lvl = FD_LOG_ERROR;
    fd_log_handler_register(charging_rf_log);
    if (fd_core_initialize() != 0) {
        log_error("charging: freeDiameter does not initialise");
        free(rf);
        return -1;
    }
    if (fd_core_parseconf(cfg->conf_file) != 0) {
        log_error("charging: rf_config %s: freeDiameter refuses this configuration (see the lines "
                  "above)",
                  cfg->conf_file);
        goto fail;
    }
    /* The XDMS only connects out to the charging function (its ConnectPeer). libfdcore binds its
     * server sockets to every address of the host when ListenOn names only loopback addresses,
     * so no port at all is the only way not to open a Diameter server behind the operator's
     * back: Port = 0 and SecPort = 0 open none. */
    if (fd_g_config->cnf_port || fd_g_config->cnf_port_tls || fd_g_config->cnf_port_3436) {
        log_error("charging: rf_config %s: the XDMS only connects to the charging function and "
                  "must not listen for Diameter peers; add the lines \"Port = 0;\" and "
                  "\"SecPort = 0;\" (and no RFC 3436 port) to %s",
                  cfg->conf_file, cfg->conf_file);
        goto fail;
    }
    if (charging_rf_dict(rf) != 0) {
        log_error("charging: cannot prepare the Rf dictionary");
        goto fail;
    }
    if (fd_core_start() != 0 || fd_core_waitstartcomplete() != 0) {
        log_error("charging: freeDiameter does not start (rf_config %s)", cfg->conf_file);
        goto fail;
    }
    atomic_store(&charging_rf_started, true);
    rf->cfg.conf_file = NULL;
    rf->cfg.dest_realm = rf->dest_realm;
    rf->cfg.dest_host = rf->dest_host;
    rf->cfg.service_ctx = rf->service_ctx;
    *out = rf;
    return 0;
fail:
    fd_core_shutdown();
    fd_core_wait_shutdown_complete();
    free(rf->dest_realm);
    free(rf->dest_host);
    free(rf->service_ctx);
    free(rf);
    return -1;
}

/* At the process's end, after the delivery thread has stopped. libfdcore is not shut down:
 * in 1.2.1 its shutdown can abort the process (an assertion in fd_fifo_del() when a thread it
 * signals is slow to leave a queue, seen on a loaded machine), which would turn a clean SIGTERM
 * into a crash. Nothing is lost by leaving it running until exit: every record not yet answered
 * is still in the store's queue. The connection ends without Disconnect-Peer-Request (RFC 6733
 * §5.4); the charging function sees the transport close. */
void charging_rf_close(struct charging_rf *rf)
{
    if (!rf)
        return;
    free(rf->dest_realm);
    free(rf->dest_host);
    free(rf->service_ctx);
    free(rf);
}

/* Adds an AVP with value v under parent (a message or a grouped AVP). */
static int charging_rf_add(msg_or_avp *parent, struct dict_object *model, union avp_value *v,
                           struct avp **out)
{
    struct avp *a = NULL;
    if (fd_msg_avp_new(model, 0, &a) != 0)
        return -1;
    if (v && fd_msg_avp_setvalue(a, v) != 0) {
        fd_msg_free(a);
        return -1;
    }
    if (fd_msg_avp_add(parent, MSG_BRW_LAST_CHILD, a) != 0) {
        fd_msg_free(a);
        return -1;
    }
    if (out)
        *out = a;
    return 0;
}

static int charging_rf_str(msg_or_avp *parent, struct dict_object *model, const char *s)
{
    union avp_value v = {.os = {(uint8_t *)s, strlen(s)}};
    return charging_rf_add(parent, model, &v, NULL);
}

static int charging_rf_u32(msg_or_avp *parent, struct dict_object *model, uint32_t n)
{
    union avp_value v = {.u32 = n};
    return charging_rf_add(parent, model, &v, NULL);
}

static int charging_rf_u64(msg_or_avp *parent, struct dict_object *model, uint64_t n)
{
    union avp_value v = {.u64 = n};
    return charging_rf_add(parent, model, &v, NULL);
}

static void charging_rf_answer(void *data, struct msg **answer)
{
    struct charging_rf_wait *w = data;
    uint32_t code = 0;
    struct dict_object *rc_model = NULL;
    avp_code_t rc_code = 268;
    struct avp *a = NULL;
    struct avp_hdr *h = NULL;
    if (fd_dict_search(fd_g_config->cnf_dict, DICT_AVP, AVP_BY_CODE, &rc_code, &rc_model, ENOENT) ==
            0 &&
        fd_msg_search_avp(*answer, rc_model, &a) == 0 && a && fd_msg_avp_hdr(a, &h) == 0 &&
        h->avp_value)
        code = h->avp_value->u32;
    fd_msg_free(*answer);
    *answer = NULL;
    pthread_mutex_lock(&w->mu);
    w->result = code;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    charging_rf_wait_put(w);
}

static void charging_rf_expired(void *data, DiamId_t sentto, size_t len, struct msg **req)
{
    struct charging_rf_wait *w = data;
    pthread_mutex_lock(&w->mu);
    w->expired = true;
    w->done = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    charging_rf_wait_put(w); /* libfdcore frees the request */
}

/* The ACR of one record. The Session-Id is made from the record's queue number (events) or its
 * subscription (START/INTERIM/STOP), so that a resend after a restart carries the same
 * Session-Id and Accounting-Record-Number and the charging function drops the duplicate
 * (RFC 6733 §9.8.3). */
static struct msg *charging_rf_request(struct charging_rf *rf, const struct charging_record *r,
                                       uint64_t seq)
{
    struct msg *m = NULL;
    if (fd_msg_new(rf->acr, MSGFL_ALLOC_ETEID, &m) != 0)
        return NULL;
    struct msg_hdr *hdr = NULL;
    fd_msg_hdr(m, &hdr);
    hdr->msg_appl = CHARGING_RF_ACCT_APP;
    /* RFC 6733 §8.8: <DiameterIdentity>;<high 32 bits>;<low 32 bits>[;<optional value>]. */
    char sid[512];
    unsigned type = charging_record_type(r->event);
    if (type == 1)
        snprintf(sid, sizeof sid, "%.*s;%" PRIu32 ";%" PRIu32 ";xdm-%s",
                 (int)fd_g_config->cnf_diamid_len, fd_g_config->cnf_diamid, (uint32_t)(seq >> 32),
                 (uint32_t)seq, r->node);
    else
        snprintf(sid, sizeof sid, "%.*s;0;0;xdm-sub-%s", (int)fd_g_config->cnf_diamid_len,
                 fd_g_config->cnf_diamid, r->session);
    union avp_value v = {.os = {(uint8_t *)sid, strlen(sid)}};
    struct avp *a = NULL;
    int rc = fd_msg_avp_new(rf->avp[RF_SESSION_ID], 0, &a);
    if (rc == 0 && (rc = fd_msg_avp_setvalue(a, &v)) == 0)
        rc = fd_msg_avp_add(m, MSG_BRW_FIRST_CHILD, a);
    else if (a)
        fd_msg_free(a);
    if (rc == 0)
        rc = fd_msg_add_origin(m, 0);
    rc |= charging_rf_str(m, rf->avp[RF_DEST_REALM], rf->dest_realm);
    if (rf->dest_host)
        rc |= charging_rf_str(m, rf->avp[RF_DEST_HOST], rf->dest_host);
    rc |= charging_rf_u32(m, rf->avp[RF_RECORD_TYPE], type);
    rc |= charging_rf_u32(m, rf->avp[RF_RECORD_NUMBER], r->record_number);
    rc |= charging_rf_u32(m, rf->avp[RF_ACCT_APP_ID], CHARGING_RF_ACCT_APP);
    if (r->user && r->user[0])
        rc |= charging_rf_str(m, rf->avp[RF_USER_NAME], r->user);
    /* Time (RFC 6733 §4.3.1): seconds since 1900 (NTP), four bytes in network order. */
    uint32_t ntp = (uint32_t)(r->time_ms / 1000 + 2208988800LL);
    uint8_t ts[4] = {(uint8_t)(ntp >> 24), (uint8_t)(ntp >> 16), (uint8_t)(ntp >> 8), (uint8_t)ntp};
    union avp_value tv = {.os = {ts, sizeof ts}};
    rc |= charging_rf_add(m, rf->avp[RF_EVENT_TIMESTAMP], &tv, NULL);
    rc |= charging_rf_str(m, rf->avp[RF_SERVICE_CONTEXT_ID], rf->service_ctx);
    struct avp *si = NULL, *xi = NULL;
    rc |= charging_rf_add(m, rf->avp[RF_SERVICE_INFORMATION], NULL, &si);
    if (rc == 0)
        rc |= charging_rf_add(si, rf->avp[RF_XDM_INFORMATION], NULL, &xi);
    if (rc == 0) {
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_EVENT], charging_event_name(r->event));
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_SERVED_USER], r->user);
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_AUID], r->auid);
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_DOCUMENT], r->document);
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_OPERATION], r->operation);
        rc |= charging_rf_u32(xi, rf->avp[RF_XDM_RESULT], r->result);
        rc |= charging_rf_u64(xi, rf->avp[RF_XDM_BYTES_IN], r->bytes_in);
        rc |= charging_rf_u64(xi, rf->avp[RF_XDM_BYTES_OUT], r->bytes_out);
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_NODE], r->node);
        rc |= charging_rf_str(xi, rf->avp[RF_XDM_CORRELATION_ID], r->correlation);
        rc |= charging_rf_u64(xi, rf->avp[RF_XDM_SEQUENCE], seq);
        rc |= charging_rf_u64(xi, rf->avp[RF_XDM_REQUEST_TIME], (uint64_t)r->start_ms);
        rc |= charging_rf_u64(xi, rf->avp[RF_XDM_EVENT_TIME], (uint64_t)r->time_ms);
    }
    if (rc != 0) {
        fd_msg_free(m);
        return NULL;
    }
    return m;
}

int charging_rf_send(struct charging_rf *rf, const struct charging_record *r, uint64_t seq,
                     uint32_t *permanent, char *why, size_t whylen)
{
    *permanent = 0;
    struct msg *m = charging_rf_request(rf, r, seq);
    if (!m) {
        snprintf(why, whylen, "cannot build the Accounting-Request");
        return -1;
    }
    struct charging_rf_wait *w = calloc(1, sizeof *w);
    if (!w) {
        fd_msg_free(m);
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->refs = 2;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += rf->cfg.answer_timeout_ms / 1000;
    until.tv_nsec += (long)(rf->cfg.answer_timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    if (fd_msg_send_timeout(&m, charging_rf_answer, w, charging_rf_expired, &until) != 0) {
        if (m)
            fd_msg_free(m);
        w->refs = 1;
        charging_rf_wait_put(w);
        snprintf(why, whylen, "freeDiameter did not take the request");
        return -1;
    }
    /* libfdcore calls one of the callbacks by the timeout; the extra seconds only guard
     * against a callback that never comes. */
    struct timespec guard = until;
    guard.tv_sec += 2;
    pthread_mutex_lock(&w->mu);
    while (!w->done)
        if (pthread_cond_timedwait(&w->cv, &w->mu, &guard) == ETIMEDOUT)
            break;
    bool done = w->done, expired = w->expired;
    uint32_t result = w->result;
    pthread_mutex_unlock(&w->mu);
    charging_rf_wait_put(w);
    if (!done || expired) {
        snprintf(why, whylen, "no Accounting-Answer within %u ms", rf->cfg.answer_timeout_ms);
        return -1;
    }
    if (result >= 5000 && result <= 5999) {
        /* RFC 6733 §7.1.5: a permanent failure; the same request would fail again. */
        snprintf(why, whylen,
                 "Accounting-Answer with Result-Code %" PRIu32
                 " (a permanent failure, RFC 6733 §7.1.5)",
                 result);
        *permanent = result;
        return -1;
    }
    if (result != CHARGING_RF_SUCCESS) {
        snprintf(why, whylen, "Accounting-Answer with Result-Code %" PRIu32 "%s", result,
                 result == 3002 ? " (DIAMETER_UNABLE_TO_DELIVER: no connection to the charging "
                                  "function)"
                                : "");
        return -1;
    }
    return 0;
}
