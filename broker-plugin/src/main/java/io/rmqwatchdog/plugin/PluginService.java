/*
 * What the plug-in does inside the broker: answer PLUGIN_INFO, promote a slave in place, re-point
 * a slave's replication, and switch a running master between ASYNC_MASTER and SYNC_MASTER.
 */
package io.rmqwatchdog.plugin;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.LinkedHashMap;
import java.util.Map;
import org.apache.rocketmq.broker.BrokerController;
import org.apache.rocketmq.common.MQVersion;
import org.apache.rocketmq.common.MixAll;
import org.apache.rocketmq.logging.InternalLogger;
import org.apache.rocketmq.logging.InternalLoggerFactory;
import org.apache.rocketmq.store.DefaultMessageStore;
import org.apache.rocketmq.store.MessageStore;
import org.apache.rocketmq.store.SelectMappedBufferResult;
import org.apache.rocketmq.store.config.BrokerRole;
import org.apache.rocketmq.store.config.MessageStoreConfig;

/**
 * Every state-changing operation checks everything it can before it changes anything, and puts
 * back what it changed when a later check refuses (only replication is ever stopped before the
 * last check). All methods are synchronized: one operation at a time, whichever server it came in.
 */
final class PluginService {
    static final String VERSION = "0.2.0";
    static final long DISPATCH_WAIT_MS = 2000L;
    private static final long DISPATCH_POLL_MS = 10L;
    // CommitLog.MESSAGE_MAGIC_CODE (public) and CommitLog.BLANK_MAGIC_CODE (protected) in 4.9.7.
    private static final int MESSAGE_MAGIC_CODE = -626843481;
    private static final int BLANK_MAGIC_CODE = -875286124;

    private static final InternalLogger LOG = InternalLoggerFactory.getLogger("RocketmqBroker");

    private final BrokerController broker;
    private final Auth auth;
    private final EpochStore epochs;
    private long lastEpoch;
    private String epochProblem;

    PluginService(BrokerController broker, Auth auth, EpochStore epochs) {
        this.broker = broker;
        this.auth = auth;
        this.epochs = epochs;
        try {
            this.lastEpoch = epochs.load();
        } catch (IOException e) {
            // Never fall back to 0: that would accept every epoch this broker has served.
            this.epochProblem = "cannot read " + epochs.path() + ": " + e.getMessage();
            LOG.error("rmq-watchdog plug-in: {}; promotions are refused until it is fixed", epochProblem);
        }
    }

    // ------------------------------------------------------------------ PLUGIN_INFO

    synchronized Map<String, String> info() throws Refusal {
        DefaultMessageStore store = store();
        MessageStoreConfig config = broker.getMessageStoreConfig();
        Map<String, String> out = new LinkedHashMap<String, String>();
        out.put("pluginVersion", VERSION);
        out.put("rocketmqVersion", Protocol.dottedVersion(MQVersion.getVersionDesc(MQVersion.CURRENT_VERSION)));
        out.put("brokerRole", config.getBrokerRole().name());
        out.put("brokerId", Long.toString(broker.getBrokerConfig().getBrokerId()));
        out.put("lastEpoch", Long.toString(lastEpoch));
        out.put("maxPhyOffset", Long.toString(store.getMaxPhyOffset()));
        out.put("dispatchBehindBytes", Long.toString(store.dispatchBehindBytes()));
        out.put("haMasterAddress", HaClient.of(store).masterAddress());
        byte[] secret = Auth.readSecret(Auth.secretPath(config.getStorePathRootDir()));
        out.put("secretLoaded", Boolean.toString(secret != null));
        if (secret != null) {
            java.util.Arrays.fill(secret, (byte) 0);
        }
        return out;
    }

    // ------------------------------------------------------------------ PROMOTE_IN_PLACE

    synchronized Map<String, String> promote(Map<String, String> fields) throws Refusal {
        long epoch = auth.verify(Protocol.PROMOTE_IN_PLACE, fields);
        String roleName = Protocol.masterRole(fields);
        long expect = Protocol.nonNegativeLong(fields, Protocol.F_EXPECT_MAX_PHY_OFFSET);
        checkEpoch(epoch, true);
        DefaultMessageStore store = store();
        MessageStoreConfig config = broker.getMessageStoreConfig();
        if (config.getBrokerRole() != BrokerRole.SLAVE || broker.getBrokerConfig().getBrokerId() == MixAll.MASTER_ID) {
            throw Refusal.refused(Protocol.NOT_SLAVE, "This broker is " + config.getBrokerRole()
                + " with brokerId " + broker.getBrokerConfig().getBrokerId() + ", not a slave.");
        }
        HaClient ha = HaClient.of(store);
        BrokerRole role = BrokerRole.valueOf(roleName);

        // 1. No more replication: no byte is appended to the log from here on.
        String previousMaster = ha.masterAddress();
        LOG.info("rmq-watchdog plug-in: promote in place to {} at epoch {}: stopping replication from {}",
            roleName, epoch, previousMaster);
        ha.stop();
        long point;
        try {
            // 2. Every byte dispatched, and the log ends on a message boundary.
            waitForDispatch(store);
            // 3. The log end the watchdog decided on.
            point = store.getMaxPhyOffset();
            if (point != expect) {
                throw Refusal.refused(Protocol.LOG_MOVED, "The log ends at " + point
                    + ", not at the expected " + expect + ".");
            }
            // 4. Queue offsets from the consume queues: a slave's CommitLog.topicQueueTable is
            // as old as its boot (HA appends raw bytes and never updates it). A slave does not
            // use the table, so rebuilding it before the last check changes nothing if refused.
            store.recoverTopicQueueTable();
            // Persisted before the switch: a failure here still leaves a slave; once the switch
            // began, this epoch must never be accepted again.
            persistEpoch(epoch);
        } catch (Refusal | RuntimeException e) {
            LOG.warn("rmq-watchdog plug-in: promotion refused ({}); resuming replication from {}",
                e.getMessage(), previousMaster);
            ha.start(previousMaster);
            throw e;
        }

        // 5. The rest of the DLedgerRoleChangeHandler / 5.x sequence: a new topic-config data
        // version so every nameserver rebuilds the group's queue data, the master services
        // (schedule, transaction check, no slave sync), id 0 and the role, then a synchronous
        // registration with every nameserver. The HA client stays stopped: a master has no
        // master to copy from.
        broker.getTopicConfigManager().getDataVersion().nextVersion();
        broker.changeToMaster(role);
        try {
            broker.registerBrokerAll(true, false, true);
        } catch (RuntimeException e) {
            // The broker is the master now whatever this registration does; its periodic one
            // (every 30 s) registers it again, and the watchdog waits for the registration.
            LOG.warn("rmq-watchdog plug-in: registration after the promotion failed", e);
        }
        LOG.info("rmq-watchdog plug-in: promoted in place to {} at epoch {}, promotion point {}",
            roleName, epoch, point);

        Map<String, String> out = new LinkedHashMap<String, String>();
        out.put("promotionPoint", Long.toString(point));
        out.put("epoch", Long.toString(epoch));
        out.put("brokerRole", broker.getMessageStoreConfig().getBrokerRole().name());
        return out;
    }

    /**
     * Wait up to 2 s for dispatchBehindBytes == 0. Replication is stopped, so the log no longer
     * grows: when the bytes at the reput offset hold less than one whole message, the log ends
     * inside a message, and reput will never get past it (a slave's ReputMessageService stays at
     * the start of a message it cannot read).
     */
    private void waitForDispatch(DefaultMessageStore store) throws Refusal {
        long deadline = System.currentTimeMillis() + DISPATCH_WAIT_MS;
        while (true) {
            long behind = store.dispatchBehindBytes();
            if (behind == 0) {
                return;
            }
            if (behind < 0) {
                // Reput rolled to the next file past the log end: the log ends inside the blank
                // that fills a commitlog file's end, and a master would append into that blank,
                // where no reader looks.
                throw Refusal.refused(Protocol.PARTIAL_TAIL, "The log ends inside the blank at the end "
                    + "of a commitlog file (reput is " + (-behind) + " bytes past the log end).");
            }
            long max = store.getMaxPhyOffset();
            String tail = partialTail(store, max - behind, behind);
            if (tail != null) {
                throw Refusal.refused(Protocol.PARTIAL_TAIL, tail);
            }
            if (System.currentTimeMillis() >= deadline) {
                throw Refusal.refused(Protocol.BUSY, "Dispatch is still " + behind
                    + " bytes behind after " + DISPATCH_WAIT_MS + " ms; try again.");
            }
            sleep(DISPATCH_POLL_MS);
        }
    }

    /** Why the log ends inside a message at `reputFrom`, or null if a whole message is there. */
    static String partialTail(DefaultMessageStore store, long reputFrom, long behind) {
        SelectMappedBufferResult data = store.getCommitLogData(reputFrom);
        if (data == null) {
            return null;
        }
        try {
            ByteBuffer bytes = data.getByteBuffer();
            int available = data.getSize();
            if (available <= 0) {
                return null;
            }
            return partialTail(bytes, available, behind, reputFrom);
        } finally {
            data.release();
        }
    }

    /** The pure part of partialTail: the message header at the start of `bytes`. */
    static String partialTail(ByteBuffer bytes, int available, long behind, long reputFrom) {
        if (available < 8 || behind < 8) {
            return "The log ends " + behind + " bytes into a message header at " + reputFrom + ".";
        }
        int totalSize = bytes.getInt(bytes.position());
        int magic = bytes.getInt(bytes.position() + 4);
        if (magic != MESSAGE_MAGIC_CODE && magic != BLANK_MAGIC_CODE) {
            return "The bytes at " + reputFrom + " are not a message (magic " + magic + ").";
        }
        if (totalSize <= 0 || totalSize > available || totalSize > behind) {
            return "The log ends inside a message of " + totalSize + " bytes at " + reputFrom
                + " (" + behind + " bytes of it are present).";
        }
        return null;
    }

    // ------------------------------------------------------------------ SET_HA_MASTER

    synchronized void setHaMaster(Map<String, String> fields) throws Refusal {
        long epoch = auth.verify(Protocol.SET_HA_MASTER, fields);
        String haMaster = Protocol.hostPort(fields, Protocol.F_HA_MASTER_ADDRESS);
        String master = Protocol.hostPort(fields, Protocol.F_MASTER_ADDRESS);
        checkEpoch(epoch, false);
        DefaultMessageStore store = store();
        MessageStoreConfig config = broker.getMessageStoreConfig();
        if (config.getBrokerRole() != BrokerRole.SLAVE || broker.getBrokerConfig().getBrokerId() == MixAll.MASTER_ID) {
            throw Refusal.refused(Protocol.NOT_SLAVE, "This broker is " + config.getBrokerRole()
                + ", not a slave.");
        }
        HaClient ha = HaClient.of(store);
        persistEpoch(Math.max(epoch, lastEpoch));
        String previous = ha.masterAddress();
        // The client keeps its connection on an address change; a restart drops it (and any
        // half-received frame), and the new connection starts from this slave's log end.
        ha.stop();
        ha.start(haMaster);
        broker.getSlaveSynchronize().setMasterAddr(master);
        LOG.info("rmq-watchdog plug-in: replication re-pointed from {} to {} (master {}) at epoch {}",
            previous, haMaster, master, epoch);
    }

    // ------------------------------------------------------------------ SET_MASTER_ROLE

    synchronized Map<String, String> setMasterRole(Map<String, String> fields) throws Refusal {
        long epoch = auth.verify(Protocol.SET_MASTER_ROLE, fields);
        String roleName = Protocol.masterRole(fields);
        checkEpoch(epoch, false);
        MessageStoreConfig config = broker.getMessageStoreConfig();
        if (config.getBrokerRole() == BrokerRole.SLAVE || broker.getBrokerConfig().getBrokerId() != MixAll.MASTER_ID) {
            throw Refusal.refused(Protocol.NOT_MASTER, "This broker is " + config.getBrokerRole()
                + " with brokerId " + broker.getBrokerConfig().getBrokerId() + ", not a master.");
        }
        persistEpoch(Math.max(epoch, lastEpoch));
        BrokerRole before = config.getBrokerRole();
        // The store reads the role at every put (CommitLog.handleHA waits for a slave only
        // for SYNC_MASTER); 4.9.7's BrokerConfig has no role of its own.
        config.setBrokerRole(BrokerRole.valueOf(roleName));
        LOG.info("rmq-watchdog plug-in: master role {} -> {} at epoch {}", before, roleName, epoch);
        Map<String, String> out = new LinkedHashMap<String, String>();
        out.put("brokerRole", config.getBrokerRole().name());
        return out;
    }

    // ------------------------------------------------------------------ shared

    private void checkEpoch(long epoch, boolean strictlyNewer) throws Refusal {
        if (epochProblem != null) {
            throw Refusal.systemError(epochProblem);
        }
        boolean ok = strictlyNewer ? epoch > lastEpoch : epoch >= lastEpoch;
        if (!ok) {
            throw Refusal.refused(Protocol.EPOCH_NOT_NEWER, "Epoch " + epoch + " is not "
                + (strictlyNewer ? "newer than" : "at least") + " the last epoch served, " + lastEpoch + ".");
        }
    }

    private void persistEpoch(long epoch) throws Refusal {
        if (epoch == lastEpoch) {
            return;
        }
        try {
            epochs.store(epoch);
        } catch (IOException e) {
            throw Refusal.systemError("cannot write " + epochs.path() + ": " + e.getMessage());
        }
        lastEpoch = epoch;
    }

    private DefaultMessageStore store() throws Refusal {
        if (broker.getMessageStoreConfig().isEnableDLegerCommitLog()) {
            throw Refusal.systemError("this broker runs DLedger: its roles are elected, not set");
        }
        MessageStore store = broker.getMessageStore();
        if (!(store instanceof DefaultMessageStore)) {
            throw Refusal.systemError("the message store is a " + (store == null ? "null" : store.getClass().getName())
                + ", not a DefaultMessageStore (a messageStorePlugIn wraps it)");
        }
        return (DefaultMessageStore) store;
    }

    private static void sleep(long ms) throws Refusal {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw Refusal.refused(Protocol.BUSY, "Interrupted while waiting for dispatch.");
        }
    }
}
