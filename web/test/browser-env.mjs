// Whether the Chromium tests run: HASHDROP_TEST_CHROMIUM names the browser binary; when
// it is unset the tests skip with a notice, unless HASHDROP_TEST_REQUIRE_SERVICES=1,
// where a missing browser is a failure (same rule as the Rust service tests).
import { existsSync } from "node:fs";

export function chromiumOrSkip(t) {
  const path = process.env.HASHDROP_TEST_CHROMIUM;
  const required = process.env.HASHDROP_TEST_REQUIRE_SERVICES === "1";
  if (!path) {
    if (required) throw new Error("HASHDROP_TEST_CHROMIUM is unset and HASHDROP_TEST_REQUIRE_SERVICES=1");
    const notice = "skipping: set HASHDROP_TEST_CHROMIUM=/usr/bin/chromium to run the browser tests";
    console.log(notice);
    t.skip(notice);
    return null;
  }
  if (!existsSync(path)) throw new Error(`HASHDROP_TEST_CHROMIUM=${path} does not exist`);
  return path;
}
