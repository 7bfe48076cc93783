/*
 * The plug-in's way into the broker: the transaction check listener SPI. 4.9.x's
 * BrokerController.initialTransaction() loads the class named in
 * META-INF/service/org.apache.rocketmq.broker.transaction.AbstractTransactionalMessageCheckListener
 * and hands it the BrokerController through setBrokerController, after the remoting servers exist
 * and before they start. The class replaces the default listener, so it is one: it extends
 * DefaultTransactionalMessageCheckListener and keeps its behaviour.
 */
package io.rmqwatchdog.plugin;

import java.lang.reflect.Field;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.ThreadPoolExecutor;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.rocketmq.broker.BrokerController;
import org.apache.rocketmq.broker.transaction.queue.DefaultTransactionalMessageCheckListener;
import org.apache.rocketmq.logging.InternalLogger;
import org.apache.rocketmq.logging.InternalLoggerFactory;
import org.apache.rocketmq.remoting.RemotingServer;

/** The default transaction check listener, plus the plug-in's request processors. */
public class WatchdogCheckListener extends DefaultTransactionalMessageCheckListener {
    private static final InternalLogger LOG = InternalLoggerFactory.getLogger("RocketmqBroker");
    // A few queued requests are plenty for one watchdog; beyond that the remoting layer
    // answers SYSTEM_BUSY itself.
    private static final int QUEUE_CAPACITY = 64;

    private final AtomicBoolean installed = new AtomicBoolean();

    public WatchdogCheckListener() {
        super();
    }

    @Override
    public void setBrokerController(BrokerController brokerController) {
        super.setBrokerController(brokerController);
        if (brokerController == null || !installed.compareAndSet(false, true)) {
            return;
        }
        try {
            install(brokerController);
        } catch (Throwable t) {
            // The broker must start whatever happens here: without the plug-in it answers 30900
            // with REQUEST_CODE_NOT_SUPPORTED, which the watchdog reads as "no plug-in".
            LOG.error("rmq-watchdog plug-in: not installed", t);
        }
    }

    private static void install(BrokerController broker) {
        String storeRoot = broker.getMessageStoreConfig().getStorePathRootDir();
        Auth auth = new Auth(new Auth.SecretSource() {
            @Override
            public byte[] secret() {
                // Read at every request: a rotated secret applies without a restart.
                return Auth.readSecret(Auth.secretPath(storeRoot));
            }
        }, Auth.SYSTEM_CLOCK);
        EpochStore epochs = new EpochStore(new java.io.File(storeRoot, EpochStore.FILE_NAME).toPath());
        PluginProcessor processor = new PluginProcessor(new PluginService(broker, auth, epochs));
        // One thread for every plug-in request on both servers: operations never overlap.
        ExecutorService executor = new ThreadPoolExecutor(1, 1, 0L, TimeUnit.MILLISECONDS,
            new LinkedBlockingQueue<Runnable>(QUEUE_CAPACITY), new ThreadFactory() {
                @Override
                public Thread newThread(Runnable r) {
                    Thread thread = new Thread(r, "RmqWatchdogPluginThread");
                    thread.setDaemon(true);
                    return thread;
                }
            });
        int[] codes = {Protocol.PLUGIN_INFO, Protocol.PROMOTE_IN_PLACE, Protocol.SET_HA_MASTER, Protocol.SET_MASTER_ROLE};
        RemotingServer main = broker.getRemotingServer();
        RemotingServer fast = fastRemotingServer(broker);
        for (int code : codes) {
            main.registerProcessor(code, processor, executor);
            if (fast != null) {
                fast.registerProcessor(code, processor, executor);
            }
        }
        LOG.info("rmq-watchdog plug-in {}: request codes 30900-30903 registered (secret file {}, epoch file {})",
            PluginService.VERSION, Auth.secretPath(storeRoot), epochs.path());
    }

    /** 4.9.7 has a setter for the fast (VIP) server but no getter. */
    private static RemotingServer fastRemotingServer(BrokerController broker) {
        try {
            Field f = BrokerController.class.getDeclaredField("fastRemotingServer");
            f.setAccessible(true);
            Object server = f.get(broker);
            return server instanceof RemotingServer ? (RemotingServer) server : null;
        } catch (NoSuchFieldException | IllegalAccessException | RuntimeException e) {
            LOG.warn("rmq-watchdog plug-in: no fast remoting server ({}); listenPort only", e.toString());
            return null;
        }
    }
}
