/* A linear pre-scan of XML bodies that bounds their shape before libxml2 parses them.
 *
 * libxml2's cost is not linear in the size of its input: the attributes of one start tag are
 * compared pairwise for duplicates, so a 1 MiB element with 143 000 attributes costs about a
 * minute of CPU. Every body from the network (document, element and attribute bodies, SIP
 * subscription bodies) is first counted here, in one pass with no allocation, and refused when
 * it has more than
 *   - max_attributes attributes on one element (namespace declarations count as attributes:
 *     libxml2 checks those pairwise too),
 *   - max_elements elements in all,
 *   - max_depth levels of element nesting (the outermost element is level 1).
 *
 * The scanner is not a validator. It tokenises as XML does (comments, CDATA sections and
 * processing instructions are skipped; quotes delimit attribute values only inside a start tag),
 * so for well-formed input its counts are exact; on malformed input it never counts less than
 * what libxml2 would parse before it stops (a '<' inside an attribute value ends the tag, as the
 * value cannot hold one), and leaves the verdict on well-formedness to libxml2.
 *
 * Thread-safety: reentrant; no state. */
#ifndef XDM_PRESCAN_H
#define XDM_PRESCAN_H

#include <stddef.h>

#include "status.h"

/* Defaults of the three limits (docs/configuration.md: max_attributes, max_elements,
 * max_depth). 100 000 elements leave room for a list of 10 000 entries with a display name and
 * a few extension elements each. */
#define PRESCAN_DEFAULT_MAX_ATTRIBUTES 256
#define PRESCAN_DEFAULT_MAX_ELEMENTS 100000
#define PRESCAN_DEFAULT_MAX_DEPTH 64

struct prescan_limits {
    size_t max_attributes; /* per element */
    size_t max_elements;   /* per body or document */
    size_t max_depth;      /* nesting levels */
};

/* What one scan counted (up to where it stopped, when a limit was exceeded). */
struct prescan_counts {
    size_t elements;
    size_t max_attributes; /* the most attributes seen on one element */
    size_t max_depth;      /* the deepest nesting seen */
};

/* The defaults above. */
void prescan_limits_default(struct prescan_limits *lim);

/* Scans data[0..len) against lim (borrowed; a zero field takes its default). counts may be NULL.
 * Returns XCAP_OK, or XCAP_CONSTRAINT_FAILURE with err's phrase naming the line, the limit and
 * its configuration key, e.g. "line 3: an element has more than 256 attributes
 * (max_attributes)". Stops at the first excess, so the cost is O(len) whatever the input. */
enum xcap_status prescan_check(const char *data, size_t len, const struct prescan_limits *lim,
                               struct prescan_counts *counts, struct xcap_err *err);

#endif
