/* test_acct.fdx: a freeDiameter extension for the charging tests (tests/e2e/charging.py). It
 * plays the charging function of Diameter Rf: it accepts any peer without TLS, advertises the
 * base accounting application (RFC 6733 §9), answers every Accounting-Request with an
 * Accounting-Answer carrying DIAMETER_SUCCESS (DIAMETER_UNABLE_TO_COMPLY, a permanent failure of
 * RFC 6733 §7.1.5, when the User-Name is the configured one to reject), and appends each request
 * it got to a file, one JSON object per line. Its configuration:
 *   LoadExtension = "test_acct.fdx" : "listen=ADDR;reject=USER;out=FILE";
 * listen: the address the server sockets bind to (freeDiameter drops loopback addresses given in
 * ListenOn; an extension is loaded before the servers start, so it adds the endpoint itself);
 * reject: a User-Name answered with 5012; out: the file (the rest of the string).
 * Each line has every AVP by name (grouped AVPs flattened), e.g.
 *   {"Session-Id":"xdms.example;0;7;xdm-n","Accounting-Record-Type":1,...,"XDM-Event":"..."}
 * It defines the XDM AVPs of docs/charging.md so that their values can be read. */
#include <freeDiameter/extension.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static char *test_acct_out;
static char *test_acct_reject;
static struct disp_hdl *test_acct_hdl;

static const struct {
    avp_code_t code;
    vendor_id_t vendor;
    const char *name;
    enum dict_avp_basetype type;
} test_acct_avps[] = {
    {461, 0, "Service-Context-Id", AVP_TYPE_OCTETSTRING},
    {873, 10415, "Service-Information", AVP_TYPE_GROUPED},
    {1, 32473, "XDM-Information", AVP_TYPE_GROUPED},
    {2, 32473, "XDM-Event", AVP_TYPE_OCTETSTRING},
    {3, 32473, "XDM-Served-User", AVP_TYPE_OCTETSTRING},
    {4, 32473, "XDM-AUID", AVP_TYPE_OCTETSTRING},
    {5, 32473, "XDM-Document", AVP_TYPE_OCTETSTRING},
    {6, 32473, "XDM-Operation", AVP_TYPE_OCTETSTRING},
    {7, 32473, "XDM-Result-Code", AVP_TYPE_UNSIGNED32},
    {8, 32473, "XDM-Bytes-In", AVP_TYPE_UNSIGNED64},
    {9, 32473, "XDM-Bytes-Out", AVP_TYPE_UNSIGNED64},
    {10, 32473, "XDM-Serving-Node", AVP_TYPE_OCTETSTRING},
    {11, 32473, "XDM-Correlation-Id", AVP_TYPE_OCTETSTRING},
    {12, 32473, "XDM-Record-Sequence", AVP_TYPE_UNSIGNED64},
    {13, 32473, "XDM-Request-Time-Ms", AVP_TYPE_UNSIGNED64},
    {14, 32473, "XDM-Event-Time-Ms", AVP_TYPE_UNSIGNED64},
};

static void test_acct_json_str(FILE *f, const uint8_t *p, size_t n)
{
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '"' || p[i] == '\\')
            fprintf(f, "\\%c", p[i]);
        else if (p[i] < 0x20 || p[i] >= 0x7f)
            fprintf(f, "\\u%04x", p[i]);
        else
            fputc(p[i], f);
    }
    fputc('"', f);
}

static int test_acct_acr(struct msg **msg, struct avp *avp, struct session *sess, void *opaque,
                         enum disp_action *act)
{
    int reject = 0;
    FILE *f = fopen(test_acct_out, "a");
    if (f) {
        fputc('{', f);
        int first = 1;
        struct avp *a = NULL;
        fd_msg_browse(*msg, MSG_BRW_FIRST_CHILD, &a, NULL);
        while (a) {
            struct dict_object *model = NULL;
            struct dict_avp_data d;
            struct avp_hdr *h = NULL;
            fd_msg_avp_hdr(a, &h);
            if (fd_msg_model(a, &model) == 0 && model && fd_dict_getval(model, &d) == 0 &&
                d.avp_basetype != AVP_TYPE_GROUPED && h->avp_value) {
                fprintf(f, "%s\"%s\":", first ? "" : ",", d.avp_name);
                first = 0;
                switch (d.avp_basetype) {
                case AVP_TYPE_INTEGER32:
                    fprintf(f, "%" PRId32, h->avp_value->i32);
                    break;
                case AVP_TYPE_UNSIGNED32:
                    fprintf(f, "%" PRIu32, h->avp_value->u32);
                    break;
                case AVP_TYPE_UNSIGNED64:
                    fprintf(f, "%" PRIu64, h->avp_value->u64);
                    break;
                case AVP_TYPE_INTEGER64:
                    fprintf(f, "%" PRId64, h->avp_value->i64);
                    break;
                default:
                    test_acct_json_str(f, h->avp_value->os.data, h->avp_value->os.len);
                    if (test_acct_reject && strcmp(d.avp_name, "User-Name") == 0 &&
                        h->avp_value->os.len == strlen(test_acct_reject) &&
                        memcmp(h->avp_value->os.data, test_acct_reject, h->avp_value->os.len) == 0)
                        reject = 1;
                }
            }
            fd_msg_browse(a, MSG_BRW_WALK, &a, NULL);
        }
        fputs("}\n", f);
        fclose(f);
    }
    /* RFC 6733 §9.7.2: the answer repeats the record's type and number. */
    struct msg *req = *msg;
    struct dict_object *type_m = NULL, *num_m = NULL;
    struct avp *type_a = NULL, *num_a = NULL;
    struct avp_hdr *th = NULL, *nh = NULL;
    fd_dict_search(fd_g_config->cnf_dict, DICT_AVP, AVP_BY_NAME, "Accounting-Record-Type", &type_m,
                   ENOENT);
    fd_dict_search(fd_g_config->cnf_dict, DICT_AVP, AVP_BY_NAME, "Accounting-Record-Number", &num_m,
                   ENOENT);
    fd_msg_search_avp(req, type_m, &type_a);
    fd_msg_search_avp(req, num_m, &num_a);
    if (type_a)
        fd_msg_avp_hdr(type_a, &th);
    if (num_a)
        fd_msg_avp_hdr(num_a, &nh);
    union avp_value tv = {.i32 = th && th->avp_value ? th->avp_value->i32 : 1};
    union avp_value nv = {.u32 = nh && nh->avp_value ? nh->avp_value->u32 : 0};
    if (fd_msg_new_answer_from_req(fd_g_config->cnf_dict, msg, 0) != 0)
        return 0;
    fd_msg_rescode_set(*msg,
                       reject ? (char *)"DIAMETER_UNABLE_TO_COMPLY" : (char *)"DIAMETER_SUCCESS",
                       NULL, NULL, 1);
    struct avp *x = NULL;
    if (fd_msg_avp_new(type_m, 0, &x) == 0 && fd_msg_avp_setvalue(x, &tv) == 0)
        fd_msg_avp_add(*msg, MSG_BRW_LAST_CHILD, x);
    if (fd_msg_avp_new(num_m, 0, &x) == 0 && fd_msg_avp_setvalue(x, &nv) == 0)
        fd_msg_avp_add(*msg, MSG_BRW_LAST_CHILD, x);
    fd_msg_send(msg, NULL, NULL);
    *act = DISP_ACT_CONT;
    return 0;
}

/* Any peer, without TLS: the tests run on loopback. */
static int test_acct_validate(struct peer_info *info, int *auth, int (**cb2)(struct peer_info *))
{
    info->config.pic_flags.sec = PI_SEC_NONE;
    *auth = 1;
    return 0;
}

static struct dict_object *test_acct_vendor(vendor_id_t id, const char *name)
{
    struct dict_object *v = NULL;
    if (fd_dict_search(fd_g_config->cnf_dict, DICT_VENDOR, VENDOR_BY_ID, &id, &v, ENOENT) == 0)
        return v;
    struct dict_vendor_data d = {id, (char *)name};
    fd_dict_new(fd_g_config->cnf_dict, DICT_VENDOR, &d, NULL, &v);
    return v;
}

/* listen=ADDR: the one address the servers bind to. EP_ACCEPTALL passes the filter that drops
 * loopback addresses from ListenOn. */
static int test_acct_listen(const char *addr, size_t len)
{
    char a[64];
    struct sockaddr_in sin = {.sin_family = AF_INET};
    if (len >= sizeof a)
        return EINVAL;
    memcpy(a, addr, len);
    a[len] = 0;
    if (inet_pton(AF_INET, a, &sin.sin_addr) != 1)
        return EINVAL;
    return fd_ep_add_merge(&fd_g_config->cnf_endpoints, (sSA *)&sin, sizeof sin,
                           EP_FL_CONF | EP_ACCEPTALL);
}

static int test_acct_init(char *conffile)
{
    if (!conffile)
        return EINVAL;
    for (const char *p = conffile; *p;) {
        const char *end = strchr(p, ';');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (strncmp(p, "out=", 4) == 0) {
            test_acct_out = strdup(p + 4);
            break;
        } else if (strncmp(p, "listen=", 7) == 0) {
            if (test_acct_listen(p + 7, n - 7) != 0)
                return EINVAL;
        } else if (strncmp(p, "reject=", 7) == 0) {
            test_acct_reject = strndup(p + 7, n - 7);
        } else
            return EINVAL;
        p += n + (end ? 1 : 0);
    }
    if (!test_acct_out)
        return EINVAL;
    struct dictionary *dict = fd_g_config->cnf_dict;
    test_acct_vendor(10415, "3GPP");
    test_acct_vendor(32473, "XDM");
    for (size_t i = 0; i < sizeof test_acct_avps / sizeof test_acct_avps[0]; i++) {
        struct dict_object *o = NULL;
        struct dict_avp_request req = {.avp_vendor = test_acct_avps[i].vendor,
                                       .avp_code = test_acct_avps[i].code};
        if (fd_dict_search(dict, DICT_AVP, AVP_BY_CODE_AND_VENDOR, &req, &o, ENOENT) == 0)
            continue;
        struct dict_avp_data d = {test_acct_avps[i].code,
                                  test_acct_avps[i].vendor,
                                  (char *)test_acct_avps[i].name,
                                  AVP_FLAG_VENDOR | AVP_FLAG_MANDATORY,
                                  test_acct_avps[i].vendor ? AVP_FLAG_VENDOR : AVP_FLAG_MANDATORY,
                                  test_acct_avps[i].type};
        if (fd_dict_new(dict, DICT_AVP, &d, NULL, &o) != 0)
            return EINVAL;
    }
    application_id_t acct = 3;
    struct dict_object *app = NULL, *cmd = NULL;
    if (fd_dict_search(dict, DICT_APPLICATION, APPLICATION_BY_ID, &acct, &app, ENOENT) != 0) {
        struct dict_application_data d = {3, (char *)"Diameter Base Accounting"};
        if (fd_dict_new(dict, DICT_APPLICATION, &d, NULL, &app) != 0)
            return EINVAL;
    }
    if (fd_dict_search(dict, DICT_COMMAND, CMD_BY_NAME, "Accounting-Request", &cmd, ENOENT) != 0)
        return EINVAL;
    struct disp_when when = {.command = cmd};
    if (fd_disp_register(test_acct_acr, DISP_HOW_CC, &when, NULL, &test_acct_hdl) != 0 ||
        fd_disp_app_support(app, NULL, 0, 1) != 0 ||
        fd_peer_validate_register(test_acct_validate) != 0)
        return EINVAL;
    return 0;
}

void fd_ext_fini(void);
void fd_ext_fini(void)
{
    if (test_acct_hdl)
        fd_disp_unregister(&test_acct_hdl, NULL);
    free(test_acct_out);
    free(test_acct_reject);
}

/* Defined by EXTENSION_ENTRY; declared here for -Wmissing-prototypes (clang). */
int fd_ext_init(int major, int minor, char *conffile);
EXTENSION_ENTRY("test_acct", test_acct_init);
