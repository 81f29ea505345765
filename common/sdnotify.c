/* sd_notify readiness and the watchdog thread (sdnotify.h). */
#include "sdnotify.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"

/* Set once by the main thread in sdnotify_ready(), read by the watchdog thread under the mutex. */
static pthread_mutex_t sdnotify_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sdnotify_cond;
static bool sdnotify_stop;
static bool sdnotify_running;
static pthread_t sdnotify_thread;
static unsigned long long sdnotify_interval_us;

unsigned long long sdnotify_ping_interval(unsigned long long watchdog_usec)
{
    if (watchdog_usec == 0)
        return 0;
    unsigned long long half = watchdog_usec / 2;
    return half < 1000 ? 1000 : half;
}

/* Pings at half the interval (sd_watchdog_enabled(3) recommends it), on CLOCK_MONOTONIC so a
 * clock step cannot delay a ping past the deadline. */
static void *sdnotify_watchdog(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&sdnotify_lock);
    while (!sdnotify_stop) {
        pthread_mutex_unlock(&sdnotify_lock);
        sd_notify(0, "WATCHDOG=1");
        pthread_mutex_lock(&sdnotify_lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        unsigned long long ns = (unsigned long long)until.tv_nsec + sdnotify_interval_us * 1000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        while (!sdnotify_stop &&
               pthread_cond_timedwait(&sdnotify_cond, &sdnotify_lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&sdnotify_lock);
    return NULL;
}

int sdnotify_ready(const char *status)
{
    char msg[512];
    if (status)
        snprintf(msg, sizeof msg, "READY=1\nSTATUS=%s", status);
    else
        snprintf(msg, sizeof msg, "READY=1");
    int rc = sd_notify(0, msg);
    if (rc < 0)
        log_warn("sd_notify READY=1: %s", strerror(-rc));
    if (rc <= 0)
        return 0; /* no NOTIFY_SOCKET: not started by systemd */
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    sdnotify_interval_us = sdnotify_ping_interval(usec);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&sdnotify_cond, &attr);
    pthread_condattr_destroy(&attr);
    sdnotify_stop = false;
    int err = pthread_create(&sdnotify_thread, NULL, sdnotify_watchdog, NULL);
    if (err) {
        log_error("cannot start the watchdog thread: %s", strerror(err));
        pthread_cond_destroy(&sdnotify_cond);
        return -1;
    }
    sdnotify_running = true;
    log_info("systemd watchdog: ping every %llu ms", sdnotify_interval_us / 1000);
    return 0;
}

void sdnotify_stopping(void)
{
    sd_notify(0, "STOPPING=1");
    if (!sdnotify_running)
        return;
    pthread_mutex_lock(&sdnotify_lock);
    sdnotify_stop = true;
    pthread_cond_signal(&sdnotify_cond);
    pthread_mutex_unlock(&sdnotify_lock);
    pthread_join(sdnotify_thread, NULL);
    pthread_cond_destroy(&sdnotify_cond);
    sdnotify_running = false;
}

void sdnotify_reloading_msg(unsigned long long usec, char *buf, size_t len)
{
    snprintf(buf, len, "RELOADING=1\nMONOTONIC_USEC=%llu", usec);
}

/* systemd compares MONOTONIC_USEC with its own CLOCK_MONOTONIC reading taken when it sent the
 * reload request (sd_notify(3), "RELOADING=1"), so the time must come from the same clock. */
void sdnotify_reloading(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char msg[64];
    sdnotify_reloading_msg((unsigned long long)now.tv_sec * 1000000ull +
                               (unsigned long long)now.tv_nsec / 1000ull,
                           msg, sizeof msg);
    int rc = sd_notify(0, msg);
    if (rc < 0)
        log_warn("sd_notify RELOADING=1: %s", strerror(-rc));
}

void sdnotify_reloaded(void)
{
    int rc = sd_notify(0, "READY=1");
    if (rc < 0)
        log_warn("sd_notify READY=1: %s", strerror(-rc));
}

void sdnotify_hold_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}
