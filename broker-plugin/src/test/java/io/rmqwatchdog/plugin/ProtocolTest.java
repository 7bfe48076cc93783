package io.rmqwatchdog.plugin;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertNull;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.Map;
import org.junit.Test;

/** The canonical string, the MAC (the same fixed vector as tests/unit/test_remoting_plugin.py)
 * and the parsing of request fields. */
public class ProtocolTest {
    static final byte[] SECRET = "0123456789abcdef0123456789abcdef".getBytes();
    static final String VECTOR_MAC = "467f1e13725ac42e6e7ff9f3689697babc82822d7f7c40e059d403cbaa4c5ce5";

    static Map<String, String> vector() {
        Map<String, String> fields = new HashMap<String, String>();
        fields.put("role", "SYNC_MASTER");
        fields.put("expectMaxPhyOffset", "123456");
        fields.put("epoch", "7");
        fields.put("issuedAt", "1700000000000");
        fields.put("nonce", "00112233445566778899aabbccddeeff");
        return fields;
    }

    @Test
    public void canonicalIsTheCodeThenSortedFieldsWithoutTheMac() throws Refusal {
        Map<String, String> fields = vector();
        fields.put("mac", "ignored");
        assertEquals("30901\nepoch=7\nexpectMaxPhyOffset=123456\nissuedAt=1700000000000\n"
            + "nonce=00112233445566778899aabbccddeeff\nrole=SYNC_MASTER\n",
            Protocol.canonical(Protocol.PROMOTE_IN_PLACE, fields));
    }

    @Test
    public void canonicalLeavesOutAclFieldsAndOnlyThose() throws Refusal {
        // ACL 1.0 adds these after the MAC (the Signature covers the MAC), so the MAC cannot.
        Map<String, String> fields = vector();
        fields.put("AccessKey", "rmq-watchdog-admin");
        fields.put("SecurityToken", "token");
        fields.put("Signature", "c2lnbmF0dXJl/+=");
        String bare = Protocol.canonical(Protocol.PROMOTE_IN_PLACE, vector());
        assertEquals(bare, Protocol.canonical(Protocol.PROMOTE_IN_PLACE, fields));
        assertEquals(VECTOR_MAC, Protocol.mac(SECRET, Protocol.canonical(Protocol.PROMOTE_IN_PLACE, fields)));
        // Names are matched exactly: any other field is covered, whatever its case.
        fields.put("accesskey", "x");
        assertEquals("30901\naccesskey=x\nepoch=7\nexpectMaxPhyOffset=123456\n"
            + "issuedAt=1700000000000\nnonce=00112233445566778899aabbccddeeff\nrole=SYNC_MASTER\n",
            Protocol.canonical(Protocol.PROMOTE_IN_PLACE, fields));
    }

    @Test
    public void macMatchesTheSharedVector() throws Refusal {
        assertEquals(VECTOR_MAC, Protocol.mac(SECRET, Protocol.canonical(Protocol.PROMOTE_IN_PLACE, vector())));
    }

    @Test
    public void keysSortByTheirUtf8BytesNotByUtf16() throws Refusal {
        // U+FF21 (EF BC A1 in UTF-8) sorts before U+1F600 (F0 9F 98 80) by bytes, but after its
        // surrogate pair (D83D DE00) by Java's String.compareTo.
        Map<String, String> fields = new HashMap<String, String>();
        fields.put("\uD83D\uDE00", "b");
        fields.put("\uFF21", "a");
        fields.put("Z", "c");
        assertEquals("1\nZ=c\n\uFF21=a\n\uD83D\uDE00=b\n", Protocol.canonical(1, fields));
    }

    @Test
    public void fieldsThatWouldMakeTheCanonicalStringAmbiguousAreBadRequests() {
        String[][] bad = {{"a=b", "1"}, {"a\nb", "1"}, {"a", "1\nb=2"}, {"", "x"}};
        for (String[] pair : bad) {
            Map<String, String> fields = new HashMap<String, String>();
            fields.put(pair[0], pair[1]);
            try {
                Protocol.canonical(1, fields);
                fail("accepted " + pair[0] + "=" + pair[1]);
            } catch (Refusal r) {
                assertEquals(Protocol.PROMOTION_REFUSED, r.responseCode());
                assertEquals(Protocol.BAD_REQUEST, r.refusal());
            }
        }
    }

    @Test
    public void longsAreAsciiDigitsOnly() throws Refusal {
        Map<String, String> fields = new HashMap<String, String>();
        fields.put("x", "9223372036854775807");
        assertEquals(Long.MAX_VALUE, Protocol.nonNegativeLong(fields, "x"));
        for (String bad : new String[] {"-1", "+1", " 1", "1.0", "9223372036854775808", "\u0661", "", "0x10"}) {
            fields.put("x", bad);
            try {
                Protocol.nonNegativeLong(fields, "x");
                fail("accepted " + bad);
            } catch (Refusal r) {
                assertEquals(Protocol.BAD_REQUEST, r.refusal());
                assertTrue(r.getMessage(), r.getMessage().contains("field x"));
            }
        }
    }

    @Test
    public void rolesAndAddresses() throws Refusal {
        Map<String, String> fields = new HashMap<String, String>();
        fields.put("role", "SYNC_MASTER");
        assertEquals("SYNC_MASTER", Protocol.masterRole(fields));
        for (String bad : new String[] {"SLAVE", "sync_master", "ASYNC_MASTER "}) {
            fields.put("role", bad);
            try {
                Protocol.masterRole(fields);
                fail("accepted role " + bad);
            } catch (Refusal r) {
                assertEquals(Protocol.BAD_REQUEST, r.refusal());
            }
        }
        fields.put("a", "127.0.0.1:10912");
        assertEquals("127.0.0.1:10912", Protocol.hostPort(fields, "a"));
        for (String bad : new String[] {"127.0.0.1", ":1", "h:0", "h:65536", "h:x", "a b:1", "h:1;h:2"}) {
            fields.put("a", bad);
            try {
                Protocol.hostPort(fields, "a");
                fail("accepted address " + bad);
            } catch (Refusal r) {
                assertEquals(Protocol.BAD_REQUEST, r.refusal());
            }
        }
    }

    @Test
    public void partialTailIsALogEndingInsideAMessage() {
        ByteBuffer whole = ByteBuffer.allocate(200);
        whole.putInt(0, 200).putInt(4, -626843481);
        assertNull(PluginService.partialTail(whole, 200, 200, 0));
        assertNull(PluginService.partialTail(whole, 200, 500, 0));
        assertTrue(PluginService.partialTail(whole, 150, 150, 0).contains("inside a message of 200"));
        assertTrue(PluginService.partialTail(whole, 6, 6, 0).contains("header"));
        ByteBuffer garbage = ByteBuffer.allocate(16);
        garbage.putInt(0, 16).putInt(4, 12345);
        assertTrue(PluginService.partialTail(garbage, 16, 16, 0).contains("not a message"));
    }

    @Test
    public void versionDescriptionsAreDotted() {
        assertEquals("4.9.7", Protocol.dottedVersion("V4_9_7"));
    }
}
