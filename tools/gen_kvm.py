#!/usr/bin/env python3
"""Regenerate cpumodel/data/kvm/ from Linux source trees: see :mod:`cpumodel.kvm.gen`.

    python -m tools.gen_kvm                      # every modelled line (cpumodel/kvm/lines.py: lines.json)
    python -m tools.gen_kvm /path/to/linux-7.3.4 # one tree

The generator lives in the package (``cpumodel kernels import`` runs it on trees users bring);
its C-reading helpers are re-exported here for the other per-line generators in tools/.
"""

import sys

from cpumodel.kvm.gen import (
    GenError,
    SourceIndex,
    find_functions,
    generate,
    line_of,
    main,
    matching,
    quote_re,
    read_version,
    strip_comments,
)

__all__ = ["GenError", "SourceIndex", "find_functions", "generate", "line_of", "main", "matching", "quote_re",
           "read_version", "strip_comments"]

if __name__ == "__main__":
    sys.exit(main())
