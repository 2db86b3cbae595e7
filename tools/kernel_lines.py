"""The kernel lines cpumodel models (re-exported from :mod:`cpumodel.kvm.lines` for tools/ generators)."""

from cpumodel.kvm.lines import DEFAULT_SRC, LINES_FILE, Line, lines, nearest, source_tree, version_key

__all__ = ["DEFAULT_SRC", "LINES_FILE", "Line", "lines", "nearest", "source_tree", "version_key"]
