/* Byte spans of the elements and attributes of a well-formed XML document.
 *
 * XCAP edits are done on the stored bytes (splicing), not by re-serialising a tree: the RFC 4825
 * §8.2.3 examples place new elements at exact byte positions, a DELETE must give back exactly the
 * document before the matching PUT, and untouched parts (extension namespaces, quoting style,
 * white space) must come back unchanged. libxml2 resolves names and namespaces; this module only
 * says where each element and attribute sits in the bytes.
 *
 * Input must already be well-formed (checked by xdoc_parse()); on anything unexpected
 * xspan_scan() fails instead of guessing. Elements are numbered in document order (the order of
 * their start tags), the same order as a pre-order walk of libxml2's element nodes. */
#ifndef XDM_XSPAN_H
#define XDM_XSPAN_H

#include <libxml/tree.h>
#include <stddef.h>
#include <stdint.h>

struct xspan_attr {
    size_t ws;   /* first white-space byte before the name */
    size_t name; /* first byte of the name */
    size_t name_len;
    size_t value;     /* first byte of the value (after the opening quote) */
    size_t value_len; /* bytes between the quotes, raw */
    size_t end;       /* one past the closing quote */
};

struct xspan_el {
    size_t start;      /* '<' of the start tag */
    size_t name_len;   /* qualified name as written: bytes start+1 .. start+1+name_len */
    size_t stag_end;   /* one past the '>' of the start tag (or of "/>") */
    size_t etag_start; /* '<' of the end tag; == stag_end for an empty-element tag */
    size_t end;        /* one past the last byte of the element */
    int empty;         /* written as <name .../> */
    uint32_t parent;   /* index of the parent element, UINT32_MAX for the root */
    uint32_t first_attr;
    uint32_t n_attr;
};

struct xspan {
    struct xspan_el *els;
    size_t n_els;
    struct xspan_attr *attrs;
    size_t n_attrs;
};

/* Scans data[0..len). Returns 0, or -1 (malformed input or out of memory). */
int xspan_scan(const char *data, size_t len, struct xspan *out);
void xspan_release(struct xspan *s);

/* Numbers the element nodes under root (root included) in document order, storing index + 1 in
 * each node's _private, so that xspan_index() maps a node to its span in els[]. Returns the number
 * of elements, which equals n_els when the tree was parsed from the scanned bytes. */
size_t xspan_number_tree(xmlNodePtr root);
/* Index into els[] of an element numbered by xspan_number_tree(). */
static inline size_t xspan_index(xmlNodePtr el)
{
    return (size_t)(uintptr_t)el->_private - 1;
}

#endif
