/* Placeholder so the xdms library links; the real notifier follows. */
#include "notify.h"

#include <stdlib.h>

#include "log.h"

struct notifier {
    uint16_t port;
};

int notifier_start(const struct notifier_config *cfg, struct store *store, struct notifier **out)
{
    (void)store;
    struct notifier *n = calloc(1, sizeof(*n));
    if (!n) {
        log_error("notifier: out of memory");
        return -1;
    }
    n->port = cfg->port;
    *out = n;
    return 0;
}

uint16_t notifier_port(const struct notifier *n)
{
    return n->port;
}

void notifier_wake(struct notifier *n)
{
    (void)n;
}

void notifier_stop(struct notifier *n)
{
    free(n);
}
