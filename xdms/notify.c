/* The xcap-diff notifier (RFC 5875 event package, RFC 5874 format, RFC 6665 subscriptions).
 * One thread with its own sofia-sip event loop; HTTP threads only append to the change
 * log (in their commit) and call notifier_wake(). Everything below the "SIP thread" line runs in
 * that thread only, so the subscription list needs no lock.
 *
 * nta (transactions and dialogs) is used rather than nua: the notifier answers SUBSCRIBE itself,
 * owns the NOTIFY sequencing (one NOTIFY in flight per dialog, later changes queued behind it in
 * commit order) and decides termination, which is simpler to get right without nua's event
 * server in between; it also lets a dialog be re-created from its saved state after a restart.
 *
 * The notifier's files, each calling only those after it: this one (the thread, its event loop
 * and the SIP stack, the public API), notify_subscribe.c (SUBSCRIBE admission),
 * notify_cluster.c (several instances over one store), notify_dialog.c (SUBSCRIBE checks,
 * RFC 6665 dialogs, their re-creation after a restart), notify_send.c (NOTIFY sending with its
 * hold-off), notify_subs.c (subscription lifetime and persistence), notify_diff.c (NOTIFY bodies),
 * notify_change.c (the change log queued on subscriptions), notify_watch.c (the watched set) and
 * notify_sip.c (small SIP decisions, clocks), with notify_expiry.c (the expiry heap) under
 * notify_subs.c; notify_internal.h holds what they share. */
#include "notify.h"
#include "notify_internal.h" /* before sofia-sip: it sets the magic types of its callbacks */

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <sofia-sip/msg_addr.h>
#include <sofia-sip/nta.h>
#include <sofia-sip/sip_header.h>
#include <sofia-sip/sip_status.h>
#include <sofia-sip/su.h>
#include <sofia-sip/su_tagarg.h>
#include <sofia-sip/su_wait.h>
#include <sofia-sip/tport_tag.h>
#include <sofia-sip/url.h>

#include "buf.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "xcap_uri.h"

#define NOTIFY_STOP_WAIT_MS 900
/* What sofia's transport reads at once from a connection. Over TCP it takes all the bytes
 * waiting (several pipelined messages: a server answering thousands of NOTIFYs, or sending
 * thousands of SUBSCRIBEs) and refuses the lot, closing the connection, when they exceed this,
 * so it covers a full Linux TCP receive buffer (tcp_rmem's default maximum is 6 MiB). A single
 * message is still bounded by NOTIFY_MAX_BODY (413). */
#define NOTIFY_SIP_MAXSIZE (8 * 1024 * 1024)

static char **notify_strv_dup(const char *const *v)
{
    if (!v)
        return NULL;
    size_t n = 0;
    while (v[n])
        n++;
    char **out = calloc(n + 1, sizeof *out);
    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!(out[i] = strdup(v[i]))) {
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return NULL;
        }
    }
    return out;
}

static void notify_strv_free(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* ---- loop events ---- */

static void notifier_on_deadline(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    if (!n->broken) {
        n->broken = true;
        su_root_break(n->root);
    }
}

/* Shutdown (RFC 6665 §4.1.1; RFC 5875 §4.8). Saved subscriptions stay: their state is written at
 * teardown and they resume after the restart. Others get a final NOTIFY with reason=deactivated
 * (RFC 6665 §4.2.2: the subscriber should re-subscribe, which suits a restart better than
 * "noresource", which says the resource is gone). Answers to NOTIFYs in flight are awaited at most
 * NOTIFY_STOP_WAIT_MS. */
static void notifier_begin_stop(struct notifier *n)
{
    n->stopping = true;
    if (!n->persist)
        for (struct notify_sub *s = n->subs; s; s = s->next)
            if (!s->dead && !s->final_sent && !s->term_reason)
                s->term_reason = "deactivated";
    notifier_poll(n);
    n->deadline = su_timer_create(su_root_task(n->root), NOTIFY_STOP_WAIT_MS);
    if (!n->deadline || su_timer_set(n->deadline, notifier_on_deadline, n) < 0)
        notifier_on_deadline(n, NULL, n);
}

static int notifier_on_wake(struct notifier *n, su_wait_t *w, struct notifier *arg)
{
    (void)w;
    (void)arg;
    uint64_t value;
    while (read(n->efd, &value, sizeof value) > 0)
        continue;
    notifier_enter(n);
    if (atomic_load(&n->stop_requested) && !n->stopping)
        notifier_begin_stop(n);
    else if (!n->stopping)
        notifier_poll_changes(n);
    notifier_leave(n);
    return 0;
}

/* Once a second: a poll of the change log, which covers commits made by other processes on the
 * same store (xdmctl) that cannot wake us, and the lazy save of subscription states. Expiry has
 * a timer of its own (notify_subs_expiry_arm()). */
static void notifier_on_tick(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    notifier_enter(n);
    /* The notifier's only client transactions are NOTIFYs, so the agent's retransmitted
     * requests are retransmitted NOTIFYs. */
    usize_t retried = 0;
    nta_agent_get_stats(n->agent, NTATAG_S_RETRY_REQUEST_REF(retried), TAG_END());
    metrics_count_set(METRICS_NOTIFY_RETRIED, (uint64_t)retried);
    if (!n->stopping) {
        /* Commits of other processes (xdmctl); the subscriptions with other work are on n->due
         * already, or flagged by n->sweep. */
        notifier_poll_changes(n);
        notify_subs_save(n, false);
    }
    charging_flush(n->cfg.charging, &n->charge_pending);
    notifier_leave(n);
}

/* Every poll_ms with other instances on the store (notify_cluster.c). */
static void notifier_on_fast(struct notifier *n, su_timer_t *t, struct notifier *arg)
{
    (void)t;
    (void)arg;
    notifier_enter(n);
    if (!n->stopping)
        notify_cluster_tick(n);
    notifier_leave(n);
}

static void notifier_started(struct notifier *n, int rc)
{
    pthread_mutex_lock(&n->lock);
    n->start_rc = rc;
    pthread_cond_signal(&n->cond);
    pthread_mutex_unlock(&n->lock);
}

static int notifier_setup(struct notifier *n)
{
    struct store_txn *t;
    enum store_rc rc = store_txn_begin(n->store, false, &t);
    if (rc == STORE_OK) {
        rc = store_change_last(t, &n->cursor);
        store_txn_abort(t);
    }
    if (rc != STORE_OK) {
        log_error("notifier: cannot read the change log: %s", store_strerror(rc));
        return -1;
    }
    if (!(n->root = su_root_create(n))) {
        log_error("notifier: cannot create the SIP event loop");
        return -1;
    }
    char url[300];
    bool v6 = strchr(n->cfg.host, ':') != NULL;
    snprintf(url, sizeof url, "sip:%s%s%s:%u", v6 ? "[" : "", n->cfg.host, v6 ? "]" : "",
             (unsigned)n->cfg.port);
    const char *contact = url;
    /* A server (PS, RLS) keeps all its subscriptions on one TCP connection, and a change of a
     * widely watched document sends one NOTIFY per subscription at once: the transport queue
     * must hold them all (sofia's default of 64 fails the rest with ENOBUFS). */
    n->agent = nta_agent_create(n->root, URL_STRING_MAKE(contact), NULL, NULL, NTATAG_UA(1),
                                NTATAG_MAXSIZE(NOTIFY_SIP_MAXSIZE),
                                TPTAG_QUEUESIZE(n->cfg.max_subscriptions + 64), TAG_END());
    if (!n->agent) {
        log_error("notifier: cannot listen on %s (UDP and TCP; port in use?)", url);
        return -1;
    }
    const sip_contact_t *m = nta_agent_contact(n->agent);
    n->port = (uint16_t)(m && m->m_url->url_port ? atoi(m->m_url->url_port) : 0);
    if (!n->instance[0] &&
        notify_instance_default(n->cfg.host, n->port, n->instance, sizeof n->instance) < 0)
        snprintf(n->instance, sizeof n->instance, "sip:%u", (unsigned)n->port);
    /* The Contact of 200s and NOTIFYs: where in-dialog requests go (RFC 6665 §4.1.2.2 and
     * RFC 3261 §12.1.1). With several instances it is the address they share. */
    if (!(n->home = su_home_new(sizeof *n->home))) {
        log_error("notifier: out of memory");
        return -1;
    }
    if (n->contact) {
        char *c = su_sprintf(n->home, "<%s>", n->contact);
        n->contact_hdr = c ? sip_contact_make(n->home, c) : NULL;
    } else {
        n->contact_hdr = sip_contact_dup(n->home, m);
    }
    if (!n->contact_hdr) {
        log_error("notifier: cannot use %s as Contact", n->contact ? n->contact : url);
        return -1;
    }
    /* Parsed once: every NOTIFY carries them (a string tag would be parsed again per NOTIFY). */
    n->ct_hdr = sip_content_type_make(n->home, NOTIFY_MIME_DIFF);
    n->event_hdr = sip_event_make(n->home, "xcap-diff");
    if (!n->ct_hdr || !n->event_hdr) {
        log_error("notifier: out of memory");
        return -1;
    }
    n->default_leg =
        nta_leg_tcreate(n->agent, notifier_on_request, n, NTATAG_NO_DIALOG(1), TAG_END());
    if (!n->default_leg) {
        log_error("notifier: cannot create the default SIP leg");
        return -1;
    }
    su_wait_t w;
    if (su_wait_create(&w, n->efd, SU_WAIT_IN) < 0 ||
        (n->wait_index = su_root_register(n->root, &w, notifier_on_wake, n, 0)) < 0) {
        log_error("notifier: cannot register the wake-up descriptor");
        n->wait_index = -1;
        return -1;
    }
    n->tick = su_timer_create(su_root_task(n->root), 1000);
    n->hold = su_timer_create(su_root_task(n->root), 0);
    n->expire = su_timer_create(su_root_task(n->root), 0);
    if (!n->tick || !n->hold || !n->expire ||
        su_timer_set_for_ever(n->tick, notifier_on_tick, n) < 0) {
        log_error("notifier: cannot start the timers");
        return -1;
    }
    if (n->cfg.cluster) {
        n->fast = su_timer_create(su_root_task(n->root), n->cfg.poll_ms);
        if (!n->fast || su_timer_set_for_ever(n->fast, notifier_on_fast, n) < 0) {
            log_error("notifier: cannot start the timers");
            return -1;
        }
        if (notify_cluster_start(n) < 0)
            return -1;
        notify_cluster_wake_start(n);
    }
    notify_dialog_restore(n);
    if (n->cfg.cluster)
        notify_cluster_takeover(n, true);
    /* Changes committed while we were down are reported on the first turn of the loop, with the
     * full states of the restored subscriptions that need one. */
    n->sweep = true;
    notifier_wake(n);
    return 0;
}

static void notifier_teardown(struct notifier *n)
{
    if (n->agent)
        notify_subs_save(n, true);
    if (n->agent && n->cfg.cluster)
        notify_cluster_stop(n);
    for (struct notify_sub *s = n->subs; s; s = s->next) {
        s->dead = true;
        s->forget = false;
    }
    n->reap_due = true;
    n->reap_scan = true;
    notify_subs_reap(n);
    notify_expiry_release(&n->expiry);
    free(n->dead);
    n->dead = NULL;
    n->n_dead = n->cap_dead = 0;
    notify_change_known_clear(n);
    notify_index_release(&n->index);
    free(n->due);
    n->due = NULL;
    n->n_due = n->cap_due = 0;
    free(n->marked);
    n->marked = NULL;
    n->n_marked = n->cap_marked = 0;
    free(n->held);
    n->held = NULL;
    n->n_held = n->cap_held = 0;
    if (n->tick)
        su_timer_destroy(n->tick);
    if (n->hold)
        su_timer_destroy(n->hold);
    if (n->expire)
        su_timer_destroy(n->expire);
    if (n->deadline)
        su_timer_destroy(n->deadline);
    if (n->fast)
        su_timer_destroy(n->fast);
    if (n->root && n->cfg.cluster)
        notify_cluster_wake_stop(n);
    if (n->wait_index > 0)
        su_root_deregister(n->root, n->wait_index);
    if (n->default_leg)
        nta_leg_destroy(n->default_leg);
    if (n->agent)
        nta_agent_destroy(n->agent);
    if (n->root)
        su_root_destroy(n->root);
    if (n->home)
        su_home_unref(n->home);
}

static void *notifier_main(void *arg)
{
    struct notifier *n = arg;
    if (su_init() != 0) {
        log_error("notifier: cannot initialise sofia-sip");
        notifier_started(n, -1);
        return NULL;
    }
    n->wait_index = -1;
    n->store_wake_fd = -1;
    n->store_wake_index = -1;
    if (notifier_setup(n) < 0) {
        notifier_teardown(n);
        su_deinit();
        notifier_started(n, -1);
        return NULL;
    }
    log_info("notifier: xcap-diff SIP on %s port %u (UDP, TCP)", n->cfg.host, (unsigned)n->port);
    notifier_started(n, 1);
    su_root_run(n->root);
    charging_flush(n->cfg.charging, &n->charge_pending);
    notifier_teardown(n);
    su_deinit();
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Public API (any thread)                                                                     */

static void notifier_free(struct notifier *n)
{
    if (n->efd >= 0)
        close(n->efd);
    pthread_mutex_destroy(&n->lock);
    pthread_mutex_destroy(&n->trusted_lock);
    pthread_cond_destroy(&n->cond);
    free(n->host);
    free(n->xcap_root);
    free(n->contact);
    notify_strv_free(n->trusted);
    notify_strv_free(n->servers);
    buf_release(&n->charge_pending);
    free(n);
}

int notifier_start(const struct notifier_config *cfg, struct store *store, struct notifier **out)
{
    *out = NULL;
    struct notifier *n = calloc(1, sizeof *n);
    if (!n) {
        log_error("notifier: out of memory");
        return -1;
    }
    n->efd = -1;
    buf_init(&n->charge_pending, SIZE_MAX);
    pthread_mutex_init(&n->lock, NULL);
    pthread_mutex_init(&n->trusted_lock, NULL);
    pthread_cond_init(&n->cond, NULL);
    atomic_init(&n->stop_requested, false);
    n->cfg = *cfg;
    n->store = store;
    n->host = strdup(cfg->host ? cfg->host : "127.0.0.1");
    n->xcap_root = strdup(cfg->xcap_root ? cfg->xcap_root : "");
    n->trusted = notify_strv_dup(cfg->trusted_peers);
    n->servers = notify_strv_dup(cfg->server_identities);
    n->contact = cfg->contact ? strdup(cfg->contact) : NULL;
    if (!n->cfg.lease_s)
        n->cfg.lease_s = NOTIFY_DEFAULT_LEASE_S;
    if (!n->cfg.poll_ms)
        n->cfg.poll_ms = NOTIFY_DEFAULT_POLL_MS;
    if (!n->cfg.max_subscriptions)
        n->cfg.max_subscriptions = NOTIFY_DEFAULT_MAX_SUBS;
    if (!n->host || !n->xcap_root || (cfg->trusted_peers && !n->trusted) ||
        (cfg->contact && !n->contact) || (cfg->server_identities && !n->servers)) {
        log_error("notifier: out of memory");
        notifier_free(n);
        return -1;
    }
    n->cfg.host = n->host;
    n->cfg.xcap_root = n->xcap_root;
    n->cfg.trusted_peers = NULL; /* n->trusted, which a reload replaces */
    n->cfg.server_identities = (const char *const *)n->servers;
    n->cfg.instance = NULL; /* n->instance, set in the SIP thread */
    if (cfg->instance)
        snprintf(n->instance, sizeof n->instance, "%s", cfg->instance);
    n->cfg.contact = NULL; /* n->contact */
    n->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (n->efd < 0) {
        log_error("notifier: eventfd: %s", strerror(errno));
        notifier_free(n);
        return -1;
    }
    int err = pthread_create(&n->thread, NULL, notifier_main, n);
    if (err != 0) {
        log_error("notifier: cannot start the SIP thread: %s", strerror(err));
        notifier_free(n);
        return -1;
    }
    pthread_mutex_lock(&n->lock);
    while (n->start_rc == 0)
        pthread_cond_wait(&n->cond, &n->lock);
    int rc = n->start_rc;
    pthread_mutex_unlock(&n->lock);
    if (rc < 0) {
        pthread_join(n->thread, NULL);
        notifier_free(n);
        return -1;
    }
    *out = n;
    return 0;
}

uint16_t notifier_port(const struct notifier *n)
{
    return n->port;
}

const char *notifier_instance(const struct notifier *n)
{
    return n->instance;
}

void notifier_stop(struct notifier *n)
{
    if (!n)
        return;
    atomic_store(&n->stop_requested, true);
    notifier_wake(n);
    pthread_join(n->thread, NULL);
    notifier_free(n);
}

int notifier_set_trusted_peers(struct notifier *n, const char *const *peers)
{
    char **v = notify_strv_dup(peers);
    if (peers && !v) {
        log_error("notifier: out of memory");
        return -1;
    }
    pthread_mutex_lock(&n->trusted_lock);
    char **old = n->trusted;
    n->trusted = v;
    pthread_mutex_unlock(&n->trusted_lock);
    notify_strv_free(old);
    return 0;
}
