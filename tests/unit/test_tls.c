/* Unit suite for TLS on both sides of the proxy: common/httpd.c (cipher suite code of a request,
 * verified client certificates), aggproxy/forward.c (HTTPS upstreams with a client certificate)
 * and the proxy's GBA Digest over HTTPS, whose NAF_Id carries the negotiated suite (TS 33.220
 * Annex H.3). Certificates are made here with OpenSSL into a temporary directory. */
#include <curl/curl.h>
#include <ftw.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "digest.h"
#include "forward.h"
#include "gba.h"
#include "httpd.h"
#include "log.h"
#include "proxy.h"
#include "route.h"
#include "store.h"
#include "users.h"
#include "xdoc.h"
#include "unit.h"

static char dir[64];

static void path_of(const char *name, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", dir, name);
}

/* ---- Certificates ------------------------------------------------------------------------- */

struct cred {
    EVP_PKEY *key;
    X509 *cert;
};

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return -1;
    int rc = X509_add_ext(cert, ext, -1) ? 0 : -1;
    X509_EXTENSION_free(ext);
    return rc;
}

/* A P-256 key and a certificate for subject (O, CN), signed by issuer (self-signed when NULL),
 * valid from now + from_s to now + to_s seconds. */
static struct cred make_cred(const char *o, const char *cn, const struct cred *issuer, bool ca,
                             const char *san, long from_s, long to_s, long serial)
{
    struct cred c = {EVP_EC_gen("P-256"), X509_new()};
    X509 *x = c.cert;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_set_pubkey(x, c.key);
    X509_NAME *name = X509_get_subject_name(x);
    if (o)
        X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)o, -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509 *iss = issuer ? issuer->cert : x;
    X509_set_issuer_name(x, X509_get_subject_name(iss));
    add_ext(x, iss, NID_basic_constraints, ca ? "critical,CA:TRUE" : "CA:FALSE");
    if (ca)
        add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    if (san)
        add_ext(x, iss, NID_subject_alt_name, san);
    X509_sign(x, issuer ? issuer->key : c.key, EVP_sha256());
    return c;
}

static void save_cred(const struct cred *c, const char *name)
{
    char p[128];
    snprintf(p, sizeof p, "%s/%s.pem", dir, name);
    FILE *f = fopen(p, "w");
    PEM_write_X509(f, c->cert);
    fclose(f);
    snprintf(p, sizeof p, "%s/%s.key", dir, name);
    f = fopen(p, "w");
    PEM_write_PrivateKey(f, c->key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
}

static void free_cred(struct cred *c)
{
    X509_free(c->cert);
    EVP_PKEY_free(c->key);
}

static char proxy_fp[65]; /* SHA-256 of the proxy client certificate, hex */

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int certs_init(void)
{
    snprintf(dir, sizeof dir, "/tmp/xdm-test-tls-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    struct cred ca = make_cred(NULL, "Test CA", NULL, true, NULL, -60, 86400, 1);
    struct cred rogue = make_cred(NULL, "Rogue CA", NULL, true, NULL, -60, 86400, 2);
    struct cred server =
        make_cred(NULL, "xcap.example.com", &ca, false,
                  "IP:127.0.0.1,DNS:xcap.example.com,DNS:localhost", -60, 86400, 3);
    struct cred client = make_cred("Example", "aggproxy", &ca, false, NULL, -60, 86400, 4);
    struct cred fake = make_cred("Example", "aggproxy", &rogue, false, NULL, -60, 86400, 5);
    struct cred old = make_cred("Example", "aggproxy", &ca, false, NULL, -7200, -3600, 6);
    /* A server certificate of another CA: what a rotation to it shows to clients. */
    struct cred other = make_cred(NULL, "xcap.example.com", &rogue, false,
                                  "IP:127.0.0.1,DNS:xcap.example.com", -60, 86400, 7);
    save_cred(&ca, "ca");
    save_cred(&rogue, "rogue-ca");
    save_cred(&server, "server");
    save_cred(&client, "client");
    save_cred(&fake, "fake");
    save_cred(&old, "expired");
    save_cred(&other, "server-other");
    unsigned char md[32];
    unsigned int mdlen = 0;
    X509_digest(client.cert, EVP_sha256(), md, &mdlen);
    for (unsigned i = 0; i < mdlen && i < 32; i++)
        sprintf(proxy_fp + 2 * i, "%02x", md[i]);
    struct cred *all[] = {&ca, &rogue, &server, &client, &fake, &old, &other};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        free_cred(all[i]);
    return mdlen == 32 ? 0 : -1;
}

static int certs_clean(void)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/* ---- A TLS server that tells what it sees ------------------------------------------------- */

static void tell_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct http_tls_peer p;
    int rc = http_request_tls_peer(req, &p);
    resp->status = 200;
    http_response_headerf(resp, "X-Cipher", "%04x",
                          (unsigned)(http_request_tls_cipher(req) & 0xffff));
    http_response_headerf(resp, "X-Cipher-Raw", "%d", http_request_tls_cipher(req));
    http_response_headerf(resp, "X-Peer", "%d %s %s", rc, rc == 0 ? p.subject : "-",
                          rc == 0 ? p.sha256 : "-");
    http_response_body(resp, "ok", 2);
}

static struct httpd *start_tls(bool client_ca, unsigned *port)
{
    char cert[128], key[128], ca[128];
    path_of("server.pem", cert, sizeof cert);
    path_of("server.key", key, sizeof key);
    path_of("ca.pem", ca, sizeof ca);
    struct httpd_config cfg = {.host = "127.0.0.1",
                               .port = 0,
                               .threads = 2,
                               .max_body = 1 << 16,
                               .tls_cert = cert,
                               .tls_key = key,
                               .tls_client_ca = client_ca ? ca : NULL};
    struct httpd *d = NULL;
    if (httpd_start(&cfg, tell_handler, NULL, &d) < 0)
        return NULL;
    *port = httpd_port(d);
    return d;
}

struct answer {
    long status;
    CURLcode rc;
    struct buf headers;
};

static size_t collect(char *p, size_t s, size_t n, void *cls)
{
    return buf_append(cls, p, s * n) == 0 ? s * n : 0;
}

/* GET https://127.0.0.1:port/ with optional TLS version/suite and client certificate. */
static void tls_get(unsigned port, const char *tls13_suite, const char *tls12_suite,
                    const char *client, struct answer *a)
{
    CURL *h = curl_easy_init();
    char url[64], ca[128], cert[128], key[128];
    snprintf(url, sizeof url, "https://127.0.0.1:%u/", port);
    path_of("ca.pem", ca, sizeof ca);
    buf_reset(&a->headers);
    a->status = 0;
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy of the environment */
    curl_easy_setopt(h, CURLOPT_CAINFO, ca);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &a->headers);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
    struct buf body;
    buf_init(&body, 4096);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
    if (tls13_suite) {
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)(CURL_SSLVERSION_TLSv1_3));
        curl_easy_setopt(h, CURLOPT_TLS13_CIPHERS, tls13_suite);
    }
    if (tls12_suite) {
        curl_easy_setopt(h, CURLOPT_SSLVERSION,
                         (long)(CURL_SSLVERSION_TLSv1_2 | CURL_SSLVERSION_MAX_TLSv1_2));
        curl_easy_setopt(h, CURLOPT_SSL_CIPHER_LIST, tls12_suite);
    }
    if (client) {
        snprintf(cert, sizeof cert, "%s/%s.pem", dir, client);
        snprintf(key, sizeof key, "%s/%s.key", dir, client);
        curl_easy_setopt(h, CURLOPT_SSLCERT, cert);
        curl_easy_setopt(h, CURLOPT_SSLKEY, key);
    }
    a->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &a->status);
    buf_release(&body);
    curl_easy_cleanup(h);
}

static void test_cipher_code(void)
{
    unsigned port;
    struct httpd *d = start_tls(false, &port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct answer a;
    buf_init(&a.headers, 1 << 16);
    /* RFC 8446 B.4 and RFC 5289 codes */
    tls_get(port, "TLS_AES_128_GCM_SHA256", NULL, NULL, &a);
    CU_ASSERT_EQUAL(a.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Cipher: 1301"));
    tls_get(port, "TLS_CHACHA20_POLY1305_SHA256", NULL, NULL, &a);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Cipher: 1303"));
    tls_get(port, NULL, "ECDHE-ECDSA-AES128-GCM-SHA256", NULL, &a);
    CU_ASSERT_EQUAL(a.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Cipher: c02b"));
    tls_get(port, NULL, "ECDHE-ECDSA-AES256-GCM-SHA384", NULL, &a);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Cipher: c02c"));
    /* no client CA: certificates are not even asked for */
    tls_get(port, NULL, NULL, "client", &a);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Peer: 1 - -"));
    httpd_stop(d);

    /* plain HTTP: no suite */
    struct httpd_config cfg = {.host = "127.0.0.1", .port = 0, .threads = 1, .max_body = 1024};
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, tell_handler, NULL, &d), 0);
    CURL *h = curl_easy_init();
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%u/", httpd_port(d));
    buf_reset(&a.headers);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy of the environment */
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, collect);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &a.headers);
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    CU_ASSERT_EQUAL(curl_easy_perform(h), CURLE_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Cipher-Raw: -1"));
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Peer: 1 - -"));
    curl_easy_cleanup(h);
    httpd_stop(d);
    buf_release(&a.headers);
}

static void test_client_certificates(void)
{
    unsigned port;
    struct httpd *d = start_tls(true, &port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    struct answer a;
    buf_init(&a.headers, 1 << 16);
    tls_get(port, NULL, NULL, NULL, &a);
    CU_ASSERT_EQUAL(a.status, 200);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Peer: 1 - -"));
    tls_get(port, NULL, NULL, "client", &a);
    CU_ASSERT_EQUAL(a.status, 200);
    char want[256];
    snprintf(want, sizeof want, "X-Peer: 0 CN=aggproxy,O=Example %s", proxy_fp);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, want));
    /* same subject from another CA, or expired: not verified (or no handshake at all) */
    tls_get(port, NULL, NULL, "fake", &a);
    CU_ASSERT_TRUE(a.rc != CURLE_OK || strstr(a.headers.data, "X-Peer: -1 - -") != NULL);
    tls_get(port, NULL, NULL, "expired", &a);
    CU_ASSERT_TRUE(a.rc != CURLE_OK || strstr(a.headers.data, "X-Peer: -1 - -") != NULL);
    tls_get(port, "TLS_AES_256_GCM_SHA384", NULL, "client", &a);
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, want));
    CU_ASSERT_PTR_NOT_NULL(strstr(a.headers.data, "X-Cipher: 1302"));
    httpd_stop(d);
    buf_release(&a.headers);
}

static void test_forward_https(void)
{
    unsigned port;
    struct httpd *d = start_tls(true, &port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    char base[64], ca[128], cert[128], key[128], rogue[128];
    snprintf(base, sizeof base, "https://127.0.0.1:%u", port);
    path_of("ca.pem", ca, sizeof ca);
    path_of("client.pem", cert, sizeof cert);
    path_of("client.key", key, sizeof key);
    path_of("rogue-ca.pem", rogue, sizeof rogue);
    struct forward_options with = {.ca_file = ca, .cert_file = cert, .key_file = key};
    struct forward_options without = {.ca_file = ca};
    struct forward_options wrong_ca = {.ca_file = rogue, .cert_file = cert, .key_file = key};
    struct forward_options no_key = {.ca_file = ca, .cert_file = cert};
    CU_ASSERT_PTR_NULL(forward_new(&no_key));
    struct forward_request rq = {.method = "GET", .base_url = base, .target = "/x"};
    struct forward_response r;
    forward_response_init(&r);

    struct forward *fw = forward_new(&with);
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_EQUAL(r.status, 200);
    CU_ASSERT_STRING_EQUAL(r.body.data ? r.body.data : "", "ok");
    forward_free(fw);

    fw = forward_new(&without);
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
    forward_free(fw);

    fw = forward_new(&wrong_ca);
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_UPSTREAM);
    CU_ASSERT_PTR_NOT_NULL(r.error);
    forward_free(fw);
    forward_response_release(&r);
    httpd_stop(d);
}

/* The peer as the handler saw it, through forward_do: the X-Peer header is not relayed, so ask
 * a handler that writes it into the body. */
static void peer_body_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    struct http_tls_peer p;
    int rc = http_request_tls_peer(req, &p);
    char b[HTTP_TLS_SUBJECT_MAX + 16];
    snprintf(b, sizeof b, "%d %s", rc, rc == 0 ? p.subject : "-");
    resp->status = 200;
    http_response_body(resp, b, strlen(b));
}

static void test_forward_client_identity(void)
{
    char cert[128], key[128], ca[128], ccert[128], ckey[128];
    path_of("server.pem", cert, sizeof cert);
    path_of("server.key", key, sizeof key);
    path_of("ca.pem", ca, sizeof ca);
    path_of("client.pem", ccert, sizeof ccert);
    path_of("client.key", ckey, sizeof ckey);
    struct httpd_config cfg = {.host = "127.0.0.1",
                               .port = 0,
                               .threads = 1,
                               .max_body = 1 << 16,
                               .tls_cert = cert,
                               .tls_key = key,
                               .tls_client_ca = ca};
    struct httpd *d;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, peer_body_handler, NULL, &d), 0);
    char base[64];
    snprintf(base, sizeof base, "https://localhost:%u", httpd_port(d));
    struct forward_options with = {.ca_file = ca, .cert_file = ccert, .key_file = ckey};
    struct forward_options without = {.ca_file = ca};
    struct forward_request rq = {.method = "GET", .base_url = base, .target = "/x"};
    struct forward_response r;
    forward_response_init(&r);
    struct forward *fw = forward_new(&with);
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.body.data ? r.body.data : "", "0 CN=aggproxy,O=Example");
    /* the connection is kept: a second request needs no new handshake, the peer is the same */
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.body.data ? r.body.data : "", "0 CN=aggproxy,O=Example");
    forward_free(fw);
    fw = forward_new(&without);
    CU_ASSERT_EQUAL(forward_do(fw, &rq, &r), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(r.body.data ? r.body.data : "", "1 -");
    forward_free(fw);
    forward_response_release(&r);
    httpd_stop(d);
}

/* ---- GBA Digest over HTTPS ---------------------------------------------------------------- */

static void echo_handler(void *cls, const struct http_request *req, struct http_response *resp)
{
    const char *id = http_request_header(req, "X-3GPP-Asserted-Identity");
    resp->status = 200;
    http_response_body(resp, id ? id : "-", strlen(id ? id : "-"));
}

#define BTID "ICEiIyQlJicoKSorLC0uLw==@bsf.example.com"

static void test_gaa_over_tls(void)
{
    char sdir[96], cert[128], key[128], ca[128], err[256];
    snprintf(sdir, sizeof sdir, "%s/store", dir);
    path_of("server.pem", cert, sizeof cert);
    path_of("server.key", key, sizeof key);
    path_of("ca.pem", ca, sizeof ca);
    struct store *st;
    CU_ASSERT_EQUAL_FATAL(users_open(sdir, &st), USERS_OK);
    const char *impus[] = {"sip:ue@example.com"};
    struct gba_record rec = {.btid = BTID,
                             .impi = "ue@ims.example.com",
                             .expires = (int64_t)time(NULL) + 600,
                             .impus = impus,
                             .n_impus = 1};
    for (int i = 0; i < 32; i++)
        rec.ks[i] = (unsigned char)(0xa0 + i);
    for (int i = 0; i < 16; i++)
        rec.rand[i] = (unsigned char)(0x20 + i);
    CU_ASSERT_EQUAL_FATAL(gba_add(st, &rec), GBA_OK);

    struct httpd_config ucfg = {.host = "127.0.0.1", .port = 0, .threads = 1, .max_body = 1024};
    struct httpd *up;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&ucfg, echo_handler, NULL, &up), 0);
    char upurl[64];
    snprintf(upurl, sizeof upurl, "http://127.0.0.1:%u", httpd_port(up));
    struct digest *dg = digest_new(NULL);
    struct route_table *rt = route_table_new(NULL, upurl, upurl, upurl, err, sizeof err);
    struct forward *fw = forward_new(NULL);
    struct gba_source src = {gba_store_fetch, st};
    const char *fqdns[] = {"xcap.example.com"};
    struct proxy_config pc = {.default_realm = "example.com",
                              .store = st,
                              .digest = dg,
                              .routes = rt,
                              .forward = fw,
                              .gba = &src,
                              .gaa_fqdns = fqdns,
                              .n_gaa_fqdns = 1};
    struct proxy *px = proxy_new(&pc);
    CU_ASSERT_PTR_NOT_NULL_FATAL(px);
    struct httpd_config cfg = {.host = "127.0.0.1",
                               .port = 0,
                               .threads = 2,
                               .max_body = 1 << 16,
                               .tls_cert = cert,
                               .tls_key = key};
    struct httpd *d;
    CU_ASSERT_EQUAL_FATAL(httpd_start(&cfg, proxy_handle, px, &d), 0);
    unsigned port = httpd_port(d);

    /* Passwords for three NAF_Ids: plain HTTP, and TLS 1.3 with AES-128-GCM (0x1301) */
    char pw_plain[GBA_PASSWORD_MAX], pw_1301[GBA_PASSWORD_MAX];
    unsigned char naf[GBA_NAF_ID_MAX], k[GBA_KEY_LEN];
    size_t nl, pl;
    gba_naf_id("xcap.example.com", -1, naf, &nl);
    gba_kdf(rec.ks, rec.rand, rec.impi, naf, nl, k);
    gba_password(k, GBA_PASSWORD_BASE64, pw_plain, &pl);
    gba_naf_id("xcap.example.com", 0x1301, naf, &nl);
    gba_kdf(rec.ks, rec.rand, rec.impi, naf, nl, k);
    gba_password(k, GBA_PASSWORD_BASE64, pw_1301, &pl);

    const char *pws[] = {pw_1301, pw_plain};
    long want[] = {200, 401};
    for (int i = 0; i < 2; i++) {
        CURL *h = curl_easy_init();
        char url[256], resolve[64];
        snprintf(url, sizeof url,
                 "https://xcap.example.com:%u/xcap-root/resource-lists/users/sip:ue@example.com/"
                 "index",
                 port);
        snprintf(resolve, sizeof resolve, "xcap.example.com:%u:127.0.0.1", port);
        struct curl_slist *rs = curl_slist_append(NULL, resolve);
        struct buf body;
        buf_init(&body, 4096);
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy of the environment */
        curl_easy_setopt(h, CURLOPT_PROXY, ""); /* never an http_proxy of the environment */
        curl_easy_setopt(h, CURLOPT_RESOLVE, rs);
        curl_easy_setopt(h, CURLOPT_CAINFO, ca);
        curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_3);
        curl_easy_setopt(h, CURLOPT_TLS13_CIPHERS, "TLS_AES_128_GCM_SHA256");
        curl_easy_setopt(h, CURLOPT_USERAGENT, "UE/1 3gpp-gba");
        curl_easy_setopt(h, CURLOPT_HTTPAUTH, (long)CURLAUTH_DIGEST);
        curl_easy_setopt(h, CURLOPT_USERNAME, BTID);
        curl_easy_setopt(h, CURLOPT_PASSWORD, pws[i]);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 5000L);
        long status = 0;
        CU_ASSERT_EQUAL(curl_easy_perform(h), CURLE_OK);
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        CU_ASSERT_EQUAL(status, want[i]);
        if (i == 0)
            CU_ASSERT_STRING_EQUAL(body.data ? body.data : "", "\"sip:ue@example.com\"");
        buf_release(&body);
        curl_slist_free_all(rs);
        curl_easy_cleanup(h);
    }
    httpd_stop(d);
    proxy_free(px);
    forward_free(fw);
    route_table_free(rt);
    digest_free(dg);
    httpd_stop(up);
    store_close(st);
}

static struct httpd_tls *load_pair(const char *cert, const char *key)
{
    char c[128], k[128];
    path_of(cert, c, sizeof c);
    path_of(key, k, sizeof k);
    return httpd_tls_load(c, k);
}

static void test_certificate_rotation(void)
{
    /* A pair is checked before it is used: the key must be the certificate's. */
    struct httpd_tls *t = load_pair("server.pem", "server.key");
    CU_ASSERT_PTR_NOT_NULL(t);
    httpd_tls_free(t);
    CU_ASSERT_PTR_NULL(load_pair("server.pem", "client.key"));
    CU_ASSERT_PTR_NULL(load_pair("server.key", "server.key"));
    CU_ASSERT_PTR_NULL(load_pair("server.pem", "missing.key"));

    unsigned port = 0;
    struct httpd *d = start_tls(false, &port);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    CU_ASSERT_TRUE(httpd_is_tls(d));
    struct answer a;
    buf_init(&a.headers, 1 << 16);
    tls_get(port, NULL, NULL, NULL, &a);
    CU_ASSERT_EQUAL(a.rc, CURLE_OK);
    /* The next handshake gets the new certificate: one of a CA the client does not trust. */
    t = load_pair("server-other.pem", "server-other.key");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    httpd_tls_set(d, t);
    tls_get(port, NULL, NULL, NULL, &a);
    CU_ASSERT_EQUAL(a.rc, CURLE_PEER_FAILED_VERIFICATION);
    /* And back. */
    t = load_pair("server.pem", "server.key");
    CU_ASSERT_PTR_NOT_NULL_FATAL(t);
    httpd_tls_set(d, t);
    tls_get(port, NULL, NULL, NULL, &a);
    CU_ASSERT_EQUAL(a.rc, CURLE_OK);
    CU_ASSERT_EQUAL(a.status, 200);
    buf_release(&a.headers);
    httpd_stop(d);
}

static CU_TestInfo tls_tests[] = {
    {"certificate checked, then rotated per handshake", test_certificate_rotation},
    {"cipher suite codes", test_cipher_code},
    {"client certificates", test_client_certificates},
    {"forwarding to HTTPS upstreams", test_forward_https},
    {"client certificate seen upstream", test_forward_client_identity},
    {"GBA Digest inside TLS (NAF_Id with the suite)", test_gaa_over_tls},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    log_init("test_tls", LOG_LEVEL_ERROR);
    xdoc_global_init();
    curl_global_init(CURL_GLOBAL_DEFAULT);
    CU_SuiteInfo suites[] = {
        {"tls", certs_init, certs_clean, NULL, NULL, tls_tests},
        CU_SUITE_INFO_NULL,
    };
    int rc = unit_run(suites);
    curl_global_cleanup();
    xdoc_global_cleanup();
    return rc;
}
