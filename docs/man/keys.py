#!/usr/bin/env python3
"""Fills the key lists of xdm.conf(5) from the binaries' own key tables, so the page never
drifts from what the servers accept: runs `aggproxy --help` and `xdms --role shared-list
--help`, turns each "  KEY  description (default X)" line after "Keys (" into an scdoc
definition, and replaces @AGGPROXY_KEYS@ and @XDMS_KEYS@ in the template.

    keys.py TEMPLATE AGGPROXY XDMS SOURCE_SCHEMAS OUTPUT
"""
import os
import re
import subprocess
import sys


def keys(argv, source_schemas):
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")  # a sanitizer build runs here too
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True).stdout
    lines = out.split("\n")
    start = next(i for i, l in enumerate(lines) if l.startswith("Keys ("))
    defs = []
    for line in lines[start + 1:]:
        m = re.match(r"  (\S+)\s+(\S.*)$", line)
        if not m:
            continue
        key, text = m.groups()
        # A build used in place names its source tree; the page says what that means.
        text = text.replace(source_schemas, "schemas/ of the source tree")
        text = text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
        defs.append("*%s*\n\t%s\n" % (key, text))
    if not defs:
        sys.exit("keys.py: no keys in the --help of %s" % argv[0])
    return "\n".join(defs)


def main():
    template, aggproxy, xdms, source_schemas, output = sys.argv[1:6]
    with open(template) as f:
        text = f.read()
    text = text.replace("@AGGPROXY_KEYS@", keys([aggproxy, "--help"], source_schemas))
    text = text.replace("@XDMS_KEYS@", keys([xdms, "--role", "shared-list", "--help"],
                                              source_schemas))
    with open(output, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
