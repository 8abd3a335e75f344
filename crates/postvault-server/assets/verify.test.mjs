// Tests for verify.js: node --test crates/postvault-server/assets/verify.test.mjs
//
// Builds its own RFC 6962 Merkle trees and inclusion proofs (a deliberately
// naive recursive implementation of MTH and PATH from RFC 6962 §2.1 and
// §2.1.1), signs C2SP checkpoints with a fresh Ed25519 key, and checks that
// verify.js accepts the honest proofs and rejects tampered ones.

import { test } from "node:test";
import assert from "node:assert/strict";
import {
  openCheckpoint, leafHash, verifyInclusion, checkLeaf, checkAll,
  base64Encode, base64Decode,
} from "./verify.js";

const subtle = globalThis.crypto.subtle;
const enc = (s) => new TextEncoder().encode(s);
const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (h) => new Uint8Array(Buffer.from(h, "hex"));
const sha = async (...parts) =>
  new Uint8Array(await subtle.digest("SHA-256", Buffer.concat(parts.map((p) => Buffer.from(p)))));

// ---- Reference RFC 6962 tree (independent of verify.js) ----

const hLeaf = (d) => sha(Uint8Array.of(0), d);
const hNode = (l, r) => sha(Uint8Array.of(1), l, r);
const largestPow2Below = (n) => { let k = 1; while (k * 2 < n) k *= 2; return k; };

async function mth(leaves) {
  if (leaves.length === 0) return sha(new Uint8Array(0));
  if (leaves.length === 1) return hLeaf(leaves[0]);
  const k = largestPow2Below(leaves.length);
  return hNode(await mth(leaves.slice(0, k)), await mth(leaves.slice(k)));
}

async function path(m, leaves) {
  if (leaves.length === 1) return [];
  const k = largestPow2Below(leaves.length);
  if (m < k) return [...(await path(m, leaves.slice(0, k))), await mth(leaves.slice(k))];
  return [...(await path(m - k, leaves.slice(k))), await mth(leaves.slice(0, k))];
}

// ---- C2SP keys and notes ----

async function makeSigner(name) {
  const kp = await subtle.generateKey({ name: "Ed25519" }, true, ["sign", "verify"]);
  const pub = new Uint8Array(await subtle.exportKey("raw", kp.publicKey));
  const raw = Uint8Array.of(1, ...pub);
  const id = (await sha(enc(name), Uint8Array.of(0x0a), raw)).slice(0, 4);
  const vkey = `${name}+${hex(id)}+${base64Encode(raw)}`;
  const sigLine = async (text) => {
    const sig = new Uint8Array(await subtle.sign({ name: "Ed25519" }, kp.privateKey, enc(text)));
    return `\u2014 ${name} ${base64Encode(Uint8Array.of(...id, ...sig))}\n`;
  };
  return { name, id, vkey, sigLine };
}

const checkpointText = (origin, size, root, ext = "") =>
  `${origin}\n${size}\n${base64Encode(root)}\n${ext}`;

async function signedNote(signer, text, extraSigners = []) {
  let note = text + "\n" + (await signer.sigLine(text));
  for (const s of extraSigners) note += await s.sigLine(text);
  return note;
}

const ORIGIN = "postvault.example/log";
const leafData = (n) => Array.from({ length: n }, (_, i) => enc(`record #${i} ${"x".repeat(i % 5)}`));

async function makeReport(signer, leaves) {
  const root = await mth(leaves);
  const note = await signedNote(signer, checkpointText(ORIGIN, leaves.length, root));
  const log = [];
  for (let i = 0; i < leaves.length; i++) {
    log.push({
      index: i,
      leaf: base64Encode(leaves[i]),
      proof: {
        index: i, size: leaves.length,
        leaf_hash: base64Encode(await hLeaf(leaves[i])),
        hashes: (await path(i, leaves)).map(base64Encode),
      },
    });
  }
  return { checkpoint: note, log_verifier_key: signer.vkey, log, root };
}

const signer = await makeSigner(ORIGIN);

// ---- Known-answer vectors (certificate-transparency / RFC 6962 test data) ----

const CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
  "606162636465666768696a6b6c6d6e6f"].map(unhex);
const CT_ROOTS = [
  "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
  "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
  "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
  "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
  "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
  "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
  "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
  "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

test("known-answer: CT test tree roots", async () => {
  assert.equal(hex(await sha(new Uint8Array(0))),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  for (let n = 1; n <= 8; n++) {
    assert.equal(hex(await mth(CT_LEAVES.slice(0, n))), CT_ROOTS[n - 1], `root of size ${n}`);
  }
});

test("known-answer: CT inclusion proof for leaf 0 in tree 8", async () => {
  const proof = [
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
  ];
  assert.deepEqual((await path(0, CT_LEAVES)).map(hex), proof);
  const root = unhex(CT_ROOTS[7]);
  assert.equal(await verifyInclusion(0, 8, await leafHash(CT_LEAVES[0]), proof.map(unhex), root), true);
  // Every leaf of every CT prefix tree, with the reference PATH.
  for (let n = 1; n <= 8; n++) {
    for (let i = 0; i < n; i++) {
      const p = await path(i, CT_LEAVES.slice(0, n));
      assert.equal(await verifyInclusion(i, n, await leafHash(CT_LEAVES[i]), p, unhex(CT_ROOTS[n - 1])), true);
    }
  }
});

// ---- Honest proofs ----

test("every index verifies for sizes 1, 2, 3, 7, 8, 9, 40", async () => {
  for (const n of [1, 2, 3, 7, 8, 9, 40]) {
    const report = await makeReport(signer, leafData(n));
    const cp = await openCheckpoint(report.checkpoint, report.log_verifier_key);
    assert.equal(cp.origin, ORIGIN);
    assert.equal(cp.size, n);
    assert.deepEqual(cp.root, report.root);
    const out = await checkAll(report);
    assert.equal(out.size, n);
    assert.equal(out.results.length, n);
    for (const r of out.results) assert.deepEqual(r, { index: r.index, ok: true }, `size ${n}`);
  }
});

test("sizes 1..40, all indexes, verifyInclusion directly", async () => {
  const all = leafData(40);
  for (let n = 1; n <= 40; n++) {
    const leaves = all.slice(0, n);
    const root = await mth(leaves);
    for (let i = 0; i < n; i++) {
      assert.equal(await verifyInclusion(i, n, await hLeaf(leaves[i]), await path(i, leaves), root), true);
    }
  }
});

test("checkpoint with extension lines and a cosignature by another name verifies", async () => {
  const leaves = leafData(9);
  const root = await mth(leaves);
  const witness = await makeSigner("witness.example/w1");
  const note = await signedNote(signer, checkpointText(ORIGIN, 9, root, "ext line\n"), [witness]);
  const cp = await openCheckpoint(note, signer.vkey);
  assert.equal(cp.size, 9);
  // Witness line first, log signature second: still fine.
  const text = checkpointText(ORIGIN, 9, root);
  const note2 = text + "\n" + (await witness.sigLine(text)) + (await signer.sigLine(text));
  assert.equal((await openCheckpoint(note2, signer.vkey)).size, 9);
});

// ---- Tampering ----

const reject = (p, re) => assert.rejects(p, re);

test("tampered proofs fail", async () => {
  const leaves = leafData(40);
  const report = await makeReport(signer, leaves);
  const cp = await openCheckpoint(report.checkpoint, report.log_verifier_key);
  const e = report.log[13];
  const clone = () => structuredClone(e);

  const flipped = clone();
  const h = base64Decode(flipped.proof.hashes[2]); h[5] ^= 0x10;
  flipped.proof.hashes[2] = base64Encode(h);
  await reject(checkLeaf(flipped, cp), /entry 13: .*root/);

  const wrongIndex = clone(); wrongIndex.index = 12; wrongIndex.proof.index = 12;
  await reject(checkLeaf(wrongIndex, cp), /entry 12/);
  const mismatchIndex = clone(); mismatchIndex.proof.index = 14;
  await reject(checkLeaf(mismatchIndex, cp), /entry 13: proof is for index 14/);

  const wrongSize = clone(); wrongSize.proof.size = 39;
  await reject(checkLeaf(wrongSize, cp), /tree size 39/);
  const lh = await hLeaf(leaves[13]), p = await path(13, leaves);
  // (For index 13 the path shape is the same for every size 33..64, so the
  // size is pinned by checkLeaf's proof.size == checkpoint.size check above;
  // for the last leaf a wrong size changes the walk and must fail.)
  const lh39 = await hLeaf(leaves[39]), p39 = await path(39, leaves);
  assert.equal(await verifyInclusion(39, 40, lh39, p39, cp.root), true);
  await reject(verifyInclusion(39, 41, lh39, p39, cp.root), /./);
  await reject(verifyInclusion(39, 48, lh39, p39, cp.root), /./);
  await reject(verifyInclusion(39, 39, lh39, p39, cp.root), /not below/);
  await reject(verifyInclusion(40, 40, lh, p, cp.root), /not below/);
  await reject(verifyInclusion(13, 40, lh, p.slice(0, -1), cp.root), /too short/);
  await reject(verifyInclusion(13, 40, lh, [...p, p[0]], cp.root), /too long/);

  const wrongLeaf = clone();
  const lb = base64Decode(wrongLeaf.leaf); lb[0] ^= 1; wrongLeaf.leaf = base64Encode(lb);
  await reject(checkLeaf(wrongLeaf, cp), /entry 13: leaf does not hash/);
  // ...even if the leaf hash is updated to match the altered leaf.
  wrongLeaf.proof.leaf_hash = base64Encode(await hLeaf(lb));
  await reject(checkLeaf(wrongLeaf, cp), /root/);

  const badB64 = clone(); badB64.proof.hashes[0] = "not base64!";
  await reject(checkLeaf(badB64, cp), /base64/);

  // checkAll keeps going after a failure.
  const mixed = { ...report, log: [report.log[0], flipped, report.log[39]] };
  const out = await checkAll(mixed);
  assert.deepEqual(out.results.map((r) => r.ok), [true, false, true]);
  assert.match(out.results[1].error, /entry 13/);
});

test("bad checkpoints and keys fail", async () => {
  const leaves = leafData(7);
  const report = await makeReport(signer, leaves);
  const text = checkpointText(ORIGIN, 7, report.root);

  // Signed by another key with the same name.
  const other = await makeSigner(ORIGIN);
  await reject(openCheckpoint(await signedNote(other, text), signer.vkey), /not signed/);
  await reject(checkAll({ ...report, checkpoint: await signedNote(other, text) }), /not signed/);

  // Text altered after signing.
  await reject(openCheckpoint(report.checkpoint.replace("\n7\n", "\n8\n"), signer.vkey), /does not verify/);

  // vkey with a wrong key id.
  const [, n, id, k] = /^([^+]+)\+([0-9a-f]{8})\+(.*)$/.exec(signer.vkey);
  const badId = ((parseInt(id, 16) ^ 1) >>> 0).toString(16).padStart(8, "0");
  await reject(openCheckpoint(report.checkpoint, `${n}+${badId}+${k}`), /key id/);
  // Wrong algorithm byte / length.
  const raw = base64Decode(k); raw[0] = 2;
  await reject(openCheckpoint(report.checkpoint, `${n}+${id}+${base64Encode(raw)}`), /Ed25519/);
  await reject(openCheckpoint(report.checkpoint, "garbage"), /malformed/);

  // Origin mismatch: a correctly signed checkpoint whose origin is not the key name.
  await reject(openCheckpoint(await signedNote(signer, checkpointText("other.example/log", 7, report.root)),
    signer.vkey), /origin/);

  // Malformed checkpoint bodies, all correctly signed.
  for (const bad of [
    `${ORIGIN}\n07\n${base64Encode(report.root)}\n`,
    `${ORIGIN}\n-7\n${base64Encode(report.root)}\n`,
    `${ORIGIN}\n9007199254740992\n${base64Encode(report.root)}\n`,
    `${ORIGIN}\n7\n${base64Encode(report.root.slice(1))}\n`,
    `${ORIGIN}\n7\n`,
  ]) {
    await reject(openCheckpoint(await signedNote(signer, bad), signer.vkey), /checkpoint/);
  }
  // Largest allowed size is accepted.
  const big = await openCheckpoint(
    await signedNote(signer, `${ORIGIN}\n9007199254740991\n${base64Encode(report.root)}\n`), signer.vkey);
  assert.equal(big.size, Number.MAX_SAFE_INTEGER);

  // Note structure.
  await reject(openCheckpoint(text, signer.vkey), /signature/);
  await reject(openCheckpoint(report.checkpoint.replace("\u2014", "-"), signer.vkey), /malformed/);
});

test("base64 helpers are strict", () => {
  assert.deepEqual(base64Decode("AAE="), Uint8Array.of(0, 1));
  assert.deepEqual(base64Decode(""), new Uint8Array(0));
  for (const bad of ["AAE", "AA=E", "AAF=", "A A=", "AA-_", "AAE==", null]) {
    assert.throws(() => base64Decode(bad), /base64/, String(bad));
  }
});
