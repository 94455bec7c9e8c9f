"""`spate start` configuration: spate.toml-style files (--config), SPATE_* environment overrides,
flags, their precedence (--print-config), refusal of bad keys and values, and a file setting the
running broker applies."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tomllib
import uuid

import pytest
from confluent_kafka.admin import AdminClient

from conftest import IT_DIR, ROOT, SPATE_BIN

pytestmark = pytest.mark.spate_only("Spate's own configuration layers: nothing to compare with Kafka")


def spate(*args, env=None):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SPATE_")}
    return subprocess.run([str(SPATE_BIN), *args], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL, env={**clean, **(env or {})})


def write_config(tmp_path, text):
    path = tmp_path / f"config-{uuid.uuid4().hex[:8]}.toml"
    path.write_text(text)
    return path


def sources(printed):
    """{key: source comment} of --print-config's output."""
    out = {}
    for line in printed.splitlines():
        m = re.match(r'^"?([a-z.\-]+)"? = .*  # (.*)$', line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def test_print_config_shows_precedence_and_sources(tmp_path):
    path = write_config(tmp_path, '"num.partitions" = 3\nlog.retention.ms = 1000\nlisten = "127.0.0.1:1111"\n'
                        'cores = 1\n"log.segment.bytes" = 1048576\n')
    r = spate("start", "--config", str(path), "--listen", "127.0.0.1:3333", "--print-config",
              env={"SPATE_LOG_RETENTION_MS": "2000", "SPATE_LISTEN": "127.0.0.1:2222",
                   "SPATE_LOG_SEGMENT_BYTES": "2097152", "SPATE_LOG": "debug"})
    assert r.returncode == 0, r.stderr
    effective = tomllib.loads(r.stdout)
    assert effective["num.partitions"] == 3  # file
    assert effective["log.retention.ms"] == 2000  # env over file
    assert effective["log.segment.bytes"] == 2097152  # env over file
    assert effective["listen"] == "127.0.0.1:3333"  # flag over env over file
    assert effective["cores"] == 1
    assert effective["node.id"] == 1 and effective["auto.create.topics.enable"] is True  # defaults
    src = sources(r.stdout)
    assert src["num.partitions"] == f"file {path}"
    assert src["log.retention.ms"] == "environment SPATE_LOG_RETENTION_MS"
    assert src["listen"] == "command line"
    assert src["node.id"] == "default"


def test_print_config_of_the_shipped_spate_toml_is_all_defaults():
    r = spate("start", "--config", str(ROOT / "spate.toml"), "--print-config")
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(r.stdout) == tomllib.loads((ROOT / "spate.toml").read_text())
    defaults = tomllib.loads(spate("start", "--print-config").stdout)
    assert defaults == tomllib.loads(r.stdout)


def test_bad_keys_and_values_are_refused_naming_their_source(tmp_path):
    bad_key = write_config(tmp_path, '"num.partitions" = 2\n"no.such.setting" = 1\n')
    r = spate("start", "--config", str(bad_key), "--print-config")
    assert r.returncode != 0
    assert str(bad_key) in r.stderr and "unknown setting 'no.such.setting'" in r.stderr

    bad_value = write_config(tmp_path, '"num.partitions" = "many"\n')
    r = spate("start", "--config", str(bad_value))
    assert r.returncode != 0 and str(bad_value) in r.stderr and "invalid value 'many'" in r.stderr

    not_toml = write_config(tmp_path, "this is = = not toml\n")
    r = spate("start", "--config", str(not_toml))
    assert r.returncode != 0 and str(not_toml) in r.stderr

    r = spate("start", "--print-config", env={"SPATE_NUM_PARTITIONS": "0"})
    assert r.returncode != 0 and "environment SPATE_NUM_PARTITIONS" in r.stderr

    r = spate("start", "--config", str(tmp_path / "does-not-exist.toml"))
    assert r.returncode != 0 and "cannot read config file" in r.stderr


def test_broker_applies_settings_from_the_file(broker_factory, tmp_path):
    path = write_config(tmp_path, '"num.partitions" = 5\n"auto.create.topics.enable" = true\n')
    b = broker_factory(extra_args=["--config", str(path)])
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = "from-file-" + uuid.uuid4().hex[:6]
    for _ in range(50):  # the first Metadata for an unknown topic auto-creates it
        md = admin.list_topics(topic=topic, timeout=10)
        if topic in md.topics and md.topics[topic].error is None and md.topics[topic].partitions:
            break
    assert len(md.topics[topic].partitions) == 5


def test_admin_listen_none_and_taken(broker_factory):
    b = broker_factory(extra_args=["--admin-listen", "none"])  # the last --admin-listen wins
    try:
        with socket.create_connection(("127.0.0.1", b.admin_port), timeout=2):
            raise AssertionError("admin port open with --admin-listen none")
    except ConnectionRefusedError:
        pass
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = IT_DIR / f"admin-taken-{uuid.uuid4().hex[:8]}"
        r = spate("start", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", "--cores", "1",
                  "--admin-listen", f"127.0.0.1:{port}")
    shutil.rmtree(data_dir, ignore_errors=True)
    assert r.returncode != 0 and f"cannot listen on --admin-listen 127.0.0.1:{port}" in r.stderr, r.stderr
