// Test-only decryption worker: the real one (src/crypto/worker.ts), which then dies with
// an uncaught exception on its second batch, as a crashed worker would. The browser
// tests point parallel.ts at it to check that a failing worker fails the file.

import "../src/crypto/worker";

let batches = 0;
self.addEventListener("message", (event: MessageEvent<{ type?: string }>) => {
  if (event.data?.type === "batch" && ++batches === 2) throw new Error("injected worker failure");
});
