"""Reading the broker's /metrics page (Prometheus text format, parsed with prometheus_client's
own parser)."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def scrape(broker):
    """{family name: family}, and a lookup of one sample's value by name and labels."""
    status, ctype, text = get(broker.admin_url + "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return Scrape(families)


class Scrape:
    def __init__(self, families):
        self.families = families

    def samples(self, sample_name, **labels):
        family = sample_name
        for suffix in ("_total", "_bucket", "_sum", "_count"):
            if sample_name.endswith(suffix) and sample_name[: -len(suffix)] in self.families:
                family = sample_name[: -len(suffix)]
        return [s for s in self.families[family].samples
                if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())]

    def value(self, sample_name, default=0.0, **labels):
        found = self.samples(sample_name, **labels)
        assert len(found) <= 1, found
        return found[0].value if found else default

    def total(self, sample_name, **labels):
        return sum(s.value for s in self.samples(sample_name, **labels))
