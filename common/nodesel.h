/* XCAP node selectors (RFC 4825 §6.3): our own parser and evaluator over libxml2 trees. The
 * selector is never handed to a general XPath engine.
 *
 * Grammar (RFC 4825 §6.3):
 *   node-selector = element-selector ["/" terminal-selector]
 *   step          = NameorAny | NameorAny "[" position "]" | NameorAny "[" attr-test "]"
 *                 | NameorAny "[" position "]" "[" attr-test "]"
 *   attr-test     = "@" QName "=" AttValue       (AttValue quoted with " or ', may hold
 *                                                  &lt; &gt; &amp; &quot; &apos; &#N; &#xH;)
 *   terminal      = "@" QName | "namespace::*"
 * Unprefixed element names are in the application usage's default document namespace
 * (RFC 4825 §5.2, §6.3); unprefixed attribute names are in no namespace; prefixes are bound only by
 * the xmlns(prefix=URI) parts of the query (RFC 4825 §6.4); an unbound prefix is a parse error. */
#ifndef XDM_NODESEL_H
#define XDM_NODESEL_H

#include <libxml/tree.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

struct nodesel_step {
    char *ns;      /* namespace URI of the name test, NULL = no namespace */
    char *local;   /* local name, NULL for "*" */
    unsigned pos;  /* 1-based position predicate, 0 = none */
    bool has_attr; /* attribute test present */
    char *attr_ns; /* namespace of the tested attribute, NULL = none */
    char *attr_local;
    char *attr_value; /* expanded value */
    char *text;       /* the step as written (decoded), for error reports */
};

enum nodesel_terminal { NODESEL_ELEMENT, NODESEL_ATTRIBUTE, NODESEL_NAMESPACE };

struct nodesel {
    struct nodesel_step *steps; /* element selector, at least one step */
    size_t n_steps;
    enum nodesel_terminal terminal;
    char *attr_ns; /* NODESEL_ATTRIBUTE: the selected attribute */
    char *attr_local;
    char *attr_prefix; /* prefix as written in the selector, or NULL */
    char *attr_text;   /* "@name" as written */
};

/* Bounds: a selector with more steps, or a query with more bindings, is refused. */
#define NODESEL_MAX_STEPS 64
#define NODESEL_MAX_BINDINGS 32

/* Parses a decoded node selector and decoded query. default_ns is the AUID's default document
 * namespace. Failures: XCAP_BAD_REQUEST with a phrase (syntax, unbound prefix, bounds). */
enum xcap_status nodesel_parse(const char *sel, const char *query, const char *default_ns,
                               struct nodesel *out, struct xcap_err *err);
void nodesel_release(struct nodesel *ns);

/* Evaluates steps [0, n_steps) on doc (RFC 4825 §6.3: every step must select exactly one
 * element). Returns the element, or NULL when some step selects none (*ambiguous = false) or
 * more than one (*ambiguous = true). *depth_ok (optional) receives how many leading steps did
 * select exactly one element. */
xmlNodePtr nodesel_eval(const struct nodesel *ns, size_t n_steps, xmlDocPtr doc, bool *ambiguous,
                        size_t *depth_ok);

/* True when element el passes the name test of step (ignores predicates). */
bool nodesel_name_matches(const struct nodesel_step *step, xmlNodePtr el);
/* True when el carries the step's attribute test (or the step has none). */
bool nodesel_attr_matches(const struct nodesel_step *step, xmlNodePtr el);

/* Finds the attribute (ns, local) on el; NULL when absent. */
xmlAttrPtr nodesel_find_attr(xmlNodePtr el, const char *ns, const char *local);

#endif
