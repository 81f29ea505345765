/* Readiness and liveness towards systemd (sd_notify(3), a Type=notify unit with WatchdogSec=).
 *
 * Every function is a no-op when the process was not started with NOTIFY_SOCKET in its
 * environment, so the servers behave the same outside systemd. Call them from the main thread
 * only; the watchdog thread is the module's own. */
#ifndef XDM_SDNOTIFY_H
#define XDM_SDNOTIFY_H

#include <signal.h>
#include <stddef.h>

/* Tells the service manager the process is ready (READY=1, with STATUS=status when status is
 * not NULL): call it once every listener is up, so that units ordered after this one start
 * against open sockets. Then, when the unit set WatchdogSec= (WATCHDOG_USEC for this pid),
 * starts a thread that sends WATCHDOG=1 every half interval until sdnotify_stopping().
 * Returns 0, or -1 when the watchdog thread could not be started (logged; the process goes on
 * and systemd will restart it when the interval passes). */
int sdnotify_ready(const char *status);

/* Sends STOPPING=1 and stops and joins the watchdog thread, if any. Call it once, when the
 * process begins to stop; safe without a prior sdnotify_ready(). */
void sdnotify_stopping(void);

/* Tells the service manager a reload begins: RELOADING=1 with MONOTONIC_USEC= the current
 * CLOCK_MONOTONIC time in microseconds, as sd_notify(3) (systemd 253 and later) asks of a
 * Type=notify-reload service. Call sdnotify_reloaded() when the reload is over, applied or
 * refused. A no-op without NOTIFY_SOCKET. */
void sdnotify_reloading(void);

/* Tells the service manager the reload is over and the process serves again (READY=1). */
void sdnotify_reloaded(void);

/* The message sdnotify_reloading() sends for a CLOCK_MONOTONIC time of usec into buf
 * (NUL-terminated, truncated to len). Exposed for the unit tests. */
void sdnotify_reloading_msg(unsigned long long usec, char *buf, size_t len);

/* The watchdog ping interval in microseconds for a given WATCHDOG_USEC: half of it, at least
 * 1 ms; 0 for 0 (no watchdog). Exposed for the unit tests. */
unsigned long long sdnotify_ping_interval(unsigned long long watchdog_usec);

/* The signals a service manager (or an operator) sends — SIGTERM and SIGINT to stop, SIGHUP to
 * reload — are blocked in the calling thread and written to *set, and SIGPIPE is ignored. Call it
 * first thing in main(): every thread started later (the SIP stack's, libraries') inherits the
 * mask, so a signal that arrives while the process starts or reloads stays pending until the main
 * thread takes it with sigwait(set) — never the default action in some other thread, which would
 * end the process without its graceful stop. */
void sdnotify_hold_signals(sigset_t *set);

#endif
