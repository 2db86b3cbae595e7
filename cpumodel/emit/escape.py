"""The emitters' name for ``cpumodel.escape`` (untrusted text made safe for each output)."""

from cpumodel.escape import c_comment, one_line, shell_word, yaml_str

__all__ = ["c_comment", "one_line", "shell_word", "yaml_str"]
