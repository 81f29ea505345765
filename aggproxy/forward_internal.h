/* What the two files of the forwarder share (forward.c: options, credentials, one exchange's
 * set-up and outcome, the blocking forward_do/forward_many; forward_async.c: the event loops of
 * forward_submit). forward_async.c calls forward.c, never the other way round. Not for use outside
 * aggproxy/forward*.c. */
#ifndef XDM_AGGPROXY_FORWARD_INTERNAL_H
#define XDM_AGGPROXY_FORWARD_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>

#include "buf.h"
#include "forward.h"

struct forward {
    pthread_key_t handle_key; /* this thread's CURL * */
    pthread_key_t multi_key;  /* this thread's CURLM * */
    unsigned timeout_ms;
    unsigned connect_timeout_ms;
    size_t max_response;
    char *ca_file;
    /* The client certificate and key as PEM text, replaced whole by forward_set_client_cert()
     * under cred_lock; each exchange hands curl a copy (CURL_BLOB_COPY). */
    pthread_mutex_t cred_lock;
    char *cert_pem, *key_pem;
    size_t cert_len, key_len;
};

/* One exchange on one curl easy handle: what the callbacks fill and what set-up allocated. */
struct forward_exchange {
    struct forward_response *resp;
    const struct forward_request *rq;
    bool oom;
    struct curl_slist *hdrs;
    struct buf url;
    char errbuf[CURL_ERROR_SIZE];
};

/* Sets every option of x (rq and resp set by the caller) on h, a fresh or reset handle; copies
 * what it needs of fw (the handle no longer refers to fw afterwards). Returns XCAP_OK, or the
 * forward_do() status with resp->error; either way forward_exchange_release() is due. */
enum xcap_status forward_exchange_setup(struct forward *fw, CURL *h, struct forward_exchange *x);
/* Frees what set-up allocated (the handle must no longer use it: removed, reset or cleaned). */
void forward_exchange_release(struct forward_exchange *x);
/* Maps the end of a transfer (curl's result rc) to the forward_do() status and resp->error. */
enum xcap_status forward_exchange_finish(CURL *h, struct forward_exchange *x, CURLcode rc);
/* Replaces resp->error with the formatted line. */
void forward_set_error(struct forward_response *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
