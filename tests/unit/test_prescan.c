/* common/prescan.c: the linear pre-scan that bounds attributes, elements and depth before
 * libxml2 reads a body. Its counts must equal libxml2's on well-formed input (else a legal
 * document could be refused, or an over-limit one let through), its verdicts must sit exactly at
 * the limits, and its time must stay linear on any input. */
#include <CUnit/CUnit.h>
#include <libxml/parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "buf.h"
#include "prescan.h"
#include "status.h"
#include "unit.h"
#include "xdoc.h"

static const struct prescan_limits wide = {1000000, 100000000, 1000000};

static struct prescan_counts scan(const char *s, enum xcap_status *st)
{
    struct prescan_counts c;
    struct xcap_err err = {0};
    *st = prescan_check(s, strlen(s), &wide, &c, &err);
    xcap_err_release(&err);
    return c;
}

/* The same counts, taken from the tree libxml2 builds (namespace declarations are attributes
 * in the body, so they count). */
static void tree_counts(xmlNodePtr n, size_t depth, struct prescan_counts *c)
{
    for (; n; n = n->next) {
        if (n->type != XML_ELEMENT_NODE)
            continue;
        c->elements++;
        if (depth > c->max_depth)
            c->max_depth = depth;
        size_t attrs = 0;
        for (xmlAttrPtr a = n->properties; a; a = a->next)
            attrs++;
        for (xmlNsPtr d = n->nsDef; d; d = d->next)
            attrs++;
        if (attrs > c->max_attributes)
            c->max_attributes = attrs;
        tree_counts(n->children, depth + 1, c);
    }
}

static void test_counts_match_libxml2(void)
{
    static const char *const docs[] = {
        "<a/>",
        "<?xml version='1.0' encoding='UTF-8'?>\n<!-- <x y z> -->\n<a b='1' c=\"2\"><b/></a>",
        "<r xmlns=\"urn:r\" xmlns:p=\"urn:p\" p:k='&lt;v>' a = \"x'y\"><p:e/>text &amp; "
        "more<![CDATA[<not an='element'/>]]><?pi <neither a='b'?><f\n  g='1'\n/></r>",
        "<a><b><c><d><e x='1' y='2' z='3'/></d></c></b><b/></a>",
        "<a k='>>>' l=\"/>\"><b/><!-- a - b <c d=e> --><c/></a>",
        "\xEF\xBB\xBF<list name=\"x\"><entry uri='sip:a@b'><display-name>A &lt; B</display-name>"
        "</entry></list>",
        "<a>< b</a>", /* not well-formed: only checked not to count less, below */
    };
    for (size_t i = 0; i + 1 < sizeof docs / sizeof docs[0]; i++) {
        enum xcap_status st;
        struct prescan_counts c = scan(docs[i], &st);
        CU_ASSERT_EQUAL(st, XCAP_OK);
        xmlDocPtr doc = NULL;
        struct xcap_err err = {0};
        CU_ASSERT_EQUAL_FATAL(xdoc_parse(docs[i], strlen(docs[i]), &doc, &err), XCAP_OK);
        struct prescan_counts t = {0};
        tree_counts(xmlDocGetRootElement(doc), 1, &t);
        xmlFreeDoc(doc);
        xcap_err_release(&err);
        if (c.elements != t.elements || c.max_attributes != t.max_attributes ||
            c.max_depth != t.max_depth)
            printf("\n  doc %zu: scan %zu/%zu/%zu, tree %zu/%zu/%zu\n", i, c.elements,
                   c.max_attributes, c.max_depth, t.elements, t.max_attributes, t.max_depth);
        CU_ASSERT_EQUAL(c.elements, t.elements);
        CU_ASSERT_EQUAL(c.max_attributes, t.max_attributes);
        CU_ASSERT_EQUAL(c.max_depth, t.max_depth);
    }
}

/* On malformed input the scanner may count more than a parser would, never less: a '<' cuts an
 * attribute value or an end tag short (libxml2 stops reading there), "<!" that opens nothing
 * known is stepped over, and unterminated comments run to the end (as libxml2's do). */
static void test_malformed_not_undercounted(void)
{
    static const struct {
        const char *text;
        size_t elements, max_attributes;
    } cases[] = {
        {"<a b='<c d e f>", 2, 3},     /* the value ends at '<'; <c> has three names */
        {"<a><!x <b c d/></a>", 2, 2}, /* "<!x" is no known construct */
        {"<a b c d e", 1, 4},          /* names without values still count */
        {"<a></a <b c/>", 2, 1},       /* so does an end tag */
        {"<!-- never closed <a b c/>", 0, 0},
        {"<a/><b/><c/>", 3, 0},
        {"< a/>", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum xcap_status st;
        struct prescan_counts c = scan(cases[i].text, &st);
        CU_ASSERT_EQUAL(st, XCAP_OK);
        if (c.elements < cases[i].elements || c.max_attributes < cases[i].max_attributes)
            printf("\n  case %zu: %zu elements, %zu attributes\n", i, c.elements, c.max_attributes);
        CU_ASSERT(c.elements >= cases[i].elements);
        CU_ASSERT(c.max_attributes >= cases[i].max_attributes);
    }
}

static char *repeat(const char *head, const char *unit, size_t n, const char *tail)
{
    struct buf b;
    buf_init(&b, SIZE_MAX);
    int rc = buf_puts(&b, head);
    for (size_t i = 0; i < n; i++)
        rc |= buf_puts(&b, unit);
    rc |= buf_puts(&b, tail);
    CU_ASSERT_EQUAL(rc, 0);
    return buf_detach(&b, NULL);
}

static enum xcap_status check(const char *s, const struct prescan_limits *lim, char **phrase)
{
    struct xcap_err err = {0};
    enum xcap_status st = prescan_check(s, strlen(s), lim, NULL, &err);
    CU_ASSERT(st == XCAP_OK || err.status == st);
    if (phrase)
        *phrase = err.phrase ? strdup(err.phrase) : NULL;
    xcap_err_release(&err);
    return st;
}

static void test_limits_exact(void)
{
    struct prescan_limits lim;
    prescan_limits_default(&lim);
    CU_ASSERT_EQUAL(lim.max_attributes, 256);
    CU_ASSERT_EQUAL(lim.max_elements, 100000);
    CU_ASSERT_EQUAL(lim.max_depth, 64);

    /* attributes: 256 fine, 257 refused, with the line of the element and the key */
    char *ok = repeat("<r>\n<e", " a=''", 256, "/></r>");
    char *over = repeat("<r>\n<e", " a=''", 257, "/></r>");
    char *phrase = NULL;
    CU_ASSERT_EQUAL(check(ok, &lim, NULL), XCAP_OK);
    CU_ASSERT_EQUAL(check(over, &lim, &phrase), XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT_STRING_EQUAL(phrase, "line 2: an element has more than 256 attributes "
                                   "(max_attributes)");
    free(phrase);
    free(ok);
    free(over);

    /* elements: the document element counts */
    ok = repeat("<r>", "<e/>", 99999, "</r>");
    over = repeat("<r>", "<e/>", 100000, "</r>");
    CU_ASSERT_EQUAL(check(ok, &lim, NULL), XCAP_OK);
    CU_ASSERT_EQUAL(check(over, &lim, &phrase), XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT_STRING_EQUAL(phrase, "line 1: more than 100000 elements (max_elements)");
    free(phrase);
    free(ok);
    free(over);

    /* depth: the document element is level 1; an empty-element tag is a level too */
    ok = repeat("", "<d>", 63, "<e/>");
    over = repeat("", "<d>", 64, "<e/>");
    CU_ASSERT_EQUAL(check(ok, &lim, NULL), XCAP_OK);
    CU_ASSERT_EQUAL(check(over, &lim, &phrase), XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT_STRING_EQUAL(phrase, "line 1: elements nested more than 64 deep (max_depth)");
    free(phrase);
    free(ok);
    free(over);
    /* siblings do not add depth: 1000 levels opened and closed one after another */
    char *flat = repeat("<r>", "<a><b/></a>", 1000, "</r>");
    CU_ASSERT_EQUAL(check(flat, &lim, NULL), XCAP_OK);
    free(flat);

    /* configured values; zero fields take the defaults */
    struct prescan_limits small = {2, 3, 0};
    CU_ASSERT_EQUAL(check("<a x='1' y='2'><b/><c/></a>", &small, NULL), XCAP_OK);
    CU_ASSERT_EQUAL(check("<a x='1' y='2' z='3'/>", &small, NULL), XCAP_CONSTRAINT_FAILURE);
    CU_ASSERT_EQUAL(check("<a><b/><c/><d/></a>", &small, NULL), XCAP_CONSTRAINT_FAILURE);
    /* NULL limits: the defaults */
    CU_ASSERT_EQUAL(check("<a/>", NULL, NULL), XCAP_OK);
}

/* CPU milliseconds the scanner takes over n repetitions of an input's unit. */
static double scan_cpu_ms(const char *head, const char *unit, size_t n, const char *tail,
                          const struct prescan_limits *lim, enum xcap_status *st)
{
    char *s = repeat(head, unit, n, tail);
    struct timespec a, b;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    *st = check(s, lim, NULL);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    free(s);
    return (double)(b.tv_sec - a.tv_sec) * 1e3 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
}

/* The attack the scanner exists for, and inputs built to make a scanner quadratic. Linear time is
 * checked as a ratio of CPU times, not against the clock: eight times the input may take about
 * eight times as long (a quadratic scanner takes 64 times), plus a slack for timer noise, so the
 * test holds on a loaded machine and under sanitizers. */
static void test_linear_time(void)
{
    struct prescan_limits lim;
    prescan_limits_default(&lim);
    struct {
        const char *head, *unit, *tail;
        size_t n;
    } inputs[] = {
        {"<entry", " abc=\"\"", "/>", 143000}, /* refused after 257 attributes */
        {"<r>", "<!--", "", 250000},           /* nested comment openers */
        {"<r>", "<?", "", 500000},             /* unterminated PIs */
        {"<r a='", "<", "'/>", 1000000},       /* a value full of '<' */
        {"<r>", "</", "", 500000},             /* end tags without names */
        {"", "<", "", 1000000},                /* bare '<' */
        {"<r>", "<![CDATA[", "", 100000},      /* CDATA openers */
        {"<r ", "= \" ' ", "/>", 170000},      /* quotes and equals */
    };
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
        enum xcap_status st;
        double eighth =
            scan_cpu_ms(inputs[i].head, inputs[i].unit, inputs[i].n / 8, inputs[i].tail, &lim, &st);
        double full =
            scan_cpu_ms(inputs[i].head, inputs[i].unit, inputs[i].n, inputs[i].tail, &lim, &st);
        if (i == 0)
            CU_ASSERT_EQUAL(st, XCAP_CONSTRAINT_FAILURE);
        bool linear = full <= 16 * eighth + 50;
        if (!linear)
            printf("\n  input %zu: %.1f ms for n/8, %.1f ms for n\n", i, eighth, full);
        CU_ASSERT(linear);
    }
}

int main(void)
{
    xdoc_global_init();
    CU_TestInfo tests[] = {
        {"counts equal libxml2's on well-formed input", test_counts_match_libxml2},
        {"malformed input is not under-counted", test_malformed_not_undercounted},
        {"limits apply exactly, phrases name them", test_limits_exact},
        {"linear time on hostile input", test_linear_time},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"prescan", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}
