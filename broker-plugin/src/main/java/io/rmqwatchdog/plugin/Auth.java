/*
 * Authentication of requests 30901-30903: the shared secret's file, the MAC, issuedAt and the
 * nonce. The epoch rule needs broker state and lives in PluginService.
 */
package io.rmqwatchdog.plugin;

import java.io.File;
import java.io.IOException;
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.Arrays;
import java.util.Map;
import java.nio.charset.StandardCharsets;

/** Checks a request's auth fields; returns its epoch, or throws the refusal to answer with. */
final class Auth {
    /** The JVM system property naming the secret file (else STORE_ROOT/watchdog-plugin.secret). */
    static final String SECRET_FILE_PROPERTY = "rmq.watchdog.secretFile";
    static final String SECRET_FILE_NAME = "watchdog-plugin.secret";
    static final int MIN_SECRET_BYTES = 16;
    // A secret is a short token; anything this big is not one (and is not read into memory).
    static final long MAX_SECRET_FILE_BYTES = 4096;
    static final long MAX_SKEW_MS = 60_000L;

    interface Clock {
        long wallMs();

        long monoMs();
    }

    static final Clock SYSTEM_CLOCK = new Clock() {
        @Override
        public long wallMs() {
            return System.currentTimeMillis();
        }

        @Override
        public long monoMs() {
            return System.nanoTime() / 1_000_000L;
        }
    };

    interface SecretSource {
        /** The secret, or null when none is loaded (missing, unreadable or too short). */
        byte[] secret();
    }

    private final SecretSource secrets;
    private final Clock clock;
    private final NonceCache nonces = new NonceCache();

    Auth(SecretSource secrets, Clock clock) {
        this.secrets = secrets;
        this.clock = clock;
    }

    /**
     * The auth checks in order: the fields' shape (bad_request), a secret is loaded, the MAC, the
     * issuedAt window, the nonce; the nonce is remembered only once all of these passed. Returns
     * the request's epoch.
     */
    long verify(int code, Map<String, String> fields) throws Refusal {
        String mac = Protocol.required(fields, Protocol.F_MAC);
        if (mac.length() != Protocol.MAC_HEX_CHARS || !Protocol.isHex(mac, true)) {
            throw Refusal.badRequest(Protocol.F_MAC, "is not 64 lowercase hex digits");
        }
        String nonce = Protocol.required(fields, Protocol.F_NONCE);
        if (nonce.length() < Protocol.MIN_NONCE_CHARS || nonce.length() > Protocol.MAX_NONCE_CHARS
            || !Protocol.isHex(nonce, false)) {
            throw Refusal.badRequest(Protocol.F_NONCE, "is not 16 to 128 hex digits");
        }
        long issuedAt = Protocol.nonNegativeLong(fields, Protocol.F_ISSUED_AT);
        long epoch = Protocol.nonNegativeLong(fields, Protocol.F_EPOCH);
        String canonical = Protocol.canonical(code, fields);

        byte[] secret = secrets.secret();
        if (secret == null) {
            throw Refusal.unauthorized("no secret loaded");
        }
        String expected;
        try {
            expected = Protocol.mac(secret, canonical);
        } finally {
            Arrays.fill(secret, (byte) 0);
        }
        // Constant time: MessageDigest.isEqual does not stop at the first differing byte.
        if (!MessageDigest.isEqual(expected.getBytes(StandardCharsets.US_ASCII),
            mac.getBytes(StandardCharsets.US_ASCII))) {
            throw Refusal.unauthorized("bad mac");
        }
        if (Math.abs(clock.wallMs() - issuedAt) > MAX_SKEW_MS) {
            throw Refusal.unauthorized("stale issuedAt");
        }
        switch (nonces.accept(nonce, clock.monoMs())) {
            case REPLAYED:
                throw Refusal.unauthorized("replayed nonce");
            case FULL:
                throw Refusal.refused(Protocol.BUSY,
                    "Too many authenticated requests in the last 120 s; try again later.");
            default:
                return epoch;
        }
    }

    /** The secret file: the system property's path, else STORE_ROOT/watchdog-plugin.secret. */
    static Path secretPath(String storePathRootDir) {
        String configured = System.getProperty(SECRET_FILE_PROPERTY);
        if (configured != null && !configured.trim().isEmpty()) {
            return new File(configured.trim()).toPath();
        }
        return new File(storePathRootDir, SECRET_FILE_NAME).toPath();
    }

    /** The file's content without leading and trailing bytes <= 0x20, or null if unusable. */
    static byte[] readSecret(Path path) {
        try {
            if (Files.size(path) > MAX_SECRET_FILE_BYTES) {
                return null;
            }
            byte[] raw;
            try (InputStream in = Files.newInputStream(path)) {
                raw = readAtMost(in, (int) MAX_SECRET_FILE_BYTES + 1);
            }
            byte[] secret = trim(raw);
            Arrays.fill(raw, (byte) 0);
            if (secret.length < MIN_SECRET_BYTES) {
                Arrays.fill(secret, (byte) 0);
                return null;
            }
            return secret;
        } catch (NoSuchFileException e) {
            return null;
        } catch (IOException | SecurityException e) {
            return null;
        }
    }

    private static byte[] readAtMost(InputStream in, int limit) throws IOException {
        byte[] buffer = new byte[limit];
        int filled = 0;
        while (filled < limit) {
            int n = in.read(buffer, filled, limit - filled);
            if (n < 0) {
                break;
            }
            filled += n;
        }
        byte[] out = Arrays.copyOf(buffer, filled);
        Arrays.fill(buffer, (byte) 0);
        return out;
    }

    /** Strip bytes <= 0x20 (spaces, line ends, control bytes) from both ends, as String.trim. */
    static byte[] trim(byte[] raw) {
        int start = 0;
        int end = raw.length;
        while (start < end && (raw[start] & 0xff) <= 0x20) {
            start++;
        }
        while (end > start && (raw[end - 1] & 0xff) <= 0x20) {
            end--;
        }
        return Arrays.copyOfRange(raw, start, end);
    }
}
