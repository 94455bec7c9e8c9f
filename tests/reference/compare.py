"""Prints the reference pass (the suite against Apache Kafka) beside the Spate pass, from the
two JUnit XML files pytest wrote: the counts of each, then every test that passes on Spate and
fails on Kafka (a test that may expect Spate's behaviour, not Kafka's), and the reverse.
usage: compare.py SPATE_XML[,SPATE_XML...] KAFKA_XML[,KAFKA_XML...] (a pass's parts: ci/test runs
the solo tests apart; a part's missing file counts as no tests)"""

import os
import sys
import xml.etree.ElementTree as ET


def outcomes(paths):
    """{test id: passed|failed|error|skipped|xfailed} of the comma-separated JUnit files"""
    out = {}
    cases = [case for path in paths.split(",") if os.path.exists(path)
             for case in ET.parse(path).getroot().iter("testcase")]
    for case in cases:
        name = f"{case.get('classname')}::{case.get('name')}"
        kinds = [child.tag for child in case]
        if "failure" in kinds:
            out[name] = "failed"
        elif "error" in kinds:
            out[name] = "error"
        elif "skipped" in kinds:
            skipped = case.find("skipped")
            out[name] = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
        else:
            out[name] = "passed"
    return out


def counts(results):
    kinds = ("passed", "failed", "error", "skipped", "xfailed")
    return "  ".join(f"{k} {sum(1 for v in results.values() if v == k):4d}" for k in kinds)


def main():
    spate, kafka = outcomes(sys.argv[1]), outcomes(sys.argv[2])
    print("\n==> reference pass beside the Spate pass")
    print(f"  spate ({len(spate):4d} tests): {counts(spate)}")
    print(f"  kafka ({len(kafka):4d} tests): {counts(kafka)}")
    shared = sorted(set(spate) & set(kafka))
    only_spate = [t for t in shared if spate[t] == "passed" and kafka[t] in ("failed", "error")]
    only_kafka = [t for t in shared if kafka[t] == "passed" and spate[t] in ("failed", "error")]
    print(f"  passes on Spate, fails on Kafka: {len(only_spate)}")
    for t in only_spate:
        print(f"    {t}")
    print(f"  passes on Kafka, fails on Spate: {len(only_kafka)}")
    for t in only_kafka:
        print(f"    {t}")


if __name__ == "__main__":
    main()
