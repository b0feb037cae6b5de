//! The idx reader and dataset loaders: round trips on small synthetic files, every error with its message, batching
//! and shuffling, and — where `scripts/fetch-data.sh` has been run — the real MNIST and Fashion-MNIST test sets.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cryptgpu::data::{
    read_idx_images, read_idx_labels, sha256_hex, DataError, Dataset, Source, Split, FETCH_HINT, IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
};

/// A fresh, empty directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("cryptgpu-data-test-{}-{name}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self, file: &str) -> PathBuf {
        self.0.join(file)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn idx_images_bytes(n: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    for w in [IDX_IMAGES_MAGIC, n, rows, cols] {
        b.extend_from_slice(&w.to_be_bytes());
    }
    b.extend_from_slice(pixels);
    b
}

fn idx_labels_bytes(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
    b.extend_from_slice(&(labels.len() as u32).to_be_bytes());
    b.extend_from_slice(labels);
    b
}

/// `n` images of `rows`×`cols` with pixel `(i, p)` = `(7 i + p) mod 256`, and labels `i mod 10`.
fn synthetic(n: usize, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>) {
    let pixels = (0..n * rows * cols).map(|k| ((k / (rows * cols)) * 7 + k % (rows * cols)) as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    (pixels, labels)
}

/// Write a synthetic pair under the names `source` uses for `split`; return the (images, labels) paths.
fn write_pair(dir: &TempDir, source: Source, split: Split, images: &[u8], labels: &[u8]) -> (PathBuf, PathBuf) {
    let (i, l) = source.file_names(split);
    let (ip, lp) = (dir.path(&i), dir.path(&l));
    fs::write(&ip, images).unwrap();
    fs::write(&lp, labels).unwrap();
    (ip, lp)
}

fn assert_message(err: &DataError, path: &Path, parts: &[&str]) {
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "message does not name {}: {msg}", path.display());
    assert!(msg.contains("scripts/fetch-data.sh"), "message does not say how to fetch: {msg}");
    assert!(msg.ends_with(FETCH_HINT), "message does not end with the fetch hint: {msg}");
    for part in parts {
        assert!(msg.contains(part), "message lacks {part:?}: {msg}");
    }
}

#[test]
fn idx_round_trip() {
    let dir = TempDir::new("round-trip");
    let (n, rows, cols) = (5, 3, 4);
    let (pixels, labels) = synthetic(n, rows, cols);
    let (ip, lp) = write_pair(
        &dir,
        Source::Mnist,
        Split::Test,
        &idx_images_bytes(n as u32, rows as u32, cols as u32, &pixels),
        &idx_labels_bytes(&labels),
    );

    let images = read_idx_images(&ip).unwrap();
    assert_eq!(images.shape, [n, 1, rows, cols]);
    assert_eq!(images.len(), n);
    assert_eq!(images.image_len(), rows * cols);
    let expected: Vec<f64> = pixels.iter().map(|&p| p as f64 / 255.0).collect();
    assert_eq!(images.data, expected);
    assert!(images.data.iter().all(|&x| (0.0..=1.0).contains(&x)));
    assert_eq!(images.image(2), &expected[2 * rows * cols..3 * rows * cols]);
    assert_eq!(read_idx_labels(&lp).unwrap(), labels);

    let data = Dataset::from_idx_files(&ip, &lp).unwrap();
    assert_eq!(data.len(), n);
    assert_eq!(data.images, images);
    assert_eq!(data.labels, labels);
    assert_eq!(data.labels_usize(), vec![0, 1, 2, 3, 4]);
    assert_eq!(data.class_counts(10), vec![1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);

    // Full-scale pixel values map to exactly 0 and 1.
    let ip2 = dir.path("extremes");
    fs::write(&ip2, idx_images_bytes(1, 1, 2, &[0, 255])).unwrap();
    assert_eq!(read_idx_images(&ip2).unwrap().data, vec![0.0, 1.0]);

    // An empty set is valid.
    let (ie, le) = (dir.path("empty-images"), dir.path("empty-labels"));
    fs::write(&ie, idx_images_bytes(0, 28, 28, &[])).unwrap();
    fs::write(&le, idx_labels_bytes(&[])).unwrap();
    let empty = Dataset::from_idx_files(&ie, &le).unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.images.shape, [0, 1, 28, 28]);
    assert_eq!(empty.batches(4).count(), 0);
}

#[test]
fn batches_in_order_and_seeded_shuffle() {
    let dir = TempDir::new("batches");
    let (n, rows, cols) = (10, 2, 2);
    let (pixels, labels) = synthetic(n, rows, cols);
    let (ip, lp) = write_pair(
        &dir,
        Source::Mnist,
        Split::Train,
        &idx_images_bytes(n as u32, rows as u32, cols as u32, &pixels),
        &idx_labels_bytes(&labels),
    );
    let data = Dataset::from_idx_files(&ip, &lp).unwrap();

    let batches: Vec<_> = data.batches(4).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches.iter().map(|b| b.len()).collect::<Vec<_>>(), vec![4, 4, 2]);
    assert_eq!(batches[2].shape, [2, 1, rows, cols]);
    assert_eq!(batches[1].labels, &labels[4..8]);
    assert_eq!(batches[1].labels_usize(), vec![4, 5, 6, 7]);
    assert_eq!(batches[1].images, &data.images.data[4 * 4..8 * 4]);
    let rejoined: Vec<f64> = batches.iter().flat_map(|b| b.images.iter().copied()).collect();
    assert_eq!(rejoined, data.images.data);
    assert_eq!(data.batches(10).len(), 1);
    assert_eq!(data.batches(100).next().unwrap().len(), 10);

    let sub = data.subset(3..6);
    assert_eq!(sub.images.shape, [3, 1, rows, cols]);
    assert_eq!(sub.labels, &labels[3..6]);
    assert_eq!(sub.images.image(0), data.images.image(3));

    let a = data.shuffled(42);
    let b = data.shuffled(42);
    let c = data.shuffled(43);
    assert_eq!(a, b, "the same seed gives the same order");
    assert_ne!(a.labels, c.labels, "different seeds give different orders");
    assert_ne!(a.labels, data.labels, "a shuffle moves something");
    let perm = data.permutation(42);
    let mut sorted = perm.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "a permutation");
    for (i, &p) in perm.iter().enumerate() {
        assert_eq!(a.labels[i], data.labels[p]);
        assert_eq!(a.images.image(i), data.images.image(p), "image and label move together");
    }
    assert_eq!(a.images.shape, data.images.shape);
}

#[test]
#[should_panic(expected = "batch size must be positive")]
fn zero_batch_size_panics() {
    let dir = TempDir::new("zero-batch");
    let (ip, lp) =
        write_pair(&dir, Source::Mnist, Split::Test, &idx_images_bytes(1, 1, 1, &[3]), &idx_labels_bytes(&[1]));
    let data = Dataset::from_idx_files(ip, lp).unwrap();
    let _ = data.batches(0).count();
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing");
    let err = Dataset::mnist(&dir.0, Split::Test).unwrap_err();
    let path = dir.path("t10k-images-idx3-ubyte");
    assert!(matches!(&err, DataError::Missing { path: p } if *p == path), "{err:?}");
    assert_message(&err, &path, &["file not found"]);

    // The images are there, the labels are not.
    let ip = dir.path("t10k-images-idx3-ubyte");
    fs::write(&ip, idx_images_bytes(1, 1, 1, &[0])).unwrap();
    let err = Dataset::from_idx_files(&ip, dir.path("t10k-labels-idx1-ubyte")).unwrap_err();
    assert_message(&err, &dir.path("t10k-labels-idx1-ubyte"), &["file not found"]);

    let err = Dataset::fashion_mnist(dir.path("nowhere"), Split::Train).unwrap_err();
    assert_message(&err, &dir.path("nowhere").join("train-images-idx3-ubyte"), &["file not found"]);
}

#[test]
fn unreadable_path() {
    // A directory where a file should be: an I/O error other than "not found".
    let dir = TempDir::new("unreadable");
    let path = dir.path("t10k-images-idx3-ubyte");
    fs::create_dir(&path).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err:?}");
    assert_message(&err, &path, &["cannot read"]);
}

#[test]
fn wrong_magic() {
    let dir = TempDir::new("magic");
    let (ip, lp) =
        write_pair(&dir, Source::Mnist, Split::Test, &idx_images_bytes(1, 1, 1, &[0]), &idx_labels_bytes(&[1]));
    // Labels read as images and images read as labels.
    let err = read_idx_images(&lp).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { found: 0x801, expected: 0x803, .. }), "{err:?}");
    assert_message(&err, &lp, &["wrong magic number 0x00000801", "expected 0x00000803", "idx images file"]);
    let err = read_idx_labels(&ip).unwrap_err();
    assert!(matches!(err, DataError::BadMagic { found: 0x803, expected: 0x801, .. }), "{err:?}");
    assert_message(&err, &ip, &["wrong magic number 0x00000803", "expected 0x00000801", "idx labels file"]);
    // Swapped file names in a pair.
    let err = Dataset::from_idx_files(&lp, &ip).unwrap_err();
    assert_message(&err, &lp, &["wrong magic number"]);
    // A gzip file that was not unpacked.
    let gz = dir.path("train-images-idx3-ubyte.gz");
    fs::write(&gz, [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let err = read_idx_images(&gz).unwrap_err();
    assert_message(&err, &gz, &["wrong magic number 0x1f8b0800"]);
}

#[test]
fn truncated_file() {
    let dir = TempDir::new("truncated");
    let path = dir.path("images");

    // Body shorter than the header says: 2 images of 2x2 need 16 + 8 bytes.
    fs::write(&path, idx_images_bytes(2, 2, 2, &[1, 2, 3, 4, 5])).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(err, DataError::Truncated { expected: 24, actual: 21, .. }), "{err:?}");
    assert_message(&err, &path, &["truncated", "21 bytes", "needs 24"]);

    // Header cut short.
    fs::write(&path, &idx_images_bytes(2, 2, 2, &[])[..10]).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(err, DataError::Truncated { expected: 16, actual: 10, .. }), "{err:?}");
    assert_message(&err, &path, &["truncated"]);

    // Not even a magic number.
    fs::write(&path, [0u8, 0]).unwrap();
    let err = read_idx_labels(&path).unwrap_err();
    assert!(matches!(err, DataError::Truncated { expected: 8, actual: 2, .. }), "{err:?}");
    fs::write(&path, []).unwrap();
    assert!(matches!(read_idx_images(&path).unwrap_err(), DataError::Truncated { actual: 0, .. }));

    // Labels missing.
    let mut labels = idx_labels_bytes(&[1, 2, 3]);
    labels.pop();
    fs::write(&path, &labels).unwrap();
    let err = read_idx_labels(&path).unwrap_err();
    assert!(matches!(err, DataError::Truncated { expected: 11, actual: 10, .. }), "{err:?}");
    assert_message(&err, &path, &["truncated"]);

    // Absurd dimensions do not overflow: just truncated.
    let mut huge = Vec::new();
    for w in [IDX_IMAGES_MAGIC, u32::MAX, u32::MAX, u32::MAX] {
        huge.extend_from_slice(&w.to_be_bytes());
    }
    fs::write(&path, &huge).unwrap();
    assert!(matches!(read_idx_images(&path).unwrap_err(), DataError::Truncated { .. }));

    // Longer than the header says.
    fs::write(&path, idx_images_bytes(1, 2, 2, &[1, 2, 3, 4, 5, 6])).unwrap();
    let err = read_idx_images(&path).unwrap_err();
    assert!(matches!(err, DataError::TrailingBytes { expected: 20, actual: 22, .. }), "{err:?}");
    assert_message(&err, &path, &["trailing data", "22 bytes", "describes 20"]);
}

#[test]
fn count_mismatch() {
    let dir = TempDir::new("count");
    let (pixels, _) = synthetic(3, 2, 2);
    let (ip, lp) =
        write_pair(&dir, Source::Mnist, Split::Train, &idx_images_bytes(3, 2, 2, &pixels), &idx_labels_bytes(&[1, 2]));
    let err = Dataset::from_idx_files(&ip, &lp).unwrap_err();
    assert!(matches!(err, DataError::CountMismatch { images: 3, labels: 2, .. }), "{err:?}");
    assert_message(&err, &ip, &["holds 3 images", "holds 2 labels", &lp.display().to_string()]);
}

#[test]
fn checksum_mismatch() {
    // Well-formed idx files under MNIST's names, but not MNIST: the pinned checksum catches them first.
    let dir = TempDir::new("checksum");
    let (pixels, labels) = synthetic(4, 28, 28);
    let images = idx_images_bytes(4, 28, 28, &pixels);
    let (ip, _) = write_pair(&dir, Source::Mnist, Split::Test, &images, &idx_labels_bytes(&labels));
    let err = Dataset::mnist(&dir.0, Split::Test).unwrap_err();
    let (pinned, _) = Source::Mnist.sha256(Split::Test);
    match &err {
        DataError::Checksum { path, expected, actual } => {
            assert_eq!(path, &ip);
            assert_eq!(expected, pinned);
            assert_eq!(actual, &sha256_hex(&images));
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert_message(&err, &ip, &["sha256 mismatch", pinned, &sha256_hex(&images)]);

    let (ip, _) = write_pair(&dir, Source::FashionMnist, Split::Train, &images, &idx_labels_bytes(&labels));
    let err = Dataset::fashion_mnist(&dir.0, Split::Train).unwrap_err();
    assert_message(&err, &ip, &["sha256 mismatch", Source::FashionMnist.sha256(Split::Train).0]);
}

#[test]
fn sha256_known_answer() {
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn file_names_and_dirs() {
    assert_eq!(
        Source::Mnist.file_names(Split::Train),
        ("train-images-idx3-ubyte".to_string(), "train-labels-idx1-ubyte".to_string())
    );
    assert_eq!(
        Source::FashionMnist.file_names(Split::Test),
        ("t10k-images-idx3-ubyte".to_string(), "t10k-labels-idx1-ubyte".to_string())
    );
    assert_eq!(Source::Mnist.default_dir(), "data/mnist");
    assert_eq!(Source::FashionMnist.default_dir(), "data/fashion-mnist");
    assert_eq!(Source::FashionMnist.to_string(), "Fashion-MNIST");
}

/// The repository's `data/<name>` directory, if `scripts/fetch-data.sh` has filled it.
fn fetched(source: Source) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(source.default_dir());
    if dir.join("t10k-labels-idx1-ubyte").exists() {
        Some(dir)
    } else {
        eprintln!("skipping: {} not fetched ({FETCH_HINT})", dir.display());
        None
    }
}

fn check_histogram(data: &Dataset, min: usize, max: usize) {
    let counts = data.class_counts(10);
    assert_eq!(counts.iter().sum::<usize>(), data.len(), "every label is below 10");
    for (class, &c) in counts.iter().enumerate() {
        assert!((min..=max).contains(&c), "class {class} has {c} items, outside {min}..={max}: {counts:?}");
    }
}

#[test]
fn real_mnist_test_set() {
    let Some(dir) = fetched(Source::Mnist) else { return };
    let test = Dataset::mnist(&dir, Split::Test).unwrap();
    assert_eq!(test.len(), 10_000);
    assert_eq!(test.images.shape, [10_000, 1, 28, 28]);
    assert_eq!(test.images.data.len(), 10_000 * 784);
    assert_eq!(test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    // MNIST's test classes have 892 (digit 5) to 1135 (digit 1) items.
    check_histogram(&test, 892, 1135);
    assert_eq!(test.class_counts(10), vec![980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]);
    assert!(test.images.data.iter().all(|&x| (0.0..=1.0).contains(&x)));
    let mean = test.images.data.iter().sum::<f64>() / test.images.data.len() as f64;
    assert!((mean - 0.1325).abs() < 0.002, "MNIST's mean pixel is about 0.1325, got {mean}");
    // The borders of a digit are blank, its middle is not.
    let first = test.images.image(0);
    assert_eq!(first[0], 0.0);
    assert!(first.contains(&1.0));
    assert_eq!(test.batches(128).len(), 79);
}

#[test]
fn real_mnist_train_set() {
    let Some(dir) = fetched(Source::Mnist) else { return };
    let train = Dataset::mnist(&dir, Split::Train).unwrap();
    assert_eq!(train.images.shape, [60_000, 1, 28, 28]);
    assert_eq!(train.labels[..5], [5, 0, 4, 1, 9]);
    check_histogram(&train, 5421, 6742);
}

#[test]
fn real_fashion_mnist() {
    let Some(dir) = fetched(Source::FashionMnist) else { return };
    let test = Dataset::fashion_mnist(&dir, Split::Test).unwrap();
    assert_eq!(test.images.shape, [10_000, 1, 28, 28]);
    assert_eq!(test.labels[0], 9, "the first Fashion-MNIST test item is an ankle boot");
    assert_eq!(test.class_counts(10), vec![1000; 10]);
    let train = Dataset::fashion_mnist(&dir, Split::Train).unwrap();
    assert_eq!(train.images.shape, [60_000, 1, 28, 28]);
    assert_eq!(train.class_counts(10), vec![6000; 10]);
    // MNIST's files are not Fashion-MNIST's: loading one as the other fails on the checksum.
    if let Some(mnist) = fetched(Source::Mnist) {
        let err = Dataset::fashion_mnist(&mnist, Split::Test).unwrap_err();
        assert!(matches!(err, DataError::Checksum { .. }), "{err:?}");
    }
}
