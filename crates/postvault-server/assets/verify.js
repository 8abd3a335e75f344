// verify.js: check postvault's transparency log proofs in the browser.
//
// The vault publishes every record in an append-only Merkle log (RFC 6962 /
// RFC 9162 tree hashing).  The log operator signs a short "checkpoint" that
// names the tree size and root hash.  This module lets the page re-check,
// with nothing but WebCrypto, that each entry it shows really is in that
// signed tree, so the reader does not have to trust the server's word.
//
// The steps, in plain words:
//  1. Parse the log's verifier key (C2SP signed-note "vkey"):
//     `<name>+<8 hex key id>+<base64(0x01 || 32-byte Ed25519 public key)>`.
//     The key id must equal the first 4 bytes of
//     SHA-256(name || "\n" || 0x01 || public key).
//  2. Open the signed note (https://c2sp.org/signed-note): the text, a blank
//     line, then lines `— <name> <base64(4-byte key id || signature)>`.  The
//     signed message is the text including its final newline.  We need one
//     Ed25519 signature from our key (same name and key id) that verifies;
//     lines from other signers (e.g. witness cosignatures) are ignored.
//  3. Read the note text as a checkpoint (https://c2sp.org/tlog-checkpoint):
//     origin line (must be the key name), decimal tree size, base64 root
//     hash, then optional extension lines.
//  4. For every entry: hash the leaf as SHA-256(0x00 || leaf), and walk its
//     audit path up to the root exactly as RFC 9162 §2.1.3.2 describes
//     (interior nodes are SHA-256(0x01 || left || right)).  The result must
//     equal the signed root for the signed size.
//
// No dependencies, no build step; runs in current browsers and Node 20.

const EM_DASH_PREFIX = "\u2014 ";
const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53 - 1

const subtle = () => globalThis.crypto.subtle;
const utf8 = (s) => new TextEncoder().encode(s);

async function sha256(...parts) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const buf = new Uint8Array(total);
  let off = 0;
  for (const p of parts) { buf.set(p, off); off += p.length; }
  return new Uint8Array(await subtle().digest("SHA-256", buf));
}

function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

// ---- Base64 (standard alphabet, with padding, canonical only) ----

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

export function base64Encode(bytes) {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

export function base64Decode(text, what = "value") {
  if (typeof text !== "string" || !B64_RE.test(text)) {
    throw new Error(`${what} is not valid base64`);
  }
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  // Reject non-canonical encodings (stray bits in the padding).
  if (base64Encode(out) !== text) throw new Error(`${what} is not canonical base64`);
  return out;
}

// ---- Verifier key and signed note ----

async function parseVerifierKey(vkey) {
  if (typeof vkey !== "string") throw new Error("verifier key is missing");
  const m = /^([^+\s]+)\+([0-9a-f]{8})\+(\S+)$/.exec(vkey);
  if (!m) throw new Error("verifier key is malformed");
  const [, name, idHex, keyB64] = m;
  const raw = base64Decode(keyB64, "verifier key");
  if (raw.length !== 33 || raw[0] !== 0x01) {
    throw new Error("verifier key is not an Ed25519 (type 0x01) key");
  }
  const pub = raw.slice(1);
  const id = (await sha256(utf8(name), new Uint8Array([0x0a]), raw)).slice(0, 4);
  if (!bytesEqual(id, hexToBytes(idHex))) throw new Error("verifier key id does not match the key");
  const key = await subtle().importKey("raw", pub, { name: "Ed25519" }, false, ["verify"]);
  return { name, id, key };
}

function hexToBytes(hex) {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Verify the note's signature by `vk`; returns the signed text. */
async function openNote(note, vk) {
  if (typeof note !== "string") throw new Error("checkpoint note is missing");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new Error("checkpoint note has no signature block");
  const text = note.slice(0, split + 1);
  const sigBlock = note.slice(split + 2);
  if (!sigBlock.endsWith("\n")) throw new Error("checkpoint note signatures do not end in a newline");
  let verified = false;
  for (const line of sigBlock.slice(0, -1).split("\n")) {
    if (!line.startsWith(EM_DASH_PREFIX)) throw new Error("checkpoint note has a malformed signature line");
    const parts = line.slice(EM_DASH_PREFIX.length).split(" ");
    if (parts.length !== 2 || parts[0] === "") throw new Error("checkpoint note has a malformed signature line");
    const sig = base64Decode(parts[1], "note signature");
    if (sig.length < 5) throw new Error("checkpoint note has a malformed signature line");
    if (parts[0] !== vk.name || !bytesEqual(sig.slice(0, 4), vk.id)) continue; // someone else's
    const ok = sig.length === 68 &&
      (await subtle().verify({ name: "Ed25519" }, vk.key, sig.slice(4), utf8(text)));
    if (!ok) throw new Error(`checkpoint signature by ${vk.name} does not verify`);
    verified = true;
  }
  if (!verified) throw new Error(`checkpoint is not signed by ${vk.name}`);
  return text;
}

/**
 * Verify a signed checkpoint note against the log's verifier key.
 * @returns {Promise<{origin: string, size: number, root: Uint8Array}>}
 */
export async function openCheckpoint(note, verifierKey) {
  const vk = await parseVerifierKey(verifierKey);
  const text = await openNote(note, vk);
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new Error("checkpoint has fewer than three lines");
  const [origin, sizeText, rootText] = lines;
  if (origin !== vk.name) throw new Error(`checkpoint origin "${origin}" is not the key name "${vk.name}"`);
  if (!/^(0|[1-9][0-9]*)$/.test(sizeText)) throw new Error("checkpoint size is not a decimal number");
  if (BigInt(sizeText) > BigInt(MAX_SAFE)) throw new Error("checkpoint size is too large");
  const root = base64Decode(rootText, "checkpoint root hash");
  if (root.length !== 32) throw new Error("checkpoint root hash is not 32 bytes");
  return { origin, size: Number(sizeText), root };
}

// ---- Merkle tree hashing and inclusion proofs ----

/** RFC 6962 leaf hash: SHA-256(0x00 || leaf). */
export async function leafHash(leafBytes) {
  return sha256(new Uint8Array([0x00]), leafBytes);
}

const nodeHash = (left, right) => sha256(new Uint8Array([0x01]), left, right);

function checkCount(n, what) {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`${what} is not a valid count`);
}

/** RFC 9162 §2.1.3.2 inclusion proof verification. Returns true or throws. */
export async function verifyInclusion(index, size, leafHashBytes, proofHashes, root) {
  checkCount(index, "leaf index");
  checkCount(size, "tree size");
  if (index >= size) throw new Error(`leaf index ${index} is not below tree size ${size}`);
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leafHashBytes;
  for (const p of proofHashes) {
    if (sn === 0n) throw new Error("inclusion proof is too long");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) throw new Error("inclusion proof is too short");
  if (!bytesEqual(r, root)) throw new Error("inclusion proof does not lead to the checkpoint root");
  return true;
}

/** Check one report entry against an opened checkpoint. Returns true or throws. */
export async function checkLeaf(entry, checkpoint) {
  const label = `entry ${entry && entry.index}`;
  try {
    const proof = entry.proof;
    if (!proof || !Array.isArray(proof.hashes)) throw new Error("has no inclusion proof");
    const lh = await leafHash(base64Decode(entry.leaf, "leaf"));
    if (!bytesEqual(lh, base64Decode(proof.leaf_hash, "leaf hash"))) {
      throw new Error("leaf does not hash to the proof's leaf hash");
    }
    if (proof.index !== entry.index) throw new Error(`proof is for index ${proof.index}`);
    if (proof.size !== checkpoint.size) {
      throw new Error(`proof is for tree size ${proof.size}, checkpoint is ${checkpoint.size}`);
    }
    const hashes = proof.hashes.map((h) => base64Decode(h, "proof hash"));
    if (hashes.some((h) => h.length !== 32)) throw new Error("a proof hash is not 32 bytes");
    await verifyInclusion(entry.index, checkpoint.size, lh, hashes, checkpoint.root);
    return true;
  } catch (e) {
    throw new Error(`${label}: ${e.message}`);
  }
}

/** Open the report's checkpoint once and check every entry (failures do not stop the rest). */
export async function checkAll(report) {
  if (!report || !Array.isArray(report.log)) throw new Error("proof report has no log entries list");
  const cp = await openCheckpoint(report.checkpoint, report.log_verifier_key);
  const results = [];
  for (const entry of report.log) {
    const index = entry ? entry.index : undefined;
    try {
      await checkLeaf(entry, cp);
      results.push({ index, ok: true });
    } catch (e) {
      results.push({ index, ok: false, error: e.message });
    }
  }
  return { size: cp.size, results };
}

// ---- DOM binding (browser only) ----

function mark(el, text, ok) {
  el.textContent = text;
  el.classList.remove(ok ? "bad" : "ok");
  el.classList.add(ok ? "ok" : "bad");
}

/**
 * Rewrites the description of a verified entry's row from the entry's own
 * bytes (the canonical JSON event the log holds), so what the page says
 * happened is what the checked leaf says, not the server's word for it.
 * Cells name what they show with `data-field`.
 */
function showLeaf(row, entry) {
  let ev;
  try {
    ev = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(base64Decode(entry.leaf, "leaf")));
  } catch {
    return;
  }
  if (!ev || typeof ev !== "object") return;
  const words = (s) => (typeof s === "string" ? s.replaceAll("_", " ") : "");
  const values = {
    time: Number.isSafeInteger(ev.time) ? new Date(ev.time).toISOString() : "",
    action: words(ev.action),
    role: words(ev.principal && ev.principal.role),
    purpose: words(ev.purpose),
    decision: ev.decision === "allow" ? "allowed" : "refused",
    categories: Array.isArray(ev.categories) ? ev.categories.map(words).join(", ") : "",
  };
  for (const cell of row.querySelectorAll("[data-field]")) {
    const v = values[cell.dataset.field];
    if (v !== undefined) cell.textContent = v;
  }
}

async function runInPage() {
  const host = document.getElementById("proofs");
  if (!host || !host.dataset.src) return;
  const summary = document.getElementById("proofs-summary");
  const leafEls = Array.from(document.querySelectorAll("[data-leaf]"));
  try {
    const url = new URL(host.dataset.src, location.href);
    if (url.origin !== location.origin) throw new Error("proof report is not same-origin");
    const resp = await fetch(url, { credentials: "same-origin" });
    if (!resp.ok) throw new Error(`could not fetch the proofs (HTTP ${resp.status})`);
    const report = await resp.json();
    // The key the page shows, which the person is told to compare with the
    // one published elsewhere: the proofs must be checked with that key.
    if (host.dataset.key && report.log_verifier_key !== host.dataset.key) {
      throw new Error("the proofs name another signing key than the one this page shows");
    }
    const t0 = performance.now();
    const { size, results } = await checkAll(report);
    document.body.dataset.proofsMs = (performance.now() - t0).toFixed(1);
    const byIndex = new Map(results.map((r) => [String(r.index), r]));
    const entries = new Map(report.log.map((e) => [String(e.index), e]));
    for (const el of leafEls) {
      const r = byIndex.get(el.dataset.leaf);
      if (!r) mark(el, "NOT verified: no proof for this entry in the report", false);
      else if (r.ok) {
        mark(el, `verified in your browser against checkpoint ${size}`, true);
        const row = el.closest("tr");
        if (row) showLeaf(row, entries.get(el.dataset.leaf));
      } else mark(el, `NOT verified: ${r.error}`, false);
    }
    const failed = results.filter((r) => !r.ok).length;
    const n = results.length;
    const noun = n === 1 ? "entry" : "entries";
    if (summary) {
      if (failed > 0) mark(summary, `${failed} of ${n} ${noun} FAILED verification in your browser.`, false);
      else mark(summary, `All ${n} ${noun} verified in your browser against checkpoint ${size}.`, true);
    }
    document.body.dataset.proofs = "done";
  } catch (e) {
    for (const el of leafEls) mark(el, `NOT verified: ${e.message}`, false);
    if (summary) mark(summary, `The log proofs could not be verified in your browser: ${e.message}`, false);
    document.body.dataset.proofs = "failed";
  }
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => { runInPage(); });
  } else {
    runInPage();
  }
}
