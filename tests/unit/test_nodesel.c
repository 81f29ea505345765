/* Node selector grammar (RFC 4825 §6.3) and evaluation. */
#include <CUnit/CUnit.h>
#include <libxml/parser.h>
#include <string.h>

#include "nodesel.h"
#include "unit.h"
#include "xdoc.h"

#define RL "urn:ietf:params:xml:ns:resource-lists"
#define CP "urn:ietf:params:xml:ns:common-policy"

struct sel_case {
    const char *sel;
    const char *query;
    int ok;         /* 1 = parses, 0 = 400 */
    size_t n_steps; /* when ok */
    enum nodesel_terminal terminal;
    const char *last_local; /* local name of the last element step, "*" for any */
    unsigned last_pos;
    const char *last_attr_value; /* expanded, or NULL when no attribute test */
};

static const struct sel_case sel_cases[] = {
    {"resource-lists", NULL, 1, 1, NODESEL_ELEMENT, "resource-lists", 0, NULL},
    {"resource-lists/list", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, NULL},
    {"*", NULL, 1, 1, NODESEL_ELEMENT, "*", 0, NULL},
    {"*/*", NULL, 1, 2, NODESEL_ELEMENT, "*", 0, NULL},
    {"resource-lists/list[1]", NULL, 1, 2, NODESEL_ELEMENT, "list", 1, NULL},
    {"resource-lists/list[12]", NULL, 1, 2, NODESEL_ELEMENT, "list", 12, NULL},
    {"resource-lists/list[@name=\"friends\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, "friends"},
    {"resource-lists/list[@name='friends']", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, "friends"},
    {"resource-lists/list[2][@name=\"x\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 2, "x"},
    {"resource-lists/*[@name=\"x\"]", NULL, 1, 2, NODESEL_ELEMENT, "*", 0, "x"},
    {"resource-lists/*[3]", NULL, 1, 2, NODESEL_ELEMENT, "*", 3, NULL},
    {"resource-lists/*[3][@name=\"x\"]", NULL, 1, 2, NODESEL_ELEMENT, "*", 3, "x"},
    {"resource-lists/list[@name=\"a/b\"]/entry", NULL, 1, 3, NODESEL_ELEMENT, "entry", 0, NULL},
    {"resource-lists/list[@name=\"a]b\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, "a]b"},
    {"resource-lists/list[@name=\"it's\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, "it's"},
    {"resource-lists/list[@name='say \"hi\"']", NULL, 1, 2, NODESEL_ELEMENT, "list", 0,
     "say \"hi\""},
    {"resource-lists/list[@name=\"&quot;q&quot;\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0,
     "\"q\""},
    {"resource-lists/list[@name=\"&lt;&gt;&amp;&apos;\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0,
     "<>&'"},
    {"resource-lists/list[@name=\"&#65;&#x42;\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, "AB"},
    {"resource-lists/list[@name=\"&#xE9;\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, "\xC3\xA9"},
    {"resource-lists/list[@name=\"\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0, ""},
    {"resource-lists/list[@name=\"caf\xC3\xA9\"]", NULL, 1, 2, NODESEL_ELEMENT, "list", 0,
     "caf\xC3\xA9"},
    {"resource-lists/list/entry[@uri=\"sip:bob@example.com\"]", NULL, 1, 3, NODESEL_ELEMENT,
     "entry", 0, "sip:bob@example.com"},
    {"resource-lists/list/@name", NULL, 1, 2, NODESEL_ATTRIBUTE, "list", 0, NULL},
    {"resource-lists/list[1]/entry[2]/@uri", NULL, 1, 3, NODESEL_ATTRIBUTE, "entry", 2, NULL},
    {"resource-lists/list/namespace::*", NULL, 1, 2, NODESEL_NAMESPACE, "list", 0, NULL},
    {"resource-lists/namespace::*", NULL, 1, 1, NODESEL_NAMESPACE, "resource-lists", 0, NULL},
    {"rl:resource-lists/rl:list", "xmlns(rl=" RL ")", 1, 2, NODESEL_ELEMENT, "list", 0, NULL},
    {"rl:resource-lists/rl:list", "xmlns(rl=" RL ")xmlns(cp=" CP ")", 1, 2, NODESEL_ELEMENT, "list",
     0, NULL},
    {"rl:resource-lists/rl:list", " xmlns(rl=" RL ") ", 1, 2, NODESEL_ELEMENT, "list", 0, NULL},
    {"rl:resource-lists/list/@x:a", "xmlns(rl=" RL ")xmlns(x=urn:x)", 1, 2, NODESEL_ATTRIBUTE,
     "list", 0, NULL},
    {"a/b[@x:c=\"1\"]", "xmlns(x=urn:x)", 1, 2, NODESEL_ELEMENT, "b", 0, "1"},
    {"a/b_c.d-e", NULL, 1, 2, NODESEL_ELEMENT, "b_c.d-e", 0, NULL},
    {"a/\xC3\xA9l\xC3\xA9ment", NULL, 1, 2, NODESEL_ELEMENT, "\xC3\xA9l\xC3\xA9ment", 0, NULL},
    {"a/b[0]", NULL, 1, 2, NODESEL_ELEMENT, "b", (unsigned)-1, NULL},
    {"ruleset/rule[@id=\"r1\"]/conditions", NULL, 1, 3, NODESEL_ELEMENT, "conditions", 0, NULL},
    {"a/display-name[@xml:lang=\"en\"]", NULL, 1, 2, NODESEL_ELEMENT, "display-name", 0, "en"},
    {"a/display-name/@xml:lang", NULL, 1, 2, NODESEL_ATTRIBUTE, "display-name", 0, NULL},
    {"a/@xml:lang", "xmlns(xml=http://www.w3.org/XML/1998/namespace)", 1, 1, NODESEL_ATTRIBUTE, "a",
     0, NULL},
    {"a/@xml:lang", "xmlns(xml=urn:not-xml)", 0, 0, 0, NULL, 0, NULL},
    {"presence/tuple[@id=\"t1\"]/status/basic", NULL, 1, 4, NODESEL_ELEMENT, "basic", 0, NULL},
    /* invalid */
    {"", NULL, 0, 0, 0, NULL, 0, NULL},
    {"/", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a//b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/", NULL, 0, 0, 0, NULL, 0, NULL},
    {"/a", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/..", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/.", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/text()", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[position()=1]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"1\" or @c=\"2\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=1]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"1]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"1\"", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[1", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[-1]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[1][2]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"1\"][2]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"1\"][@d=\"2\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[1][@c=\"1\"][@d=\"2\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"&bogus;\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"a&b\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"&#0;\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b[@c=\"&#xD800;\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/@*", NULL, 0, 0, 0, NULL, 0, NULL},
    {"@a", NULL, 0, 0, 0, NULL, 0, NULL},
    {"namespace::*", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/@b/c", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/namespace::*/b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/namespace::x", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/1b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/-b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b c", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/p:b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/p:b", "xmlns(q=urn:q)", 0, 0, 0, NULL, 0, NULL},
    {"a/b[@p:c=\"1\"]", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/@p:c", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/p:", "xmlns(p=urn:p)", 0, 0, 0, NULL, 0, NULL},
    {"a/:b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a", "xmlns(p)", 0, 0, 0, NULL, 0, NULL},
    {"a", "xmlns(p=urn:p", 0, 0, 0, NULL, 0, NULL},
    {"a", "xpointer(/a)", 0, 0, 0, NULL, 0, NULL},
    {"a", "xmlns(=urn:p)", 0, 0, 0, NULL, 0, NULL},
    {"a|b", NULL, 0, 0, 0, NULL, 0, NULL},
    {"a/b::c", NULL, 0, 0, 0, NULL, 0, NULL},
};

static void test_parse_table(void)
{
    size_t n = sizeof sel_cases / sizeof sel_cases[0];
    CU_ASSERT(n >= 60);
    for (size_t i = 0; i < n; i++) {
        const struct sel_case *c = &sel_cases[i];
        struct nodesel ns;
        struct xcap_err err = {0};
        enum xcap_status st = nodesel_parse(c->sel, c->query, RL, &ns, &err);
        if (!c->ok) {
            if (st != XCAP_BAD_REQUEST)
                fprintf(stderr, "\n  accepted invalid selector [%s]\n", c->sel);
            CU_ASSERT_EQUAL(st, XCAP_BAD_REQUEST);
            CU_ASSERT_PTR_NOT_NULL(err.phrase);
            if (st == XCAP_OK)
                nodesel_release(&ns);
            xcap_err_release(&err);
            continue;
        }
        if (st != XCAP_OK) {
            fprintf(stderr, "\n  refused valid selector [%s]: %s\n", c->sel,
                    err.phrase ? err.phrase : "");
            CU_FAIL("valid selector refused");
            xcap_err_release(&err);
            continue;
        }
        CU_ASSERT_EQUAL(ns.n_steps, c->n_steps);
        CU_ASSERT_EQUAL(ns.terminal, c->terminal);
        const struct nodesel_step *last = &ns.steps[ns.n_steps - 1];
        if (strcmp(c->last_local, "*") == 0) {
            CU_ASSERT_PTR_NULL(last->local);
        } else {
            CU_ASSERT_STRING_EQUAL(last->local ? last->local : "(null)", c->last_local);
        }
        CU_ASSERT_EQUAL(last->pos, c->last_pos);
        CU_ASSERT_EQUAL(last->has_attr, c->last_attr_value != NULL);
        if (c->last_attr_value && last->attr_value) {
            CU_ASSERT_STRING_EQUAL(last->attr_value, c->last_attr_value);
        }
        nodesel_release(&ns);
    }
}

static void test_namespaces_resolved(void)
{
    struct nodesel ns;
    struct xcap_err err = {0};
    /* unprefixed elements: the usage's default namespace; unprefixed attributes: none */
    CU_ASSERT_EQUAL(nodesel_parse("ruleset/rule[@id=\"a\"]/@id", NULL, CP, &ns, &err), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(ns.steps[0].ns, CP);
    CU_ASSERT_STRING_EQUAL(ns.steps[1].ns, CP);
    CU_ASSERT_PTR_NULL(ns.steps[1].attr_ns);
    CU_ASSERT_PTR_NULL(ns.attr_ns);
    CU_ASSERT_STRING_EQUAL(ns.attr_local, "id");
    nodesel_release(&ns);
    CU_ASSERT_EQUAL(
        nodesel_parse("p:a/q:b[@q:c=\"v\"]/@p:d", "xmlns(p=urn:p)xmlns(q=urn:q^)x)", CP, &ns, &err),
        XCAP_OK);
    CU_ASSERT_STRING_EQUAL(ns.steps[0].ns, "urn:p");
    CU_ASSERT_STRING_EQUAL(ns.steps[1].ns, "urn:q)x");
    CU_ASSERT_STRING_EQUAL(ns.steps[1].attr_ns, "urn:q)x");
    CU_ASSERT_STRING_EQUAL(ns.attr_ns, "urn:p");
    nodesel_release(&ns);
    /* a later binding of the same prefix wins */
    CU_ASSERT_EQUAL(nodesel_parse("p:a", "xmlns(p=urn:1)xmlns(p=urn:2)", CP, &ns, &err), XCAP_OK);
    CU_ASSERT_STRING_EQUAL(ns.steps[0].ns, "urn:2");
    nodesel_release(&ns);
    xcap_err_release(&err);
}

static const char doc_default[] =
    "<?xml version=\"1.0\"?>\n"
    "<resource-lists xmlns=\"" RL "\" xmlns:x=\"urn:x\">\n"
    "  <list name=\"friends\">\n"
    "    <entry uri=\"sip:a@example.com\"/>\n"
    "    <x:note>n</x:note>\n"
    "    <entry uri=\"sip:b@example.com\" x:tag=\"t\"/>\n"
    "  </list>\n"
    "  <list name=\"work\"><display-name xml:lang=\"en\">Work</display-name>"
    "<display-name xml:lang=\"de\">Arbeit</display-name><entry uri=\"sip:a@example.com\"/></list>\n"
    "  <list name=\"work\"/>\n"
    "</resource-lists>\n";

static const char doc_prefixed[] =
    "<rl:resource-lists xmlns:rl=\"" RL "\">"
    "<rl:list name=\"friends\"><rl:entry uri=\"sip:a@example.com\"/></rl:list>"
    "<list name=\"other-ns\"/>"
    "</rl:resource-lists>";

static xmlNodePtr eval(xmlDocPtr doc, const char *sel, const char *query, bool *amb)
{
    struct nodesel ns;
    struct xcap_err err = {0};
    if (nodesel_parse(sel, query, RL, &ns, &err) != XCAP_OK) {
        xcap_err_release(&err);
        return NULL;
    }
    xmlNodePtr n = nodesel_eval(&ns, ns.n_steps, doc, amb, NULL);
    nodesel_release(&ns);
    return n;
}

static const char *attr(xmlNodePtr n, const char *name)
{
    static char v[128]; /* test helper only, single-threaded */
    xmlChar *s = n ? xmlGetProp(n, (const xmlChar *)name) : NULL;
    snprintf(v, sizeof v, "%s", s ? (const char *)s : "(none)");
    xmlFree(s);
    return v;
}

static void test_eval_default_ns(void)
{
    xmlDocPtr doc;
    struct xcap_err err = {0};
    CU_ASSERT_FATAL(xdoc_parse(doc_default, strlen(doc_default), &doc, &err) == XCAP_OK);
    bool amb = false;
    CU_ASSERT_STRING_EQUAL(
        attr(eval(doc, "resource-lists/list[@name=\"friends\"]", NULL, &amb), "name"), "friends");
    /* two <list name="work">: not a valid pointer */
    CU_ASSERT_PTR_NULL(eval(doc, "resource-lists/list[@name=\"work\"]", NULL, &amb));
    CU_ASSERT_TRUE(amb);
    CU_ASSERT_PTR_NULL(eval(doc, "resource-lists/list", NULL, &amb));
    CU_ASSERT_TRUE(amb);
    CU_ASSERT_STRING_EQUAL(attr(eval(doc, "resource-lists/list[2]", NULL, &amb), "name"), "work");
    CU_ASSERT_STRING_EQUAL(attr(eval(doc, "resource-lists/list[1]/entry[2]", NULL, &amb), "uri"),
                           "sip:b@example.com");
    /* *[n] counts every element, of any namespace */
    CU_ASSERT_STRING_EQUAL(attr(eval(doc, "resource-lists/list[1]/*[3]", NULL, &amb), "uri"),
                           "sip:b@example.com");
    xmlNodePtr note = eval(doc, "resource-lists/list[1]/*[2]", NULL, &amb);
    CU_ASSERT_PTR_NOT_NULL(note);
    CU_ASSERT_STRING_EQUAL(note ? (const char *)note->name : "", "note");
    CU_ASSERT_PTR_NOT_NULL(eval(doc, "resource-lists/list[1]/x:note", "xmlns(x=urn:x)", &amb));
    /* position first, then the attribute test */
    CU_ASSERT_PTR_NULL(
        eval(doc, "resource-lists/list[1]/entry[1][@uri=\"sip:b@example.com\"]", NULL, &amb));
    CU_ASSERT_FALSE(amb);
    CU_ASSERT_PTR_NOT_NULL(
        eval(doc, "resource-lists/list[1]/entry[2][@uri=\"sip:b@example.com\"]", NULL, &amb));
    CU_ASSERT_PTR_NOT_NULL(eval(doc, "*/*[@name=\"friends\"]", NULL, &amb));
    CU_ASSERT_PTR_NULL(eval(doc, "wrong-root/list", NULL, &amb));
    CU_ASSERT_PTR_NULL(eval(doc, "resource-lists/list[0]", NULL, &amb));
    CU_ASSERT_PTR_NULL(eval(doc, "resource-lists/list[9]", NULL, &amb));
    /* namespaced attribute test */
    CU_ASSERT_PTR_NOT_NULL(
        eval(doc, "resource-lists/list[1]/entry[@x:tag=\"t\"]", "xmlns(x=urn:x)", &amb));
    CU_ASSERT_PTR_NULL(eval(doc, "resource-lists/list[1]/entry[@tag=\"t\"]", NULL, &amb));
    /* the implicit xml prefix */
    CU_ASSERT_STRING_EQUAL(
        attr(eval(doc, "resource-lists/list[2]/display-name[@xml:lang=\"de\"]", NULL, &amb),
             "lang"),
        "de");
    xmlFreeDoc(doc);
}

static void test_eval_prefixed_doc(void)
{
    xmlDocPtr doc;
    struct xcap_err err = {0};
    CU_ASSERT_FATAL(xdoc_parse(doc_prefixed, strlen(doc_prefixed), &doc, &err) == XCAP_OK);
    bool amb;
    /* RFC 4825 §5.2, §6.3: unprefixed names mean the usage's namespace, whatever prefix the
     * document uses */
    CU_ASSERT_STRING_EQUAL(attr(eval(doc, "resource-lists/list", NULL, &amb), "name"), "friends");
    CU_ASSERT_STRING_EQUAL(
        attr(eval(doc, "a:resource-lists/a:list/a:entry", "xmlns(a=" RL ")", &amb), "uri"),
        "sip:a@example.com");
    /* <list> in no namespace is not a resource-lists list */
    CU_ASSERT_PTR_NULL(eval(doc, "resource-lists/list[@name=\"other-ns\"]", NULL, &amb));
    CU_ASSERT_PTR_NOT_NULL(eval(doc, "resource-lists/*[@name=\"other-ns\"]", NULL, &amb));
    xmlFreeDoc(doc);
}

static void test_bounds(void)
{
    char sel[4096] = "a";
    for (int i = 0; i < NODESEL_MAX_STEPS + 1; i++)
        strcat(sel, "/b");
    struct nodesel ns;
    struct xcap_err err = {0};
    CU_ASSERT_EQUAL(nodesel_parse(sel, NULL, RL, &ns, &err), XCAP_BAD_REQUEST);
    char q[4096] = "";
    for (int i = 0; i < NODESEL_MAX_BINDINGS + 1; i++)
        sprintf(q + strlen(q), "xmlns(p%d=urn:%d)", i, i);
    CU_ASSERT_EQUAL(nodesel_parse("a", q, RL, &ns, &err), XCAP_BAD_REQUEST);
    xcap_err_release(&err);
}

int main(void)
{
    xdoc_global_init();
    CU_TestInfo tests[] = {
        {"selector table", test_parse_table},
        {"namespaces resolved", test_namespaces_resolved},
        {"evaluation, default namespace", test_eval_default_ns},
        {"evaluation, prefixed document", test_eval_prefixed_doc},
        {"bounds", test_bounds},
        CU_TEST_INFO_NULL,
    };
    CU_SuiteInfo suites[] = {{"nodesel", NULL, NULL, NULL, NULL, tests}, CU_SUITE_INFO_NULL};
    int rc = unit_run(suites);
    xdoc_global_cleanup();
    return rc;
}
