// signin.mjs drives headless Chromium (Debian's, never a downloaded one)
// through a sign-in: the SPA at --url, our login page, our consent page,
// and back to the SPA's callback, which shows the user's sub. It prints one
// line of JSON on stdout for authz/browser_test.go and saves a screenshot
// of each step in --screenshots. It exits 1 when the flow did not finish;
// the JSON then says where it stopped.
//
//   node signin.mjs --url http://127.0.0.1:1234/ --username alice \
//     --password secret --screenshots /tmp/shots [--chromium /usr/bin/chromium]
import { parseArgs } from "node:util";
import { errorText, instrument, launch, newEvents, screenshotter, withDeadline } from "./harness.mjs";

const { values: opt } = parseArgs({
  options: {
    url: { type: "string" },
    username: { type: "string" },
    password: { type: "string" },
    screenshots: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    "timeout-ms": { type: "string", default: "45000" },
  },
});
for (const name of ["url", "username", "password", "screenshots"]) {
  if (!opt[name]) {
    console.error(`signin.mjs: --${name} is required`);
    process.exit(2);
  }
}

const result = {
  sub: "",
  username: "",
  step: "start",          // the last step begun; where it stopped on failure
  error: "",
  ...newEvents(),         // console errors, CSP violations, failed requests...
  screenshots: [],
};

const shoot = await screenshotter(opt.screenshots, result.screenshots);
let shot = 0;
const screenshot = (page, name) => shoot(page, `${String(++shot).padStart(2, "0")}-${name}`);

const deadline = Number(opt["timeout-ms"]);
let browser;
let exitCode = 1;
try {
  browser = await launch(opt.chromium);
  const context = await browser.newContext({ viewport: { width: 900, height: 720 } });
  await instrument(context, result);
  const page = await context.newPage();
  page.setDefaultTimeout(15000);

  const flow = async () => {
    result.step = "open the SPA";
    await page.goto(opt.url);
    await page.locator("body[data-state]").waitFor();
    await screenshot(page, "spa");
    if ((await page.locator("body").getAttribute("data-state")) !== "ready") {
      throw new Error(`SPA not ready: ${await page.locator("#error").textContent()}`);
    }

    result.step = "sign in on the login page";
    await page.locator("#signin").click();
    await page.locator('#username, body[data-state="error"]').first().waitFor();
    if ((await page.locator("body").getAttribute("data-state")) === "error") {
      throw new Error(`SPA failed to start the sign-in: ${await page.locator("#error").textContent()}`);
    }
    await page.locator("#username").fill(opt.username);
    await page.locator("#password").fill(opt.password);
    await screenshot(page, "login");
    await page.locator('button[name="action"][value="login"]').click();

    result.step = "allow on the consent page";
    await page.locator('button[name="action"][value="allow"]').waitFor();
    await screenshot(page, "consent");
    await page.locator('button[name="action"][value="allow"]').click();

    result.step = "callback";
    await page.waitForURL((u) => u.pathname === "/callback");
    await page.locator("body[data-state]").waitFor();
    await screenshot(page, "callback");
    if ((await page.locator("body").getAttribute("data-state")) !== "signed-in") {
      throw new Error(`callback failed: ${await page.locator("#error").textContent()}`);
    }
    result.sub = (await page.locator("#sub").textContent()) ?? "";
    result.username = (await page.locator("#username").textContent()) ?? "";
    result.step = "done";
  };
  try {
    await withDeadline(deadline, flow);
    exitCode = 0;
  } catch (err) {
    result.error = errorText(err);
    await screenshot(page, "failure").catch(() => {});
  }
} catch (err) {
  result.error = errorText(err);
} finally {
  await browser?.close().catch(() => {});
}
process.stdout.write(JSON.stringify(result) + "\n");
process.exitCode = exitCode;
