"""The plug-in client: the signing vector shared with the Java tests, real replies parsed, and
every garbled reply turned into one clear error."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit._golden import Replay, run
from watchdog.model import AclCredentials, Secret
from watchdog.remoting import (
    PLUGIN_INFO,
    PROMOTE_IN_PLACE,
    PROMOTION_REFUSED,
    SET_HA_MASTER,
    SET_MASTER_ROLE,
    AclRefused,
    PluginInfo,
    PluginRefused,
    PluginUnauthorized,
    Promotion,
    ProtocolError,
    RemoteError,
    RemotingCommand,
    RemotingError,
    acl_signature,
    auth_fields,
    get_plugin_info,
    parse_plugin_info,
    promote_in_place,
    set_ha_master,
    set_master_role,
    sign_command,
    sign_request,
)

# The vector of broker-plugin/src/test/java/io/rmqwatchdog/plugin/ProtocolTest.java: both sides
# must compute this MAC (checked independently with `openssl dgst -sha256 -hmac`).
SECRET = b"0123456789abcdef0123456789abcdef"
VECTOR_FIELDS = {"role": "SYNC_MASTER", "expectMaxPhyOffset": "123456", "epoch": "7"}
VECTOR_NOW_MS = 1700000000000
VECTOR_NONCE = "00112233445566778899aabbccddeeff"
VECTOR_MAC = "467f1e13725ac42e6e7ff9f3689697babc82822d7f7c40e059d403cbaa4c5ce5"
VECTOR_CANONICAL = (
    b"30901\nepoch=7\nexpectMaxPhyOffset=123456\nissuedAt=1700000000000\n"
    b"nonce=00112233445566778899aabbccddeeff\nrole=SYNC_MASTER\n"
)

# Replies a real 4.9.7 broker with the plug-in sent (captured from a sandbox).
REAL_INFO = {
    "pluginVersion": "0.1.0",
    "rocketmqVersion": "4.9.7",
    "brokerId": "0",
    "lastEpoch": "1",
    "maxPhyOffset": "60880",
    "brokerRole": "ASYNC_MASTER",
    "dispatchBehindBytes": "0",
    "haMasterAddress": "",
    "secretLoaded": "true",
}
REAL_REFUSAL = RemotingCommand(
    code=PROMOTION_REFUSED,
    flag=1,
    language="JAVA",
    remark="Epoch 1 is not newer than the last epoch served, 1.",
    ext_fields={"refusal": "epoch_not_newer"},
)


def reply(code: int = 0, remark: str | None = None, **ext: str) -> RemotingCommand:
    return RemotingCommand(code=code, flag=1, language="JAVA", remark=remark, ext_fields=ext)


# --- signing ----------------------------------------------------------------------------------


def test_the_shared_vector_signs_to_the_same_mac_as_the_java_plug_in() -> None:
    signed = auth_fields(
        SECRET, PROMOTE_IN_PLACE, VECTOR_FIELDS, now_ms=VECTOR_NOW_MS, nonce=VECTOR_NONCE
    )
    assert signed == {
        **VECTOR_FIELDS,
        "issuedAt": "1700000000000",
        "nonce": VECTOR_NONCE,
        "mac": VECTOR_MAC,
    }
    assert sign_request(SECRET, PROMOTE_IN_PLACE, signed) == VECTOR_MAC  # mac is not signed
    assert hmac.new(SECRET, VECTOR_CANONICAL, hashlib.sha256).hexdigest() == VECTOR_MAC


def test_keys_sort_by_their_utf8_bytes() -> None:
    # U+FF21 sorts before U+1F600 by UTF-8 bytes (EF.. < F0..), after it by UTF-16 units.
    fields = {"\U0001f600": "b", "\uff21": "a", "Z": "c"}
    canonical = "1\nZ=c\n\uff21=a\n\U0001f600=b\n".encode()
    assert sign_request(SECRET, 1, fields) == hmac.new(SECRET, canonical, "sha256").hexdigest()


def test_the_code_and_every_field_are_signed() -> None:
    base = sign_request(SECRET, PROMOTE_IN_PLACE, VECTOR_FIELDS)
    assert sign_request(SECRET, SET_MASTER_ROLE, VECTOR_FIELDS) != base
    assert sign_request(SECRET, PROMOTE_IN_PLACE, {**VECTOR_FIELDS, "epoch": "8"}) != base
    other = b"another secret of 32 bytes......"
    assert sign_request(other, PROMOTE_IN_PLACE, VECTOR_FIELDS) != base


# --- with ACL (aclEnable=true brokers) ----------------------------------------------------------

ACL = AclCredentials("rmq-watchdog-admin", Secret("admin-Secret-Key"), Secret("a-token"))
# What 4.9.7 answers a request its ACL hook refused (code 1, the AclException and its frame).
ACL_REFUSED = reply(
    1,
    "org.apache.rocketmq.acl.common.AclException: Check signature failed for "
    "accessKey=rmq-watchdog-admin, org.apache.rocketmq.acl.plain.PlainPermissionManager.validate"
    "(PlainPermissionManager.java:683)",
)


def test_acl_fields_are_left_out_of_the_mac_and_only_they() -> None:
    acl = {"AccessKey": "rmq-watchdog-admin", "SecurityToken": "t", "Signature": "c2ln/+="}
    signed = auth_fields(
        SECRET, PROMOTE_IN_PLACE, VECTOR_FIELDS, now_ms=VECTOR_NOW_MS, nonce=VECTOR_NONCE
    )
    assert sign_request(SECRET, PROMOTE_IN_PLACE, {**signed, **acl}) == VECTOR_MAC
    assert sign_request(SECRET, PROMOTE_IN_PLACE, {**signed, "accesskey": "x"}) != VECTOR_MAC


def test_an_acl_signed_plugin_request_keeps_its_mac_and_acl_signs_the_mac() -> None:
    """The client's order: the plug-in's fields and mac first, then ACL's fields and their
    Signature over all of them (as the broker's ACL hook checks, then the plug-in)."""
    fields = auth_fields(
        SECRET, PROMOTE_IN_PLACE, VECTOR_FIELDS, now_ms=VECTOR_NOW_MS, nonce=VECTOR_NONCE
    )
    cmd = sign_command(RemotingCommand(code=PROMOTE_IN_PLACE, ext_fields=fields), ACL)
    seen = dict(cmd.ext_fields)
    assert seen == {
        **fields,
        "AccessKey": "rmq-watchdog-admin",
        "SecurityToken": "a-token",
        "Signature": seen["Signature"],
    }
    # The plug-in's check on what the broker hands it: the mac still matches.
    assert sign_request(SECRET, PROMOTE_IN_PLACE, seen) == seen["mac"] == VECTOR_MAC
    # ACL's Signature covers the mac: another mac would need another Signature.
    assert acl_signature({**seen, "mac": "0" * 64}, b"", ACL.secret_key) != seen["Signature"]
    # Any field the plug-in acts on, changed after signing, fails the plug-in's check even
    # when whoever changed it signs the request for ACL again.
    for key, value in [("epoch", "8"), ("role", "ASYNC_MASTER"), ("expectMaxPhyOffset", "0")]:
        resigned = sign_command(
            RemotingCommand(code=PROMOTE_IN_PLACE, ext_fields={**fields, key: value}), ACL
        )
        assert sign_request(SECRET, PROMOTE_IN_PLACE, resigned.ext_fields) != VECTOR_MAC


def test_an_acl_refusal_of_a_plugin_request_is_acl_refused() -> None:
    with pytest.raises(AclRefused) as caught:
        run(
            promote_in_place(
                Replay(ACL_REFUSED),
                secret=SECRET,
                role="ASYNC_MASTER",
                expect_max_phy_offset=1,
                epoch=1,
                timeout_seconds=1,
            )
        )
    assert caught.value.reason == "Check signature failed for accessKey=rmq-watchdog-admin"
    assert caught.value.request_code == PROMOTE_IN_PLACE
    with pytest.raises(AclRefused, match="Check signature failed"):
        run(get_plugin_info(Replay(ACL_REFUSED), timeout_seconds=1))


@pytest.mark.parametrize(
    "fields",
    [{"a=b": "1"}, {"a\nb": "1"}, {"a": "1\nb=2"}, {"": "1"}],
    ids=["equals in key", "newline in key", "newline in value", "empty key"],
)
def test_fields_that_would_make_the_canonical_string_ambiguous_are_refused(
    fields: dict[str, str],
) -> None:
    with pytest.raises(ValueError):
        sign_request(SECRET, 1, fields)


@pytest.mark.parametrize("nonce", ["", "0011", "zz112233445566778899aabbccddeeff", "0" * 129])
def test_a_nonce_is_16_to_128_hex_digits(nonce: str) -> None:
    with pytest.raises(ValueError, match="nonce"):
        auth_fields(SECRET, 1, {"epoch": "1"}, now_ms=1, nonce=nonce)


def test_each_call_signs_with_a_fresh_nonce_and_the_current_time() -> None:
    client = Replay(reply(0, brokerRole="SYNC_MASTER"))
    for _ in range(2):
        run(set_master_role(client, secret=SECRET, role="SYNC_MASTER", epoch=3, timeout_seconds=1))
    (code1, first), (_, second) = client.asked_fields
    assert code1 == SET_MASTER_ROLE
    assert first["nonce"] != second["nonce"] and len(first["nonce"]) == 32
    assert first["role"] == "SYNC_MASTER" and first["epoch"] == "3"
    assert first["mac"] == sign_request(SECRET, SET_MASTER_ROLE, first)
    assert abs(int(first["issuedAt"]) - int(second["issuedAt"])) < 60_000


# --- replies ----------------------------------------------------------------------------------


def test_plugin_info_parses_a_real_reply_and_no_plugin_is_none() -> None:
    info = run(get_plugin_info(Replay(reply(0, **REAL_INFO)), timeout_seconds=1))
    assert info == PluginInfo(
        plugin_version="0.1.0",
        rocketmq_version="4.9.7",
        broker_role="ASYNC_MASTER",
        broker_id=0,
        last_epoch=1,
        max_phy_offset=60880,
        dispatch_behind_bytes=0,
        ha_master_address="",
        has_secret=True,
    )
    # What a 4.9.7 broker without the plug-in answers (AdminBrokerProcessor's unknown code).
    none = reply(3, " request type 30900 not supported")
    assert run(get_plugin_info(Replay(none), timeout_seconds=1)) is None


def test_a_promotion_reply_is_a_promotion() -> None:
    client = Replay(
        reply(0, "promoted in place", promotionPoint="15260", epoch="1", brokerRole="ASYNC_MASTER")
    )
    promotion = run(
        promote_in_place(
            client,
            secret=SECRET,
            role="ASYNC_MASTER",
            expect_max_phy_offset=15260,
            epoch=1,
            timeout_seconds=1,
        )
    )
    assert promotion == Promotion(promotion_point=15260, epoch=1, broker_role="ASYNC_MASTER")
    code, asked = client.asked_fields[0]
    assert code == PROMOTE_IN_PLACE
    assert asked["expectMaxPhyOffset"] == "15260" and asked["role"] == "ASYNC_MASTER"


def test_refusals_and_auth_failures_are_their_own_errors() -> None:
    with pytest.raises(PluginRefused) as refused:
        run(
            promote_in_place(
                Replay(REAL_REFUSAL),
                secret=SECRET,
                role="SYNC_MASTER",
                expect_max_phy_offset=1,
                epoch=1,
                timeout_seconds=1,
            )
        )
    assert refused.value.refusal == "epoch_not_newer"
    assert "Epoch 1 is not newer" in str(refused.value)
    with pytest.raises(PluginUnauthorized, match="bad mac"):
        run(
            set_ha_master(
                Replay(reply(16, "bad mac")),
                secret=SECRET,
                ha_master_address="127.0.0.1:10912",
                master_address="127.0.0.1:10911",
                epoch=2,
                timeout_seconds=1,
            )
        )
    with pytest.raises(RemoteError) as error:
        run(
            set_master_role(
                Replay(reply(1, "rmq-watchdog plug-in: IOException: disk")),
                secret=SECRET,
                role="SYNC_MASTER",
                epoch=2,
                timeout_seconds=1,
            )
        )
    assert error.value.code == 1
    assert isinstance(refused.value, RemotingError) and not isinstance(refused.value, RemoteError)


def test_set_ha_master_sends_both_addresses() -> None:
    client = Replay(reply(0, "replication re-pointed"))
    run(
        set_ha_master(
            client,
            secret=SECRET,
            ha_master_address="10.0.0.2:10912",
            master_address="10.0.0.2:10911",
            epoch=4,
            timeout_seconds=1,
        )
    )
    code, asked = client.asked_fields[0]
    assert code == SET_HA_MASTER
    assert asked["haMasterAddress"] == "10.0.0.2:10912"
    assert asked["masterAddress"] == "10.0.0.2:10911"
    assert asked["mac"] == sign_request(SECRET, SET_HA_MASTER, asked)


GARBLED_INFO = [
    ({**REAL_INFO, "brokerRole": "BOSS"}, "brokerRole='BOSS'"),
    ({**REAL_INFO, "brokerId": "x"}, "brokerId='x'"),
    ({**REAL_INFO, "lastEpoch": "-1"}, "lastEpoch='-1'"),
    ({**REAL_INFO, "maxPhyOffset": "\u0661"}, "maxPhyOffset"),
    ({**REAL_INFO, "secretLoaded": "yes"}, "secretLoaded='yes'"),
    ({k: v for k, v in REAL_INFO.items() if k != "haMasterAddress"}, "'haMasterAddress'"),
]


@pytest.mark.parametrize(("ext", "named"), GARBLED_INFO, ids=[g[1] for g in GARBLED_INFO])
def test_a_garbled_plugin_info_is_one_protocol_error_naming_the_field(
    ext: dict[str, str], named: str
) -> None:
    with pytest.raises(ProtocolError) as error:
        parse_plugin_info(reply(0, **ext))
    assert named in str(error.value)
    assert str(error.value).startswith("PLUGIN_INFO:")


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        (reply(0, promotionPoint="1", epoch="1"), "'brokerRole'"),
        (reply(0, promotionPoint="1", epoch="1", brokerRole="SLAVE"), "brokerRole='SLAVE'"),
        (reply(0, promotionPoint="x", epoch="1", brokerRole="SYNC_MASTER"), "promotionPoint"),
        (reply(PROMOTION_REFUSED, "no"), "refusal=None"),
        (reply(PROMOTION_REFUSED, "no", refusal="tired"), "refusal='tired'"),
    ],
)
def test_a_garbled_promotion_reply_is_one_protocol_error(
    answer: RemotingCommand, named: str
) -> None:
    with pytest.raises(ProtocolError) as error:
        run(
            promote_in_place(
                Replay(answer),
                secret=SECRET,
                role="SYNC_MASTER",
                expect_max_phy_offset=1,
                epoch=1,
                timeout_seconds=1,
            )
        )
    assert named in str(error.value)
    assert str(error.value).startswith("PROMOTE_IN_PLACE:")


@given(
    st.dictionaries(st.text(max_size=20), st.text(max_size=30), max_size=12),
    st.integers(min_value=-5, max_value=40000),
)
def test_any_reply_parses_or_raises_a_remoting_error(ext: dict[str, str], code: int) -> None:
    # Built directly: the ext fields may hold any name, `code` and `remark` too.
    answer = RemotingCommand(code=code, flag=1, language="JAVA", remark="r", ext_fields=ext)
    with contextlib.suppress(RemotingError):
        parse_plugin_info(answer)
    with contextlib.suppress(RemotingError):
        run(
            promote_in_place(
                Replay(answer),
                secret=SECRET,
                role="SYNC_MASTER",
                expect_max_phy_offset=1,
                epoch=1,
                timeout_seconds=1,
            )
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"role": "SLAVE"},
        {"epoch": -1},
        {"epoch": 2**63},
        {"expect_max_phy_offset": -1},
    ],
)
def test_bad_arguments_are_refused_before_sending(kwargs: dict[str, Any]) -> None:
    client = Replay(reply(0))
    args: dict[str, Any] = {"role": "SYNC_MASTER", "expect_max_phy_offset": 1, "epoch": 1}
    with pytest.raises(ValueError):
        run(promote_in_place(client, secret=SECRET, timeout_seconds=1, **{**args, **kwargs}))
    assert client.asked == []


def test_the_codes_are_the_protocols() -> None:
    assert (PLUGIN_INFO, PROMOTE_IN_PLACE, SET_HA_MASTER, SET_MASTER_ROLE) == (
        30900,
        30901,
        30902,
        30903,
    )
    assert PROMOTION_REFUSED == 30950
