/*
 * The slave's HA client (HAService.HAClient), reached by reflection: 4.9.7 exposes neither the
 * client nor its current master address. Everything else goes through public API.
 */
package io.rmqwatchdog.plugin;

import java.lang.reflect.Field;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.rocketmq.common.ServiceThread;
import org.apache.rocketmq.store.DefaultMessageStore;
import org.apache.rocketmq.store.ha.HAService;

/**
 * Stop and restart replication. HAClient extends ServiceThread, whose start() makes a new thread
 * after a shutdown (4.9.7 ServiceThread keeps a `started` flag "to make it able to restart");
 * HAClient.shutdown() joins the thread, then closes the socket to the master and drops any
 * half-received frame (closeMaster), so after stop() no byte more is appended to the log.
 */
final class HaClient {
    private final DefaultMessageStore store;
    private final ServiceThread client;
    private final AtomicReference<?> masterAddress;

    private HaClient(DefaultMessageStore store, ServiceThread client, AtomicReference<?> address) {
        this.store = store;
        this.client = client;
        this.masterAddress = address;
    }

    /** The store's HA client, or a system-error refusal naming what this broker lacks. */
    static HaClient of(DefaultMessageStore store) throws Refusal {
        HAService service = store.getHaService();
        if (service == null) {
            throw Refusal.systemError("this broker has no HAService (DLedger mode?)");
        }
        Object client = field(HAService.class, "haClient", service);
        if (!(client instanceof ServiceThread)) {
            throw Refusal.systemError("HAService.haClient is not a ServiceThread in this RocketMQ build");
        }
        Object address = field(client.getClass(), "masterAddress", client);
        if (!(address instanceof AtomicReference)) {
            throw Refusal.systemError("HAClient.masterAddress is not an AtomicReference in this RocketMQ build");
        }
        return new HaClient(store, (ServiceThread) client, (AtomicReference<?>) address);
    }

    private static Object field(Class<?> owner, String name, Object target) throws Refusal {
        try {
            Field f = owner.getDeclaredField(name);
            f.setAccessible(true);
            return f.get(target);
        } catch (NoSuchFieldException e) {
            throw Refusal.systemError(owner.getName() + " has no field " + name
                + " in this RocketMQ build; the plug-in supports 4.9.x");
        } catch (IllegalAccessException | RuntimeException e) {
            throw Refusal.systemError("cannot read " + owner.getName() + "." + name + ": " + e);
        }
    }

    /** The HA master address the client connects to now, "" when none. */
    String masterAddress() {
        Object value = masterAddress.get();
        return value == null ? "" : value.toString();
    }

    /** Clear the master address (so a racing reconnect finds none), then stop the client. */
    void stop() {
        store.updateHaMasterAddress(null);
        client.shutdown();
    }

    /** Point the client at `address` (null: none) and run it. */
    void start(String address) {
        store.updateHaMasterAddress(address == null || address.isEmpty() ? null : address);
        client.start();
    }
}
