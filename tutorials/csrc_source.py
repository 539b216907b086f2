r"""Prints a function of the C++/CUDA sources for the tutorials: `show("cpu/gemm.cpp", r"void pack_a\(")`."""

import re
from pathlib import Path

import atrous

# The kernel sources: the repository's csrc/ in a checkout, the copy shipped in an installed package.
CSRC = Path(atrous.sources())


def show(relpath: str, signature: str) -> str:
    """Prints the function of csrc/<relpath> whose first line matches the regular expression
    `signature`: from the comment, `template` and `__global__` lines just above it to its
    closing brace. Returns the text."""
    lines = (CSRC / relpath).read_text().splitlines()
    first = next(i for i, line in enumerate(lines) if re.search(signature, line))
    start = first
    while start > 0 and lines[start - 1].lstrip().startswith(("template", "//", "__global__")):
        start -= 1
    depth, seen = 0, False
    for end in range(first, len(lines)):
        depth += lines[end].count("{") - lines[end].count("}")
        seen = seen or "{" in lines[end]
        if seen and depth == 0:
            break
    text = "\n".join(lines[start:end + 1])
    print(f"// csrc/{relpath}, lines {start + 1}-{end + 1}\n{text}")
    return text
