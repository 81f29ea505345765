/* TLS of the HTTP servers (httpd.h): certificates loaded once and swapped on a reload, the
 * certificate each handshake gets, and what a TLS request carries (cipher suite, client
 * certificate). GnuTLS is reached only here and through libmicrohttpd. */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "httpd.h"
#include "httpd_internal.h"
#include "log.h"

char *httpd_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        log_error("httpd: cannot read %s: %s", path, strerror(errno));
        return NULL;
    }
    struct buf b;
    buf_init(&b, 1 << 20);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (buf_append(&b, chunk, n) < 0) {
            fclose(f);
            buf_release(&b);
            log_error("httpd: %s is too large", path);
            return NULL;
        }
    }
    fclose(f);
    return buf_detach(&b, NULL);
}

/* A certificate chain and its key, as read from the files: immutable once made; shared by the
 * listener (current) and the handshakes that are copying it (refs). */
struct httpd_tls {
    unsigned refs; /* under httpd_tls_lock */
    gnutls_datum_t cert, key;
};

/* The TLS listeners of this process, for the certificate callback, which gets no closure of
 * its own (gnutls_certificate_retrieve_function3): the listener is found by the local port of
 * the handshake's socket. Also guards every httpd.tls and httpd_tls.refs. */
static pthread_mutex_t httpd_tls_lock = PTHREAD_MUTEX_INITIALIZER;
static struct httpd *httpd_tls_listeners[HTTPD_TLS_LISTENERS_MAX];

void httpd_tls_free(struct httpd_tls *t)
{
    if (!t)
        return;
    gnutls_free(t->cert.data);
    if (t->key.data)
        gnutls_memset(t->key.data, 0, t->key.size);
    gnutls_free(t->key.data);
    free(t);
}

/* Drops one reference under httpd_tls_lock; returns t when it was the last (free it unlocked). */
static struct httpd_tls *httpd_tls_unref_locked(struct httpd_tls *t)
{
    return t && --t->refs == 0 ? t : NULL;
}

/* A copy of t's chain (at most HTTPD_TLS_CHAIN_MAX certificates) and key in GnuTLS's own
 * allocations, as gnutls_certificate_retrieve_function3 hands them over. Returns 0, or a GnuTLS
 * error with nothing left allocated. */
static int httpd_tls_copy(const struct httpd_tls *t, gnutls_pcert_st **pcerts, unsigned *n,
                          gnutls_privkey_t *privkey)
{
    unsigned max = HTTPD_TLS_CHAIN_MAX;
    gnutls_pcert_st *pc = gnutls_malloc(max * sizeof *pc);
    if (!pc)
        return GNUTLS_E_MEMORY_ERROR;
    int rc = gnutls_pcert_list_import_x509_raw(pc, &max, &t->cert, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) {
        gnutls_free(pc);
        return rc;
    }
    gnutls_privkey_t key;
    if ((rc = gnutls_privkey_init(&key)) >= 0 &&
        (rc = gnutls_privkey_import_x509_raw(key, &t->key, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0)
        gnutls_privkey_deinit(key);
    if (rc < 0) {
        for (unsigned i = 0; i < max; i++)
            gnutls_pcert_deinit(&pc[i]);
        gnutls_free(pc);
        return rc;
    }
    *pcerts = pc;
    *n = max;
    *privkey = key;
    return 0;
}

struct httpd_tls *httpd_tls_load(const char *cert_file, const char *key_file)
{
    struct httpd_tls *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->refs = 1;
    int rc = gnutls_load_file(cert_file, &t->cert);
    if (rc < 0) {
        log_error("httpd: cannot read the certificate %s: %s", cert_file, gnutls_strerror(rc));
        httpd_tls_free(t);
        return NULL;
    }
    if ((rc = gnutls_load_file(key_file, &t->key)) < 0) {
        log_error("httpd: cannot read the key %s: %s", key_file, gnutls_strerror(rc));
        httpd_tls_free(t);
        return NULL;
    }
    /* The pair must load as a server's would: parseable, and the key the certificate's. */
    gnutls_certificate_credentials_t cred;
    if (gnutls_certificate_allocate_credentials(&cred) < 0) {
        httpd_tls_free(t);
        return NULL;
    }
    rc =
        gnutls_certificate_set_x509_key_mem2(cred, &t->cert, &t->key, GNUTLS_X509_FMT_PEM, NULL, 0);
    gnutls_certificate_free_credentials(cred);
    /* ... and as each handshake will copy it. */
    gnutls_pcert_st *pc;
    unsigned n;
    gnutls_privkey_t key;
    if (rc >= 0 && (rc = httpd_tls_copy(t, &pc, &n, &key)) >= 0) {
        for (unsigned i = 0; i < n; i++)
            gnutls_pcert_deinit(&pc[i]);
        gnutls_free(pc);
        gnutls_privkey_deinit(key);
    }
    if (rc < 0) {
        log_error("httpd: certificate %s with key %s: %s", cert_file, key_file,
                  gnutls_strerror(rc));
        httpd_tls_free(t);
        return NULL;
    }
    return t;
}

void httpd_tls_set(struct httpd *d, struct httpd_tls *t)
{
    pthread_mutex_lock(&httpd_tls_lock);
    struct httpd_tls *old = httpd_tls_unref_locked(d->tls);
    d->tls = t;
    pthread_mutex_unlock(&httpd_tls_lock);
    httpd_tls_free(old);
}

bool httpd_is_tls(const struct httpd *d)
{
    return d->is_tls;
}

/* Adds d to (or removes it from) the TLS listeners; adding fails (-1) when all
 * HTTPD_TLS_LISTENERS_MAX places are taken. */
int httpd_tls_register(struct httpd *d, bool add)
{
    int rc = add ? -1 : 0;
    pthread_mutex_lock(&httpd_tls_lock);
    for (size_t i = 0; i < HTTPD_TLS_LISTENERS_MAX; i++) {
        if (add ? !httpd_tls_listeners[i] : httpd_tls_listeners[i] == d) {
            httpd_tls_listeners[i] = add ? d : NULL;
            rc = 0;
            break;
        }
    }
    pthread_mutex_unlock(&httpd_tls_lock);
    return rc;
}

/* gnutls_certificate_retrieve_function3: a fresh copy of the listener's current certificate
 * chain and key for this handshake, which GnuTLS frees with the session
 * (GNUTLS_CERT_RETR_DEINIT_ALL), so a reload never frees what a session still uses. */
int httpd_tls_retrieve(gnutls_session_t session, const struct gnutls_cert_retr_st *info,
                       gnutls_pcert_st **certs, unsigned int *n_certs, gnutls_ocsp_data_st **ocsp,
                       unsigned int *n_ocsp, gnutls_privkey_t *privkey, unsigned int *flags)
{
    (void)info;
    *ocsp = NULL;
    *n_ocsp = 0;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    uint16_t port = 0;
    if (getsockname(gnutls_transport_get_int(session), (struct sockaddr *)&ss, &len) == 0)
        port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                              : ((struct sockaddr_in *)&ss)->sin_port);
    struct httpd_tls *t = NULL;
    pthread_mutex_lock(&httpd_tls_lock);
    for (size_t i = 0; i < HTTPD_TLS_LISTENERS_MAX && !t; i++) {
        struct httpd *d = httpd_tls_listeners[i];
        if (d && d->port == port && d->tls) {
            t = d->tls;
            t->refs++;
        }
    }
    pthread_mutex_unlock(&httpd_tls_lock);
    if (!t) {
        log_error("httpd: no certificate for a TLS handshake on port %u", port);
        return -1;
    }
    gnutls_pcert_st *pc;
    unsigned n;
    gnutls_privkey_t key;
    int rc = httpd_tls_copy(t, &pc, &n, &key);
    pthread_mutex_lock(&httpd_tls_lock);
    struct httpd_tls *last = httpd_tls_unref_locked(t);
    pthread_mutex_unlock(&httpd_tls_lock);
    httpd_tls_free(last);
    if (rc < 0) {
        log_error("httpd: TLS certificate for a handshake: %s", gnutls_strerror(rc));
        return -1;
    }
    *certs = pc;
    *n_certs = n;
    *privkey = key;
    *flags = GNUTLS_CERT_RETR_DEINIT_ALL;
    return 0;
}

static gnutls_session_t httpd_tls_session(const struct http_request *r)
{
    if (!r->d->is_tls)
        return NULL;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    return ci ? (gnutls_session_t)ci->tls_session : NULL;
}

int http_request_tls_cipher(const struct http_request *r)
{
    gnutls_session_t s = httpd_tls_session(r);
    if (!s)
        return -1;
    /* GnuTLS reports the session's suite as its parts; its suite table maps them to the IANA code
     * (TS 33.220 Annex H.3 puts that code into the Ua security protocol identifier). TLS 1.3
     * suites do not fix the key exchange, so only cipher and MAC identify them. */
    gnutls_protocol_t ver = gnutls_protocol_get_version(s);
    gnutls_kx_algorithm_t kx = gnutls_kx_get(s);
    gnutls_cipher_algorithm_t cipher = gnutls_cipher_get(s);
    gnutls_mac_algorithm_t mac = gnutls_mac_get(s);
    for (size_t i = 0;; i++) {
        unsigned char id[2];
        gnutls_kx_algorithm_t k;
        gnutls_cipher_algorithm_t c;
        gnutls_mac_algorithm_t m;
        gnutls_protocol_t minver;
        if (!gnutls_cipher_suite_info(i, id, &k, &c, &m, &minver))
            return -1;
        bool tls13_suite = minver == GNUTLS_TLS1_3;
        if ((ver == GNUTLS_TLS1_3) != tls13_suite)
            continue;
        if (c == cipher && m == mac && (tls13_suite || k == kx))
            return (id[0] << 8) | id[1];
    }
}

int http_request_tls_peer(const struct http_request *r, struct http_tls_peer *out)
{
    memset(out, 0, sizeof *out);
    gnutls_session_t s = httpd_tls_session(r);
    if (!s || !r->d->tls_ca_pem)
        return 1;
    unsigned n = 0;
    const gnutls_datum_t *chain = gnutls_certificate_get_peers(s, &n);
    if (!chain || n == 0)
        return 1;
    unsigned status = 0;
    int rc = gnutls_certificate_verify_peers2(s, &status);
    if (rc < 0 || status != 0) {
        gnutls_datum_t why = {NULL, 0};
        if (rc == 0 &&
            gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &why, 0) == 0) {
            log_debug("httpd: client certificate refused: %s", (const char *)why.data);
            gnutls_free(why.data);
        } else {
            log_debug("httpd: client certificate refused: %s", gnutls_strerror(rc));
        }
        return -1;
    }
    gnutls_x509_crt_t crt;
    if (gnutls_x509_crt_init(&crt) < 0)
        return -1;
    int result = -1;
    gnutls_datum_t dn = {NULL, 0};
    unsigned char fp[32];
    size_t fplen = sizeof fp;
    if (gnutls_x509_crt_import(crt, &chain[0], GNUTLS_X509_FMT_DER) == 0 &&
        gnutls_x509_crt_get_dn3(crt, &dn, 0) == 0 && dn.size < sizeof out->subject &&
        gnutls_fingerprint(GNUTLS_DIG_SHA256, &chain[0], fp, &fplen) == 0 && fplen == 32) {
        memcpy(out->subject, dn.data, dn.size);
        out->subject[dn.size] = '\0';
        for (size_t i = 0; i < 32; i++)
            snprintf(out->sha256 + 2 * i, 3, "%02x", fp[i]);
        result = 0;
    }
    gnutls_free(dn.data);
    gnutls_x509_crt_deinit(crt);
    return result;
}
