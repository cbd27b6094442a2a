//! RFC 6962 / RFC 9162 Merkle tree hashing, the incremental tree head, and inclusion and
//! consistency proofs with their verifiers.
//!
//! * leaf hash `SHA-256(0x00 || data)`, interior node `SHA-256(0x01 || left || right)`,
//!   empty tree `SHA-256("")`;
//! * [`CompactTree`] keeps only the frontier (the roots of the perfect subtrees that make up
//!   the tree, at most 64 hashes), so an append costs O(log n) and memory is O(log n);
//! * [`inclusion_proof`]/[`consistency_proof`] implement `PATH` and `PROOF` of RFC 6962
//!   §2.1.1/§2.1.2 over a slice of leaf hashes; [`verify_inclusion`] and
//!   [`verify_consistency`] implement the verification algorithms of RFC 9162 §2.1.3.2 and
//!   §2.1.4.2. A proof only binds a tree size through a signed checkpoint.

use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// An append-only Merkle tree that stores only its frontier.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactTree {
    size: u64,
    /// Roots of the perfect subtrees, largest (leftmost) first; one per set bit of `size`.
    frontier: Vec<Hash>,
}

impl CompactTree {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. O(log n).
    pub fn push(&mut self, leaf: Hash) {
        let mut h = leaf;
        let mut s = self.size;
        while s & 1 == 1 {
            // Invariant: one frontier entry per set bit, so this pop succeeds.
            let Some(left) = self.frontier.pop() else {
                break;
            };
            h = node_hash(&left, &h);
            s >>= 1;
        }
        self.frontier.push(h);
        self.size += 1;
    }

    /// The frontier: roots of the perfect subtrees, largest (leftmost) first.
    pub fn frontier(&self) -> &[Hash] {
        &self.frontier
    }

    /// A tree of `size` leaves from its frontier; `None` unless there is exactly one hash
    /// per set bit of `size`. The root of the result is only as trustworthy as the frontier:
    /// compare it with a signed root.
    pub fn from_frontier(size: u64, frontier: Vec<Hash>) -> Option<Self> {
        (frontier.len() == size.count_ones() as usize).then_some(Self { size, frontier })
    }

    /// The Merkle tree hash (MTH) of all leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.frontier.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Largest power of two strictly smaller than `n` (`n >= 2`).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over leaf hashes (recursive definition of RFC 6962 §2.1, evaluated iteratively).
pub fn root_of(leaves: &[Hash]) -> Hash {
    let mut t = CompactTree::new();
    for l in leaves {
        t.push(*l);
    }
    t.root()
}

/// Inclusion proof (audit path) for leaf `index` in the tree of all `leaves`
/// (RFC 6962 §2.1.1 `PATH`). `None` if `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let index = usize::try_from(index).ok()?;
    if index >= leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    path(index, leaves, &mut out);
    Some(out)
}

fn path(m: usize, d: &[Hash], out: &mut Vec<Hash>) {
    let n = d.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &d[..k], out);
        out.push(root_of(&d[k..]));
    } else {
        path(m - k, &d[k..], out);
        out.push(root_of(&d[..k]));
    }
}

/// Consistency proof between the tree of the first `old_size` leaves and the tree of all
/// `leaves` (RFC 6962 §2.1.2 `PROOF`). Empty when `old_size` is 0 or equals the size;
/// `None` if `old_size` exceeds it.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
    let m = usize::try_from(old_size).ok()?;
    if m > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    if m > 0 && m < leaves.len() {
        subproof(m, leaves, true, &mut out);
    }
    Some(out)
}

fn subproof(m: usize, d: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = d.len();
    if m == n {
        if !complete {
            out.push(root_of(d));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &d[..k], complete, out);
        out.push(root_of(&d[k..]));
    } else {
        subproof(m - k, &d[k..], false, out);
        out.push(root_of(&d[..k]));
    }
}

/// Verifies an inclusion proof (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> bool {
    if index >= tree_size {
        return false;
    }
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

/// Verifies a consistency proof between an old and a new tree head (RFC 9162 §2.1.4.2).
/// A tree of size 0 is consistent with any tree (empty proof); equal sizes need equal
/// roots and an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old_size.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    fr == *old_root && sr == *new_root && snode == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recursive MTH exactly as written in RFC 6962 §2.1.
    fn naive_mth(d: &[Hash]) -> Hash {
        match d.len() {
            0 => empty_root(),
            1 => d[0],
            n => {
                let k = split(n);
                node_hash(&naive_mth(&d[..k]), &naive_mth(&d[k..]))
            }
        }
    }

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("leaf {i}").as_bytes()))
            .collect()
    }

    #[test]
    fn known_hashes() {
        // SHA-256("") and SHA-256(0x00) are well-known constants.
        assert_eq!(
            hex::encode(empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        // Domain separation: a leaf over (l || r) differs from the node over (l, r).
        let (l, r) = (leaf_hash(b"a"), leaf_hash(b"b"));
        let mut concat = l.to_vec();
        concat.extend_from_slice(&r);
        assert_ne!(leaf_hash(&concat), node_hash(&l, &r));
    }

    #[test]
    fn incremental_root_matches_naive_mth() {
        let all = leaves(200);
        let mut t = CompactTree::new();
        assert_eq!(t.root(), empty_root());
        for n in 1..=200 {
            t.push(all[n - 1]);
            assert_eq!(t.size(), n as u64);
            assert_eq!(t.root(), naive_mth(&all[..n]), "n={n}");
            assert_eq!(root_of(&all[..n]), naive_mth(&all[..n]));
            assert!(t.frontier.len() == (n as u64).count_ones() as usize);
        }
    }

    fn flip(h: &Hash, byte: usize) -> Hash {
        let mut x = *h;
        x[byte % 32] ^= 0x01;
        x
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails() {
        let all = leaves(40);
        for n in 1..=all.len() {
            let d = &all[..n];
            let root = naive_mth(d);
            for i in 0..n {
                let p = inclusion_proof(d, i as u64).unwrap();
                assert!(verify_inclusion(&d[i], i as u64, n as u64, &p, &root));
                assert!(!verify_inclusion(
                    &flip(&d[i], i),
                    i as u64,
                    n as u64,
                    &p,
                    &root
                ));
                assert!(!verify_inclusion(
                    &d[i],
                    i as u64,
                    n as u64,
                    &p,
                    &flip(&root, n)
                ));
                // Every byte of every proof hash for small trees, one byte each beyond.
                let bytes: Vec<usize> = if n <= 16 {
                    (0..32).collect()
                } else {
                    vec![i % 32]
                };
                for j in 0..p.len() {
                    for &byte in &bytes {
                        let mut bad = p.clone();
                        bad[j] = flip(&bad[j], byte);
                        assert!(!verify_inclusion(&d[i], i as u64, n as u64, &bad, &root));
                    }
                }
                if n > 1 {
                    let other = (i + 1) % n;
                    assert!(!verify_inclusion(&d[i], other as u64, n as u64, &p, &root));
                }
                // (A proof may also "verify" for another tree size with the same root, e.g.
                // i=0, n=3 against size 4: the size is bound only by a signed checkpoint.)
                let mut longer = p.clone();
                longer.push(root);
                assert!(!verify_inclusion(&d[i], i as u64, n as u64, &longer, &root));
                if !p.is_empty() {
                    assert!(!verify_inclusion(&d[i], i as u64, n as u64, &p[1..], &root));
                }
            }
            assert!(inclusion_proof(d, n as u64).is_none());
            assert!(!verify_inclusion(&d[0], n as u64, n as u64, &[], &root));
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_tampering_fails() {
        let all = leaves(40);
        for n in 1..=all.len() {
            let d = &all[..n];
            let new_root = naive_mth(d);
            for m in 0..=n {
                let old_root = naive_mth(&d[..m]);
                let p = consistency_proof(d, m as u64).unwrap();
                assert!(
                    verify_consistency(m as u64, n as u64, &old_root, &new_root, &p),
                    "m={m} n={n}"
                );
                if m == 0 || m == n {
                    assert!(p.is_empty());
                    continue;
                }
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &flip(&old_root, m),
                    &new_root,
                    &p
                ));
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &old_root,
                    &flip(&new_root, n),
                    &p
                ));
                let bytes: Vec<usize> = if n <= 16 {
                    (0..32).collect()
                } else {
                    vec![m % 32]
                };
                for j in 0..p.len() {
                    for &byte in &bytes {
                        let mut bad = p.clone();
                        bad[j] = flip(&bad[j], byte);
                        assert!(!verify_consistency(
                            m as u64, n as u64, &old_root, &new_root, &bad
                        ));
                    }
                }
                let mut longer = p.clone();
                longer.push(new_root);
                assert!(!verify_consistency(
                    m as u64, n as u64, &old_root, &new_root, &longer
                ));
                assert!(!verify_consistency(
                    m as u64,
                    n as u64,
                    &old_root,
                    &new_root,
                    &p[..p.len() - 1]
                ));
            }
            assert!(consistency_proof(d, n as u64 + 1).is_none());
        }
        assert!(!verify_consistency(3, 2, &empty_root(), &empty_root(), &[]));
    }

    #[test]
    fn rfc_example_proof_shapes() {
        // RFC 6962 §2.1.3: tree of 7 leaves d0..d6. PATH(d0) = [b, h, l] has 3 entries,
        // PATH(d6) = [i, j] has 2; PROOF(3, D[7]) = [c, d, g, l] has 4, PROOF(4, D[7]) = [l]
        // and PROOF(6, D[7]) = [i, j, k] has 3.
        let d = leaves(7);
        assert_eq!(inclusion_proof(&d, 0).unwrap().len(), 3);
        assert_eq!(inclusion_proof(&d, 6).unwrap().len(), 2);
        assert_eq!(consistency_proof(&d, 3).unwrap().len(), 4);
        let p4 = consistency_proof(&d, 4).unwrap();
        assert_eq!(p4, vec![naive_mth(&d[4..7])]);
        assert_eq!(consistency_proof(&d, 6).unwrap().len(), 3);
    }
}
