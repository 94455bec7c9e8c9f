#!/usr/bin/env python3
"""Markdown table of a `spate plan --check --out CHECK.json` record (issue 20; a re-score,
`--check --rescore`, says so first): predicted,
measured and error per configuration and figure, with the profile's machine and load.

    python3 bench/scripts/plan_check_report.py CHECK.json > report-table.md
"""

import json
import sys

FIGURES = [("mb_per_s", "throughput MB/s"), ("cpu_s_per_gb", "broker CPU s/GB"),
           ("cpu_cores", "broker CPU cores"), ("p99_ms", "p99 ms")]


def main(path):
    r = json.load(open(path))
    if "rescore" in r:
        print(f"**{r['rescore']['label']}**\n")
    m = r["profile"]["measured"]
    machine = r["profile"]["machine"]
    print(f"Profile: {r['profile']['broker']}, measured {m.get('date')} at {m.get('commit')} "
          f"({m.get('command')}); load average at its end: {m.get('loadavg_at_end')}.")
    print(f"Machine: {machine.get('cpus')} CPUs ({machine.get('cpu_model')}), "
          f"{machine.get('memory_gib', 0):.1f} GiB, kernel {machine.get('kernel')}.")
    print(f"Check: short={r['short']}; load average at its end: {r['loadavg_at_end']}.\n")
    print("| configuration | figure | predicted | measured | error |")
    print("| --- | --- | ---: | ---: | ---: |")
    worst = {}
    for c in r["checks"]:
        for key, name in FIGURES:
            e = c["error_pct"][key]
            worst[key] = max(worst.get(key, 0), abs(e))
            print(f"| {c['what']} | {name} | {c['predicted'][key]:.3f} | "
                  f"{c['measured'][key]:.3f} | {e:+.1f} % |")
    print()
    print("Largest absolute error per figure: " + ", ".join(
        f"{name} {worst[key]:.1f} %" for key, name in FIGURES) + ".")


if __name__ == "__main__":
    main(sys.argv[1])
