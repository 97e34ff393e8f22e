#!/usr/bin/env python3
"""Writes src/config/kafka_keys.rs: the name, type and default of every broker config and every
topic config Apache Kafka documents, so that Sluice accepts, stores and describes the ones it
has no use for (each listed in the README as having no effect) instead of refusing a config a
Kafka user pasted.

Usage: scripts/gen_kafka_config_keys.py KAFKA_CHECKOUT > src/config/kafka_keys.rs

KAFKA_CHECKOUT: an Apache Kafka source tree at the release Sluice follows (3.9.0). The config
classes that make up `AbstractKafkaConfig.CONFIG_DEF` (the broker's) and `LogConfig`'s topic
configs are read; only names, types and the defaults that are plain constants reach the table
(a default computed at run time is left empty).
"""
import os
import re
import sys

ROOT = sys.argv[1]

BROKER_CLASSES = [
    "RemoteLogManagerConfig", "ZkConfigs", "ServerConfigs", "KRaftConfigs", "SocketServerConfigs", "ReplicationConfigs",
    "GroupCoordinatorConfig", "CleanerConfig", "LogConfig", "ShareGroupConfig",
    "TransactionLogConfigs", "TransactionStateManagerConfigs", "QuorumConfig", "MetricConfigs",
    "QuotaConfigs", "BrokerSecurityConfigs", "DelegationTokenManagerConfigs",
    "PasswordEncoderConfigs",
]
# The ConfigDef fields of each class that AbstractKafkaConfig merges (CONFIG_DEF unless named
# here; RemoteLogManagerConfig builds its own in a method, so all of its file is read).
BROKER_DEFS = {"RemoteLogManagerConfig": None, "LogConfig": ["SERVER_CONFIG_DEF"], "GroupCoordinatorConfig": [
    "GROUP_COORDINATOR_CONFIG_DEF", "NEW_GROUP_CONFIG_DEF", "OFFSET_MANAGEMENT_CONFIG_DEF",
    "CONSUMER_GROUP_CONFIG_DEF", "SHARE_GROUP_CONFIG_DEF"]}

sources = {}   # class name -> text
for directory, _, files in os.walk(ROOT):
    for name in files:
        if name.endswith(".java"):
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                sources.setdefault(name[:-5], f.read())

constants = {}  # (class, NAME) -> expression text
for cls, text in sources.items():
    for m in re.finditer(r"static\s+final\s+[\w<>\[\], ]+?\s+(\w+)\s*=\s*(.+?);", text, re.S):
        constants[(cls, m.group(1))] = m.group(2).strip()
by_name = {}
for (cls, name), expr in constants.items():
    by_name.setdefault(name, []).append(cls)

SYNONYMS = {}  # topic config name -> first broker synonym


class Unknown(Exception):
    pass


def resolve(ident, cls):
    if "." in ident:
        owner, name = ident.rsplit(".", 1)
        owner = owner.split(".")[-1]
        if (owner, name) in constants:
            return evaluate(constants[(owner, name)], owner)
        if owner in ("Long", "Integer", "Short", "Double"):
            return {"MAX_VALUE": {"Long": 2**63 - 1, "Integer": 2**31 - 1, "Short": 32767,
                                  "Double": 1.7976931348623157e308}[owner],
                    "MIN_VALUE": {"Long": -2**63, "Integer": -2**31, "Short": -32768,
                                  "Double": 5e-324}[owner]}[name]
        raise Unknown(ident)
    if (cls, ident) in constants:
        return evaluate(constants[(cls, ident)], cls)
    owners = by_name.get(ident, [])
    if len(owners) == 1:
        return evaluate(constants[(owners[0], ident)], owners[0])
    raise Unknown(ident)


def evaluate(expr, cls):
    expr = expr.strip()
    while expr.startswith("(") and expr.endswith(")") and expr.count("(") == 1:
        expr = expr[1:-1].strip()
    m = re.fullmatch(r"ServerTopicConfigSynonyms\.serverSynonym\((.+)\)", expr)
    if m:
        return SYNONYMS[evaluate(m.group(1), cls)]
    m = re.fullmatch(r"TimeUnit\.(\w+)\.toMillis\((.+)\)", expr)
    if m:
        unit = {"SECONDS": 1000, "MINUTES": 60000, "HOURS": 3600000, "DAYS": 86400000,
                "MILLISECONDS": 1}[m.group(1)]
        return evaluate(m.group(2), cls) * unit
    m = re.fullmatch(r"Utils\.join\((.+),\s*\"(.*)\"\)", expr)
    if m:
        raise Unknown(expr)
    if expr == "null":
        return None
    if expr in ("true", "false"):
        return expr == "true"
    if re.fullmatch(r'"(?:[^"\\]|\\.)*"', expr):
        return expr[1:-1]
    if re.fullmatch(r"-?[\d_]+[Ll]?", expr):
        return int(expr.rstrip("Ll").replace("_", ""))
    if re.fullmatch(r"-?[\d_]*\.[\d_]+[dDfF]?", expr):
        return float(expr.rstrip("dDfF").replace("_", ""))
    # A sum of strings or a product of numbers, at the top level.
    for op in ("+", "*"):
        parts = split_top(expr, op)
        if len(parts) > 1:
            values = [evaluate(p, cls) for p in parts]
            if op == "+" and any(isinstance(v, str) for v in values):
                return "".join(str(v) for v in values)
            result = 0 if op == "+" else 1
            for v in values:
                result = result + v if op == "+" else result * v
            return result
    if re.fullmatch(r"[\w.]+", expr):
        return resolve(expr, cls)
    raise Unknown(expr)


def split_top(expr, op):
    parts, depth, current, quoted = [], 0, "", False
    for ch in expr:
        if ch == '"' and not current.endswith("\\"):
            quoted = not quoted
        if not quoted:
            depth += ch in "([{"
            depth -= ch in ")]}"
        if ch == op and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts]


def load_synonyms():
    text = sources["ServerTopicConfigSynonyms"]
    start = text.index("ALL_TOPIC_CONFIG_SYNONYMS =")
    body = text[start:text.index("Map<String, String> TOPIC_CONFIG_SYNONYMS =")]
    for m in re.finditer(r"(sameName|sameNameWithLogPrefix|sameNameWithLogCleanerPrefix|"
                         r"singleWithLogPrefix|singleWithLogCleanerPrefix|listWithLogPrefix|single)"
                         r"\((TopicConfig\.\w+)(?:,\s*(?:new ConfigSynonym\()?\"([\w.]+)\")?", body):
        kind, topic_const, broker = m.groups()
        topic = evaluate(topic_const, "ServerTopicConfigSynonyms")
        prefix = {"sameName": "", "single": "", "sameNameWithLogPrefix": "log.",
                  "singleWithLogPrefix": "log.", "listWithLogPrefix": "log.",
                  "sameNameWithLogCleanerPrefix": "log.cleaner.",
                  "singleWithLogCleanerPrefix": "log.cleaner."}[kind]
        SYNONYMS[topic] = prefix + (broker or topic)


def defines(cls, fields=None):
    """(name, type, default) of each documented define() of `cls` (in `fields`' blocks)."""
    text = sources[cls]
    blocks = []
    if fields:
        for field in fields:
            start = text.index(f" {field} =")
            end = text.index(";", text.index(".define", start))
            # The block runs to the first ';' that ends the builder chain.
            depth, i = 0, start
            while i < len(text):
                depth += text[i] in "({"
                depth -= text[i] in ")}"
                if text[i] == ";" and depth == 0:
                    break
                i += 1
            blocks.append(text[start:i])
    else:
        blocks.append(text)
    out = []
    for block in blocks:
        for m in re.finditer(r"\.define\(", block):
            args, depth, current, i = [], 1, "", m.end()
            while depth > 0 and i < len(block):
                ch = block[i]
                depth += ch in "(["
                depth -= ch in ")]"
                if ch == "," and depth == 1:
                    args.append(current.strip())
                    current = ""
                elif depth > 0:
                    current += ch
                i += 1
            args.append(current.strip())
            if len(args) < 3:
                continue
            try:
                name = evaluate(args[0], cls)
            except (Unknown, KeyError):
                print(f"// cannot name {args[0]} in {cls}", file=sys.stderr)
                continue
            kind = args[1].split(".")[-1]
            # define(name, type, importance, doc): no default.
            no_default = args[2].split(".")[-1] in ("HIGH", "MEDIUM", "LOW")
            try:
                default = None if no_default else evaluate(args[2], cls)
            except (Unknown, KeyError, TypeError):
                default = Unknown
            out.append((name, kind, default))
    return out


# Defaults Kafka computes at run time, as Kafka 3.9 describes them.
RUNTIME_DEFAULTS = {
    "compression.gzip.level": "-1",  # Deflater.DEFAULT_COMPRESSION
    "compression.lz4.level": "9",
    "compression.zstd.level": "3",
    "log.message.format.version": "3.0-IV1",
    "log.retention.hours": "168",
    "log.roll.hours": "168",
    "log.roll.jitter.hours": "0",
    "log.roll.jitter.ms": "0",
}


def rust_default(kind, default):
    if default is Unknown or default is None:
        return ""
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, list):
        return ",".join(default)
    if kind == "DOUBLE":
        return repr(float(default))
    return str(default)


def rust_kind(kind):
    return {"INT": "Kafka::Int", "LONG": "Kafka::Long", "SHORT": "Kafka::Short",
            "DOUBLE": "Kafka::Double", "BOOLEAN": "Kafka::Boolean"}.get(kind, "Kafka::Text")


def main():
    load_synonyms()
    broker = {}
    for cls in BROKER_CLASSES:
        for name, kind, default in defines(cls, BROKER_DEFS.get(cls, ["CONFIG_DEF"])):
            broker.setdefault(name, (kind, default))
    topic = {}
    log_config = sources["LogConfig"]
    config_field = log_config[log_config.index("CONFIG = new LogConfigDef()"):]
    # The topic configs: TopicConfig's names that LogConfig's CONFIG defines.
    for m in re.finditer(r"\bdefine\(([\w.]+_CONFIG),\s*(\w+),\s*([^,]+),", config_field):
        try:
            name = evaluate(m.group(1), "LogConfig")
        except (Unknown, KeyError):
            continue
        try:
            default = evaluate(m.group(3), "LogConfig")
        except (Unknown, KeyError, TypeError):
            default = None
        topic.setdefault(name, (m.group(2), default))
    print("// @generated by scripts/gen_kafka_config_keys.py from Apache Kafka 3.9.0's config")
    print("// classes. Do not edit; re-run the script.")
    print()
    print("use super::Kafka;")
    print()
    print("/// Every documented broker config: name, Kafka's type, Kafka's default (\"\": none, or one")
    print("/// computed at run time).")
    print("pub static BROKER: &[(&str, Kafka, &str)] = &[")
    for name in sorted(broker):
        kind, default = broker[name]
        text = RUNTIME_DEFAULTS.get(name) or rust_default(kind, default)
        print(f'    ("{name}", {rust_kind(kind)}, "{text}"),')
    print("];")
    print()
    print("/// Every topic config: name, Kafka's type, the broker config that gives its default (\"\":")
    print("/// none), and its own default where it has no broker config.")
    print("pub static TOPIC: &[(&str, Kafka, &str, &str)] = &[")
    for name in sorted(topic):
        kind, default = topic[name]
        synonym = SYNONYMS.get(name, "")
        own = "" if synonym else rust_default(kind, default)
        print(f'    ("{name}", {rust_kind(kind)}, "{synonym}", "{own}"),')
    print("];")


main()
