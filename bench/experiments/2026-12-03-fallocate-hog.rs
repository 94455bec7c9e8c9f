//! Experiment: raw 1 MiB O_DIRECT writes beside a CPU-busy task, into a fresh file vs a
//! fallocated one (size set, or KEEP_SIZE) vs over written blocks.
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::io::OpenOptions;
use glommio::{LocalExecutorBuilder, Placement};

const CHUNK: usize = 1 << 20;

struct YieldNow(bool);
impl std::future::Future for YieldNow {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 { return std::task::Poll::Ready(()); }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// mode 0 fresh, 1 fallocate size set, 2 fallocate keep size, 3 pre-written
async fn raw_mode(dir: PathBuf, bytes: usize, depth: usize, mode: u8, hog_us: u64) -> Duration {
    use futures::stream::{FuturesUnordered, StreamExt};
    let path = dir.join("raw.dat");
    let _ = std::fs::remove_file(&path);
    if mode == 3 { std::fs::write(&path, vec![1u8; bytes]).unwrap(); let f = std::fs::File::open(&path).unwrap(); f.sync_all().unwrap(); }
    let file = Rc::new(OpenOptions::new().write(true).create(true).dma_open(&path).await.unwrap());
    if mode == 1 || mode == 2 { file.pre_allocate(bytes as u64, mode == 2).await.unwrap(); file.fdatasync().await.unwrap(); }
    let stop = Rc::new(std::cell::Cell::new(false));
    let hog = (hog_us > 0).then(|| { let stop = stop.clone(); glommio::spawn_local(async move { while !stop.get() { let t = Instant::now(); while t.elapsed() < Duration::from_micros(hog_us) { std::hint::spin_loop(); } YieldNow(false).await; } }) });
    let bufs: Vec<_> = (0..depth).map(|_| { let mut b = file.alloc_dma_buffer(CHUNK); b.as_bytes_mut().fill(0x5a); Rc::new(b) }).collect();
    let start = Instant::now();
    let mut fl = FuturesUnordered::new();
    for (i, pos) in (0..bytes).step_by(CHUNK).enumerate() {
        if fl.len() == depth { fl.next().await; }
        let (f, b) = (file.clone(), bufs[i % depth].clone());
        fl.push(async move { f.write_rc_at(b, pos as u64).await.unwrap(); });
    }
    while fl.next().await.is_some() {}
    file.fdatasync().await.unwrap();
    let e = start.elapsed();
    stop.set(true);
    if let Some(h) = hog { h.await; }
    drop((fl, bufs));
    file.close_rc().await.unwrap();
    let _ = std::fs::remove_file(&path);
    e
}

fn main() {
    let lim = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) };
    let mib: usize = std::env::var("MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let rounds: usize = std::env::var("ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let hog: u64 = std::env::var("HOG_US").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let pin = std::env::var_os("PIN").is_some();
    let ex = LocalExecutorBuilder::new(if pin { Placement::Fixed(0) } else { Placement::Unbound }).io_memory(8 << 20).preempt_timer(storage::executor_preempt_timer()).make().unwrap();
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-data"));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = mib << 20;
    let mbs = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e6;
    for r in 0..rounds {
        let mut line = format!("round {r}:");
        for (name, mode) in [("fresh", 0u8), ("falloc", 1), ("falloc-keep", 2), ("prewritten", 3)] {
            let idle = ex.run(raw_mode(dir.clone(), bytes, 4, mode, 0));
            let busy = ex.run(raw_mode(dir.clone(), bytes, 4, mode, hog));
            line += &format!(" {name} idle {:.0} hog {:.0} |", mbs(idle), mbs(busy));
        }
        println!("{line}");
    }
}
