//! Partition choice, as the Java client makes it: `murmur2(key) & 0x7fffffff % partitions` for
//! keyed records; sticky (a partition per batch's worth of bytes, then the next) or round-robin
//! for keyless ones; and a hook for a custom partitioner.

/// Chooses the partition of each record. Implement it for a custom placement.
pub trait Partitioner {
    /// The partition (below `partition_count`) of a record with this key and encoded size.
    fn partition(&mut self, key: Option<&[u8]>, record_bytes: usize, partition_count: u32) -> u32;
}

/// How keyless records are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keyless {
    /// The Java client's default since 3.3 (KIP-794): stay on one partition until a batch's
    /// worth of bytes went to it, then move on. Spate moves to the next partition (Java picks
    /// one at random, weighted by queue depth), so runs are reproducible.
    Sticky { batch_bytes: usize },
    /// `RoundRobinPartitioner`: every record to the next partition.
    RoundRobin,
}

/// The Java client's built-in partitioner (`BuiltInPartitioner`).
#[derive(Clone, Debug)]
pub struct DefaultPartitioner {
    keyless: Keyless,
    current: u32,
    bytes_on_current: usize,
}

impl DefaultPartitioner {
    pub fn new(keyless: Keyless) -> DefaultPartitioner {
        DefaultPartitioner {
            keyless,
            current: 0,
            bytes_on_current: 0,
        }
    }
}

impl Partitioner for DefaultPartitioner {
    fn partition(&mut self, key: Option<&[u8]>, record_bytes: usize, partition_count: u32) -> u32 {
        assert!(partition_count > 0, "a topic has at least one partition");
        if let Some(key) = key {
            return partition_for_key(key, partition_count);
        }
        match self.keyless {
            Keyless::RoundRobin => {
                let chosen = self.current % partition_count;
                self.current = self.current.wrapping_add(1);
                chosen
            }
            Keyless::Sticky { batch_bytes } => {
                if self.bytes_on_current >= batch_bytes.max(1) {
                    self.current = self.current.wrapping_add(1);
                    self.bytes_on_current = 0;
                }
                self.bytes_on_current += record_bytes;
                self.current % partition_count
            }
        }
    }
}

/// `BuiltInPartitioner.partitionForKey`: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> u32 {
    (murmur2(key) & 0x7fff_ffff) as u32 % partition_count
}

/// Kafka's `Utils.murmur2` (MurmurHash2, seed 0x9747b28c), bit for bit.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produced by the real Java client (kafka-clients 4.3.1): `bench/scripts/Murmur2Vectors.java`
    /// prints `Utils.murmur2(key)` and `BuiltInPartitioner.partitionForKey(key, n)` for n in
    /// PARTITION_COUNTS (`javac -cp "target/kafka-ref/lib/*" Murmur2Vectors.java && java -cp
    /// "target/kafka-ref/lib/*:." Murmur2Vectors`).
    const PARTITION_COUNTS: [u32; 5] = [1, 3, 8, 100, 1000];
    const JAVA_VECTORS: &[(&str, i32, [u32; 5])] = &[
        ("", 275646681, [0, 0, 1, 81, 681]),
        ("a", -1563381124, [0, 1, 4, 24, 524]),
        ("key", -1079937367, [0, 1, 1, 81, 281]),
        ("user42", -154169308, [0, 1, 4, 40, 340]),
        ("hello world", 1221641059, [0, 1, 3, 59, 59]),
        ("0", 971027396, [0, 2, 4, 96, 396]),
        ("1", -1993445489, [0, 0, 7, 59, 159]),
        ("2", 648968168, [0, 2, 0, 68, 168]),
        ("key-0", 29210041, [0, 1, 1, 41, 41]),
        ("key-1", 193331640, [0, 0, 0, 40, 640]),
        ("key-12345", -952703915, [0, 0, 5, 33, 733]),
        ("spate", -986146636, [0, 1, 4, 12, 12]),
        (
            "The quick brown fox jumps over the lazy dog",
            495243318,
            [0, 0, 6, 18, 318],
        ),
    ];

    #[test]
    fn murmur2_matches_the_java_client() {
        for (key, hash, _) in JAVA_VECTORS {
            assert_eq!(murmur2(key.as_bytes()), *hash, "murmur2({key:?})");
        }
    }

    #[test]
    fn keyed_placement_matches_the_java_client() {
        let mut partitioner = DefaultPartitioner::new(Keyless::RoundRobin);
        for (key, _, expected) in JAVA_VECTORS {
            for (count, want) in PARTITION_COUNTS.iter().zip(expected) {
                assert_eq!(
                    partition_for_key(key.as_bytes(), *count),
                    *want,
                    "{key:?} % {count}"
                );
                let got = partitioner.partition(Some(key.as_bytes()), 100, *count);
                assert_eq!(got, *want, "{key:?} % {count} through the partitioner");
            }
        }
    }

    #[test]
    fn keyless_round_robin_visits_every_partition_in_turn() {
        let mut partitioner = DefaultPartitioner::new(Keyless::RoundRobin);
        let got: Vec<u32> = (0..7).map(|_| partitioner.partition(None, 10, 3)).collect();
        assert_eq!(got, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn keyless_sticky_moves_on_after_a_batch_of_bytes() {
        let mut partitioner = DefaultPartitioner::new(Keyless::Sticky { batch_bytes: 250 });
        let got: Vec<u32> = (0..8)
            .map(|_| partitioner.partition(None, 100, 2))
            .collect();
        assert_eq!(got, [0, 0, 0, 1, 1, 1, 0, 0]);
    }

    #[test]
    fn a_custom_partitioner_is_a_closure_away() {
        struct Last;
        impl Partitioner for Last {
            fn partition(&mut self, _: Option<&[u8]>, _: usize, count: u32) -> u32 {
                count - 1
            }
        }
        let mut custom: Box<dyn Partitioner> = Box::new(Last);
        assert_eq!(custom.partition(Some(b"x"), 1, 8), 7);
    }
}
