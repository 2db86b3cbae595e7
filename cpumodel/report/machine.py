"""Machine-readable findings: JSON, GitHub workflow annotations, SARIF 2.1.0, JUnit XML."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TextIO

from cpumodel import __version__
from cpumodel.errors import CpumodelError, Location
from cpumodel.escape import one_line
from cpumodel.findings import Finding

#: Rule ID under which an unreadable profile is reported by the formats that need one (SARIF, JUnit).
LOAD_RULE = "LOAD"
LOAD_SUMMARY = "the profile cannot be read (YAML, structure, names or values; see the message)"


def _failing(findings: Sequence[Finding], strict: bool) -> list[Finding]:
    """The findings that make the exit code 1: errors, and warnings with --strict."""
    return [f for f in findings if f.severity == "error" or (strict and f.severity == "warning")]


def render_json(findings: Sequence[Finding], errors: Sequence[CpumodelError], profiles: int, out: TextIO,
                strict: bool = False) -> None:
    doc = {"version": __version__, "profiles": profiles,
           "errors": [str(e) for e in errors],
           "unreadable": [{"file": e.location.file if e.location else None,
                           "line": e.location.line if e.location and e.location.line else None,
                           "column": e.location.column if e.location and e.location.column else None,
                           "message": e.message + (f" ({e.hint})" if e.hint else "")} for e in errors],
           "findings": [f.to_dict() for f in findings],
           "summary": {s: sum(1 for f in findings if f.severity == s) for s in ("error", "warning", "info")}}
    json.dump(doc, out, indent=2)
    out.write("\n")


def _gh_escape(text: str, prop: bool = False) -> str:
    text = one_line(text)  # no terminal escapes in the log
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        text = text.replace(":", "%3A").replace(",", "%2C")
    return text


def _gh_location(where: Location | None) -> list[str]:
    props = []
    if where:
        props.append(f"file={_gh_escape(where.file, True)}")
        if where.line:
            props.append(f"line={where.line}")
        if where.column:
            props.append(f"col={where.column}")
    return props


def render_github(findings: Sequence[Finding], errors: Sequence[CpumodelError], profiles: int, out: TextIO,
                  strict: bool = False) -> None:
    """GitHub Actions workflow commands (``::error file=..,line=..::message``)."""
    for e in errors:
        props = [*_gh_location(e.location), "title=cpumodel unreadable profile"]
        out.write(f"::error {','.join(props)}::{_gh_escape(e.message + (f' ({e.hint})' if e.hint else ''))}\n")
    level = {"error": "error", "warning": "warning" if not strict else "error", "info": "notice"}
    for f in findings:
        props = _gh_location(f.location)
        props.append(f"title={_gh_escape(f.rule, True)}")
        msg = f.message + (f" ({f.why})" if f.why else "")
        out.write(f"::{level.get(f.severity, 'warning')} {','.join(props)}::{_gh_escape(msg)}\n")


def render_sarif(findings: Sequence[Finding], errors: Sequence[CpumodelError], profiles: int, out: TextIO,
                 strict: bool = False) -> None:
    from cpumodel.rules import all_rules

    rules = all_rules()
    used = sorted({f.rule for f in findings} | ({LOAD_RULE} if errors else set()))
    index = {r: i for i, r in enumerate(used)}
    driver_rules = []
    for rid in used:
        r = rules.get(rid)
        entry: dict[str, object] = {"id": rid}
        if rid == LOAD_RULE:
            entry["name"] = "unreadable-profile"
            entry["shortDescription"] = {"text": LOAD_SUMMARY}
        elif r is not None:
            entry["name"] = r.name
            entry["shortDescription"] = {"text": r.summary}
            if r.doc:
                entry["fullDescription"] = {"text": r.doc}
            entry["properties"] = {"kind": r.kind, "source": r.source}
        driver_rules.append(entry)
    level = {"error": "error", "warning": "error" if strict else "warning", "info": "note"}
    results: list[dict[str, object]] = []
    for e in errors:
        res: dict[str, object] = {"ruleId": LOAD_RULE, "ruleIndex": index[LOAD_RULE], "level": "error",
                                  "message": {"text": e.message + (f" ({e.hint})" if e.hint else "")}}
        if e.location:
            res["locations"] = [{"physicalLocation": _sarif_location(e.location)}]
        results.append(res)
    for f in findings:
        res = {"ruleId": f.rule, "ruleIndex": index[f.rule],
                                  "level": level.get(f.severity, "warning"),
                                  "message": {"text": f.message + (f" ({f.why})" if f.why else "")}}
        if f.location:
            res["locations"] = [{"physicalLocation": _sarif_location(f.location)}]
        props = {k: v for k, v in f.to_dict().items()
                 if k in ("register", "field", "asked", "allowed", "errno", "kernel", "host_value", "policy")
                 and v is not None}
        if props:
            res["properties"] = props
        results.append(res)
    run: dict[str, object] = {
        "tool": {"driver": {"name": "cpumodel", "version": __version__,
                            "informationUri": "https://example.invalid/cpumodel", "rules": driver_rules}},
        "results": results,
    }
    if errors:
        run["invocations"] = [{"executionSuccessful": False, "toolExecutionNotifications": [
            {"level": "error", "message": {"text": str(e)}} for e in errors]}]
    doc = {"$schema": "https://json.schemastore.org/sarif-2.1.0.json", "version": "2.1.0", "runs": [run]}
    json.dump(doc, out, indent=2)
    out.write("\n")


def _sarif_location(where: Location) -> dict[str, object]:
    region: dict[str, int] = {}
    if where.line:
        region["startLine"] = where.line
    if where.column:
        region["startColumn"] = where.column
    phys: dict[str, object] = {"artifactLocation": {"uri": where.file}}
    if region:
        phys["region"] = region
    return phys


def render_junit(findings: Sequence[Finding], errors: Sequence[CpumodelError], profiles: int, out: TextIO,
                 strict: bool = False) -> None:
    """One test suite; one test case per finding: a failure when it fails the run (errors, and
    warnings with --strict, as the exit code counts them), else passed with the text as output."""
    from xml.sax.saxutils import escape as xml_escape
    from xml.sax.saxutils import quoteattr as xml_quoteattr

    # XML 1.0 cannot carry most control characters even as references: one_line() them first.
    def escape(text: str) -> str:
        return xml_escape(one_line(text))

    def quoteattr(text: str) -> str:
        return xml_quoteattr(one_line(text))

    failing = {id(f) for f in _failing(findings, strict)}
    out.write('<?xml version="1.0" encoding="UTF-8"?>\n')
    total = max(1, len(findings) + len(errors))
    out.write(f'<testsuites name="cpumodel" tests="{total}" failures="{len(failing)}" errors="{len(errors)}">\n')
    out.write(f'  <testsuite name="cpumodel check" tests="{total}" failures="{len(failing)}" '
              f'errors="{len(errors)}">\n')
    if not findings and not errors:
        out.write(f'    <testcase classname="cpumodel" name={quoteattr(f"{profiles} profiles checked")}/>\n')
    for e in errors:
        where = str(e.location) if e.location else "?"
        out.write(f'    <testcase classname="cpumodel.load" name={quoteattr(f"{LOAD_RULE} at {where}"[:300])} '
                  f'file={quoteattr(e.location.file if e.location else "")} '
                  f'line="{e.location.line if e.location else 0}">\n')
        out.write(f'      <error type="{LOAD_RULE}" message={quoteattr(str(e))}/>\n    </testcase>\n')
    for f in findings:
        where = str(f.location) if f.location else f.profile
        name = quoteattr(f"{f.rule} {f.target} at {where}")
        out.write(f'    <testcase classname={quoteattr("cpumodel." + f.profile)} name={name}>\n')
        body = quoteattr(f.message)
        detail = f.why or ""
        if id(f) in failing:
            out.write(f'      <failure type="{f.severity}" message={body}>{escape(detail)}</failure>\n')
        else:
            out.write(f"      <system-out>{escape(f.message)}</system-out>\n")
        out.write("    </testcase>\n")
    out.write("  </testsuite>\n</testsuites>\n")
RENDERERS = {"json": render_json, "github": render_github, "sarif": render_sarif, "junit": render_junit}
