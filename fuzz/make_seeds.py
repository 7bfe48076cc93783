"""Rebuild the seed part of fuzz/corpus/ from the golden captures and the shipped configs.

    .venv/bin/python -m fuzz.make_seeds

Seeds are named ``seed-*``; regression inputs (``regress-*``) and anything else in the corpus
directories are left alone. The seeds are committed, so this only needs running when the
golden captures or the example configs change.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from fuzz.targets import CORPUS_DIR
from watchdog.remoting._codec import (
    FLAG_RESPONSE,
    FrameDecoder,
    RemotingCommand,
    SerializeType,
    encode_frame,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "unit" / "golden"
CONFIGS = ROOT / "config"

# The frames that exercise distinct reply readers; the three ~5 KB broker configs are alike,
# so one stands for all (the corpus stays small).
_FRAMES = [
    "master_26_broker_config",
    "master_28_runtime_info",
    "master_28_runtime_info_rocketmq",
    "master_30_max_offset",
    "master_9999_unknown_code",
    "ns_101_kv_missing",
    "ns_101_kv_value_rocketmq",
    "ns_105_route_missing",
    "ns_105_route_standard",
    "ns_105_route_v317_fastjson",
    "ns_106_cluster_info",
    "ns_205_wipe_write_perm",
    "ns_327_add_write_perm",
]

_MINIMAL_CONFIG = b"""\
cluster_name = "C"
nameservers = ["127.0.0.1:9876"]

[[brokers]]
broker_name = "broker-a"
broker_id = 0
addr = "127.0.0.1:10911"
properties = "/etc/rocketmq/broker-a.properties"
start = ["systemctl", "start", "rocketmq-broker-a"]
stop = ["systemctl", "stop", "rocketmq-broker-a"]

[probe]
interval = "1s"
timeout = "800ms"
"""


def _server_request() -> bytes:
    """A request pushed by a server (NOTIFY_CONSUMER_IDS_CHANGED), which the client declines."""
    return encode_frame(RemotingCommand(code=40, opaque=7, ext_fields={"consumerGroup": "g"}))


def _binary_response() -> bytes:
    return encode_frame(
        RemotingCommand(
            code=0,
            opaque=1,
            flag=FLAG_RESPONSE,
            language="JAVA",
            remark="ok",
            ext_fields={"offset": "42"},
            serialize_type=SerializeType.ROCKETMQ,
        )
    )


def seeds() -> dict[str, dict[str, bytes]]:
    frames = {name: (GOLDEN / f"{name}.bin").read_bytes() for name in _FRAMES}
    bodies = {name: FrameDecoder().feed(frame)[0].body for name, frame in frames.items()}
    out: dict[str, dict[str, bytes]] = {t: {} for t in _targets()}
    for name, frame in frames.items():
        out["frame"][name] = b"\x00" + frame
        out["replies"][name] = frame
        (mark,) = struct.unpack(">i", frame[4:8])
        out["header"][name] = bytes([mark >> 24]) + frame[8 : 8 + (mark & 0xFFFFFF)]
    out["frame"]["two_frames_chunked"] = b"\x05" + frames["ns_205_wipe_write_perm"] * 2
    out["frame"]["binary_remark_ext"] = b"\x00" + _binary_response()
    out["client"]["runtime_info_reply"] = b"\x00" + frames["master_28_runtime_info"]
    out["client"]["two_replies_chunked"] = (
        b"\x07" + frames["ns_205_wipe_write_perm"] + frames["master_30_max_offset"]
    )
    out["client"]["server_request"] = b"\x00" + _server_request()
    out["client"]["binary_response"] = b"\x03" + _binary_response()
    for name in ("ns_106_cluster_info", "ns_105_route_v317_fastjson", "ns_105_route_standard"):
        out["fastjson"][name] = bodies[name]
    out["fastjson"]["kv_table"] = bodies["master_28_runtime_info"][:400] + b'"}}'
    escapes = {"a\\b": "\u00e9\ud83d\ude00", "n": [1, -2.5e3]}
    out["fastjson"]["escapes"] = json.dumps(escapes).encode()
    out["cluster_info"]["ns_106_cluster_info"] = bodies["ns_106_cluster_info"]
    out["cluster_info"]["two_groups"] = (
        b'{"brokerAddrTable":{"a":{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"},'
        b'"brokerName":"a","cluster":"C"},"b":{"brokerAddrs":{0:"10.0.0.3:10911"},'
        b'"brokerName":"b","cluster":"C"}},"clusterAddrTable":{"C":["a","b"]}}'
    )
    out["runtime_info"]["master"] = bodies["master_28_runtime_info"]
    out["runtime_info"]["minimal"] = b'{"table":{"commitLogMaxOffset":"0","brokerVersion":"407"}}'
    for name in ("ns_105_route_v317_fastjson", "ns_105_route_standard"):
        out["topic_route"][name] = bodies[name]
    out["config"]["example"] = (CONFIGS / "watchdog.example.toml").read_bytes()
    out["config"]["docker"] = (CONFIGS / "watchdog.docker.toml").read_bytes()
    out["config"]["minimal"] = _MINIMAL_CONFIG
    return out


def _targets() -> list[str]:
    from fuzz.targets import TARGETS

    return list(TARGETS)


def main() -> None:
    for target, files in seeds().items():
        directory = CORPUS_DIR / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.glob("seed-*"):
            old.unlink()
        for name, data in files.items():
            (directory / f"seed-{name}").write_bytes(data)
    total = sum(p.stat().st_size for p in CORPUS_DIR.rglob("*") if p.is_file())
    print(f"corpus: {total} bytes")


if __name__ == "__main__":
    main()
