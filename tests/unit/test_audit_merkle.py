"""RFC 9162 Merkle tree: the reference vectors shared by Certificate
Transparency implementations, and properties over random trees (SEC-31)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import given, settings

from coffre.audit import merkle

DATA = [bytes.fromhex(h) for h in
        ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
         "606162636465666768696a6b6c6d6e6f"]]
LEAVES = [merkle.leaf_hash(d) for d in DATA]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, proof)
INCLUSION = [
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def test_roots_match_the_reference_vectors() -> None:
    tree = merkle.Tree(LEAVES)
    for size, expected in enumerate(ROOTS):
        assert tree.root(size).hex() == expected
        assert merkle.root_of(LEAVES[:size]).hex() == expected


def test_inclusion_proofs_match_the_reference_vectors() -> None:
    tree = merkle.Tree(LEAVES)
    for index, size, expected in INCLUSION:
        proof = tree.inclusion_proof(index, size)
        assert [p.hex() for p in proof] == expected
        root = bytes.fromhex(ROOTS[size])
        assert merkle.verify_inclusion(index, size, LEAVES[index], proof, root)
        assert not merkle.verify_inclusion(index, size, LEAVES[index], proof,
                                           bytes.fromhex(ROOTS[size - 1]))


def test_consistency_proofs_match_the_reference_vectors() -> None:
    tree = merkle.Tree(LEAVES)
    for first, second, expected in CONSISTENCY:
        proof = tree.consistency_proof(first, second)
        assert [p.hex() for p in proof] == expected
        assert merkle.verify_consistency(first, second, proof, bytes.fromhex(ROOTS[first]),
                                         bytes.fromhex(ROOTS[second]))


leaves_strategy = st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=70)


@settings(max_examples=60, deadline=None)
@given(leaves=leaves_strategy, data=st.data())
def test_every_inclusion_proof_verifies_and_an_altered_leaf_fails(
        leaves: list[bytes], data: st.DataObject) -> None:
    tree = merkle.Tree(leaves)
    size = data.draw(st.integers(1, len(leaves)))
    root = merkle.root_of(leaves[:size])  # independent of the cached levels
    assert tree.root(size) == root
    for index in range(size):
        proof = tree.inclusion_proof(index, size)
        assert merkle.verify_inclusion(index, size, leaves[index], proof, root)
        altered = bytes([leaves[index][0] ^ 1]) + leaves[index][1:]
        assert not merkle.verify_inclusion(index, size, altered, proof, root)
        assert not merkle.verify_inclusion(index + size, size, leaves[index], proof, root)


@settings(max_examples=60, deadline=None)
@given(leaves=leaves_strategy, data=st.data())
def test_every_consistency_proof_verifies_and_a_rewritten_history_fails(
        leaves: list[bytes], data: st.DataObject) -> None:
    tree = merkle.Tree(leaves)
    second = data.draw(st.integers(1, len(leaves)))
    first = data.draw(st.integers(1, second))
    proof = tree.consistency_proof(first, second)
    first_root, second_root = tree.root(first), tree.root(second)
    assert merkle.verify_consistency(first, second, proof, first_root, second_root)
    # Rewrite one leaf of the first tree and rebuild: the old root is not consistent.
    victim = data.draw(st.integers(0, first - 1))
    forged = list(leaves)
    forged[victim] = bytes([forged[victim][0] ^ 1]) + forged[victim][1:]
    forged_tree = merkle.Tree(forged)
    forged_proof = forged_tree.consistency_proof(first, second)
    assert not merkle.verify_consistency(first, second, forged_proof, first_root,
                                         forged_tree.root(second))
    assert not merkle.verify_consistency(first, second, proof, first_root,
                                         forged_tree.root(second))


def test_edge_cases() -> None:
    tree = merkle.Tree(LEAVES)
    assert merkle.verify_consistency(0, 5, [], merkle.EMPTY_ROOT, tree.root(5))
    assert not merkle.verify_consistency(3, 5, [], tree.root(3), tree.root(5))
    assert not merkle.verify_consistency(5, 3, [], tree.root(5), tree.root(3))
    assert not merkle.verify_inclusion(0, 0, LEAVES[0], [], merkle.EMPTY_ROOT)
    assert merkle.Tree([]).root() == merkle.EMPTY_ROOT
