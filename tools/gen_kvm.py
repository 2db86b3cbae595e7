#!/usr/bin/env python3
"""Regenerate cpumodel/data/kvm/ from Linux source trees: see :mod:`cpumodel.kvm.gen`.

    python -m tools.gen_kvm                      # every modelled line (tools/kernel_lines: lines.json)
    python -m tools.gen_kvm /path/to/linux-7.3.4 # one tree
"""

import sys

from cpumodel.kvm.gen import main

if __name__ == "__main__":
    sys.exit(main())
