/* common/xdoc.c: the UTF-8 validator, the safe parser (RFC 4825 §8.2.2 not-well-formed /
 * not-utf-8, DOCTYPE refused, depth bound) and serialisation. */
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "unit.h"
#include "xdoc.h"

struct utf8_case {
    const char *bytes;
    size_t len;
    bool valid;
};

#define U8(s, v)                                                                                   \
    {                                                                                              \
        s, sizeof(s) - 1, v                                                                        \
    }

static const struct utf8_case utf8_cases[] = {
    U8("", true),
    U8("plain ascii <a/>", true),
    U8("\xC3\xA9", true),         /* U+00E9 */
    U8("\xC2\x80", true),         /* U+0080, smallest 2-byte */
    U8("\xDF\xBF", true),         /* U+07FF */
    U8("\xE0\xA0\x80", true),     /* U+0800, smallest 3-byte */
    U8("\xE2\x82\xAC", true),     /* U+20AC */
    U8("\xED\x9F\xBF", true),     /* U+D7FF, just below the surrogates */
    U8("\xEE\x80\x80", true),     /* U+E000, just above */
    U8("\xEF\xBF\xBF", true),     /* U+FFFF */
    U8("\xF0\x90\x80\x80", true), /* U+10000, smallest 4-byte */
    U8("\xF0\x9F\x98\x80", true), /* U+1F600 */
    U8("\xF4\x8F\xBF\xBF", true), /* U+10FFFF, the last code point */
    U8("a\xC3\xA9"
       "b\xF0\x9F\x98\x80"
       "c",
       true),
    /* overlongs */
    U8("\xC0\xAF", false),
    U8("\xC1\xBF", false),
    U8("\xC0\x80", false), /* overlong NUL */
    U8("\xE0\x80\xAF", false),
    U8("\xE0\x9F\xBF", false), /* U+07FF in 3 bytes */
    U8("\xF0\x80\x80\xAF", false),
    U8("\xF0\x8F\xBF\xBF", false), /* U+FFFF in 4 bytes */
    /* surrogates */
    U8("\xED\xA0\x80", false), /* U+D800 */
    U8("\xED\xAF\xBF", false),
    U8("\xED\xB0\x80", false),
    U8("\xED\xBF\xBF", false),             /* U+DFFF */
    U8("\xED\xA0\xBD\xED\xB8\x80", false), /* CESU-8 pair */
    /* beyond U+10FFFF and bytes that never occur */
    U8("\xF4\x90\x80\x80", false),
    U8("\xF5\x80\x80\x80", false),
    U8("\xF8\x88\x80\x80\x80", false),
    U8("\xFE", false),
    U8("\xFF", false),
    /* stray or missing continuation bytes */
    U8("\x80", false),
    U8("a\xBF", false),
    U8("\xC3", false),
    U8("\xC3"
       "A",
       false),
    U8("\xE2\x82", false),
    U8("\xE2\x82"
       "A",
       false),
    U8("\xF0\x9F\x98", false),
    U8("\xF0\x9F\x98"
       "A",
       false),
    U8("\xE2\xC2\xAC", false),
    /* NUL */
    U8("a\0b", false),
    U8("\0", false),
    /* Latin-1 text */
    U8("caf\xE9", false),
};

static void test_utf8_validator(void)
{
    for (size_t i = 0; i < sizeof utf8_cases / sizeof utf8_cases[0]; i++) {
        bool got = xdoc_utf8_valid(utf8_cases[i].bytes, utf8_cases[i].len);
        if (got != utf8_cases[i].valid)
            fprintf(stderr, "\n  utf8 case %zu: want %d", i, (int)utf8_cases[i].valid);
        CU_ASSERT_EQUAL(got, utf8_cases[i].valid);
    }
    /* the length is respected: the invalid byte after it is not read */
    CU_ASSERT_TRUE(xdoc_utf8_valid("ok\xFF", 2));
    /* a multi-byte sequence cut by the length */
    CU_ASSERT_FALSE(xdoc_utf8_valid("\xE2\x82\xAC", 2));
}

/* Parses text; returns the status and frees everything. phrase_out (optional) gets a copy. */
static enum xcap_status xdoc_try(const char *text, size_t len, char **phrase_out)
{
    xmlDoc sentinel;
    xmlDocPtr doc = &sentinel; /* xdoc_parse must overwrite it */
    struct xcap_err err = {0};
    enum xcap_status st = xdoc_parse(text, len, &doc, &err);
    if (st == XCAP_OK) {
        CU_ASSERT_PTR_NOT_NULL(doc);
        xmlFreeDoc(doc);
    } else {
        CU_ASSERT_PTR_NULL(doc);
        CU_ASSERT_EQUAL(err.status, st);
    }
    if (phrase_out)
        *phrase_out = err.phrase ? strdup(err.phrase) : NULL;
    xcap_err_release(&err);
    return st;
}

#define TRY(s) xdoc_try(s, sizeof(s) - 1, NULL)

static void test_parse_ok(void)
{
    static const char text[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                               "<resource-lists xmlns=\"urn:ietf:params:xml:ns:resource-lists\">"
                               "<list name=\"caf\xC3\xA9\"/></resource-lists>";
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL_FATAL(xdoc_parse(text, sizeof text - 1, &doc, &err), XCAP_OK);
    xmlNodePtr root = xmlDocGetRootElement(doc);
    CU_ASSERT_STRING_EQUAL((const char *)root->name, "resource-lists");
    CU_ASSERT_STRING_EQUAL((const char *)root->ns->href, "urn:ietf:params:xml:ns:resource-lists");
    xmlChar *name = xmlGetProp(root->children, (const xmlChar *)"name");
    CU_ASSERT_STRING_EQUAL((const char *)name, "caf\xC3\xA9");
    xmlFree(name);
    xmlFreeDoc(doc);
    xcap_err_release(&err);

    CU_ASSERT_EQUAL(TRY("<a/>"), XCAP_OK);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\" encoding=\"utf-8\"?><a/>"), XCAP_OK);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\"?><a/>"), XCAP_OK);
    CU_ASSERT_EQUAL(TRY("\xEF\xBB\xBF<a/>"), XCAP_OK); /* BOM */
    CU_ASSERT_EQUAL(TRY("<!-- c --><?pi x?><a>&lt;&#x20AC;</a>"), XCAP_OK);
    /* the input need not be NUL-terminated: only len bytes are read */
    CU_ASSERT_EQUAL(xdoc_try("<a/>garbage", 4, NULL), XCAP_OK);
}

static void test_parse_not_well_formed(void)
{
    char *phrase = NULL;
    CU_ASSERT_EQUAL(xdoc_try("<a>\n<b>\n</a>", 12, &phrase), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_PTR_NOT_NULL_FATAL(phrase);
    /* the phrase says where: line 3 holds the mismatched end tag */
    CU_ASSERT_PTR_NOT_NULL(strstr(phrase, "line 3"));
    CU_ASSERT(phrase[strlen(phrase) - 1] != '\n');
    free(phrase);

    CU_ASSERT_EQUAL(xdoc_try("", 0, &phrase), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_PTR_NOT_NULL(phrase);
    free(phrase);
    CU_ASSERT_EQUAL(TRY("just text"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a/><b/>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a x='1' x='2'/>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a>&undefined;</a>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a>&lol9;</a>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<p:a/>"), XCAP_NOT_WELL_FORMED); /* unbound prefix */
    CU_ASSERT_EQUAL(TRY("<a xmlns:p=\"urn:x\"><b p:c=\"1\"/><q:d/></a>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a xmlns:p=\"urn:x\"><p:b/></a>"), XCAP_OK);
    CU_ASSERT_EQUAL(TRY("<a>&#0;</a>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<a>\x01</a>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("  <?xml version=\"1.0\"?><a/>"), XCAP_NOT_WELL_FORMED);
}

static void test_parse_not_utf8(void)
{
    char *phrase = NULL;
    CU_ASSERT_EQUAL(xdoc_try("<a>caf\xE9</a>", 9, &phrase), XCAP_NOT_UTF8);
    CU_ASSERT_PTR_NOT_NULL(phrase);
    free(phrase);
    CU_ASSERT_EQUAL(TRY("<a>\xC0\xAF</a>"), XCAP_NOT_UTF8);
    CU_ASSERT_EQUAL(TRY("<a>\xED\xA0\x80</a>"), XCAP_NOT_UTF8);
    CU_ASSERT_EQUAL(xdoc_try("<a>\0</a>", 8, NULL), XCAP_NOT_UTF8);
    /* UTF-16 with a BOM is not UTF-8 */
    CU_ASSERT_EQUAL(TRY("\xFF\xFE<\0a\0/\0>\0"), XCAP_NOT_UTF8);
    /* a declaration naming another encoding, even when the bytes are plain ASCII */
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>"), XCAP_NOT_UTF8);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><a>x</a>"), XCAP_NOT_UTF8);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a>caf\xE9</a>"),
                    XCAP_NOT_UTF8);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\" encoding=\"US-ASCII\"?><a/>"), XCAP_NOT_UTF8);
}

static void test_parse_doctype_refused(void)
{
    char *phrase = NULL;
    CU_ASSERT_EQUAL(xdoc_try("<!DOCTYPE a><a/>", 16, &phrase), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_PTR_NOT_NULL(phrase);
    free(phrase);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\"?>\n<!DOCTYPE a SYSTEM \"http://127.0.0.1:1/x.dtd\">"
                        "<a/>"),
                    XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<!-- one -->\n<!-- two --><!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>"),
                    XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("<?xml version=\"1.0\"?><?pi data?><!DOCTYPE a><a/>"),
                    XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("\xEF\xBB\xBF<!DOCTYPE a><a/>"), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL(TRY("\xEF\xBB\xBF<?xml version=\"1.0\"?>\r\n\t<!-- c --> <!DOCTYPE a><a/>"),
                    XCAP_NOT_WELL_FORMED);
    /* a comment that mentions "-->" like text does not hide the DOCTYPE after it */
    CU_ASSERT_EQUAL(TRY("<!-- <?x ?> --><!DOCTYPE a><a/>"), XCAP_NOT_WELL_FORMED);
    /* "DOCTYPE" as text inside the document is harmless */
    CU_ASSERT_EQUAL(TRY("<a>&lt;!DOCTYPE x&gt; <![CDATA[<!DOCTYPE y>]]></a>"), XCAP_OK);
}

static void test_parse_billion_laughs(void)
{
    static const char bomb[] =
        "<?xml version=\"1.0\"?>\n"
        "<!DOCTYPE lolz [\n"
        " <!ENTITY lol \"lol\">\n"
        " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
        " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
        " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
        " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
        " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
        " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
        " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
        " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
        " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
        "]>\n"
        "<lolz>&lol9;</lolz>";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 100; i++)
        CU_ASSERT_EQUAL(xdoc_try(bomb, sizeof bomb - 1, NULL), XCAP_NOT_WELL_FORMED);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    /* 100 refusals in well under a second: nothing was expanded */
    CU_ASSERT(secs < 1.0);
    /* the quadratic-blowup variant (one big entity referenced many times) needs a DOCTYPE too */
    struct buf b;
    buf_init(&b, 1 << 20);
    CU_ASSERT_EQUAL(buf_puts(&b, "<!DOCTYPE q [<!ENTITY a \""), 0);
    for (int i = 0; i < 10000; i++)
        CU_ASSERT_EQUAL_FATAL(buf_puts(&b, "x"), 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "\">]><q>"), 0);
    for (int i = 0; i < 10000; i++)
        CU_ASSERT_EQUAL_FATAL(buf_puts(&b, "&a;"), 0);
    CU_ASSERT_EQUAL(buf_puts(&b, "</q>"), 0);
    CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, NULL), XCAP_NOT_WELL_FORMED);
    buf_release(&b);
}

/* libxml2 reads on after a fatal error and still compares the attributes of every later start
 * tag pairwise; the parser stops at the first one instead, so a body broken near its start costs
 * next to nothing however many attributes follow (before: about a second for these 60 000). */
static void test_parse_stops_at_first_error(void)
{
    static const char *const heads[] = {"<r><? ", "<r>< ", "<r><!x ", "<r><y a='<' "};
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        struct buf b;
        buf_init(&b, 1 << 22);
        CU_ASSERT_EQUAL(buf_puts(&b, heads[h]), 0);
        CU_ASSERT_EQUAL(buf_puts(&b, "<x"), 0);
        for (int i = 0; i < 60000; i++)
            CU_ASSERT_EQUAL_FATAL(buf_printf(&b, " a%d=''", i), 0);
        CU_ASSERT_EQUAL(buf_puts(&b, "/></r>"), 0);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        char *phrase = NULL;
        CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, &phrase), XCAP_NOT_WELL_FORMED);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        CU_ASSERT(secs < 0.1);
        /* the phrase names the first error, on line 1 */
        CU_ASSERT(phrase && strstr(phrase, "line 1:"));
        free(phrase);
        buf_release(&b);
    }
}

/* xdoc_parse_unbound(): prefixes the body leaves unbound are accepted (their elements have no
 * namespace); everything else is judged as by xdoc_parse(). */
static void test_parse_unbound(void)
{
    static const char frag[] = "<w><p:e p:k='1' xmlns:q='urn:q'><q:f/></p:e></w>";
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(xdoc_try(frag, sizeof frag - 1, NULL), XCAP_NOT_WELL_FORMED);
    CU_ASSERT_EQUAL_FATAL(xdoc_parse_unbound(frag, sizeof frag - 1, &doc, &err), XCAP_OK);
    xmlNodePtr e = xmlDocGetRootElement(doc)->children;
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_PTR_NULL(e->ns);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e->children);
    CU_ASSERT_STRING_EQUAL((const char *)e->children->ns->href, "urn:q");
    xmlFreeDoc(doc);
    static const char broken[] = "<w><p:e></w>";
    CU_ASSERT_EQUAL(xdoc_parse_unbound(broken, sizeof broken - 1, &doc, &err),
                    XCAP_NOT_WELL_FORMED);
    CU_ASSERT_PTR_NULL(doc);
    xcap_err_release(&err);
    CU_ASSERT_EQUAL(xdoc_parse_unbound("<a>caf\xE9</a>", 9, &doc, &err), XCAP_NOT_UTF8);
    xcap_err_release(&err);
}

/* <e><e>...</e></e> with depth nested elements. */
static void xdoc_nested(struct buf *b, int depth)
{
    buf_reset(b);
    for (int i = 0; i < depth; i++)
        CU_ASSERT_EQUAL_FATAL(buf_puts(b, "<e>"), 0);
    for (int i = 0; i < depth; i++)
        CU_ASSERT_EQUAL_FATAL(buf_puts(b, "</e>"), 0);
}

static void test_parse_depth(void)
{
    struct buf b;
    buf_init(&b, 1 << 20);
    xdoc_nested(&b, 100);
    CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, NULL), XCAP_OK);
    xdoc_nested(&b, XDOC_MAX_DEPTH);
    CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, NULL), XCAP_OK);
    xdoc_nested(&b, XDOC_MAX_DEPTH + 1);
    CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, NULL), XCAP_NOT_WELL_FORMED);
    /* the deep branch is not the first one: <r><x/>text<!--c--><w>nested</w></r> */
    for (int extra = 0; extra <= 1; extra++) {
        struct buf w;
        buf_init(&w, 1 << 20);
        xdoc_nested(&b, XDOC_MAX_DEPTH - 2 + extra);
        CU_ASSERT_EQUAL(buf_puts(&w, "<r><x><y/></x>text<!--c--><w>"), 0);
        CU_ASSERT_EQUAL(buf_append(&w, b.data, b.len), 0);
        CU_ASSERT_EQUAL(buf_puts(&w, "</w><z/></r>"), 0);
        CU_ASSERT_EQUAL(xdoc_try(w.data, w.len, NULL), extra ? XCAP_NOT_WELL_FORMED : XCAP_OK);
        buf_release(&w);
    }
    xdoc_nested(&b, 5000);
    CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, NULL), XCAP_NOT_WELL_FORMED);
    xdoc_nested(&b, 100000);
    CU_ASSERT_EQUAL(xdoc_try(b.data, b.len, NULL), XCAP_NOT_WELL_FORMED);
    buf_release(&b);
}

static void test_serialize_round_trip(void)
{
    static const char text[] =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        "<rl:resource-lists xmlns:rl=\"urn:ietf:params:xml:ns:resource-lists\" "
        "xmlns=\"urn:example\">"
        "<rl:list name=\"a&amp;b &quot;q&quot;\"><rl:entry uri=\"sip:b@example.com\">"
        "<rl:display-name>B\xC3\xB6"
        "b \xE2\x82\xAC &lt;x&gt;</rl:display-name></rl:entry>"
        "<!-- kept --><other/></rl:list></rl:resource-lists>";
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL_FATAL(xdoc_parse(text, sizeof text - 1, &doc, &err), XCAP_OK);
    struct buf one, two;
    buf_init(&one, 1 << 16);
    buf_init(&two, 1 << 16);
    CU_ASSERT_EQUAL_FATAL(xdoc_serialize(doc, &one), 0);
    xmlFreeDoc(doc);
    CU_ASSERT_EQUAL(strncmp(one.data, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>", 38), 0);
    /* non-ASCII stays raw UTF-8, not character references */
    CU_ASSERT_PTR_NOT_NULL(strstr(one.data, "B\xC3\xB6"
                                            "b \xE2\x82\xAC &lt;x&gt;"));
    CU_ASSERT_PTR_NOT_NULL(strstr(one.data, "name=\"a&amp;b &quot;q&quot;\""));
    CU_ASSERT_PTR_NOT_NULL(strstr(one.data, "<!-- kept -->"));
    CU_ASSERT_TRUE(xdoc_utf8_valid(one.data, one.len));

    CU_ASSERT_EQUAL_FATAL(xdoc_parse(one.data, one.len, &doc, &err), XCAP_OK);
    CU_ASSERT_EQUAL_FATAL(xdoc_serialize(doc, &two), 0);
    CU_ASSERT_EQUAL(one.len, two.len);
    CU_ASSERT_STRING_EQUAL(one.data, two.data);

    /* serialising appends, and respects the buffer maximum */
    struct buf small;
    buf_init(&small, 40);
    CU_ASSERT_EQUAL(buf_puts(&small, "prefix"), 0);
    CU_ASSERT_EQUAL(xdoc_serialize(doc, &small), -1);
    CU_ASSERT_EQUAL(small.len, 6);
    CU_ASSERT_STRING_EQUAL(small.data, "prefix");
    buf_release(&small);
    xmlFreeDoc(doc);
    buf_release(&one);
    buf_release(&two);
    xcap_err_release(&err);
}

static int xdoc_suite_init(void)
{
    xdoc_global_init();
    return 0;
}

/* The tree readers of the constraint checks: element tests by namespace, element-only walks
 * (text and comments skipped), attributes without a namespace, trimmed text. */
static void test_tree_readers(void)
{
    static const char body[] = "<r xmlns='urn:a' xmlns:b='urn:b'>\n <!-- c --> <x n='1' b:n='2'/>"
                               "text<b:y e=''> \t v w\r\n</b:y><x/></r>";
    xmlDocPtr doc = NULL;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL_FATAL(xdoc_parse(body, strlen(body), &doc, &err), XCAP_OK);
    xmlNodePtr r = xmlDocGetRootElement(doc);
    CU_ASSERT_TRUE(xdoc_is(r, "urn:a", "r"));
    CU_ASSERT_FALSE(xdoc_is(r, "urn:b", "r"));
    CU_ASSERT_FALSE(xdoc_is(r, "urn:a", "x"));
    CU_ASSERT_FALSE(xdoc_is(NULL, "urn:a", "r"));
    xmlNodePtr x = xdoc_first_child(r);
    CU_ASSERT_TRUE_FATAL(xdoc_is(x, "urn:a", "x"));
    CU_ASSERT_STRING_EQUAL(xdoc_attr(x, "n"), "1"); /* b:n is another attribute */
    CU_ASSERT_PTR_NULL(xdoc_attr(x, "m"));
    CU_ASSERT_PTR_NULL(xdoc_first_child(x));
    xmlNodePtr y = xdoc_next(x);
    CU_ASSERT_TRUE_FATAL(xdoc_is(y, "urn:b", "y"));
    CU_ASSERT_STRING_EQUAL(xdoc_attr(y, "e"), "");
    char *t = xdoc_text_dup(y);
    CU_ASSERT_STRING_EQUAL(t, "v w");
    free(t);
    CU_ASSERT_TRUE(xdoc_is(xdoc_next(y), "urn:a", "x"));
    CU_ASSERT_PTR_NULL(xdoc_next(xdoc_next(y)));
    CU_ASSERT_PTR_NULL(xdoc_next(NULL));
    CU_ASSERT_PTR_NULL(xdoc_first_child(NULL));
    xmlFreeDoc(doc);
    xcap_err_release(&err);
}

static int xdoc_suite_cleanup(void)
{
    xdoc_global_cleanup();
    return 0;
}

static CU_TestInfo xdoc_tests[] = {
    {"UTF-8 validator", test_utf8_validator},
    {"parse: well-formed documents", test_parse_ok},
    {"parse: not-well-formed with phrase", test_parse_not_well_formed},
    {"parse: not-utf-8", test_parse_not_utf8},
    {"parse: DOCTYPE refused", test_parse_doctype_refused},
    {"parse: entity bombs refused quickly", test_parse_billion_laughs},
    {"parse: nesting depth bound", test_parse_depth},
    {"parse: stops at the first fatal error", test_parse_stops_at_first_error},
    {"parse: prefixes left unbound", test_parse_unbound},
    {"serialize round trip", test_serialize_round_trip},
    {"tree readers", test_tree_readers},
    CU_TEST_INFO_NULL,
};

int main(void)
{
    CU_SuiteInfo suites[] = {
        {"xdoc", xdoc_suite_init, xdoc_suite_cleanup, NULL, NULL, xdoc_tests},
        CU_SUITE_INFO_NULL,
    };
    return unit_run(suites);
}
