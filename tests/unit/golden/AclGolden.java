import java.nio.charset.StandardCharsets;
import java.util.Base64;
import org.apache.rocketmq.acl.common.AclClientRPCHook;
import org.apache.rocketmq.acl.common.SessionCredentials;
import org.apache.rocketmq.remoting.protocol.RemotingCommand;

/** Prints the Signature RocketMQ 4.9.7's AclClientRPCHook gives fixed requests (tests/unit/test_remoting_acl.py). */
public class AclGolden {
    static void show(String name, SessionCredentials creds, int code, String[][] fields, byte[] body) {
        RemotingCommand request = RemotingCommand.createRequestCommand(code, null);
        for (String[] kv : fields) {
            request.addExtField(kv[0], kv[1]);
        }
        if (body != null) {
            request.setBody(body);
        }
        new AclClientRPCHook(creds).doBeforeRequest("127.0.0.1:10911", request);
        System.out.println(name + " " + request.getExtFields().get("Signature"));
    }

    public static void main(String[] args) {
        SessionCredentials plain = new SessionCredentials("rmq-watchdog", "s3cret-Key!");
        SessionCredentials token = new SessionCredentials("rmq-watchdog", "s3cret-Key!", "a-security-token");
        SessionCredentials unicode = new SessionCredentials("clé-d'accès", "sécret-\u00fc\u4e2d");
        show("bare", plain, 28, new String[0][], null);
        show("fields_body", plain, 30, new String[][] {{"topic", "TopicTest"}, {"queueId", "3"}},
            "hello body".getBytes(StandardCharsets.UTF_8));
        show("token", token, 26, new String[0][], null);
        show("order", unicode, 17, new String[][] {
            {"b", "2"}, {"a", "1"}, {"Z", "0"}, {"\u00e9", "\u00e9t\u00e9"},
            {"\ud83d\ude00", "smile"}, {"\uff21", "fullwidth"}}, new byte[] {0, (byte) 0xff, 10});
        show("signature_ignored", plain, 28, new String[][] {{"Signature", "stale"}}, null);
    }
}
