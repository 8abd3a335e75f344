"""A transparency log the project did not write, for interop tests: the
log, its checkpoints and its consistency proofs are aics-tlog's (PyPI), and
its witness client is aics-witness's feeder. Run by the `postvault` CLI
tests against `postvault witness serve`.

    aics_log.py key            -> prints the log's verifier key
    aics_log.py feed URL VKEY  -> submits checkpoints of 5 and 12 leaves,
                                  then a fork of 12; prints JSON
"""

import json
import sys

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from aics_tlog import Checkpoint, MerkleTree, format_vkey, sign_checkpoint, vkey_from_ed25519
from aics_witness.feeder import FeederError, WitnessClient, merge_cosignatures

ORIGIN = "interop.example/aics-log"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))


def note(tree: MerkleTree, size: int) -> bytes:
    cp = Checkpoint(origin=ORIGIN, size=size, root=tree.root(size))
    return sign_checkpoint(cp, KEY, ORIGIN).to_bytes()


def main() -> None:
    if sys.argv[1] == "key":
        print(format_vkey(vkey_from_ed25519(ORIGIN, KEY.public_key())))
        return
    url, witness_vkey = sys.argv[2], sys.argv[3]
    tree = MerkleTree([f"entry {i}".encode() for i in range(12)])
    client = WitnessClient(url, witness_vkey, max_attempts=1)
    out = {"cosigned": [], "notes": []}
    for size in (5, 12):
        signed = note(tree, size)
        line = client.submit(signed, lambda old, new: tree.consistency_proof(old, new))
        out["cosigned"].append(size)
        out["notes"].append(merge_cosignatures(signed, line).decode())
    fork = MerkleTree([f"entry {i}".encode() for i in range(11)] + [b"forked"])
    try:
        client.submit(note(fork, 12), lambda old, new: fork.consistency_proof(old, new))
        out["fork"] = "cosigned"
    except FeederError as e:
        out["fork"] = f"{type(e).__name__}: {e}"
    print(json.dumps(out))


if __name__ == "__main__":
    main()
