package spate;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Spate test client (Java, org.apache.kafka:kafka-clients 4.x).
 *
 * produce --bootstrap H:P --topic T --count N --acks all|1 --codec C --client NAME
 * consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S
 *
 * Producer settings are the client defaults apart from acks/compression, so with acks=all
 * idempotence is on (InitProducerId + sequence numbers).
 */
public final class Client {
    static final long BASE_TS = 1700000000000L;
    static final String FILLER = "0123456789abcdefghijklmnopqrstuvwxyz";

    static String key(String client, int i) {
        return client + "-k" + (i % 500);
    }

    static String value(String client, int i) {
        String prefix = client + "-v" + i + "-";
        int target = 100 + (i % 101);
        StringBuilder sb = new StringBuilder(prefix);
        int j = 0;
        while (sb.length() < target) {
            sb.append(FILLER.charAt(j % FILLER.length()));
            j++;
        }
        return sb.toString();
    }

    static void usage(int code) {
        System.err.println("usage:\n  Client produce --bootstrap H:P --topic T --count N --acks all|1 "
                + "--codec gzip|snappy|lz4|zstd|none --client NAME\n"
                + "  Client consume --bootstrap H:P --topic T --partitions P --expect N --timeout-s S");
        System.exit(code);
    }

    public static void main(String[] argv) throws Exception {
        if (argv.length == 0 || argv[0].equals("--help") || argv[0].equals("-h")) {
            usage(argv.length == 0 ? 2 : 0);
        }
        String cmd = argv[0];
        Map<String, String> opts = new HashMap<>();
        for (int i = 1; i < argv.length; i++) {
            String a = argv[i];
            if (a.equals("--help") || a.equals("-h")) {
                usage(0);
            }
            if (!a.startsWith("--") || i + 1 >= argv.length) {
                System.err.println("bad argument: " + a);
                usage(2);
            }
            opts.put(a.substring(2), argv[++i]);
        }
        switch (cmd) {
            case "produce":
                System.exit(produce(opts));
                break;
            case "consume":
                System.exit(consume(opts));
                break;
            default:
                usage(2);
        }
    }

    static String req(Map<String, String> o, String k) {
        String v = o.get(k);
        if (v == null) {
            System.err.println("missing --" + k);
            usage(2);
        }
        return v;
    }

    static int produce(Map<String, String> o) throws Exception {
        String bootstrap = req(o, "bootstrap");
        String topic = req(o, "topic");
        int count = Integer.parseInt(req(o, "count"));
        String acks = o.getOrDefault("acks", "all");
        String codec = o.getOrDefault("codec", "zstd");
        String client = o.getOrDefault("client", "java");

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ACKS_CONFIG, acks);
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        p.put(ProducerConfig.CLIENT_ID_CONFIG, client);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "60000");

        AtomicLong errors = new AtomicLong();
        AtomicReference<Exception> firstError = new AtomicReference<>();
        AtomicLong acked = new AtomicLong();
        try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(p)) {
            for (int i = 0; i < count; i++) {
                List<Header> headers = new ArrayList<>();
                headers.add(new RecordHeader("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8)));
                headers.add(new RecordHeader("client", client.getBytes(StandardCharsets.UTF_8)));
                ProducerRecord<byte[], byte[]> rec = new ProducerRecord<>(topic, null, BASE_TS + i,
                        key(client, i).getBytes(StandardCharsets.UTF_8),
                        value(client, i).getBytes(StandardCharsets.UTF_8), headers);
                producer.send(rec, (md, ex) -> {
                    if (ex != null) {
                        errors.incrementAndGet();
                        firstError.compareAndSet(null, ex);
                    } else {
                        acked.incrementAndGet();
                    }
                });
            }
            producer.flush();
        }
        System.err.println("java produce: acked=" + acked.get() + " errors=" + errors.get());
        if (errors.get() > 0 || acked.get() != count) {
            System.err.println("delivery failed: " + firstError.get());
            return 1;
        }
        return 0;
    }

    static int consume(Map<String, String> o) {
        String bootstrap = req(o, "bootstrap");
        String topic = req(o, "topic");
        int partitions = Integer.parseInt(req(o, "partitions"));
        long expect = Long.parseLong(req(o, "expect"));
        double timeoutS = Double.parseDouble(o.getOrDefault("timeout-s", "60"));

        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.CLIENT_ID_CONFIG, "java-consumer");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());

        long got = 0;
        long deadline = System.nanoTime() + (long) (timeoutS * 1e9);
        StringBuilder out = new StringBuilder();
        try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(p)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int i = 0; i < partitions; i++) {
                tps.add(new TopicPartition(topic, i));
            }
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            while (got < expect && System.nanoTime() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = consumer.poll(Duration.ofMillis(500));
                for (ConsumerRecord<byte[], byte[]> r : recs) {
                    out.setLength(0);
                    out.append("{\"partition\":").append(r.partition())
                            .append(",\"offset\":").append(r.offset())
                            .append(",\"key\":").append(jstr(r.key()))
                            .append(",\"value\":").append(jstr(r.value()))
                            .append(",\"headers\":[");
                    boolean first = true;
                    for (Header h : r.headers()) {
                        if (!first) {
                            out.append(',');
                        }
                        first = false;
                        out.append('[').append(jstr(h.key())).append(',').append(jstr(h.value())).append(']');
                    }
                    out.append("],\"timestamp\":").append(r.timestamp()).append('}');
                    System.out.println(out);
                    got++;
                }
            }
        }
        System.out.flush();
        System.err.println("java consume: got=" + got + " expected=" + expect);
        return got >= expect ? 0 : 1;
    }

    static String jstr(byte[] b) {
        return b == null ? "null" : jstr(new String(b, StandardCharsets.UTF_8));
    }

    static String jstr(String s) {
        if (s == null) {
            return "null";
        }
        StringBuilder sb = new StringBuilder(s.length() + 2);
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"': sb.append("\\\""); break;
                case '\\': sb.append("\\\\"); break;
                case '\n': sb.append("\\n"); break;
                case '\r': sb.append("\\r"); break;
                case '\t': sb.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        sb.append(String.format("\\u%04x", (int) c));
                    } else {
                        sb.append(c);
                    }
            }
        }
        return sb.append('"').toString();
    }
}
