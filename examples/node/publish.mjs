// Publishes a signed offer from JavaScript and waits for its final status
// on a client, reading it back from PCM_STATUS:
//
//   node publish.mjs --url nats://127.0.0.1:4222 --mode binary --seed-file key.nk \
//     --target client:ws-042 --target group:lab --wait ws-042 -- echo hello
//
// --mode structured (default) or binary; --seed-file signs the offer (pcm
// keys new writes one); --creds, --ca and --user (the credentials' user,
// publisher-NAME) reach a broker started with --auth and TLS. It prints the
// job id, then, with --wait CLIENT, each status of that client as one JSON
// line, and exits 0 when the last is succeeded.
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { connect, finalStates, newJobID, offer, publishOffer, sign, statuses } from "./pcm.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    url: { type: "string", default: "nats://127.0.0.1:4222" },
    creds: { type: "string" },
    ca: { type: "string" },
    user: { type: "string" },
    publisher: { type: "string", default: "node" },
    mode: { type: "string", default: "structured" },
    "seed-file": { type: "string" },
    target: { type: "string", multiple: true, default: [] },
    wait: { type: "string" },
    "wait-seconds": { type: "string", default: "30" },
  },
});
if (positionals.length === 0 || values.target.length === 0) {
  console.error("usage: node publish.mjs --target client:ID|group:G|all [--mode structured|binary] [--seed-file FILE] [--wait CLIENT] -- COMMAND [ARG...]");
  process.exit(64);
}
const targets = values.target.map((t) => {
  const [kind, name] = t.split(":");
  return kind === "all" ? { kind } : { kind, name };
});
const nc = await connect({ url: values.url, creds: values.creds, ca: values.ca, user: values.user });
try {
  let ce = offer({ publisher: values.publisher, jobID: newJobID(), argv: positionals, targets, name: `from node (${values.mode})` });
  if (values["seed-file"]) {
    ce = sign(ce, readFileSync(values["seed-file"], "utf8"));
  }
  ce.validate();
  await publishOffer(nc, ce, values.mode);
  console.log(ce.id);
  if (values.wait) {
    const deadline = Date.now() + Number(values["wait-seconds"]) * 1000;
    let sts = [];
    while (Date.now() < deadline) {
      sts = await statuses(nc, values.wait, ce.id);
      if (sts.length > 0 && finalStates.includes(sts[sts.length - 1].data.state)) {
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const st of sts) {
      console.log(JSON.stringify({ id: st.id, source: st.source, state: st.data.state, exit_code: st.data.exit_code, output_tail: st.data.output_tail }));
    }
    const last = sts[sts.length - 1];
    process.exitCode = last?.data.state === "succeeded" ? 0 : 1;
  }
} finally {
  await nc.close();
}
