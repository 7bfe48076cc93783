/*
 * The plug-in's wire protocol (docs: broker-plugin/README.md): request and response codes, field
 * names, the canonical string a request's MAC covers, and the parsing of request fields.
 */
package io.rmqwatchdog.plugin;

import java.nio.charset.StandardCharsets;
import java.security.InvalidKeyException;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.Collections;
import java.util.Comparator;
import java.util.List;
import java.util.Map;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/** Codes, field names and the pure rules of the protocol; no broker state here. */
public final class Protocol {
    public static final int PLUGIN_INFO = 30900;
    public static final int PROMOTE_IN_PLACE = 30901;
    public static final int SET_HA_MASTER = 30902;
    public static final int SET_MASTER_ROLE = 30903;

    public static final int SUCCESS = 0;
    public static final int SYSTEM_ERROR = 1;
    public static final int NO_PERMISSION = 16;
    public static final int PROMOTION_REFUSED = 30950;

    public static final String NOT_SLAVE = "not_slave";
    public static final String NOT_MASTER = "not_master";
    public static final String EPOCH_NOT_NEWER = "epoch_not_newer";
    public static final String LOG_MOVED = "log_moved";
    public static final String PARTIAL_TAIL = "partial_tail";
    public static final String BAD_REQUEST = "bad_request";
    public static final String BUSY = "busy";

    public static final String F_MAC = "mac";
    public static final String F_NONCE = "nonce";
    public static final String F_ISSUED_AT = "issuedAt";
    public static final String F_EPOCH = "epoch";
    public static final String F_ROLE = "role";
    public static final String F_EXPECT_MAX_PHY_OFFSET = "expectMaxPhyOffset";
    public static final String F_HA_MASTER_ADDRESS = "haMasterAddress";
    public static final String F_MASTER_ADDRESS = "masterAddress";
    public static final String F_REFUSAL = "refusal";

    // RocketMQ ACL 1.0's fields (SessionCredentials in 4.9.7): on a broker with aclEnable=true
    // the client adds them after the MAC, the Signature over every other field, the MAC
    // included, and the broker's ACL hook has checked them before the plug-in sees the request.
    // The MAC leaves them out; the plug-in never acts on them.
    public static final String ACL_ACCESS_KEY = "AccessKey";
    public static final String ACL_SIGNATURE = "Signature";
    public static final String ACL_SECURITY_TOKEN = "SecurityToken";

    public static final String ASYNC_MASTER = "ASYNC_MASTER";
    public static final String SYNC_MASTER = "SYNC_MASTER";

    static final int MIN_NONCE_CHARS = 16;
    static final int MAX_NONCE_CHARS = 128;
    static final int MAC_HEX_CHARS = 64;
    // Longest Java long in decimal: Long.MAX_VALUE has 19 digits.
    private static final int MAX_LONG_DIGITS = 19;

    private Protocol() {
    }

    /** Keys compared as their UTF-8 bytes, unsigned: the order the Python client sorts in. */
    static final Comparator<String> BYTE_ORDER = new Comparator<String>() {
        @Override
        public int compare(String a, String b) {
            byte[] x = a.getBytes(StandardCharsets.UTF_8);
            byte[] y = b.getBytes(StandardCharsets.UTF_8);
            int n = Math.min(x.length, y.length);
            for (int i = 0; i < n; i++) {
                int d = (x[i] & 0xff) - (y[i] & 0xff);
                if (d != 0) {
                    return d;
                }
            }
            return x.length - y.length;
        }
    };

    /** Fields the MAC does not cover: the MAC itself, and ACL's (see ACL_ACCESS_KEY). */
    static boolean unsigned(String key) {
        return F_MAC.equals(key) || ACL_ACCESS_KEY.equals(key) || ACL_SIGNATURE.equals(key)
            || ACL_SECURITY_TOKEN.equals(key);
    }

    /**
     * "code\n" then "key=value\n" for every field but the MAC and ACL's, keys in byte order. A
     * key with '=' or a line break, or a value with a line break, would let two field sets share
     * one canonical string, so such a field is a bad request.
     */
    public static String canonical(int code, Map<String, String> fields) throws Refusal {
        List<String> keys = new ArrayList<String>(fields.keySet());
        Collections.sort(keys, BYTE_ORDER);
        StringBuilder out = new StringBuilder();
        out.append(code).append('\n');
        for (String key : keys) {
            if (unsigned(key)) {
                continue;
            }
            String value = fields.get(key);
            if (key.isEmpty() || key.indexOf('=') >= 0 || key.indexOf('\n') >= 0) {
                throw Refusal.badRequest(key, "is not a usable field name");
            }
            if (value == null || value.indexOf('\n') >= 0) {
                throw Refusal.badRequest(key, "must be a value without line breaks");
            }
            out.append(key).append('=').append(value).append('\n');
        }
        return out.toString();
    }

    /** Lowercase hex HMAC-SHA256 of the canonical string under the secret. */
    public static String mac(byte[] secret, String canonical) {
        try {
            Mac hmac = Mac.getInstance("HmacSHA256");
            hmac.init(new SecretKeySpec(secret, "HmacSHA256"));
            return hex(hmac.doFinal(canonical.getBytes(StandardCharsets.UTF_8)));
        } catch (NoSuchAlgorithmException | InvalidKeyException e) {
            // Every Java SE has HmacSHA256 and accepts any non-empty key.
            throw new IllegalStateException("HmacSHA256 unavailable: " + e, e);
        }
    }

    static String hex(byte[] bytes) {
        char[] digits = "0123456789abcdef".toCharArray();
        char[] out = new char[bytes.length * 2];
        for (int i = 0; i < bytes.length; i++) {
            out[2 * i] = digits[(bytes[i] >> 4) & 0xf];
            out[2 * i + 1] = digits[bytes[i] & 0xf];
        }
        return new String(out);
    }

    static boolean isHex(String text, boolean lowercaseOnly) {
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            boolean ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                || (!lowercaseOnly && c >= 'A' && c <= 'F');
            if (!ok) {
                return false;
            }
        }
        return true;
    }

    /** The field, present and not empty, else a bad request naming it. */
    public static String required(Map<String, String> fields, String name) throws Refusal {
        String value = fields.get(name);
        if (value == null || value.isEmpty()) {
            throw Refusal.badRequest(name, "is missing");
        }
        return value;
    }

    /** A non-negative Java long written in ASCII digits, as Long.toString writes it. */
    public static long nonNegativeLong(Map<String, String> fields, String name) throws Refusal {
        String value = required(fields, name);
        if (value.length() > MAX_LONG_DIGITS) {
            throw Refusal.badRequest(name, "is not a non-negative 64-bit integer");
        }
        for (int i = 0; i < value.length(); i++) {
            char c = value.charAt(i);
            if (c < '0' || c > '9') {
                throw Refusal.badRequest(name, "is not a non-negative 64-bit integer");
            }
        }
        try {
            return Long.parseLong(value);
        } catch (NumberFormatException e) {
            throw Refusal.badRequest(name, "is not a non-negative 64-bit integer");
        }
    }

    /** ASYNC_MASTER or SYNC_MASTER: the only roles a promotion or a role change may set. */
    public static String masterRole(Map<String, String> fields) throws Refusal {
        String role = required(fields, F_ROLE);
        if (!ASYNC_MASTER.equals(role) && !SYNC_MASTER.equals(role)) {
            throw Refusal.badRequest(F_ROLE, "must be ASYNC_MASTER or SYNC_MASTER");
        }
        return role;
    }

    /** host:port with a port in 1..65535 and a host without spaces or separators. */
    public static String hostPort(Map<String, String> fields, String name) throws Refusal {
        String value = required(fields, name);
        int colon = value.lastIndexOf(':');
        if (colon <= 0 || colon == value.length() - 1 || value.length() > 255) {
            throw Refusal.badRequest(name, "is not host:port");
        }
        String host = value.substring(0, colon);
        String port = value.substring(colon + 1);
        for (int i = 0; i < host.length(); i++) {
            char c = host.charAt(i);
            if (c <= ' ' || c == ';' || c == ',' || c == '/' || c > '~') {
                throw Refusal.badRequest(name, "is not host:port");
            }
        }
        if (port.length() > 5) {
            throw Refusal.badRequest(name, "is not host:port");
        }
        int number = 0;
        for (int i = 0; i < port.length(); i++) {
            char c = port.charAt(i);
            if (c < '0' || c > '9') {
                throw Refusal.badRequest(name, "is not host:port");
            }
            number = number * 10 + (c - '0');
        }
        if (number < 1 || number > 65535) {
            throw Refusal.badRequest(name, "is not host:port");
        }
        return value;
    }

    /** The RocketMQ version as MQVersion names it ("V4_9_7"), dotted ("4.9.7"). */
    static String dottedVersion(String desc) {
        String text = desc.startsWith("V") ? desc.substring(1) : desc;
        return text.replace('_', '.');
    }
}
