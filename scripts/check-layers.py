#!/usr/bin/env python3
"""Import graph of the hashdrop-server crate at top-level module granularity.

Reads every .rs file under crates/hashdrop-server/src, collects the modules each one
refers to (`crate::x`, `use crate::{x, y::z}`, `super::` chains, and in lib.rs the bare
`x::` paths of its own `mod x;` declarations), and builds the graph "module A uses
module B". Items defined in lib.rs itself (App, backup_now, ...) count as the module
`(lib)`. Comments and `#[cfg(test)] mod tests` blocks are ignored: they are not
dependencies of the running server.

Checks:
  * no cycles between top-level modules (each strongly connected component is printed
    with one edge of evidence, file:line, for every edge inside it);
  * layer rules: each layer uses only the layers below it (LAYER_RULES: domain
    nothing, store the domain, infra the domain and config, and so on up to http).

Usage:
  scripts/check-layers.py [--report] [--graph] [SRC_DIR]
    --report  print the findings but exit 0
    --graph   also print every edge
Exit status: 0 clean (or --report), 1 cycles or layer violations, 2 usage error.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = "(lib)"
# layer -> the only top-level modules it may use (docs/ARCHITECTURE.md, "Layers")
LAYER_RULES = {
    "domain": set(),
    "store": {"domain"},
    "infra": {"domain", "config"},
    "service": {"domain", "store", "infra", "state", "config"},
    "worker": {"service", "store", "domain", "state"},
    "http": {"service", "domain", "infra", "state", "config", "observability"},
}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_comments(text):
    """Removes // and /* */ comments, keeping string literals and line numbers."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif c == "r" and re.match(r'r#*"', text[i:]):
            hashes = re.match(r"r(#*)\"", text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(text[i:end])
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_module(text):
    """Cuts `#[cfg(test)] mod tests { ... }` (the unit tests at the end of a file)."""
    m = re.search(r"#\[cfg\(test\)\]\s*(pub\s+)?mod\s+\w+\s*\{", text)
    if not m:
        return text
    depth, j = 1, m.end()
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[: m.start()] + "\n" * text.count("\n", m.start(), j) + text[j:]


def brace_group_heads(text, start):
    """For `{a::b, c, d::{e}}` starting at text[start] == '{', the first name of each item."""
    heads, depth, item_start, j = [], 0, start + 1, start
    while j < len(text):
        ch = text[j]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(text[item_start:j])
                break
        elif ch == "," and depth == 1:
            heads.append(text[item_start:j])
            item_start = j + 1
        j += 1
    names = []
    for item in heads:
        m = re.match(r"\s*(" + IDENT + ")", item)
        if m:
            names.append(m.group(1))
    return names


def module_path(src, path):
    """src/api/files.rs -> ['api', 'files']; src/api/mod.rs -> ['api']; src/lib.rs -> []."""
    rel = os.path.relpath(path, src)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel == ["lib"]:
        rel = []
    return rel


def main(argv):
    report = "--report" in argv
    show_graph = "--graph" in argv
    args = [a for a in argv if not a.startswith("--")]
    if any(a.startswith("--") and a not in ("--report", "--graph") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    here = os.path.dirname(os.path.abspath(__file__))
    src = args[0] if args else os.path.join(here, "..", "crates", "hashdrop-server", "src")
    src = os.path.normpath(src)
    lib = os.path.join(src, "lib.rs")
    if not os.path.isfile(lib):
        print(f"no lib.rs in {src}", file=sys.stderr)
        return 2

    lib_text = drop_test_module(strip_comments(open(lib, encoding="utf-8").read()))
    modules = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", lib_text, re.M))

    # edges[a][b] = first "file:line" where a uses b
    edges = defaultdict(dict)

    def add(frm, to, path, text, pos):
        if to not in modules:
            to = ROOT
        if frm == to:
            return
        line = text.count("\n", 0, pos) + 1
        edges[frm].setdefault(to, f"{os.path.relpath(path, os.path.dirname(os.path.dirname(src)))}:{line}")

    for dirpath, _, files in os.walk(src):
        for name in sorted(files):
            if not name.endswith(".rs"):
                continue
            path = os.path.join(dirpath, name)
            if os.path.normpath(path) == os.path.join(src, "main.rs"):
                continue  # the binary: it uses the library from outside, never the reverse
            mpath = module_path(src, path)
            own = mpath[0] if mpath else ROOT
            text = drop_test_module(strip_comments(open(path, encoding="utf-8").read()))
            for m in re.finditer(r"\bcrate::", text):
                j = m.end()
                if j < len(text) and text[j] == "{":
                    for head in brace_group_heads(text, j):
                        add(own, head, path, text, m.start())
                else:
                    h = re.match(IDENT, text[j:])
                    if h:
                        add(own, h.group(0), path, text, m.start())
            for m in re.finditer(r"\b((?:super::)+)", text):
                ups = m.group(1).count("super::")
                base = mpath[: max(len(mpath) - ups, 0)]
                if base:
                    continue  # still inside its own top-level module
                j = m.end()
                if j < len(text) and text[j] == "{":
                    heads = brace_group_heads(text, j)
                else:
                    h = re.match(IDENT, text[j:])
                    heads = [h.group(0)] if h else []
                for head in heads:
                    add(own, head, path, text, m.start())
            if not mpath:
                # lib.rs names its own modules without `crate::`.
                for m in re.finditer(r"(?<![:\w])(" + IDENT + r")::", text):
                    if m.group(1) in modules:
                        add(ROOT, m.group(1), path, text, m.start())

    nodes = sorted(modules | {ROOT})
    if show_graph:
        for a in nodes:
            for b in sorted(edges[a]):
                print(f"{a} -> {b}    ({edges[a][b]})")
        print()

    # Tarjan's strongly connected components.
    index, low, on_stack, stack, sccs, counter = {}, {}, set(), [], [], [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in nodes:
        if v not in index:
            strongconnect(v)

    problems = 0
    edge_count = sum(len(t) for t in edges.values())
    print(f"hashdrop-server: {len(nodes)} top-level modules, {edge_count} module dependencies")
    for comp in sorted(sccs, key=lambda c: (-len(c), c)):
        problems += 1
        members = set(comp)
        print(f"cycle among {len(comp)} modules: {', '.join(comp)}")
        for a in comp:
            for b in sorted(edges[a]):
                if b in members:
                    print(f"    {a} -> {b}    ({edges[a][b]})")
    for layer, allowed in LAYER_RULES.items():
        if layer not in modules:
            continue
        for b in sorted(set(edges[layer]) - allowed):
            problems += 1
            print(f"layer rule: {layer} must not use {b} ({edges[layer][b]})")
    if problems == 0:
        print("no cycles, no layer violations")
        return 0
    print(f"{problems} problem(s){' (report mode: not failing)' if report else ''}")
    return 0 if report else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
