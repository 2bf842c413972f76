// home.mjs opens the home page at --url in headless Chromium at a phone's
// width (375 px) and reports what a person sees: the heading, the links,
// and whether the page is wider than the screen. It prints one line of
// JSON for authz/home_browser_test.go.
//
//   node home.mjs --url http://127.0.0.1:1234/ --screenshots /tmp/shots
import { parseArgs } from "node:util";
import { errorText, instrument, launch, newEvents, screenshotter, withDeadline } from "./harness.mjs";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    screenshots: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "30000" },
  },
});
if (!opt.url || !opt.screenshots) {
  console.error("home.mjs: --url and --screenshots are required");
  process.exit(2);
}

const result = { heading: "", links: [], overflow: 0, step: "start", error: "", ...newEvents(), screenshots: [] };
const shoot = await screenshotter(opt.screenshots, result.screenshots);
let browser;
let exitCode = 1;
try {
  browser = await launch(opt.chromium);
  const context = await browser.newContext({ viewport: { width: 375, height: 740 } });
  await instrument(context, result);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);
  try {
    await withDeadline(Number(opt["timeout-ms"]), async () => {
      result.step = "open the home page";
      const res = await page.goto(opt.url);
      if (!res || res.status() !== 200) throw new Error(`status ${res && res.status()}`);
      await shoot(page, "home");
      result.heading = ((await page.locator("h1").textContent()) ?? "").trim();
      result.links = await page.locator("a[href]").evaluateAll((as) => as.map((a) => a.href));
      result.overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      result.step = "done";
    });
    exitCode = 0;
  } catch (err) {
    result.error = errorText(err);
    await shoot(page, "failure").catch(() => {});
  }
} catch (err) {
  result.error = errorText(err);
} finally {
  await browser?.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exitCode = exitCode;
