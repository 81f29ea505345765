/* Fuzz target for the identity readers of an XDMS: the X-3GPP-Asserted-Identity header the proxy
 * sends (xdms/server_identity.c, server_identity_asserted(), TS 24.109 §7) with the domain check of
 * partner identities, and the From / P-Asserted-Identity reader of the notifier
 * (xdms/notify_sip.c, notify_identity_parse(), RFC 3325). Input: the header value; bytes after a
 * NUL are cut off, as the HTTP and SIP layers' C strings would. */
#include <string.h>

#include "fuzz.h"
#include "notify_internal.h"
#include "server.h"
#include "server_identity.h"
#include "xcap_uri.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_cstr(data, size);
    if (!in)
        return 0;

    char *who = server_identity_asserted(in);
    if (who) {
        FUZZ_CHECK(who[0] != '\0');
        FUZZ_CHECK(xcap_uri_xui_equal(who, who));
        (void)server_identity_in_domains(who, "example.com,partner.example.org");
        (void)server_identity_in_domains(who, "");
    }
    free(who);

    char *sub = notify_identity_parse(in);
    if (sub) {
        FUZZ_CHECK(strncmp(sub, "sip:", 4) == 0 || strncmp(sub, "sips:", 5) == 0 ||
                   strncmp(sub, "tel:", 4) == 0);
        FUZZ_CHECK(strpbrk(sub, "<>;? \t\r\n") == NULL);
        FUZZ_CHECK(xcap_uri_xui_equal(sub, sub));
        const char *servers[] = {"sip:rls@example.com", sub, NULL};
        FUZZ_CHECK(notify_identity_is_server(sub, servers));
    }
    free(sub);
    free(in);
    return 0;
}
