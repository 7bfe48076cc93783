package io.rmqwatchdog.plugin;

import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.fail;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;
import org.junit.Rule;
import org.junit.Test;
import org.junit.rules.TemporaryFolder;

/** MAC, issuedAt window, nonce replay and the secret file, with a clock the test sets. */
public class AuthTest {
    @Rule
    public TemporaryFolder folder = new TemporaryFolder();

    static final long NOW = 1_700_000_000_000L;

    static final class FakeClock implements Auth.Clock {
        long wall = NOW;
        long mono = 5_000_000L;

        @Override
        public long wallMs() {
            return wall;
        }

        @Override
        public long monoMs() {
            return mono;
        }
    }

    private final FakeClock clock = new FakeClock();
    private byte[] secret = ProtocolTest.SECRET;
    private final Auth auth = new Auth(new Auth.SecretSource() {
        @Override
        public byte[] secret() {
            return secret == null ? null : secret.clone();
        }
    }, clock);

    static Map<String, String> signed(byte[] secret, int code, Map<String, String> fields) throws Refusal {
        Map<String, String> out = new HashMap<String, String>(fields);
        out.put("mac", Protocol.mac(secret, Protocol.canonical(code, out)));
        return out;
    }

    private static void expect(int code, String text, Auth auth, Map<String, String> fields) {
        try {
            auth.verify(Protocol.PROMOTE_IN_PLACE, fields);
            fail("accepted " + fields);
        } catch (Refusal r) {
            assertEquals(code, r.responseCode());
            assertEquals(text, code == Protocol.NO_PERMISSION ? r.getMessage() : r.refusal());
        }
    }

    @Test
    public void theSharedVectorIsAcceptedOnceAndThenIsAReplay() throws Refusal {
        Map<String, String> request = signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector());
        assertEquals(ProtocolTest.VECTOR_MAC, request.get("mac"));
        assertEquals(7L, auth.verify(Protocol.PROMOTE_IN_PLACE, request));
        expect(Protocol.NO_PERMISSION, "replayed nonce", auth, request);
        clock.mono += NonceCache.RETENTION_MS;  // forgotten after 120 s: by then it is stale anyway
        clock.wall += NonceCache.RETENTION_MS;
        expect(Protocol.NO_PERMISSION, "stale issuedAt", auth, request);
    }

    @Test
    public void aWrongSecretOrAChangedFieldIsABadMac() throws Refusal {
        Map<String, String> request = signed("another secret of 32 bytes......".getBytes(),
            Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector());
        expect(Protocol.NO_PERMISSION, "bad mac", auth, request);
        Map<String, String> tampered = signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector());
        tampered.put("epoch", "8");
        expect(Protocol.NO_PERMISSION, "bad mac", auth, tampered);
        // The code is signed too: a SET_MASTER_ROLE signature is no PROMOTE_IN_PLACE one.
        Map<String, String> other = signed(ProtocolTest.SECRET, Protocol.SET_MASTER_ROLE, ProtocolTest.vector());
        expect(Protocol.NO_PERMISSION, "bad mac", auth, other);
    }

    /** What a watchdog with [acl] sends: the plug-in's fields and MAC, then RocketMQ's own
     * client hook adds AccessKey, SecurityToken and a Signature over all of them. */
    private static Map<String, String> aclSigned(Map<String, String> pluginFields, String secretKey) {
        RemotingCommand request = RemotingCommand.createRequestCommand(Protocol.PROMOTE_IN_PLACE, null);
        for (Map.Entry<String, String> e : pluginFields.entrySet()) {
            request.addExtField(e.getKey(), e.getValue());
        }
        new AclClientRPCHook(new SessionCredentials("rmq-watchdog-admin", secretKey, "token"))
            .doBeforeRequest("127.0.0.1:10911", request);
        return new HashMap<String, String>(request.getExtFields());
    }

    @Test
    public void aclFieldsAddedAfterTheMacAreNotCovered() throws Refusal {
        Map<String, String> request = aclSigned(
            signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector()), "admin-secret-key");
        assertEquals("rmq-watchdog-admin", request.get("AccessKey"));
        assertEquals("token", request.get("SecurityToken"));
        assertEquals(ProtocolTest.VECTOR_MAC, request.get("mac"));
        assertEquals(7L, auth.verify(Protocol.PROMOTE_IN_PLACE, request));
    }

    @Test
    public void aclSigningDoesNotMakeAChangedFieldAcceptable() throws Refusal {
        // Whoever can sign for ACL (any account of the broker: the ACL hook asks no right of an
        // unknown request code) still cannot change what the plug-in acts on.
        String[][] changes = {
            {"epoch", "8"}, {"role", "ASYNC_MASTER"}, {"expectMaxPhyOffset", "0"},
            {"issuedAt", "1700000000001"}, {"nonce", "00112233445566778899aabbccddeef9"}, {"extra", "1"},
        };
        for (String[] change : changes) {
            Map<String, String> fields = signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector());
            fields.put(change[0], change[1]);
            expect(Protocol.NO_PERMISSION, "bad mac", auth, aclSigned(fields, "admin-secret-key"));
        }
        // A MAC under another secret stays a bad one, whoever signs the request for ACL.
        Map<String, String> other = signed("another secret of 32 bytes......".getBytes(),
            Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector());
        expect(Protocol.NO_PERMISSION, "bad mac", auth, aclSigned(other, "admin-secret-key"));
    }

    @Test
    public void issuedAtMayBeAMinuteOffEitherWay() throws Refusal {
        Map<String, String> fields = ProtocolTest.vector();
        clock.wall = NOW + 60_000L;
        auth.verify(Protocol.PROMOTE_IN_PLACE, signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, fields));
        fields.put("nonce", "00112233445566778899aabbccddeef0");
        clock.wall = NOW - 60_000L;
        auth.verify(Protocol.PROMOTE_IN_PLACE, signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, fields));
        fields.put("nonce", "00112233445566778899aabbccddeef1");
        clock.wall = NOW + 60_001L;
        expect(Protocol.NO_PERMISSION, "stale issuedAt", auth,
            signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, fields));
    }

    @Test
    public void noSecretRefusesEveryRequest() throws Refusal {
        secret = null;
        expect(Protocol.NO_PERMISSION, "no secret loaded", auth,
            signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector()));
    }

    @Test
    public void missingOrGarbledAuthFieldsAreBadRequests() throws Refusal {
        String[][] cases = {
            {"nonce", null}, {"nonce", "0011"}, {"nonce", "zz112233445566778899aabbccddeeff"},
            {"issuedAt", null}, {"issuedAt", "-5"}, {"epoch", "seven"}, {"epoch", null},
        };
        for (String[] c : cases) {
            Map<String, String> fields = ProtocolTest.vector();
            if (c[1] == null) {
                fields.remove(c[0]);
            } else {
                fields.put(c[0], c[1]);
            }
            expect(Protocol.PROMOTION_REFUSED, Protocol.BAD_REQUEST, auth,
                signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, fields));
        }
        Map<String, String> noMac = ProtocolTest.vector();
        expect(Protocol.PROMOTION_REFUSED, Protocol.BAD_REQUEST, auth, noMac);
        Map<String, String> upperMac = signed(ProtocolTest.SECRET, Protocol.PROMOTE_IN_PLACE, ProtocolTest.vector());
        upperMac.put("mac", upperMac.get("mac").toUpperCase());
        expect(Protocol.PROMOTION_REFUSED, Protocol.BAD_REQUEST, auth, upperMac);
    }

    @Test
    public void aFullNonceCacheRefusesAsBusyAndNeverForgetsEarly() {
        NonceCache cache = new NonceCache();
        for (int i = 0; i < NonceCache.CAPACITY; i++) {
            assertEquals(NonceCache.Outcome.ACCEPTED, cache.accept("n" + i, 1000L + i));
        }
        assertEquals(NonceCache.Outcome.FULL, cache.accept("new", 2000L));
        assertEquals(NonceCache.Outcome.REPLAYED, cache.accept("n0", 2000L));
        // 120 s after the first one was accepted, it (and only it) is gone.
        assertEquals(NonceCache.Outcome.ACCEPTED, cache.accept("new", 1000L + NonceCache.RETENTION_MS));
        assertEquals(NonceCache.CAPACITY, cache.size());
    }

    @Test
    public void theSecretFileIsTrimmedAndMustHoldSixteenBytes() throws IOException {
        Path file = folder.newFile("s").toPath();
        Files.write(file, " \t0123456789abcdef\r\n".getBytes(StandardCharsets.US_ASCII));
        assertArrayEquals("0123456789abcdef".getBytes(), Auth.readSecret(file));
        Files.write(file, "0123456789abcde\n".getBytes(StandardCharsets.US_ASCII));
        assertNull(Auth.readSecret(file));
        Files.write(file, new byte[5000]);
        assertNull(Auth.readSecret(file));
        assertNull(Auth.readSecret(new File(folder.getRoot(), "missing").toPath()));
    }

    @Test
    public void theSecretPathComesFromTheSystemPropertyElseTheStoreRoot() {
        String before = System.getProperty(Auth.SECRET_FILE_PROPERTY);
        try {
            System.clearProperty(Auth.SECRET_FILE_PROPERTY);
            assertEquals(new File("/store", "watchdog-plugin.secret").toPath(), Auth.secretPath("/store"));
            System.setProperty(Auth.SECRET_FILE_PROPERTY, "/etc/rmq/secret");
            assertEquals(new File("/etc/rmq/secret").toPath(), Auth.secretPath("/store"));
        } finally {
            if (before == null) {
                System.clearProperty(Auth.SECRET_FILE_PROPERTY);
            } else {
                System.setProperty(Auth.SECRET_FILE_PROPERTY, before);
            }
        }
    }
}
