/*
 * Every answer other than SUCCESS, as an exception: a refusal (30950 with a `refusal` field), an
 * authentication failure (16), or a system error (1). Thrown before any broker state changes, or
 * after the plug-in has put back what it changed.
 */
package io.rmqwatchdog.plugin;

/** A request the plug-in will not carry out; the response code and one-sentence remark. */
public final class Refusal extends Exception {
    private static final long serialVersionUID = 1L;

    private final int responseCode;
    private final String refusal;

    private Refusal(int responseCode, String refusal, String remark) {
        super(remark);
        this.responseCode = responseCode;
        this.refusal = refusal;
    }

    /** 30950 with `refusal` = one of Protocol's refusal names. */
    public static Refusal refused(String refusal, String remark) {
        return new Refusal(Protocol.PROMOTION_REFUSED, refusal, remark);
    }

    /** 30950 bad_request naming the field. */
    public static Refusal badRequest(String field, String problem) {
        return refused(Protocol.BAD_REQUEST, "field " + field + " " + problem + ".");
    }

    /** 16 NO_PERMISSION: no secret loaded, bad mac, stale issuedAt, replayed nonce. */
    public static Refusal unauthorized(String remark) {
        return new Refusal(Protocol.NO_PERMISSION, null, remark);
    }

    /** 1 SYSTEM_ERROR: the broker is not what the plug-in can work on, or an I/O error. */
    public static Refusal systemError(String remark) {
        return new Refusal(Protocol.SYSTEM_ERROR, null, remark);
    }

    public int responseCode() {
        return responseCode;
    }

    /** The refusal name for a 30950 answer, null otherwise. */
    public String refusal() {
        return refusal;
    }
}
