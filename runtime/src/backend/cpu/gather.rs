//! Gather executor: one output row (the last output axis) at a time. Within a row every input coordinate is
//! affine in the column, so the in-bounds columns form one interval and are read with a constant stride.

use cryptgpu_codegen::GatherKernel;
use rayon::prelude::*;

pub(super) fn run(k: &GatherKernel, input: &[u64], output: &mut [u64]) {
    let out_rank = k.out_shape.len();
    let row_len = k.out_shape[out_rank - 1];
    if row_len == 0 || output.is_empty() {
        return;
    }
    let last = out_rank - 1;
    let mut in_strides = vec![1i64; k.in_shape.len()];
    for d in (0..k.in_shape.len().saturating_sub(1)).rev() {
        in_strides[d] = in_strides[d + 1] * k.in_shape[d + 1] as i64;
    }
    // Coefficient of the row axis in each input coordinate.
    let steps: Vec<i64> =
        k.coords.iter().map(|c| c.terms.iter().filter(|(a, _)| *a == last).map(|(_, s)| s).sum()).collect();
    let windows: usize = k.reduce_shape.iter().product();
    let axes = out_rank + k.reduce_shape.len();

    output.par_chunks_mut(row_len).enumerate().for_each(|(row, out)| {
        out.fill(0);
        let mut coord = vec![0i64; axes];
        // Coordinates of the row (all output axes but the last).
        let mut r = row;
        for a in (0..last).rev() {
            coord[a] = (r % k.out_shape[a]) as i64;
            r /= k.out_shape[a];
        }
        for w in 0..windows {
            let mut wr = w;
            for (j, &size) in k.reduce_shape.iter().enumerate().rev() {
                coord[out_rank + j] = (wr % size) as i64;
                wr /= size;
            }
            let (mut lo, mut hi) = (0i64, row_len as i64);
            let mut base = 0i64;
            let mut stride = 0i64;
            for (d, c) in k.coords.iter().enumerate() {
                let b = c.offset + c.terms.iter().filter(|(a, _)| *a != last).map(|&(a, s)| s * coord[a]).sum::<i64>();
                let (s, size) = (steps[d], k.in_shape[d] as i64);
                // need 0 <= b + s·t < size
                if s == 0 {
                    if b < 0 || b >= size {
                        hi = lo;
                    }
                } else if s > 0 {
                    lo = lo.max(ceil_div(-b, s));
                    hi = hi.min(ceil_div(size - b, s));
                } else {
                    lo = lo.max(ceil_div(b - size + 1, -s));
                    hi = hi.min(b / -s + 1).min(if b < 0 { 0 } else { i64::MAX });
                }
                base += b * in_strides[d];
                stride += s * in_strides[d];
            }
            if lo >= hi {
                continue;
            }
            let mut idx = base + lo * stride;
            for o in &mut out[lo as usize..hi as usize] {
                *o = o.wrapping_add(input[idx as usize]);
                idx += stride;
            }
        }
    });
}

fn ceil_div(a: i64, b: i64) -> i64 {
    debug_assert!(b > 0);
    a.div_euclid(b) + i64::from(a.rem_euclid(b) != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptgpu_codegen::Affine;

    /// Straightforward reference: every output element, every window position, bounds-checked.
    fn reference(k: &GatherKernel, input: &[u64]) -> Vec<u64> {
        let axes = k.out_shape.len() + k.reduce_shape.len();
        let shape: Vec<usize> = k.out_shape.iter().chain(&k.reduce_shape).copied().collect();
        let mut out = vec![0u64; k.out_len()];
        let total: usize = shape.iter().product();
        let windows: usize = k.reduce_shape.iter().product();
        for flat in 0..total {
            let mut c = vec![0i64; axes];
            let mut f = flat;
            for a in (0..axes).rev() {
                c[a] = (f % shape[a]) as i64;
                f /= shape[a];
            }
            let mut idx = 0i64;
            let mut ok = true;
            for (d, co) in k.coords.iter().enumerate() {
                let v = co.offset + co.terms.iter().map(|&(a, s)| s * c[a]).sum::<i64>();
                ok &= v >= 0 && v < k.in_shape[d] as i64;
                idx = idx * k.in_shape[d] as i64 + v;
            }
            if ok {
                out[flat / windows] = out[flat / windows].wrapping_add(input[idx as usize]);
            }
        }
        out
    }

    fn check(k: GatherKernel) {
        let input: Vec<u64> = (0..k.in_len() as u64).map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15)).collect();
        let mut out = vec![7; k.out_len()];
        run(&k, &input, &mut out);
        assert_eq!(out, reference(&k, &input), "{}", k.name);
    }

    #[test]
    fn im2col_pool_and_permute_match_the_reference() {
        for (hw, kk, s, p) in [(5, 3, 1, 1), (6, 2, 2, 0), (7, 3, 2, 1), (4, 4, 1, 0), (5, 1, 1, 2), (3, 3, 3, 2)] {
            check(GatherKernel::im2col("im2col", [2, 3, hw, hw + 1], [kk, kk], s, p).unwrap());
            check(GatherKernel::sum_pool("pool", [2, 3, hw, hw + 1], [kk, kk], s, p).unwrap());
        }
        check(GatherKernel::permute("t", &[3, 4, 5], &[2, 0, 1]).unwrap());
        check(GatherKernel::permute("t2", &[6, 7], &[1, 0]).unwrap());
    }

    #[test]
    fn negative_strides_and_flips() {
        // out[i] = in[9 - 2i] and a reversed copy along the row axis with padding on both sides.
        check(GatherKernel {
            name: "flip".into(),
            in_shape: vec![10],
            out_shape: vec![8],
            reduce_shape: vec![],
            coords: vec![Affine { offset: 9, terms: vec![(0, -2)] }],
        });
        check(GatherKernel {
            name: "flip2".into(),
            in_shape: vec![3, 5],
            out_shape: vec![3, 9],
            reduce_shape: vec![2],
            coords: vec![Affine::axis(0), Affine { offset: 6, terms: vec![(1, -1), (2, 1)] }],
        });
    }
}
