"""ACL 1.0 signing: the Java algorithm's own signatures, the secret never shown, refusals read."""

from __future__ import annotations

import asyncio
import json
import pickle

import pytest

from watchdog.model import AclCredentials, Secret
from watchdog.remoting import (
    AclRefused,
    ClientPool,
    RemoteError,
    RemotingClient,
    RemotingCommand,
    RequestCode,
    acl_refusal,
    acl_signature,
    ask_admin_permission,
    check_reply,
    describe_error,
    get_broker_runtime_info,
    sign_command,
)
from watchdog.remoting.standin import StandinBroker, StandinServer

pytestmark = pytest.mark.timeout(30)

SECRET = "s3cret-Key!"
PLAIN = AclCredentials("rmq-watchdog", Secret(SECRET))
TOKEN = AclCredentials("rmq-watchdog", Secret(SECRET), Secret("a-security-token"))
UNICODE = AclCredentials("clé-d'accès", Secret("sécret-\u00fc\u4e2d"))

# Signatures printed by tests/unit/golden/AclGolden.java: RocketMQ 4.9.7's own
# AclClientRPCHook.doBeforeRequest on the same requests, run with the jars of
# ~/.cache/rmq-watchdog/rocketmq-4.9.7/lib:
#   javac -cp "$CP" AclGolden.java && java -cp "$CP:." AclGolden
GOLDEN = {
    "bare": "KT6lBmoywggmVIwNfDfhEYz5GLE=",
    "fields_body": "HY5B6wG5HDCXowPpsB0y9yGskbo=",
    "token": "n5ACD+Pgz7Ca7GPiZYT3rNZ7gR4=",
    "order": "TfpRnudsIwYc8JsiypRA+zCN9AY=",
    "signature_ignored": "KT6lBmoywggmVIwNfDfhEYz5GLE=",
}
# Keys whose Java (UTF-16) order differs from Python's code-point order: U+1F600 is the
# surrogate pair D83D DE00, which Java sorts before U+FF21; Python after.
ORDER_FIELDS = {
    "b": "2",
    "a": "1",
    "Z": "0",
    "\u00e9": "\u00e9t\u00e9",
    "\U0001f600": "smile",
    "\uff21": "fullwidth",
}


def signed(
    credentials: AclCredentials, code: int, fields: dict[str, str], body: bytes = b""
) -> str:
    cmd = sign_command(RemotingCommand(code=code, ext_fields=fields, body=body), credentials)
    return cmd.ext_fields["Signature"]


def test_bare_request_signature_equals_javas() -> None:
    assert signed(PLAIN, 28, {}) == GOLDEN["bare"]


def test_fields_and_body_signature_equals_javas() -> None:
    fields = {"topic": "TopicTest", "queueId": "3"}
    assert signed(PLAIN, 30, fields, b"hello body") == GOLDEN["fields_body"]


def test_security_token_is_sent_and_signed_as_java_does() -> None:
    cmd = sign_command(RemotingCommand(code=26), TOKEN)
    assert cmd.ext_fields["SecurityToken"] == "a-security-token"
    assert cmd.ext_fields["Signature"] == GOLDEN["token"]


def test_keys_sort_as_java_strings_and_non_ascii_is_utf8() -> None:
    assert signed(UNICODE, 17, ORDER_FIELDS, bytes([0, 0xFF, 10])) == GOLDEN["order"]


def test_a_stale_signature_field_is_not_signed_and_is_replaced() -> None:
    assert signed(PLAIN, 28, {"Signature": "stale"}) == GOLDEN["signature_ignored"]


def test_request_code_is_not_signed_but_every_field_is() -> None:
    assert signed(PLAIN, 28, {}) == signed(PLAIN, 26, {})
    assert signed(PLAIN, 28, {"x": "1"}) != signed(PLAIN, 28, {"x": "2"})


def test_signing_adds_access_key_and_keeps_the_request() -> None:
    cmd = RemotingCommand(code=30, ext_fields={"topic": "T"}, body=b"b", version=407)
    out = sign_command(cmd, PLAIN)
    assert out.ext_fields["AccessKey"] == "rmq-watchdog"
    assert out.ext_fields["topic"] == "T"
    assert (out.code, out.body, out.version) == (30, b"b", 407)
    assert "AccessKey" not in cmd.ext_fields
    assert acl_signature(dict(out.ext_fields), out.body, PLAIN.secret_key) == out.ext_fields[
        "Signature"
    ]


def test_secret_never_shows_itself() -> None:
    secret = Secret(SECRET)
    for text in (str(secret), repr(secret), f"{secret}", f"{secret!r}", repr(PLAIN), str(TOKEN)):
        assert SECRET not in text and "a-security-token" not in text
    assert secret.reveal() == SECRET
    assert secret == Secret(SECRET) and secret != Secret("other-secret")
    with pytest.raises(TypeError):
        json.dumps({"k": secret})
    with pytest.raises(TypeError):
        pickle.dumps(PLAIN)
    with pytest.raises(AttributeError):
        secret._text = "x"


# The remark a 4.9.7 broker sends for an AclException thrown by its ACL hook.
REMARK = (
    "org.apache.rocketmq.acl.common.AclException: Check signature failed for "
    "accessKey=rmq-watchdog, org.apache.rocketmq.acl.plain.PlainPermissionManager.validate"
    "(PlainPermissionManager.java:683)"
)


def test_acl_refusal_reads_the_reason_without_the_stack_frame() -> None:
    assert acl_refusal(1, REMARK) == "Check signature failed for accessKey=rmq-watchdog"
    admin = (
        "org.apache.rocketmq.acl.common.AclException: Need admin permission for request "
        "code=17, but accessKey=rmq-client is not, org.apache.rocketmq.acl.plain."
        "PlainPermissionManager.checkPerm(PlainPermissionManager.java:580)"
    )
    assert acl_refusal(1, admin) == (
        "Need admin permission for request code=17, but accessKey=rmq-client is not"
    )
    assert acl_refusal(1, "org.apache.rocketmq.acl.common.AclException: No accessKey is "
                       "configured") == "No accessKey is configured"  # fmt: skip
    assert acl_refusal(1, "java.util.NoSuchElementException, x.y(Z.java:1)") is None
    assert acl_refusal(1, None) is None
    assert acl_refusal(3, REMARK) is None


def test_check_reply_raises_acl_refused_a_remote_error() -> None:
    reply = RemotingCommand(code=1, flag=1, remark=REMARK)
    with pytest.raises(AclRefused) as caught:
        check_reply(reply, 28)
    assert isinstance(caught.value, RemoteError)
    assert caught.value.reason == "Check signature failed for accessKey=rmq-watchdog"
    assert describe_error(caught.value) == (
        "AclRefused: request code 28 refused by the broker's ACL: Check signature failed for "
        "accessKey=rmq-watchdog"
    )
    copy = pickle.loads(pickle.dumps(caught.value))
    assert isinstance(copy, AclRefused) and copy.reason == caught.value.reason
    with pytest.raises(RemoteError) as other:
        check_reply(RemotingCommand(code=1, flag=1, remark="java.lang.NullPointerException"), 28)
    assert not isinstance(other.value, AclRefused)


def _acl_broker() -> tuple[StandinServer, StandinBroker]:
    server = StandinServer()
    ns = server.add_namesrv()
    broker = server.add_broker("broker-a", 0, register_with=[ns])
    broker.acl_accounts = {"rmq-watchdog": (SECRET, True), "rmq-client": ("client-secret", False)}
    return server, broker


def test_client_signs_every_request_and_an_acl_broker_accepts_it() -> None:
    async def main() -> None:
        server, broker = _acl_broker()
        async with server:
            signed_client = RemotingClient(broker.addr, credentials=PLAIN)
            info = await get_broker_runtime_info(signed_client, timeout_seconds=2.0)
            assert "commitLogMaxOffset" in info
            seen = broker.recent_requests[-1]
            assert seen.ext_fields["AccessKey"] == "rmq-watchdog"
            assert seen.ext_fields["Signature"] == GOLDEN["bare"]
            # send_nowait, the prober's path, signs too
            future = signed_client.send_nowait(RemotingCommand(code=RequestCode.GET_BROKER_CONFIG))
            assert future is not None and (await future).code == 0
            await signed_client.close()

            unsigned = RemotingClient(broker.addr)
            with pytest.raises(AclRefused, match="No accessKey is configured"):
                await get_broker_runtime_info(unsigned, timeout_seconds=2.0)
            await unsigned.close()

            wrong = AclCredentials("rmq-watchdog", Secret("not-the-secret"))
            pool = ClientPool(credentials=wrong)
            with pytest.raises(AclRefused, match="Check signature failed for accessKey=rmq-wat"):
                await get_broker_runtime_info(pool.get(broker.addr), timeout_seconds=2.0)
            pool.set_credentials(PLAIN)  # a reload: the same client signs with the new account
            await get_broker_runtime_info(pool.get(broker.addr), timeout_seconds=2.0)
            await pool.close_all()

    asyncio.run(main())


def test_admin_permission_is_asked_without_a_change() -> None:
    async def main() -> None:
        server, broker = _acl_broker()
        async with server:
            admin = RemotingClient(broker.addr, credentials=PLAIN)
            await ask_admin_permission(admin, timeout_seconds=2.0)
            client = RemotingClient(
                broker.addr,
                credentials=AclCredentials("rmq-client", Secret("client-secret")),
            )
            with pytest.raises(AclRefused, match="Need admin permission for request code=17"):
                await ask_admin_permission(client, timeout_seconds=2.0)
            await admin.close()
            await client.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "cmd",
    [
        sign_command(RemotingCommand(code=28), PLAIN),
        sign_command(RemotingCommand(code=26), TOKEN),
        RemotingCommand(code=30, ext_fields={"topic": 'a"opaque":0b', "queueId": "1"}),
    ],
    ids=["signed-bare", "signed-token", "opaque-in-a-value"],
)
def test_a_signed_probe_request_is_framed_from_a_template_with_the_same_bytes(
    cmd: RemotingCommand,
) -> None:
    from dataclasses import replace

    from watchdog.remoting import decode_header, encode_frame
    from watchdog.remoting._codec import _json_header

    for opaque in (1, 2**31 - 1, -5):
        frame = encode_frame(cmd, opaque=opaque)
        assert frame[8:] == _json_header(replace(cmd, opaque=opaque))
        back = decode_header(0, frame[8:])
        assert back.opaque == opaque and dict(back.ext_fields) == dict(cmd.ext_fields)
