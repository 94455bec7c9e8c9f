import org.apache.kafka.common.utils.Utils;
import org.apache.kafka.clients.producer.internals.BuiltInPartitioner;
import java.nio.charset.StandardCharsets;
public class Murmur2Vectors {
  public static void main(String[] a) {
    String[] keys = {"", "a", "key", "user42", "hello world", "0", "1", "2", "key-0", "key-1", "key-12345", "spate", "The quick brown fox jumps over the lazy dog"};
    int[] parts = {1, 3, 8, 100, 1000};
    for (String k : keys) {
      byte[] b = k.getBytes(StandardCharsets.UTF_8);
      StringBuilder sb = new StringBuilder();
      sb.append("(\"").append(k).append("\", ").append(Utils.murmur2(b)).append(", [");
      for (int i = 0; i < parts.length; i++) { if (i>0) sb.append(", "); sb.append(BuiltInPartitioner.partitionForKey(b, parts[i])); }
      sb.append("]),");
      System.out.println(sb);
    }
  }
}
