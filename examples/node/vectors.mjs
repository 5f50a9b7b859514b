// Checks pcm's signature test vectors (events/testdata/signature-vectors.json)
// in JavaScript: each message, read with the CloudEvents SDK, gives the
// signing input the file names, and verifies or not as it says.
//
//   node vectors.mjs ../../events/testdata/signature-vectors.json
import { readFileSync } from "node:fs";
import { HTTP } from "cloudevents";
import { signingInput, verify } from "./pcm.mjs";

const file = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const v of file.vectors) {
  const headers = {};
  for (const [k, val] of Object.entries(v.headers)) {
    headers[k.toLowerCase()] = val;
  }
  const ce = HTTP.toEvent({ headers, body: v.body });
  const input = signingInput(ce, ce.pcmkey);
  const verified = verify(ce, [file.public_key]);
  const ok = input === v.signing_input && verified === v.verifies;
  if (!ok) {
    failed++;
    console.log(`FAIL ${v.name}: verified ${verified} (want ${v.verifies})${input === v.signing_input ? "" : `\n  signing input ${input}\n  want          ${v.signing_input}`}`);
  } else {
    console.log(`ok   ${v.name}`);
  }
}
console.log(`${file.vectors.length - failed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
