"""kcat smoke test: the README's produce/consume example against a running broker."""

import shutil
import subprocess

import pytest


def test_kcat_produce_consume(broker):
    kcat = shutil.which("kcat")
    if kcat is None:
        pytest.fail("kcat not installed: run ci/install-deps")
    topic = "kcat-demo"  # auto-created (auto.create.topics.enable defaults to true)
    lines = [f"key{i % 10}:hello spate {i}" for i in range(200)]
    p = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-t", topic, "-P", "-K:"],
        input=("\n".join(lines) + "\n").encode(), capture_output=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")

    p = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-t", topic, "-C", "-o", "beginning", "-e", "-q", "-K:"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    got = p.stdout.decode().splitlines()
    assert got == lines, f"kcat consumed {len(got)} lines; first differences: " + str(
        [(a, b) for a, b in zip(got, lines) if a != b][:3]
    )

    p = subprocess.run([kcat, "-b", broker.bootstrap, "-L", "-t", topic], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")
    assert f'topic "{topic}"' in p.stdout.decode(), p.stdout.decode()
