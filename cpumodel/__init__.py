"""cpumodel: check and emit arm64 KVM guest CPU models.

Data flows one way: load (profile.py) -> resolve (resolve.py) -> check (check.py, rules/)
-> emit/report (emit/, report/). The register and rule data live under ``data/``.
"""

__version__ = "0.1.0"
