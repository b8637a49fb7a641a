// Bench entry: exposes the page's decryptAge to the benchmark script.
import { decryptAge } from "../src/crypto/decrypt";

(globalThis as unknown as { decryptAge: typeof decryptAge }).decryptAge = decryptAge;
