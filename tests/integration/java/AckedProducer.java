// An idempotent acks=all producer of the Java client for test_replication.py (run as a source
// file: java -cp 'tests/clients/java/lib/*' AckedProducer.java BOOTSTRAP TOPIC KEYS INTERVAL_MS MAX_S).
// Record i has key "k<i % KEYS>" and value "v-<i>" (cluster_faults.key_of/value_of). Prints one
// JSON line per answer: {"i":I,"p":P,"o":O} or {"i":I,"error":"...","fatal":B}; produces until its
// stdin closes or MAX_S seconds pass, then flushes, closes and prints {"sent":N,"answered":M}.

import java.io.InputStream;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.RetriableException;
import org.apache.kafka.common.serialization.StringSerializer;

public class AckedProducer {
    static synchronized void emit(String line) {
        System.out.println(line);
        System.out.flush();
    }

    static String quote(String s) {
        return "\"" + s.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", " ") + "\"";
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int keys = Integer.parseInt(args[2]);
        long intervalMs = Long.parseLong(args[3]);
        long deadline = System.currentTimeMillis() + 1000L * Long.parseLong(args[4]);

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "120000");
        p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "10000");
        p.put(ProducerConfig.RETRY_BACKOFF_MS_CONFIG, "100");
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());

        Thread watcher = new Thread(() -> {
            try {
                InputStream in = System.in;
                while (in.read() >= 0) { }
            } catch (Exception ignored) { }
        });
        watcher.setDaemon(true);
        watcher.start();

        AtomicLong answered = new AtomicLong();
        long i = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
            while (watcher.isAlive() && System.currentTimeMillis() < deadline) {
                final long n = i;
                producer.send(new ProducerRecord<>(topic, "k" + (n % keys), "v-" + n), (md, ex) -> {
                    answered.incrementAndGet();
                    if (ex == null) {
                        emit("{\"i\":" + n + ",\"p\":" + md.partition() + ",\"o\":" + md.offset() + "}");
                    } else {
                        boolean fatal = !(ex instanceof RetriableException) && ex instanceof KafkaException;
                        emit("{\"i\":" + n + ",\"error\":" + quote(ex.toString()) + ",\"fatal\":" + fatal + "}");
                    }
                });
                i++;
                if (intervalMs > 0) {
                    Thread.sleep(intervalMs);
                }
            }
            producer.flush();
        }
        emit("{\"sent\":" + i + ",\"answered\":" + answered.get() + "}");
    }
}
