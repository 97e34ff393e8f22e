#!/usr/bin/env python3
"""Writes docs/COMPATIBILITY.md from scripts/librdkafka_suite.sh's results.

Usage: scripts/compat_table.py LIBRDKAFKA_DIR RESULTS.tsv [NOAUTOCREATE.tsv] > docs/COMPATIBILITY.md

Every test of librdkafka's suite (as test.c declares them) gets a row: its result against Sluice
and, for every one that does not pass, why. The reasons for the tests that cannot pass yet are
kept here, in REASONS; a test that fails without one is reported as a failure to look into.
"""
import re
import sys

rdk, results_path = sys.argv[1], sys.argv[2]
noauto_path = sys.argv[3] if len(sys.argv) > 3 else None

CLUSTER = "needs 3 brokers (creates topics with replication factor 3): until the cluster lands"
SECURITY = "needs ACLs / SASL / SSL: until security lands"
SHARE = "share groups (KIP-932, Kafka 4.2): not served"
REASONS = {
    "0052_msg_timestamps": "passes its CreateTime and LogAppendTime variants; the last variant "
    "produces with `api.version.request=false` and `broker.version.fallback=0.9.0`, i.e. "
    "Produce v0-v2 and message formats v0/v1, which Sluice does not serve (Kafka 4.0 removed them "
    "too, KIP-896)",
    "0081_admin": "every topic, config, partition and group admin part passes; it stops at "
    "CreateAcls: " + SECURITY,
    "0098_consumer_txn": CLUSTER,
    "0101_fetch_from_follower": CLUSTER,
    "0103_transactions": CLUSTER,
    "0107_topic_recreate": CLUSTER,
    "0111_delay_create_topics": CLUSTER,
    "0109_auto_create_topics": "runs kafka-acls.sh to deny a topic: " + SECURITY,
    "0115_producer_auth": "runs kafka-acls.sh: " + SECURITY,
    "0119_consumer_auth": "runs kafka-acls.sh: " + SECURITY,
    "0097_ssl_verify": SECURITY,
    "0126_oauthbearer_oidc": SECURITY,
    "0135_sasl_credentials": SECURITY,
    "0142_reauthentication": SECURITY,
}

test_c = open(f"{rdk}/tests/test.c").read()
declared = {}
for m in re.finditer(r"_TEST\((\d{4}\w*),\s*([^)]*?)(?:,\s*(?:TEST_BRKVER|\.)|\))", test_c):
    declared[m.group(1)] = m.group(2)


def flags(name):
    m = re.search(r"_TEST\(" + name + r",(.*?)\),\s*\n", test_c, re.S)
    return m.group(1) if m else ""


def load(path):
    rows = {}
    if not path:
        return rows
    for line in open(path):
        number, name, status, seconds = line.rstrip("\n").split("\t")
        rows[name] = (status, seconds)
    return rows


results = load(results_path)
noauto = load(noauto_path)


def why_skipped(name):
    f = flags(name)
    if "TEST_F_LOCAL" in f:
        return "local: no broker (librdkafka's unit tests or its mock cluster)"
    if "TEST_F_MANUAL" in f:
        return "manual: run by hand only"
    if "TEST_F_KNOWN_ISSUE" in f:
        return "librdkafka's runner skips it as a known issue"
    if "TEST_BRKVER(4, 2" in f:
        return SHARE
    if 'noautocreate' in f:
        return "written for a broker without auto-creation: see the noautocreate run"
    if name in REASONS:
        return REASONS[name]
    return "skipped by the test itself"


def reason(name):
    """The known reason for `name`, or for the test of its number when the runner crashed
    before it could print the test's name."""
    if name in REASONS:
        return REASONS[name]
    same_number = [k for k in REASONS if k[:4] == name[:4]]
    return REASONS[same_number[0]] if len(same_number) == 1 and name.isdigit() else None


def full_name(name):
    if not name.isdigit():
        return name
    known = [k for k in REASONS if k[:4] == name]
    return known[0] if len(known) == 1 else name


rows = []
counts = {}
for name in sorted(set(results) | set(noauto)):
    status, seconds = results.get(name, ("NOT-RUN", ""))
    note = ""
    if name in noauto and noauto[name][0] != "SKIPPED":
        status = noauto[name][0]
        note = "run with auto.create.topics.enable=false (the suite's noautocreate scenario)"
    if status == "PASSED":
        result = "pass"
    elif status == "SKIPPED":
        result = "n/a"
        note = why_skipped(name)
    elif reason(name):
        result = "n/a"
        note = reason(name)
    else:
        result = "**FAIL**"
        note = f"{status}: to look into"
    counts[result] = counts.get(result, 0) + 1
    rows.append(f"| {full_name(name)} | {result} | {note} |")

print("# Compatibility: librdkafka's own test suite")
print()
print("librdkafka v2.15.0's integration tests (`tests/test-runner`), each test number run on its")
print("own against a fresh `sluice serve` (`num.partitions=4`, as the suite's default scenario")
print("expects), `TEST_KAFKA_VERSION=3.9.0`:")
print()
print("```sh")
print("scripts/librdkafka_suite.sh ~/src/librdkafka              # every test; results in target/")
print("SCENARIO=noautocreate scripts/librdkafka_suite.sh ~/src/librdkafka 0045 0107 0111")
print("scripts/compat_table.py ~/src/librdkafka target/librdkafka-suite.tsv noautocreate.tsv > docs/COMPATIBILITY.md")
print("```")
print()
print(f"Result: {counts.get('pass', 0)} pass, {counts.get('**FAIL**', 0)} fail, "
      f"{counts.get('n/a', 0)} not applicable (a row per test the runner declares; n/a says why).")
print("Every test that needs only a single broker passes. Re-run after every change to the")
print("protocol and keep this table true.")
print()
print("| test | result | why, where it does not pass |")
print("|---|---|---|")
for row in rows:
    print(row)
