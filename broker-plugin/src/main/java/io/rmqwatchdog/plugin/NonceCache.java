/*
 * The nonces of authenticated requests seen in the last 120 s, in bounded memory.
 */
package io.rmqwatchdog.plugin;

import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * Remembers each nonce for RETENTION_MS after it was accepted. A request is accepted only while
 * |now - issuedAt| <= 60 s, so a nonce accepted at t can be replayed fresh until at most t + 120 s:
 * remembering it that long closes the replay window. When CAPACITY unexpired nonces are held, new
 * requests are refused (busy) rather than forgetting a nonce early, which would reopen a replay.
 */
final class NonceCache {
    static final long RETENTION_MS = 120_000L;
    static final int CAPACITY = 4096;

    // Insertion order is acceptance order, and acceptance times only grow (monotonic clock), so
    // the expired entries are always at the head.
    private final LinkedHashMap<String, Long> seen = new LinkedHashMap<String, Long>();

    enum Outcome { ACCEPTED, REPLAYED, FULL }

    /** Record `nonce` at `nowMonoMs` unless it was seen in the last 120 s or the cache is full. */
    synchronized Outcome accept(String nonce, long nowMonoMs) {
        Iterator<Map.Entry<String, Long>> it = seen.entrySet().iterator();
        while (it.hasNext()) {
            if (nowMonoMs - it.next().getValue() < RETENTION_MS) {
                break;
            }
            it.remove();
        }
        if (seen.containsKey(nonce)) {
            return Outcome.REPLAYED;
        }
        if (seen.size() >= CAPACITY) {
            return Outcome.FULL;
        }
        seen.put(nonce, nowMonoMs);
        return Outcome.ACCEPTED;
    }

    synchronized int size() {
        return seen.size();
    }
}
