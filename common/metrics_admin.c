/* The admin listener (metrics.h): /metrics, /healthz and /readyz on an HTTP server of its own. It
 * calls common/httpd.c and the rendering of metrics.c; neither calls it. */
#include "metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "httpd.h"
#include "log.h"

struct metrics_admin {
    metrics_collect_fn collect;
    metrics_ready_fn ready;
    void *cls;
};

static void metrics_admin_handle(void *cls, const struct http_request *req,
                                 struct http_response *resp)
{
    const struct metrics_admin *a = cls;
    const char *method = http_request_method(req), *path = http_request_path(req);
    bool head = strcmp(method, "HEAD") == 0;
    if (strcmp(path, "/metrics") != 0 && strcmp(path, "/healthz") != 0 &&
        strcmp(path, "/readyz") != 0) {
        http_response_text(resp, 404,
                           "not found: the admin listener serves /metrics, /healthz "
                           "and /readyz");
        return;
    }
    if (strcmp(method, "GET") != 0 && !head) {
        http_response_text(resp, 405, "only GET and HEAD");
        http_response_header(resp, "Allow", "GET, HEAD");
        return;
    }
    if (strcmp(path, "/healthz") == 0) {
        http_response_text(resp, 200, "ok");
    } else if (strcmp(path, "/readyz") == 0) {
        char reason[METRICS_REASON_MAX] = "";
        if (!a->ready || a->ready(a->cls, reason, sizeof reason))
            http_response_text(resp, 200, "ready");
        else
            http_response_text(resp, 503, reason[0] ? reason : "not ready");
    } else {
        struct buf b;
        buf_init(&b, METRICS_MAX_BODY);
        if (metrics_render(&b, a->collect, a->cls) < 0) {
            buf_release(&b);
            http_response_text(resp, 500, "metrics larger than the admin listener's bound");
            return;
        }
        resp->status = 200;
        http_response_header(resp, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        http_response_body(resp, b.data ? b.data : "", b.len);
        buf_release(&b);
    }
    if (head)
        buf_reset(&resp->body);
}

int metrics_admin_start(const char *host, uint16_t port, metrics_collect_fn collect,
                        metrics_ready_fn ready, void *cls, struct httpd **out)
{
    static struct metrics_admin admin; /* one admin listener per process */
    admin = (struct metrics_admin){collect, ready, cls};
    struct httpd_config hc = {
        .host = host,
        .port = port,
        .threads = 1,
        .max_body = 1024,
        .max_header = 8192,
        .timeout_s = 10,
        .max_connections = 64,
        .max_connections_per_ip = 16,
        .header_timeout_s = HTTPD_DEFAULT_HEADER_TIMEOUT,
        .body_min_rate = HTTPD_DEFAULT_BODY_MIN_RATE,
    };
    if (httpd_start(&hc, metrics_admin_handle, &admin, out) < 0)
        return -1;
    log_info("admin listener (metrics, healthz, readyz) on http://%s%s%s:%u",
             strchr(host, ':') ? "[" : "", host, strchr(host, ':') ? "]" : "", httpd_port(*out));
    return 0;
}
