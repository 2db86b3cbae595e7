"""Linux's sysreg table reader (re-exported from :mod:`cpumodel.kvm.sysreg`, the one reader)."""

from cpumodel.kvm.sysreg import SrBlock, SrField, SrRegister, blocks, parse, parse_file

__all__ = ["SrBlock", "SrField", "SrRegister", "blocks", "parse", "parse_file"]
