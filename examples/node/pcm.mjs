// A pcm publisher and status reader in JavaScript, written from
// docs/protocol.md alone: it builds offers with the CloudEvents SDK, signs
// them (pcm.signature.v2), publishes them on NATS in structured or binary
// mode with the Nats-Msg-Id pcm requires per target, and reads statuses
// back from PCM_STATUS with direct gets (no consumer: what a publisher's or
// an auditor's credentials allow).
import { readFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { connect as natsConnect, credsAuthenticator, headers as natsHeaders } from "@nats-io/transport-node";
import { fromSeed, fromPublic } from "@nats-io/nkeys";
import { CloudEvent, HTTP } from "cloudevents";

const enc = new TextEncoder();
const dec = new TextDecoder();

// connect dials the broker. With credentials (a broker started with --auth)
// the inbox prefix must be the user's private one, _INBOX_<role>-<name>:
// the broker brings the answers to the user's requests back there only.
export async function connect({ url, creds, ca, user }) {
  const opts = { servers: url.split(","), name: "pcm node example" };
  if (creds) {
    opts.authenticator = credsAuthenticator(readFileSync(creds));
    opts.inboxPrefix = `_INBOX_${user}`;
  }
  if (ca) {
    opts.tls = { caFile: ca };
  }
  return natsConnect(opts);
}

// canonicalize writes a JSON value as RFC 8785 (JSON Canonicalization
// Scheme) does: members sorted by UTF-16 code units (JavaScript's default
// sort), numbers and strings as JSON.stringify writes them.
export function canonicalize(v) {
  if (v === null || typeof v !== "object") {
    return JSON.stringify(v);
  }
  if (Array.isArray(v)) {
    return "[" + v.map(canonicalize).join(",") + "]";
  }
  return "{" + Object.keys(v).filter((k) => v[k] !== undefined).sort()
    .map((k) => JSON.stringify(k) + ":" + canonicalize(v[k])).join(",") + "}";
}

// canonicalTime is the instant in UTC to the millisecond, as the signing
// input writes it ("" when there is no time).
export function canonicalTime(t) {
  return t ? new Date(t).toISOString() : "";
}

// dataOf is an event's data as a JSON value.
function dataOf(ce) {
  if (ce.data === undefined) {
    return "";
  }
  if (ce.data instanceof Uint8Array) {
    return JSON.parse(dec.decode(ce.data));
  }
  return ce.data;
}

// signingInput is the byte string pcm signs: the canonical JSON of
// ["pcm.signature.v2", specversion, id, source, type, subject, time,
// dataschema, pcmkey, data].
export function signingInput(ce, pcmkey) {
  return canonicalize(["pcm.signature.v2", ce.specversion, ce.id, ce.source, ce.type, ce.subject ?? "",
    canonicalTime(ce.time), ce.dataschema ?? "", pcmkey, dataOf(ce)]);
}

// sign returns ce signed with the nkeys seed: pcmkey, the public key, and
// pcmsig, the ed25519 signature in base64url without padding.
export function sign(ce, seed) {
  const kp = fromSeed(enc.encode(seed.trim()));
  const pcmkey = kp.getPublicKey();
  const sig = kp.sign(enc.encode(signingInput(ce, pcmkey)));
  return ce.cloneWith({ pcmkey, pcmsig: Buffer.from(sig).toString("base64url") });
}

// verify reports whether ce carries a valid signature by one of trusted.
export function verify(ce, trusted) {
  if (typeof ce.pcmsig !== "string" || typeof ce.pcmkey !== "string" || !trusted.includes(ce.pcmkey)) {
    return false;
  }
  try {
    return fromPublic(ce.pcmkey).verify(enc.encode(signingInput(ce, ce.pcmkey)), Buffer.from(ce.pcmsig, "base64url"));
  } catch {
    return false;
  }
}

// newJobID makes a 26-character id ([A-Za-z0-9_-], as pcm requires).
export function newJobID() {
  return "JS" + randomBytes(12).toString("hex").toUpperCase();
}

// offer builds a pcm.job.offered.v1 event: its id and subject are the job
// id, its source /pcm/publisher/<name>. The CloudEvents SDK sets no
// datacontenttype: pcm reads a missing one as application/json.
export function offer({ publisher, jobID, argv, targets, timeout = "1m", mandatoryNow = true, name }) {
  const now = new Date();
  const job = {
    job_id: jobID,
    name,
    command: { argv, automated: true, timeout },
    targets,
    offer_after: now.toISOString(),
    expire_after: new Date(now.getTime() + 24 * 3600 * 1000).toISOString(),
  };
  if (mandatoryNow) {
    job.mandatory_after = now.toISOString();
  }
  return new CloudEvent({
    specversion: "1.0", id: jobID, source: `/pcm/publisher/${publisher}`, type: "pcm.job.offered.v1",
    subject: jobID, time: now.toISOString(), data: job,
  });
}

// subjectOf is the PCM_JOBS subject of a target.
export function subjectOf(t) {
  switch (t.kind) {
    case "client": return `pcm.jobs.client.${t.name}`;
    case "group": return `pcm.jobs.group.${t.name}`;
    case "all": return "pcm.jobs.all";
  }
  throw new Error(`unknown target kind ${t.kind}`);
}

// targetString is a target as the Nats-Msg-Id writes it: client:ID,
// group:G or all.
function targetString(t) {
  return t.kind === "all" ? "all" : `${t.kind}:${t.name}`;
}

// message encodes ce for NATS in structured or binary mode (the
// CloudEvents NATS binding maps its headers as the HTTP binding does).
export function message(ce, mode) {
  const m = mode === "binary" ? HTTP.binary(ce) : HTTP.structured(ce);
  const h = natsHeaders();
  for (const [k, v] of Object.entries(m.headers)) {
    h.set(k === "content-type" ? "Content-Type" : k, String(v));
  }
  return { headers: h, body: typeof m.body === "string" ? m.body : JSON.stringify(m.body) };
}

// publishOffer stores the offer once per target, on the target's subject,
// with Nats-Msg-Id offer.<job>.<target>: one id per copy, or JetStream
// drops every copy after the first as a duplicate.
export async function publishOffer(nc, ce, mode) {
  const acks = [];
  for (const t of ce.data.targets) {
    const m = message(ce, mode);
    m.headers.set("Nats-Msg-Id", `offer.${ce.id}.${targetString(t)}`);
    const reply = await nc.request(subjectOf(t), enc.encode(m.body), { headers: m.headers, timeout: 5000 });
    const ack = JSON.parse(dec.decode(reply.data));
    if (ack.error) {
      throw new Error(`publishing ${ce.id} to ${subjectOf(t)}: ${ack.error.description}`);
    }
    acks.push(ack);
  }
  return acks;
}

// statuses reads every status of job on client from PCM_STATUS, oldest
// first, with direct gets (next_by_subj from sequence 1 on).
export async function statuses(nc, client, job) {
  const subject = `pcm.status.${client}.${job}`;
  const out = [];
  for (let seq = 1; ;) {
    const reply = await nc.request("$JS.API.DIRECT.GET.PCM_STATUS", enc.encode(JSON.stringify({ seq, next_by_subj: subject })), { timeout: 5000 });
    if (reply.headers?.code === 404 || reply.data.length === 0) {
      return out;
    }
    if (reply.headers?.hasError) {
      throw new Error(`reading ${subject}: ${reply.headers.code} ${reply.headers.description}`);
    }
    const h = {};
    for (const k of reply.headers.keys()) {
      h[k.toLowerCase()] = reply.headers.get(k);
    }
    const ce = HTTP.toEvent({ headers: h, body: dec.decode(reply.data) });
    ce.validate();
    out.push(ce);
    seq = Number(reply.headers.get("Nats-Sequence")) + 1;
  }
}

// finalStates are the states that end an attempt.
export const finalStates = ["succeeded", "failed", "timed_out", "cancelled", "expired", "not_applicable", "rejected"];
