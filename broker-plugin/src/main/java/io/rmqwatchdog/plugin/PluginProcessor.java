/*
 * The remoting side: request codes 30900-30903 in, RemotingCommand responses out.
 */
package io.rmqwatchdog.plugin;

import io.netty.channel.ChannelHandlerContext;
import java.util.Collections;
import java.util.HashMap;
import java.util.Map;
import org.apache.rocketmq.logging.InternalLogger;
import org.apache.rocketmq.logging.InternalLoggerFactory;
import org.apache.rocketmq.remoting.common.RemotingHelper;
import org.apache.rocketmq.remoting.netty.NettyRequestProcessor;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;

/** Maps a request to a PluginService call and its result or refusal to a response. */
final class PluginProcessor implements NettyRequestProcessor {
    private static final InternalLogger LOG = InternalLoggerFactory.getLogger("RocketmqBroker");

    private final PluginService service;

    PluginProcessor(PluginService service) {
        this.service = service;
    }

    @Override
    public RemotingCommand processRequest(ChannelHandlerContext ctx, RemotingCommand request) {
        Map<String, String> fields = request.getExtFields();
        if (fields == null) {
            fields = Collections.emptyMap();
        } else {
            fields = new HashMap<String, String>(fields);
        }
        int code = request.getCode();
        try {
            switch (code) {
                case Protocol.PLUGIN_INFO:
                    return success(service.info(), null);
                case Protocol.PROMOTE_IN_PLACE:
                    return success(service.promote(fields), "promoted in place");
                case Protocol.SET_HA_MASTER:
                    service.setHaMaster(fields);
                    return success(Collections.<String, String>emptyMap(), "replication re-pointed");
                case Protocol.SET_MASTER_ROLE:
                    return success(service.setMasterRole(fields), "master role set");
                default:
                    return RemotingCommand.createResponseCommand(3, "request code " + code + " not supported");
            }
        } catch (Refusal r) {
            String peer = ctx == null ? "?" : RemotingHelper.parseChannelRemoteAddr(ctx.channel());
            LOG.warn("rmq-watchdog plug-in: request {} from {} answered {}{}: {}", code, peer,
                r.responseCode(), r.refusal() == null ? "" : " " + r.refusal(), r.getMessage());
            RemotingCommand response = RemotingCommand.createResponseCommand(r.responseCode(), r.getMessage());
            if (r.refusal() != null) {
                response.addExtField(Protocol.F_REFUSAL, r.refusal());
            }
            return response;
        } catch (Throwable t) {
            LOG.error("rmq-watchdog plug-in: request " + code + " failed", t);
            return RemotingCommand.createResponseCommand(Protocol.SYSTEM_ERROR,
                "rmq-watchdog plug-in: " + t.getClass().getSimpleName() + ": " + t.getMessage());
        }
    }

    private static RemotingCommand success(Map<String, String> fields, String remark) {
        RemotingCommand response = RemotingCommand.createResponseCommand(Protocol.SUCCESS, remark);
        for (Map.Entry<String, String> e : fields.entrySet()) {
            response.addExtField(e.getKey(), e.getValue());
        }
        return response;
    }

    @Override
    public boolean rejectRequest() {
        return false;
    }
}
