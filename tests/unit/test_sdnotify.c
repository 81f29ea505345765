/* common/sdnotify.c: the ping interval, no-ops outside systemd, and the messages a service
 * manager receives (a datagram socket bound by the test stands in for it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "sdnotify.h"
#include "unit.h"

static void test_ping_interval(void)
{
    CU_ASSERT_EQUAL(sdnotify_ping_interval(0), 0);
    CU_ASSERT_EQUAL(sdnotify_ping_interval(30000000), 15000000);
    CU_ASSERT_EQUAL(sdnotify_ping_interval(1), 1000);
    CU_ASSERT_EQUAL(sdnotify_ping_interval(1999), 1000);
    CU_ASSERT_EQUAL(sdnotify_ping_interval(2002), 1001);
}

static void test_no_notify_socket(void)
{
    unsetenv("NOTIFY_SOCKET");
    setenv("WATCHDOG_USEC", "1000", 1);
    CU_ASSERT_EQUAL(sdnotify_ready("up"), 0);
    sdnotify_stopping(); /* no thread to join */
    sdnotify_stopping(); /* twice is harmless */
    unsetenv("WATCHDOG_USEC");
}

/* Reads one datagram into buf (NUL-terminated); 0 on timeout. */
static ssize_t recv_one(int fd, char *buf, size_t len)
{
    ssize_t n = recv(fd, buf, len - 1, 0);
    buf[n < 0 ? 0 : n] = '\0';
    return n < 0 ? 0 : n;
}

static void test_ready_watchdog_stopping(void)
{
    char dir[] = "/tmp/xdm-sdnotify-XXXXXX";
    CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(dir));
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s/notify", dir);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CU_ASSERT_FATAL(fd >= 0);
    CU_ASSERT_FATAL(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setenv("NOTIFY_SOCKET", sa.sun_path, 1);
    setenv("WATCHDOG_USEC", "20000", 1); /* pings every 10 ms */

    char buf[256];
    CU_ASSERT_EQUAL(sdnotify_ready("listening"), 0);
    recv_one(fd, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "READY=1\nSTATUS=listening");
    for (int i = 0; i < 3; i++) {
        recv_one(fd, buf, sizeof buf);
        CU_ASSERT_STRING_EQUAL(buf, "WATCHDOG=1");
    }
    sdnotify_stopping();
    /* Pings already queued may come first; STOPPING=1 within a bounded number of datagrams. */
    int got_stopping = 0;
    for (int i = 0; i < 100 && !got_stopping; i++) {
        if (recv_one(fd, buf, sizeof buf) == 0)
            break;
        got_stopping = strcmp(buf, "STOPPING=1") == 0;
    }
    CU_ASSERT_TRUE(got_stopping);
    /* The thread is joined: nothing follows. */
    tv.tv_sec = 0;
    tv.tv_usec = 50000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    CU_ASSERT_EQUAL(recv_one(fd, buf, sizeof buf), 0);

    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    close(fd);
    unlink(sa.sun_path);
    rmdir(dir);
}

static void test_reloading_msg(void)
{
    char buf[64];
    sdnotify_reloading_msg(1234567890123ull, buf, sizeof buf);
    CU_ASSERT_STRING_EQUAL(buf, "RELOADING=1\nMONOTONIC_USEC=1234567890123");
    sdnotify_reloading_msg(5, buf, 12);
    CU_ASSERT_STRING_EQUAL(buf, "RELOADING=1");
    unsetenv("NOTIFY_SOCKET");
    sdnotify_reloading(); /* no-ops outside systemd */
    sdnotify_reloaded();
}

static CU_TestInfo sdnotify_tests[] = {
    {"ping interval is half, at least 1 ms", test_ping_interval},
    {"without NOTIFY_SOCKET nothing happens", test_no_notify_socket},
    {"READY=1, WATCHDOG=1 pings, STOPPING=1 joins", test_ready_watchdog_stopping},
    {"RELOADING=1 with MONOTONIC_USEC", test_reloading_msg},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"sdnotify", NULL, NULL, NULL, NULL, sdnotify_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
